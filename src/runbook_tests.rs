//! `steady test PATH... [--junit FILE]`: runs runbook tests offline (`NAME.test.yaml`), every
//! case through the real engine with stubbed effects. One line per case; the first difference
//! of a failing one; exit 0 all passed, 1 a case failed, 2 a test file is invalid.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use steady_engine::engine::EngineError;
use steady_engine::testing::{self, CaseReport, TestFile};
use steady_engine::{Diagnostic, Runbook};

use crate::report;
use crate::runbooks::{self, RunbookFile};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Test files (`NAME.test.yaml`), runbook files (their test file beside them), or folders
    /// searched for test files.
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
    /// Also write the results as JUnit XML to this file, for CI.
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,
    #[command(flatten)]
    runbooks: crate::RunbooksDir,
}

/// A test file and the runbook it tests, both read and checked.
pub struct Suite {
    pub path: PathBuf,
    pub tests: TestFile,
    pub runbook: Runbook,
    pub runbook_source: String,
}

/// Where runbooks are looked for by name when they are not beside the test file: the
/// `--runbooks` folder's default, for `validate`.
pub fn default_folder() -> PathBuf {
    std::env::var_os("STEADY_RUNBOOKS").map_or_else(|| PathBuf::from("runbooks"), PathBuf::from)
}

/// Reads a test file and the runbook it names (beside it, else in `folder`), and checks one
/// against the other. Every problem is reported on stderr; `Err` holds how many there were.
pub fn load(path: &Path, folder: &Path) -> anyhow::Result<Result<Suite, usize>> {
    let display = path.display().to_string();
    let source =
        std::fs::read_to_string(path).with_context(|| format!("{display}: cannot read"))?;
    let parsed = testing::parse(&source);
    let errors = report_all(&display, &source, &parsed.diagnostics);
    let Some(tests) = parsed.file.filter(|_| errors == 0) else { return Ok(Err(errors.max(1))) };
    let beside = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let file = match runbooks::find(&tests.runbook, beside)
        .or_else(|_| runbooks::find(&tests.runbook, folder))
    {
        Ok(file) => file,
        Err(_) => {
            let diagnostic = Diagnostic::error(
                tests.runbook_at,
                format!(
                    "no runbook named `{}` beside this file or in {}",
                    tests.runbook,
                    folder.display()
                ),
            );
            report::diagnostics(&display, &source, [&diagnostic]);
            return Ok(Err(1));
        }
    };
    let Some(runbook) = file.parsed.runbook.clone() else {
        let errors = report_all(&file.display_path(), &file.source, &file.parsed.diagnostics);
        return Ok(Err(errors.max(1)));
    };
    let errors = report_all(&display, &source, &testing::check(&runbook, &tests));
    if errors > 0 {
        return Ok(Err(errors));
    }
    let RunbookFile { source: runbook_source, .. } = file;
    Ok(Ok(Suite { path: path.to_owned(), tests, runbook, runbook_source }))
}

/// The test file beside a runbook file, with its text, when there is one.
pub fn read_beside(runbook: &Path) -> anyhow::Result<Option<(PathBuf, String)>> {
    let Some(path) = runbooks::test_file_beside(runbook) else { return Ok(None) };
    let source = std::fs::read_to_string(&path)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    Ok(Some((path, source)))
}

/// Prints why the engine refused a runbook's tests: each located error of an invalid test
/// file, or each failing case with its first difference.
pub fn report_refusal(path: &Path, source: &str, error: &EngineError) {
    let display = path.display().to_string();
    match error {
        EngineError::InvalidTests(diagnostics) => {
            report_all(&display, source, diagnostics);
        }
        EngineError::TestsFailed(cases) => {
            for case in cases {
                let failure = case.failure.as_deref().unwrap_or_default();
                report::file_error(&display, &format!("case `{}` failed: {failure}", case.name));
            }
        }
        other => report::file_error(&display, &other.to_string()),
    }
}

/// Prints the errors among `diagnostics`; returns how many.
fn report_all(path: &str, source: &str, diagnostics: &[Diagnostic]) -> usize {
    let errors: Vec<&Diagnostic> = diagnostics.iter().filter(|d| d.is_error()).collect();
    report::diagnostics(path, source, errors.iter().copied());
    errors.len()
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let Some(named) = runbooks::named_by(&args.paths)? else {
        return Ok(ExitCode::from(2));
    };
    let mut paths = named.tests;
    for runbook in &named.runbooks {
        match runbooks::test_file_beside(runbook) {
            Some(test) if !paths.contains(&test) => paths.push(test),
            Some(_) => {}
            None if args.paths.contains(runbook) => report::file_warning(
                &runbook.display().to_string(),
                "no test file beside this runbook (NAME.test.yaml)",
            ),
            None => {}
        }
    }
    if paths.is_empty() {
        report::error("no test files (NAME.test.yaml) found");
        return Ok(ExitCode::from(2));
    }

    let mut suites = Vec::new();
    let mut invalid: Vec<(&Path, usize)> = Vec::new();
    for path in &paths {
        match load(path, &args.runbooks.path)? {
            Ok(suite) => suites.push(suite),
            Err(errors) => invalid.push((path, errors)),
        }
    }

    let started = Instant::now();
    let mut results: Vec<(&Suite, Vec<CaseReport>)> = Vec::new();
    for suite in &suites {
        let reports = testing::run(&suite.runbook_source, &suite.runbook, &suite.tests);
        for case in &reports {
            print_case(&suite.runbook.name, case);
        }
        results.push((suite, reports));
    }
    let took = started.elapsed();

    let cases: Vec<&CaseReport> = results.iter().flat_map(|(_, reports)| reports).collect();
    let failed = cases.iter().filter(|case| !case.passed()).count();
    if !suites.is_empty() {
        println!("{}", summary(cases.len(), failed, took));
    }
    if let Some(junit) = &args.junit {
        write_junit(junit, &results, &invalid)?;
    }
    Ok(if !invalid.is_empty() {
        ExitCode::from(2)
    } else if failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn print_case(runbook: &str, case: &CaseReport) {
    let took = millis(case.took);
    match &case.failure {
        None => println!("ok      {runbook}: {} ({took})", case.name),
        Some(failure) => {
            println!("FAILED  {runbook}: {} ({took})", case.name);
            for line in failure.lines() {
                println!("        {line}");
            }
        }
    }
}

fn millis(took: Duration) -> String {
    format!("{:.1} ms", took.as_secs_f64() * 1000.0)
}

/// "12 cases: 11 passed, 1 failed in 8.1 ms (1481 cases/s)".
fn summary(cases: usize, failed: usize, took: Duration) -> String {
    let rate = cases as f64 / took.as_secs_f64().max(1e-9);
    let plural = if cases == 1 { "" } else { "s" };
    let failed_text = if failed == 0 { String::new() } else { format!(", {failed} failed") };
    format!(
        "{cases} case{plural}: {} passed{failed_text} in {} ({rate:.0} cases/s)",
        cases - failed,
        millis(took)
    )
}

/// The JUnit report: a suite per runbook, and for each invalid test file a suite whose one
/// case errs, so that a CI page never shows green for a file that did not run.
fn write_junit(
    path: &Path,
    results: &[(&Suite, Vec<CaseReport>)],
    invalid: &[(&Path, usize)],
) -> anyhow::Result<()> {
    let mut report = quick_junit::Report::new("steady test");
    for (file, errors) in invalid {
        let name = file.display().to_string();
        let mut junit = quick_junit::TestSuite::new(name.as_str());
        let mut status =
            quick_junit::TestCaseStatus::non_success(quick_junit::NonSuccessKind::Error);
        status.set_message(format!(
            "the test file is invalid: {errors} error(s), shown by `steady validate`"
        ));
        let mut test = quick_junit::TestCase::new("the test file is valid", status);
        test.set_classname(name.as_str());
        junit.add_test_case(test);
        report.add_test_suite(junit);
    }
    for (suite, cases) in results {
        let mut junit = quick_junit::TestSuite::new(suite.runbook.name.as_str());
        for case in cases {
            let status = match &case.failure {
                None => quick_junit::TestCaseStatus::success(),
                Some(failure) => {
                    let mut status = quick_junit::TestCaseStatus::non_success(
                        quick_junit::NonSuccessKind::Failure,
                    );
                    status.set_message(failure.as_str());
                    status
                }
            };
            let mut test = quick_junit::TestCase::new(case.name.as_str(), status);
            test.set_classname(suite.path.display().to_string());
            test.set_time(case.took);
            junit.add_test_case(test);
        }
        report.add_test_suite(junit);
    }
    let xml = report.to_string().context("cannot write the JUnit report")?;
    std::fs::write(path, xml).with_context(|| format!("{}: cannot write", path.display()))
}
