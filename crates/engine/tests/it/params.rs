//! Parameters given for a plan or run: typed, defaulted, and every problem named at once.

use steady_engine::params::{ParamError, resolve};
use steady_engine::runbook::ParamValue;
use steady_engine::{Runbook, parse};

fn runbook() -> Runbook {
    let source = r#"
name: params
params:
  cluster: { type: string, required: true, pattern: "^[a-z0-9-]+$", description: Cluster name }
  max_lag_bytes: { type: integer, default: 0 }
  ratio: { type: number, default: 0.5 }
  force: { type: boolean, default: false }
  mode: { type: string, enum: [fast, careful], default: careful }
  note: { type: string }
steps:
  - id: wait
    sleep: 1s
"#;
    parse(source).runbook.expect("valid runbook")
}

fn given(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn errors(pairs: &[(&str, &str)]) -> Vec<String> {
    resolve(&runbook(), &given(pairs))
        .expect_err("invalid params")
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn given_values_are_typed_and_the_rest_defaulted() {
    let values = resolve(
        &runbook(),
        &given(&[
            ("cluster", "main"),
            ("max_lag_bytes", "1024"),
            ("ratio", "0.25"),
            ("force", "true"),
        ]),
    )
    .expect("valid params");
    assert_eq!(values["cluster"], ParamValue::String("main".into()));
    assert_eq!(values["max_lag_bytes"], ParamValue::Integer(1024));
    assert_eq!(values["ratio"], ParamValue::Number(0.25));
    assert_eq!(values["force"], ParamValue::Boolean(true));
    assert_eq!(values["mode"], ParamValue::String("careful".into()));
    assert_eq!(values["note"], ParamValue::String(String::new()));
}

#[test]
fn a_missing_required_parameter_is_named_with_its_description() {
    assert_eq!(errors(&[]), ["missing required parameter `cluster` (Cluster name)"]);
}

#[test]
fn every_bad_value_is_reported_at_once() {
    assert_eq!(
        errors(&[
            ("cluster", "Main Cluster"),
            ("max_lag_bytes", "lots"),
            ("ratio", "NaN"),
            ("force", "yes"),
            ("mode", "reckless"),
            ("clustr", "x"),
            ("force", "false"),
        ]),
        [
            "parameter `cluster` must match `^[a-z0-9-]+$`, got `Main Cluster`",
            "parameter `max_lag_bytes` must be a whole number, got `lots`",
            "parameter `ratio` must be a number, got `NaN`",
            "parameter `force` must be true or false, got `yes`",
            "parameter `mode` must be one of fast, careful, got `reckless`",
            "unknown parameter `clustr`; did you mean `cluster`?",
            "parameter `force` is given twice",
        ]
    );
}

#[test]
fn errors_are_typed_for_callers_that_branch_on_them() {
    let errors =
        resolve(&runbook(), &given(&[("cluster", "main"), ("wibble", "1")])).expect_err("unknown");
    assert_eq!(errors, [ParamError::Unknown { name: "wibble".into(), suggestion: None }]);
}

/// A runbook with list parameters: one free, one whose items are checked.
fn fleet() -> Runbook {
    let source = r#"
name: fleet
params:
  hosts: { type: list, default: [web1, web2] }
  regions: { type: list, enum: [eu, us, ap] }
  nodes: { type: list, pattern: "^node[0-9]+$" }
steps:
  - id: wait
    sleep: 1s
"#;
    parse(source).runbook.expect("valid runbook")
}

fn list(items: &[&str]) -> ParamValue {
    ParamValue::List(items.iter().map(|item| item.to_string()).collect())
}

#[test]
fn a_list_is_comma_separated_trimmed_and_without_empty_items() {
    let values = resolve(
        &fleet(),
        &given(&[("hosts", " web1 , web2,,web3, "), ("regions", "eu,us"), ("nodes", "")]),
    )
    .expect("valid params");
    assert_eq!(values["hosts"], list(&["web1", "web2", "web3"]));
    assert_eq!(values["regions"], list(&["eu", "us"]));
    assert_eq!(values["nodes"], list(&[]));
}

#[test]
fn a_list_written_as_a_json_array_keeps_commas_inside_items() {
    let values = resolve(&fleet(), &given(&[("hosts", r#"["a,1", "b"]"#)])).expect("valid params");
    assert_eq!(values["hosts"], list(&["a,1", "b"]));
}

#[test]
fn a_list_not_given_takes_its_default_or_is_empty() {
    let values = resolve(&fleet(), &[]).expect("valid params");
    assert_eq!(values["hosts"], list(&["web1", "web2"]));
    assert_eq!(values["regions"], list(&[]));
}

#[test]
fn enum_and_pattern_apply_to_each_item_and_name_the_one_that_fails() {
    let errors: Vec<String> = resolve(
        &fleet(),
        &given(&[("regions", "eu,mars"), ("nodes", "node1,db1"), ("hosts", r#"["web1", 2]"#)]),
    )
    .expect_err("invalid params")
    .iter()
    .map(ToString::to_string)
    .collect();
    assert_eq!(
        errors,
        [
            "parameter `regions` must be one of eu, us, ap, got `mars`",
            "parameter `nodes` must match `^node[0-9]+$`, got `db1`",
            r#"parameter `hosts` must be a list of strings (`a,b` or a JSON array of strings), got `["web1", 2]`"#,
        ]
    );
}

#[test]
fn a_list_holds_at_most_as_many_items_as_a_fan_out_runs() {
    let hosts: Vec<String> =
        (0..=steady_engine::runbook::MAX_ITEMS).map(|i| format!("h{i}")).collect();
    let errors = resolve(&fleet(), &given(&[("hosts", &hosts.join(","))])).unwrap_err();
    assert_eq!(
        errors[0].to_string(),
        "parameter `hosts` has 10001 items; a list holds at most 10000"
    );
}

#[test]
fn a_required_list_given_empty_is_missing() {
    let source = "name: fleet\nparams:\n  hosts: { type: list, required: true }\nsteps:\n  - id: wait\n    sleep: 1s\n";
    let runbook = parse(source).runbook.expect("valid runbook");
    let errors = resolve(&runbook, &given(&[("hosts", " , ")])).unwrap_err();
    assert_eq!(errors[0].to_string(), "missing required parameter `hosts`");
}

#[test]
fn a_list_names_each_item_once() {
    let errors = resolve(&fleet(), &given(&[("hosts", "web1, web2, web1")])).unwrap_err();
    assert_eq!(errors[0].to_string(), "parameter `hosts` lists `web1` more than once");
}
