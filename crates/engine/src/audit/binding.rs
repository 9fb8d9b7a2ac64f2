//! What an approval binds to: the run's parameters and the steps a gate guards, rendered as
//! the approver saw them. A vote keeps it, and its digest lands in the audit log
//! (`approval.granted`'s `digest`), so its JSON must never change shape.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{canonical_json, digest};
use crate::params::ParamValues;
use crate::plan::Action;

/// `{"gate", "params", "steps"}`: what an approver approves. Its digest is the SHA-256 of its
/// canonical JSON ([`Binding::digest`]); a guarded step later runs only if it still renders
/// as bound here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Binding {
    /// The gate's step id.
    pub gate: String,
    /// SHA-256 of the canonical JSON of the run's parameters, in hex.
    pub params: String,
    /// Guarded step id → the canonical JSON of its rendered [`Action`], with placeholders for
    /// what is not known before it runs; `null` when it could not be rendered yet.
    pub steps: BTreeMap<String, Option<String>>,
}

impl Binding {
    /// Binds `gate` to the run's `params` and to each guarded step's rendered action (`None`
    /// for a step that could not be rendered).
    pub fn new<'a>(
        gate: &str,
        params: &ParamValues,
        steps: impl IntoIterator<Item = (&'a str, Option<&'a Action>)>,
    ) -> Binding {
        Binding {
            gate: gate.to_owned(),
            params: digest(&serde_json::to_value(params).unwrap_or_default()),
            steps: steps
                .into_iter()
                .map(|(id, action)| {
                    let rendered = action
                        .and_then(|action| serde_json::to_value(action).ok())
                        .map(|action| canonical_json(&action));
                    (id.to_owned(), rendered)
                })
                .collect(),
        }
    }

    /// The JSON a vote stores as what it is bound to.
    pub fn to_value(&self) -> Value {
        // A struct of strings and a map with string keys always serializes.
        serde_json::to_value(self).unwrap_or_default()
    }

    /// Reads a vote's stored binding. Errors when it is not this shape.
    pub fn from_value(value: &Value) -> Result<Binding, serde_json::Error> {
        Binding::deserialize(value)
    }

    /// SHA-256 of the canonical JSON, in hex: the vote's and the audit event's `digest`.
    pub fn digest(&self) -> String {
        digest(&self.to_value())
    }

    /// The canonical JSON a guarded step was approved as, if it could be rendered then.
    pub fn step(&self, step_id: &str) -> Option<&str> {
        self.steps.get(step_id).and_then(Option::as_deref)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::runbook::ParamValue;

    /// The binding as `Engine::binding` builds it today, with `json!`.
    fn today(gate: &str, params: &ParamValues, steps: &[(&str, Option<&Action>)]) -> Value {
        let steps: serde_json::Map<String, Value> = steps
            .iter()
            .map(|(id, action)| {
                let rendered = action
                    .and_then(|action| serde_json::to_value(action).ok())
                    .map_or(Value::Null, |action| Value::String(canonical_json(&action)));
                ((*id).to_owned(), rendered)
            })
            .collect();
        json!({
            "gate": gate,
            "params": digest(&serde_json::to_value(params).unwrap_or_default()),
            "steps": steps,
        })
    }

    #[test]
    fn a_binding_is_the_json_and_digest_the_engine_builds() {
        let params: ParamValues = [
            ("target".to_owned(), ParamValue::String("db-1 \"primary\"".to_owned())),
            ("count".to_owned(), ParamValue::Integer(3)),
            ("ratio".to_owned(), ParamValue::Number(0.5)),
            ("force".to_owned(), ParamValue::Boolean(false)),
        ]
        .into_iter()
        .collect();
        let restart =
            Action::Run { argv: vec!["systemctl".into(), "restart".into(), "db-1".into()] };
        let notify = Action::Http {
            method: "POST".into(),
            url: "https://hooks.example/⟨steps.restart.stdout⟩".into(),
            headers: vec![("authorization".into(), "Bearer ***".into())],
            json: Some(json!({ "text": "restarted", "n": [1, 2.5, null] })),
            body: None,
        };
        let steps = [("restart", Some(&restart)), ("notify", Some(&notify)), ("later", None)];

        let typed = Binding::new("approve", &params, steps);
        let json = today("approve", &params, &steps);

        assert_eq!(canonical_json(&typed.to_value()), canonical_json(&json));
        assert_eq!(typed.digest(), digest(&json));
        assert_eq!(Binding::from_value(&json).ok(), Some(typed.clone()));
        assert_eq!(typed.step("later"), None);
        assert_eq!(typed.step("restart"), json["steps"]["restart"].as_str());
    }
}
