//! `steady publish PATH...`: stores each runbook as a new immutable version when its content
//! changed since the latest version.

use std::path::PathBuf;
use std::process::ExitCode;

use steady_engine::engine::EngineError;
use steady_engine::store::Published;

use crate::app::{App, DbArgs};
use crate::report;
use crate::runbooks::{self, RunbookFile};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Runbook files, or folders searched for `.yaml` and `.yml` files.
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
    #[command(flatten)]
    db: DbArgs,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let Some(files) = runbooks::named_by(&args.paths)? else {
        return Ok(ExitCode::from(2));
    };
    let app = App::open(&args.db).await?;
    let mut failed = false;
    for path in &files {
        let file = RunbookFile::read(path)?;
        match app.engine.publish(&file.source, &app.actor).await {
            Ok(Published::New(version)) => {
                println!(
                    "{}: published {} version {}",
                    file.display_path(),
                    version.name,
                    version.version
                );
            }
            Ok(Published::Unchanged(version)) => {
                println!(
                    "{}: {} version {} is unchanged",
                    file.display_path(),
                    version.name,
                    version.version
                );
            }
            Err(EngineError::InvalidRunbook(diagnostics)) => {
                failed = true;
                for diagnostic in diagnostics.iter().filter(|d| d.is_error()) {
                    report::diagnostic(&file.display_path(), &file.source, diagnostic);
                }
            }
            Err(error) => return Err(error.into()),
        }
    }
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}
