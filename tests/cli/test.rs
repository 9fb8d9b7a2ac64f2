//! `steady test`: a runbook author writes a test for the failure path they fear, sees it fail,
//! fixes the runbook, and publishes. Exit 0 all passed, 1 a case failed, 2 a test file is
//! invalid; `--junit` for CI; `validate` checks test files; `publish` refuses failing tests.

use crate::{repo, scratch, steady, write};

const PROMOTE: &str = r#"name: promote
roles:
  approver: { description: Signs off }
params:
  host: { type: string, required: true, pattern: "^[a-z0-9]+$" }
steps:
  - id: lag
    run: ["lag", "{{ params.host }}"]
    read_only: true
    timeout: 15s
  - id: go
    approval: { role: approver }
  - id: promote
    run: ["ssh", "--", "{{ params.host }}", "pg_ctl", "promote"]
    timeout: 60s
"#;

const TESTS: &str = r#"runbook: promote
cases:
  - name: a standby that lags is never promoted
    params: { host: db2 }
    given:
      lag: { exit_code: 1, stdout: "5000" }
    decisions: { lag: abort }
    expect: { status: failed, not_run: [promote] }
"#;

#[test]
fn the_shipped_runbooks_pass_their_tests() {
    let run = steady(repo(), &["test", "runbooks/"]);
    assert_eq!((run.code, run.stderr.as_str()), (0, ""), "{}", run.stdout);
    assert!(run.stdout.contains("ok      postgres-failover: too much lag stops before promotion"));
}

#[test]
fn an_author_sees_the_feared_path_fail_fixes_the_runbook_and_publishes() {
    let dir = scratch("test-story");
    // The runbook goes on to the gate whatever the lag is: the author's test catches it.
    write(
        &dir,
        "promote.yaml",
        &PROMOTE
            .replace("    read_only: true\n", "    read_only: true\n    on_failure: continue\n"),
    );
    write(&dir, "promote.test.yaml", TESTS);
    let junit = dir.join("junit.xml");
    let run = steady(&dir, &["test", "promote.yaml", "--junit", junit.to_str().unwrap()]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("FAILED  promote: a standby that lags is never promoted")
            && run.stdout.contains("status: expected failed, got waiting (waiting at `go`"),
        "{}",
        run.stdout
    );
    let xml = std::fs::read_to_string(&junit).expect("a JUnit report");
    assert!(
        xml.contains("<failure") && xml.contains("a standby that lags is never promoted"),
        "{xml}"
    );

    // Publishing the flawed runbook is refused, naming the case.
    let db = format!("sqlite://{}", dir.join("steady.db").display());
    let refused = steady(&dir, &["publish", "promote.yaml", "--db", &db]);
    assert_eq!(refused.code, 1, "{}{}", refused.stdout, refused.stderr);
    assert!(
        refused.stderr.contains("case `a standby that lags is never promoted` failed"),
        "{}",
        refused.stderr
    );

    // Fixed: the failing measurement stops the run for a decision.
    write(&dir, "promote.yaml", PROMOTE);
    let run = steady(&dir, &["test", "."]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout.ends_with("1 case: 1 passed") || run.stdout.contains("1 case: 1 passed in"),
        "{}",
        run.stdout
    );
    let published = steady(&dir, &["publish", "promote.yaml", "--db", &db]);
    assert_eq!(published.code, 0, "{}{}", published.stdout, published.stderr);
    assert!(published.stdout.contains("published promote version 1"), "{}", published.stdout);
}

#[test]
fn an_invalid_test_file_is_bad_input_located_like_a_runbook() {
    let dir = scratch("test-invalid");
    write(&dir, "promote.yaml", PROMOTE);
    write(&dir, "promote.test.yaml", &TESTS.replace("decisions:", "decisons:"));
    let run = steady(&dir, &["test", "."]);
    assert_eq!(run.code, 2, "{}", run.stdout);
    assert!(
        run.stderr.starts_with(
            "./promote.test.yaml:7:5: error: unknown field `decisons` in a case; did you mean `decisions`?"
        ),
        "{}",
        run.stderr
    );
    let validated = steady(&dir, &["validate", "."]);
    assert_eq!(validated.code, 1);
    assert_eq!(validated.stdout, "checked 1 runbook and 1 test file: 1 error, 0 warnings\n");
}

#[test]
fn a_folder_without_test_files_is_bad_usage() {
    let dir = scratch("test-none");
    write(&dir, "promote.yaml", PROMOTE);
    let run = steady(&dir, &["test", "."]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("no test files"), "{}", run.stderr);
}
