//! `steady test` as a runbook author meets it: every kind of answer and expectation in cases
//! that pass, the first difference of each kind of failing case, and a located error for each
//! kind of broken test file. The runbook under test (`fixtures/tests/failover.yaml`) has every
//! step kind.

use std::path::Path;

use steady_engine::testing::{self, TestFile};
use steady_engine::{Runbook, parse};

use crate::render_diagnostics;

const FOLDER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tests");

fn runbook() -> (String, Runbook) {
    let source = std::fs::read_to_string(Path::new(FOLDER).join("failover.yaml")).expect("runbook");
    let runbook = parse(&source).runbook.expect("the fixture runbook is valid");
    (source, runbook)
}

fn tests(name: &str) -> TestFile {
    let source = std::fs::read_to_string(Path::new(FOLDER).join(name)).expect("test file");
    let parsed = testing::parse(&source);
    let rendered = render_diagnostics(name, &source, &parsed.diagnostics);
    let file = parsed.file.unwrap_or_else(|| panic!("{name} is valid:\n{rendered}"));
    let (_, runbook) = runbook();
    let problems = testing::check(&runbook, &file);
    assert!(
        problems.is_empty(),
        "{name} fits the runbook:\n{}",
        render_diagnostics(name, &source, &problems)
    );
    file
}

#[test]
fn every_kind_of_answer_and_expectation_holds_in_a_passing_case() {
    let (source, runbook) = runbook();
    let reports = testing::run(&source, &runbook, &tests("passing.test.yaml"));
    assert_eq!(reports.len(), 12);
    let failures: Vec<String> = reports
        .iter()
        .filter_map(|case| case.failure.as_ref().map(|why| format!("{}: {why}", case.name)))
        .collect();
    assert!(failures.is_empty(), "every case passes:\n{}", failures.join("\n"));
}

#[test]
fn defaults_are_written_once_and_each_case_adds_its_own() {
    let (source, runbook) = runbook();
    let reports = testing::run(&source, &runbook, &tests("defaults.test.yaml"));
    assert_eq!(reports.len(), 3);
    for case in reports {
        assert!(case.passed(), "{}: {}", case.name, case.failure.unwrap_or_default());
    }
}

#[test]
fn a_failing_case_says_its_first_difference() {
    let (source, runbook) = runbook();
    let reports = testing::run(&source, &runbook, &tests("failing.test.yaml"));
    let mut rendered = String::new();
    for case in &reports {
        let failure = case.failure.as_deref().unwrap_or("PASSED, but every case here must fail");
        rendered.push_str(&format!("{}\n    {failure}\n", case.name));
    }
    insta::assert_snapshot!(rendered);
}

#[test]
fn each_broken_test_file_gets_one_error_at_its_fault() {
    let (_, runbook) = runbook();
    insta::glob!(FOLDER, "invalid/*.test.yaml", |path| {
        let name = path.file_name().expect("a file").to_string_lossy().into_owned();
        let source = std::fs::read_to_string(path).expect("fixture is readable");
        let parsed = testing::parse(&source);
        let mut errors: Vec<_> = parsed.diagnostics.into_iter().filter(|d| d.is_error()).collect();
        if let Some(file) = &parsed.file {
            errors.extend(testing::check(&runbook, file));
        }
        let rendered = render_diagnostics(&name, &source, &errors);
        assert_eq!(errors.len(), 1, "one fault, one error, in {name}:\n{rendered}");
        insta::assert_snapshot!(rendered);
    });
}

#[test]
fn the_shipped_runbooks_tests_pass() {
    let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../runbooks");
    let mut tested = Vec::new();
    for entry in std::fs::read_dir(&folder).expect("runbooks folder") {
        let path = entry.expect("folder entry").path();
        let name = path.file_name().expect("a file").to_string_lossy().into_owned();
        if !testing::is_test_file(&name) {
            continue;
        }
        let source = std::fs::read_to_string(&path).expect("test file");
        let parsed = testing::parse(&source);
        let file = parsed.file.unwrap_or_else(|| {
            panic!("{name}:\n{}", render_diagnostics(&name, &source, &parsed.diagnostics))
        });
        let runbook_path = folder.join(format!("{}.yaml", file.runbook));
        let runbook_source = std::fs::read_to_string(&runbook_path).expect("the runbook beside it");
        let runbook = parse(&runbook_source).runbook.expect("valid");
        let problems = testing::check(&runbook, &file);
        assert!(problems.is_empty(), "{}", render_diagnostics(&name, &source, &problems));
        for case in testing::run(&runbook_source, &runbook, &file) {
            assert!(case.passed(), "{name}: {}: {}", case.name, case.failure.unwrap_or_default());
        }
        tested.push(file.runbook);
    }
    tested.sort();
    assert!(tested.contains(&"postgres-failover".to_owned()), "tested: {tested:?}");
}

#[test]
fn a_dry_run_never_runs_a_read_only_step_with_what_a_person_would_have_typed() {
    let source = r#"
name: fenced
roles:
  dba: { description: Fences }
steps:
  - id: fence
    manual: { role: dba, instructions: "Fence the primary and note its host." }
  - id: look
    run: ["pg_isready", "-h", "{{ steps.fence.note }}"]
    read_only: true
    timeout: 5s
"#;
    let tests = r#"
runbook: fenced
cases:
  - name: the dry run records the probe it cannot render truthfully
    mode: dry-run
    expect: { status: succeeded, steps: { fence: would_run, look: would_run }, not_run: [look] }
"#;
    let runbook = parse(source).runbook.expect("valid");
    let file = testing::parse(tests).file.expect("valid tests");
    assert!(testing::check(&runbook, &file).is_empty());
    for case in testing::run(source, &runbook, &file) {
        assert!(case.passed(), "{}: {}", case.name, case.failure.unwrap_or_default());
    }
}
