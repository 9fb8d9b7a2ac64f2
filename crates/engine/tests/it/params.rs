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
