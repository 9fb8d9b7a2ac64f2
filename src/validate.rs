//! `steady validate PATH...`: checks runbook files and folders and reports every problem.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

use steady_engine::Diagnostic;

use crate::runbooks::{self, RunbookFile};
use crate::{report, runbook_tests};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Runbook files, or folders searched for `.yaml` and `.yml` files.
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
    /// Fail (exit 1) on lint warnings as well as on errors.
    #[arg(long)]
    deny_warnings: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let Some(named) = runbooks::named_by(&args.paths)? else {
        return Ok(ExitCode::from(2));
    };
    let files = named.runbooks;

    let (mut errors, mut warnings) = (0, 0);
    let mut names: HashMap<String, String> = HashMap::new();
    for path in &files {
        let file = RunbookFile::read(path)?;
        let display = file.display_path();
        let mut diagnostics = file.parsed.diagnostics.clone();
        if let Some(runbook) = &file.parsed.runbook
            && let Some(first) = names.insert(runbook.name.clone(), display.clone())
        {
            diagnostics.push(Diagnostic::error(
                runbook.name_at,
                format!("runbook name `{}` is already used by {first}", runbook.name),
            ));
        }
        report::diagnostics(&display, &file.source, &diagnostics);
        let found = diagnostics.iter().filter(|d| d.is_error()).count();
        errors += found;
        warnings += diagnostics.len() - found;
    }

    // Test files are checked as `steady test` reads them: parsed, and held against the
    // runbook they name, without running a case.
    let folder = runbook_tests::default_folder();
    for path in &named.tests {
        errors += runbook_tests::load(path, &folder)?.err().unwrap_or(0);
    }

    let count = |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
    let tests = if named.tests.is_empty() {
        String::new()
    } else {
        format!(" and {}", count(named.tests.len(), "test file"))
    };
    println!(
        "checked {}{tests}: {}, {}",
        count(files.len(), "runbook"),
        count(errors, "error"),
        count(warnings, "warning")
    );
    let failed = errors > 0 || (args.deny_warnings && warnings > 0);
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}
