//! `steady publish PATH...`: stores each runbook as a new immutable version when its content
//! (or the test file beside it) changed since the latest version. The test file's cases must
//! all pass first: a runbook whose tests fail is not published.

use std::path::PathBuf;
use std::process::ExitCode;

use steady_engine::engine::{EngineError, VersionTests};
use steady_engine::store::Published;

use crate::app::{App, DbArgs};
use crate::runbooks::{self, RunbookFile};
use crate::{report, runbook_tests};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Runbook files, or folders searched for `.yaml` and `.yml` files.
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
    #[command(flatten)]
    db: DbArgs,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let Some(named) = runbooks::named_by(&args.paths)? else {
        return Ok(ExitCode::from(2));
    };
    let files = named.runbooks;
    let app = App::open(&args.db).await?;
    let mut failed = false;
    let mut invalid = false;
    for path in &files {
        let file = RunbookFile::read(path)?;
        let tests = runbook_tests::read_beside(path)?;
        // Without a test file beside it, the latest version's tests are kept and run.
        let test_source = match &tests {
            Some((_, source)) => VersionTests::With(source),
            None => VersionTests::Kept,
        };
        match app.engine.publish_with_tests(&file.source, test_source, &app.actor, None).await {
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
                let errors = diagnostics.iter().filter(|d| d.is_error());
                report::diagnostics(&file.display_path(), &file.source, errors);
            }
            Err(error @ (EngineError::InvalidTests(_) | EngineError::TestsFailed(_))) => {
                // An invalid test file is bad input, like an invalid runbook given to `test`.
                if matches!(error, EngineError::InvalidTests(_)) {
                    invalid = true;
                }
                failed = true;
                if let Some((path, source)) = &tests {
                    runbook_tests::report_refusal(path, source, &error);
                }
                report::file_error(&file.display_path(), "not published: its tests do not pass");
            }
            Err(error) => return Err(error.into()),
        }
    }
    Ok(if invalid {
        ExitCode::from(2)
    } else if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
