//! What every database command shares: the store, the engine, and who is at the terminal.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use steady_engine::engine::{Engine, EngineConfig};
use steady_engine::run::Actor;
use steady_engine::store::Store;
use uuid::Uuid;

/// Settings every database command takes.
#[derive(Debug, Clone, clap::Args)]
pub struct DbArgs {
    /// The database: `sqlite://PATH` (created on first use) or
    /// `postgres://USER@HOST/DATABASE` (several `steady serve` nodes may share one).
    #[arg(long, env = "STEADY_DB", default_value = "sqlite://steady.db", global = true)]
    pub db: String,
    /// How long a driver's lease on a run lasts without renewal: how soon another process
    /// may take over a run whose driver died.
    #[arg(long, env = "STEADY_LEASE", default_value = "10s", global = true, value_parser = parse_duration)]
    pub lease: steady_engine::Duration,
}

pub(crate) fn parse_duration(text: &str) -> Result<steady_engine::Duration, String> {
    text.parse().map_err(|error: steady_engine::duration::DurationError| error.to_string())
}

#[derive(Debug)]
pub struct App {
    pub store: Arc<dyn Store>,
    pub engine: Engine,
    /// The person at this terminal, `local:<os user>`.
    pub actor: Actor,
    pub db: String,
}

impl App {
    pub async fn open(args: &DbArgs) -> anyhow::Result<App> {
        let store = steady_storage::open(&args.db)
            .await
            .with_context(|| format!("cannot open {}", args.db))?;
        let config = EngineConfig::new(node_name(), args.lease.as_std(), secrets_from_env());
        let engine = Engine::new(store.clone(), config);
        Ok(App { store, engine, actor: Actor::local(&os_user()), db: args.db.clone() })
    }

    /// Finds a run by its id or a unique prefix of it, as people copy them from listings.
    pub async fn resolve_run(&self, reference: &str) -> anyhow::Result<Uuid> {
        if let Ok(id) = Uuid::parse_str(reference) {
            return Ok(id);
        }
        let found = self.store.find_run(reference).await?;
        match found.as_slice() {
            [id] => Ok(*id),
            [] => bail!("no run whose id starts with `{reference}`"),
            _ => bail!("`{reference}` matches several runs: give more of the id"),
        }
    }
}

/// Secrets come from `STEADY_SECRET_<NAME>` variables and nowhere else.
pub fn secrets_from_env() -> BTreeMap<String, String> {
    std::env::vars()
        .filter_map(|(key, value)| Some((key.strip_prefix("STEADY_SECRET_")?.to_owned(), value)))
        .collect()
}

/// This process as a lease owner: which machine, which process.
fn node_name() -> String {
    let host =
        nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default();
    format!("cli:{host}:{}", std::process::id())
}

pub fn os_user() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok()
        .filter(|user| !user.is_empty())
        .or_else(|| {
            nix::unistd::User::from_uid(nix::unistd::getuid()).ok().flatten().map(|user| user.name)
        })
        .unwrap_or_else(|| format!("uid{}", nix::unistd::getuid()))
}

/// A person as typed on the command line: `alice` is the account `user:alice`.
pub fn person(text: &str) -> Actor {
    Actor::person(text)
}
