//! `steady serve`: the web API and the executor, on the database and runbooks it is given.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use steady_engine::accounts::{AccountService, new_secret};
use steady_engine::engine::{Engine, EngineConfig, FolderFile};
use steady_web::{AppState, ServerConfig};

use crate::app::{DbArgs, os_user, secrets_from_env};
use crate::logs::{self, LogFormat};
use crate::report;
use crate::runbooks::{self, RunbookFile};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The address to listen on.
    #[arg(long, env = "STEADY_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Mark session cookies Secure: set this when Steady is reached over https.
    #[arg(long, env = "STEADY_SECURE_COOKIES")]
    secure_cookies: bool,
    /// Post notifications (Slack-compatible JSON) to this URL; repeat for several.
    #[arg(long = "notify", env = "STEADY_NOTIFY", value_delimiter = ',', value_name = "URL")]
    notify: Vec<String>,
    /// The address people open Steady at (`https://steady.example.com`): notifications link
    /// to the run and its gate there. Without it, notifications carry no links.
    #[arg(long, env = "STEADY_PUBLIC_URL", value_name = "URL", value_parser = public_url)]
    public_url: Option<String>,
    /// How the log on standard error is written; `STEADY_LOG` (or `RUST_LOG`) filters it,
    /// `info` by default.
    #[arg(long, env = "STEADY_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,
    /// How often the verification scheduler looks for a runbook's `verify` period to start:
    /// at most this late after its period begins, a verification starts.
    #[arg(long, env = "STEADY_VERIFICATION_TICK", default_value = "1s", value_parser = crate::app::parse_duration)]
    verification_tick: steady_engine::Duration,
    /// A proposal an alert made ends (`run.expired`) when nobody took command of it, and no
    /// alert came for it, for this long.
    #[arg(long, env = "STEADY_PROPOSAL_EXPIRY", default_value = "1h", value_parser = crate::app::parse_duration)]
    proposal_expiry: steady_engine::Duration,
    #[command(flatten)]
    runbooks: crate::RunbooksDir,
    #[command(flatten)]
    db: DbArgs,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    logs::install(args.log_format)?;
    let database = steady_storage::open_database(&args.db.db)
        .await
        .with_context(|| format!("cannot open {}", args.db.db))?;
    let host =
        nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default();
    let node = format!("serve:{host}:{}", std::process::id());
    let config = EngineConfig::new(node, args.db.lease.as_std(), secrets_from_env());
    let engine = Arc::new(Engine::new(database.store.clone(), config));
    let local = steady_engine::run::Actor::local(&os_user());

    let (password, shown) = match std::env::var("STEADY_ADMIN_PASSWORD") {
        Ok(password) if !password.is_empty() => (password, false),
        _ => (new_secret()[..24].to_owned(), true),
    };
    let accounts = AccountService::new(database.accounts.clone());
    if accounts.create_first_admin(&local, &password).await? {
        if shown {
            println!(
                "created user `admin` with password {password}  (shown once: keep it, or set STEADY_ADMIN_PASSWORD)"
            );
        } else {
            println!("created user `admin` with the password in STEADY_ADMIN_PASSWORD");
        }
    }

    let folder_versions = publish_folder(&engine, &args.runbooks.path, &local).await?;

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    println!("steady listening on http://{} (database {})", listener.local_addr()?, args.db.db);
    let server = ServerConfig {
        secure_cookies: args.secure_cookies,
        notify: args.notify,
        public_url: args.public_url,
        folder_versions,
        verification_tick: args
            .verification_tick
            .as_std()
            .max(std::time::Duration::from_millis(10)),
        proposal_expiry: args.proposal_expiry.as_std().max(std::time::Duration::from_secs(1)),
        ..ServerConfig::default()
    };
    let state = AppState::new(engine, database.accounts, server);
    steady_web::serve(listener, state, shutdown_signal()).await?;
    println!("steady stopped; runs are durable and continue at the next start");
    Ok(ExitCode::SUCCESS)
}

/// Publishes every runbook in the folder whose content is not one of its stored versions;
/// reports invalid ones and goes on. Returns the runbooks whose file is an older version than
/// the latest, with the version the file matches.
async fn publish_folder(
    engine: &Engine,
    folder: &Path,
    actor: &steady_engine::run::Actor,
) -> anyhow::Result<BTreeMap<String, u32>> {
    let mut behind = BTreeMap::new();
    if !folder.is_dir() {
        println!("no runbooks folder at {}: nothing to publish", folder.display());
        return Ok(behind);
    }
    for path in runbooks::files_in(folder)? {
        let file = RunbookFile::read(&path)?;
        let tests = crate::runbook_tests::read_beside(&path)?;
        let test_source = tests.as_ref().map(|(_, source)| source.as_str());
        match engine.publish_from_folder(&file.source, test_source, actor).await {
            Ok(FolderFile::Published(version)) => {
                println!("published {} version {}", version.name, version.version)
            }
            Ok(FolderFile::Latest(_)) => {}
            Ok(FolderFile::Behind { name, file: matched, latest }) => {
                report::file_warning(
                    &file.display_path(),
                    &format!(
                        "the folder is behind the database: file matches v{matched}, latest is v{latest}; {name} v{latest} stays the latest"
                    ),
                );
                behind.insert(name, matched);
            }
            Err(steady_engine::engine::EngineError::InvalidRunbook(diagnostics)) => {
                let errors = diagnostics.iter().filter(|d| d.is_error());
                report::diagnostics(&file.display_path(), &file.source, errors);
            }
            Err(
                error @ (steady_engine::engine::EngineError::InvalidTests(_)
                | steady_engine::engine::EngineError::TestsFailed(_)),
            ) => {
                if let Some((path, source)) = &tests {
                    crate::runbook_tests::report_refusal(path, source, &error);
                }
                report::file_warning(&file.display_path(), "not published: its tests do not pass");
            }
            Err(error) => return Err(error.into()),
        }
    }
    Ok(behind)
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match terminate.as_mut() { Some(signal) => { signal.recv().await; } None => std::future::pending().await } } => {}
    }
}

/// `--public-url`: an http(s) URL with a host and nothing after its path, kept without the
/// trailing `/` so that links are `URL/runs/…`.
fn public_url(text: &str) -> Result<String, String> {
    let rest = text
        .strip_prefix("https://")
        .or_else(|| text.strip_prefix("http://"))
        .ok_or("the public URL starts with https:// (or http://)")?;
    let bad = |c: char| c.is_whitespace() || c.is_control() || "?#|<>\"\\".contains(c);
    if rest.is_empty() || rest.starts_with('/') || rest.chars().any(bad) {
        return Err("the public URL is a plain address like https://steady.example.com".into());
    }
    Ok(text.trim_end_matches('/').to_owned())
}

#[cfg(test)]
mod tests {
    /// Links in notifications are `URL/runs/…`: only a plain http(s) address makes sense.
    #[test]
    fn the_public_url_is_a_plain_address() {
        let table = [
            ("https://steady.example.com/", Ok("https://steady.example.com")),
            ("http://10.0.0.5:8080", Ok("http://10.0.0.5:8080")),
            ("https://example.com/steady/", Ok("https://example.com/steady")),
            ("steady.example.com", Err("starts with")),
            ("https://", Err("plain address")),
            ("https://evil|x", Err("plain address")),
            ("https://a.example.com/?q=1", Err("plain address")),
        ];
        for (text, expected) in table {
            match (super::public_url(text), expected) {
                (Ok(url), Ok(want)) => assert_eq!(url, want, "{text}"),
                (Err(error), Err(part)) => assert!(error.contains(part), "{text}: {error}"),
                (got, want) => panic!("{text}: {got:?}, expected {want:?}"),
            }
        }
    }
}
