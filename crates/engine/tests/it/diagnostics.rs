//! Every broken runbook in `fixtures/invalid` has exactly one fault, and gets exactly one
//! error naming it at the right line and column. Lint fixtures are valid runbooks that each
//! earn warnings.

use std::path::Path;

use steady_engine::parse;

use crate::render_diagnostics;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

fn file_name(path: &Path) -> String {
    path.file_name().expect("a fixture file").to_string_lossy().into_owned()
}

#[test]
fn each_broken_runbook_gets_one_error_at_its_fault() {
    insta::glob!(FIXTURES, "invalid/*.yaml", |path| {
        let source = std::fs::read_to_string(path).expect("fixture is readable");
        let parsed = parse(&source);
        let errors: Vec<_> = parsed.diagnostics.iter().filter(|d| d.is_error()).cloned().collect();
        let rendered = render_diagnostics(&file_name(path), &source, &errors);
        assert!(parsed.runbook.is_none(), "{} should be rejected", file_name(path));
        assert_eq!(errors.len(), 1, "one fault, one error, in {}:\n{rendered}", file_name(path));
        insta::assert_snapshot!(rendered);
    });
}

#[test]
fn lint_fixtures_are_valid_but_warned_about() {
    insta::glob!(FIXTURES, "lint/*.yaml", |path| {
        let source = std::fs::read_to_string(path).expect("fixture is readable");
        let parsed = parse(&source);
        let rendered = render_diagnostics(&file_name(path), &source, &parsed.diagnostics);
        assert!(parsed.runbook.is_some(), "{} should be valid:\n{rendered}", file_name(path));
        assert!(!parsed.diagnostics.is_empty(), "{} should be warned about", file_name(path));
        insta::assert_snapshot!(rendered);
    });
}

#[test]
fn the_shipped_runbooks_are_valid_and_lint_clean() {
    let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../runbooks");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&folder).expect("runbooks folder") {
        let path = entry.expect("folder entry").path();
        if steady_engine::testing::is_test_file(&file_name(&path)) {
            continue;
        }
        let source = std::fs::read_to_string(&path).expect("runbook is readable");
        let parsed = parse(&source);
        let rendered = render_diagnostics(&file_name(&path), &source, &parsed.diagnostics);
        assert_eq!(rendered, "", "{} should be valid and lint-clean", path.display());
        names.push(parsed.runbook.expect("valid").name);
    }
    names.sort();
    assert_eq!(
        names,
        [
            "postgres-failover",
            "redis-failover",
            "restore-verify",
            "rolling-restart",
            "shed-load",
            "traffic-shift"
        ]
    );
}

#[test]
fn a_runbook_with_groups_fan_outs_and_lists_is_valid_and_lint_clean() {
    let path = Path::new(FIXTURES).join("valid/parallel-and-fan-out.yaml");
    let source = std::fs::read_to_string(&path).expect("fixture is readable");
    let parsed = parse(&source);
    let rendered = render_diagnostics(&file_name(&path), &source, &parsed.diagnostics);
    assert_eq!(rendered, "");
    let runbook = parsed.runbook.expect("valid");
    assert_eq!(runbook.find_step("drain").expect("the group").branches().len(), 2);
    let restart = runbook.find_step("restart").expect("the fan-out");
    let fan_out = restart.fan_out.as_ref().expect("restart fans out");
    assert_eq!((fan_out.name.as_str(), fan_out.concurrency), ("host", 2));
    assert_eq!(fan_out.max_failures, steady_engine::runbook::FailureLimit::Percent(25));
}

#[test]
fn all_errors_are_reported_at_once() {
    let source = "\
name: Bad Name
steps:
  - id: one
    run: [\"true\"]
    timout: 5s
  - id: one
    sleep: soon
  - id: two
    check: \"steps.three.status == 'succeeded'\"
";
    let parsed = parse(source);
    insta::assert_snapshot!(render_diagnostics("many.yaml", source, &parsed.diagnostics), @r"
    many.yaml:1:7: error: runbook name `Bad Name` may only use a-z, 0-9 and -
      | name: Bad Name
      |       ^
    many.yaml:5:5: error: unknown field `timout` in a step; did you mean `timeout`?
      |     timout: 5s
      |     ^
    many.yaml:6:9: error: duplicate step id `one` (first used on line 3)
      |   - id: one
      |         ^
    many.yaml:7:12: error: `sleep`: invalid duration `soon`: write a number and a unit, such as 500ms, 30s, 5m, 1h30m or 90d
      |     sleep: soon
      |            ^
    ");
}

#[test]
fn a_runbook_saved_with_a_byte_order_mark_reads_as_written() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../runbooks/shed-load.yaml");
    let source = std::fs::read_to_string(path).expect("runbook is readable");
    let parsed = parse(&format!("\u{feff}{source}"));
    let rendered = render_diagnostics("shed-load.yaml", &source, &parsed.diagnostics);
    assert_eq!(rendered, "");
    assert_eq!(parsed.runbook.expect("valid").name, "shed-load");
}

#[test]
fn a_recovery_time_objective_is_kept_and_planned() {
    let source =
        "name: quick\nrto: 15m\nsteps:\n  - id: look\n    run: [\"true\"]\n    read_only: true\n";
    let parsed = parse(source);
    let runbook = parsed.runbook.expect("valid");
    assert_eq!(runbook.rto.map(|rto| rto.as_std()), Some(std::time::Duration::from_secs(900)));
    let plan = steady_engine::plan::Plan::new(&runbook, &Default::default());
    assert!(plan.to_string().contains("RTO         recover within 15m\n"), "{plan}");
    assert_eq!(serde_json::to_value(&plan).expect("JSON")["rto"], "15m");
}

#[test]
fn a_runbook_verified_on_a_schedule_keeps_its_period_and_parameters() {
    let source = r#"
name: verified
params:
  cluster: { type: string, required: true, pattern: "^[a-z0-9-]+$" }
  hosts: { type: list, default: [db1] }
  max_lag_bytes: { type: integer, default: 0 }
verify:
  every: 6h
  params: { cluster: main, hosts: [db1, db2], max_lag_bytes: 1024 }
steps:
  - id: standby_in_recovery
    run: ["psql", "-h", "{{ params.cluster }}", "-Atc", "select pg_is_in_recovery()"]
    read_only: true
    timeout: 10s
    expect: { stdout: "^t$" }
"#;
    let parsed = parse(source);
    let rendered = render_diagnostics("verified.yaml", source, &parsed.diagnostics);
    assert_eq!(rendered, "");
    let verify = parsed.runbook.expect("valid").verify.expect("a schedule");
    assert_eq!(verify.every.to_string(), "6h");
    assert_eq!(
        verify.param_texts(),
        [
            ("cluster".to_owned(), "main".to_owned()),
            ("hosts".to_owned(), r#"["db1","db2"]"#.to_owned()),
            ("max_lag_bytes".to_owned(), "1024".to_owned()),
        ]
    );
}
