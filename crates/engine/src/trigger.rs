//! Alerts and the triggers that answer them, pure: a webhook body read into alerts
//! (`payload`), a trigger's `when` evaluated on an alert and its parameters rendered from it,
//! and the key that tells the same alert again.
//!
//! Receiving alerts, proposing runs and deduplicating them against stored proposals belong to
//! the server; this module gives it the decisions, and does no I/O.

mod payload;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::diagnostic::Position;
use crate::params::{self, ParamError, ParamValues};
use crate::runbook::{AlertSource, Runbook, Trigger};
use crate::template::{self, Context, Target};

pub use payload::{MAX_PAYLOAD_BYTES, PayloadError, parse_payload};

/// One alert, as an alerting system reported it.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    /// The system it came from: a trigger answers alerts of its own `source` only.
    pub source: AlertSource,
    /// Firing, or resolved: the caller decides what a resolved alert does (it is noted on a
    /// proposal, never proposes one); `evaluate` does not look at it.
    pub status: AlertStatus,
    /// What identifies the alert (`alertname`, `cluster`, …); empty for a `json` body
    /// without `labels`.
    pub labels: BTreeMap<String, String>,
    /// What describes it (`summary`, `description`, `runbook_url`, …).
    pub annotations: BTreeMap<String, String>,
    /// When it began firing; `None` for a `json` body without `startsAt`.
    pub starts_at: Option<DateTime<Utc>>,
    /// The sender's identity of the alert across notifications, when it gives one.
    pub fingerprint: Option<String>,
    /// The alert exactly as sent, every field kept: what templates read as `alert`. For
    /// Alertmanager and Grafana one element of `alerts`; for `json` the whole body.
    pub value: serde_json::Value,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertStatus {
    Firing,
    Resolved,
}

impl AlertStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertStatus::Firing => "firing",
            AlertStatus::Resolved => "resolved",
        }
    }
}

/// A trigger that could not be applied to an alert: the runbook, the trigger's line, and what
/// failed, naming the expression or template.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("runbook `{runbook}`, trigger on line {}: {failure}", at.line)]
pub struct TriggerError {
    pub runbook: String,
    /// Where the trigger is written.
    pub at: Position,
    pub failure: TriggerFailure,
}

/// What failed when a trigger was applied; the variant the server branches on.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TriggerFailure {
    /// `when` could not be evaluated on this alert: it read through a value the alert does
    /// not have (`alert.lables.x`, a typo), or used one in a way that fails. A label the alert
    /// lacks is not an error in `when`: it compares unequal to anything and tests false.
    #[error("`when: {expression}` failed on this alert: {message}")]
    When { expression: String, message: String },
    /// A parameter's template could not be rendered: most often, a label the alert lacks.
    #[error(
        "parameter `{param}` (`{template}`, line {line}) cannot be rendered from this alert: {message}{}",
        hint(message)
    )]
    Render { param: String, template: String, line: usize, message: String },
    /// The rendered parameters are not what the runbook accepts (a `pattern` or `enum`
    /// violated, a value of the wrong type).
    #[error("{}", list(.0))]
    Params(Vec<ParamError>),
}

fn hint(message: &str) -> &'static str {
    if message.starts_with("undefined value") {
        " (the alert has no such field or label)"
    } else {
        ""
    }
}

fn list(errors: &[ParamError]) -> String {
    errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

/// Applies one trigger of `runbook` to an alert: `None` when the alert comes from another
/// source or `when` is false; otherwise each parameter the trigger gives, rendered as text
/// in the order written, ready for [`params::resolve`] (which [`resolve`] does too).
/// Rendering is bounded like every template's (minijinja's fuel).
pub fn evaluate(
    runbook: &Runbook,
    trigger: &Trigger,
    alert: &Alert,
) -> Result<Option<Vec<(String, String)>>, TriggerError> {
    if trigger.source != alert.source {
        return Ok(None);
    }
    let context = Context::for_alert(&alert.value);
    let when = template::evaluate_alert_condition(&trigger.when, &context);
    let accepted = when.map_err(|error| {
        failed(
            runbook,
            trigger,
            TriggerFailure::When {
                expression: trigger.when.source.clone(),
                message: error.message,
            },
        )
    })?;
    if !accepted {
        return Ok(None);
    }
    let mut given = Vec::with_capacity(trigger.params.len());
    for mapping in &trigger.params {
        let text = template::render(&mapping.value, Target::Text, &context).map_err(|error| {
            let failure = TriggerFailure::Render {
                param: mapping.name.clone(),
                template: mapping.value.source.clone(),
                line: mapping.value.at.line,
                message: error.message,
            };
            failed(runbook, trigger, failure)
        })?;
        given.push((mapping.name.clone(), text));
    }
    Ok(Some(given))
}

/// [`evaluate`], then the rendered parameters typed and checked by [`params::resolve`]
/// (`pattern`, `enum`, types, defaults filled in): the parameters a proposal is made with.
pub fn resolve(
    runbook: &Runbook,
    trigger: &Trigger,
    alert: &Alert,
) -> Result<Option<ParamValues>, TriggerError> {
    let Some(given) = evaluate(runbook, trigger, alert)? else {
        return Ok(None);
    };
    params::resolve(runbook, &given)
        .map(Some)
        .map_err(|errors| failed(runbook, trigger, TriggerFailure::Params(errors)))
}

fn failed(runbook: &Runbook, trigger: &Trigger, failure: TriggerFailure) -> TriggerError {
    TriggerError { runbook: runbook.name.clone(), at: trigger.at, failure }
}

/// What tells the same alert again, notification after notification: the sender's
/// fingerprint; without one, a hash of the labels (sorted); for a `json` body without labels,
/// a hash of the whole body. The key does not include the source.
pub fn alert_key(alert: &Alert) -> String {
    if let Some(fingerprint) = &alert.fingerprint {
        return fingerprint.clone();
    }
    let (kind, hashed) = if alert.labels.is_empty() {
        ("body", crate::audit::canonical_json(&alert.value))
    } else {
        // A map of strings, sorted by name: the same labels always write the same JSON.
        let labels = serde_json::to_string(&alert.labels).unwrap_or_default();
        ("labels", labels)
    };
    let digest = Sha256::digest(hashed.as_bytes());
    format!("{kind}:{}", hex::encode(&digest[..8]))
}

#[cfg(test)]
mod tests;
