//! The webhook payloads of the alerting systems, read into alerts: Alertmanager's (version 4)
//! and Grafana unified alerting's, each with its own typed wire format, and any JSON object
//! for the `json` source.
//!
//! Tolerant where these systems grow: fields Steady does not know are ignored, at the top
//! level and in each alert, and stay visible to templates in `alert`. Strict where it matters:
//! what Steady reads (`status`, `alerts`, each alert's `status`, `labels` and `startsAt`) must
//! be present, and every field it knows must have its documented type when present, so that a
//! payload is never half understood. Errors name the line and column where reading stopped.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::de::{MapAccess, Visitor, value::MapAccessDeserializer};
use serde::{Deserialize, Deserializer};

use super::{Alert, AlertStatus};
use crate::runbook::AlertSource;

/// The largest payload a hook reads: Alertmanager and Grafana send a group's alerts in one
/// request, and a thousand alerts with their labels fit well within it.
pub const MAX_PAYLOAD_BYTES: usize = 1024 * 1024;

/// A payload refused, with a message fit for the sender (an HTTP 422).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    #[error("the payload has {size} bytes; a hook reads at most {MAX_PAYLOAD_BYTES} (1 MiB)")]
    TooLarge { size: usize },
    /// Not JSON, or not the source's format; `line` and `column` are serde_json's, from 1
    /// (column 0 when the body ended first).
    #[error("not a valid {format} payload: {reason} at line {line}, column {column}")]
    Invalid { format: AlertSource, reason: String, line: usize, column: usize },
    #[error(
        "Alertmanager webhook payload version `{found}` is not supported: Steady reads version 4"
    )]
    UnsupportedVersion { found: String },
    #[error("a json alert must be a JSON object, and this payload is {found}")]
    NotAnObject { found: &'static str },
}

/// Reads a webhook body from `source` into its alerts, in the order sent. Never panics,
/// whatever the bytes.
pub fn parse_payload(source: AlertSource, body: &[u8]) -> Result<Vec<Alert>, PayloadError> {
    if body.len() > MAX_PAYLOAD_BYTES {
        return Err(PayloadError::TooLarge { size: body.len() });
    }
    let invalid = |error: serde_json::Error| invalid(source, error);
    match source {
        AlertSource::Alertmanager => {
            let Object(payload) =
                serde_json::from_slice::<Object<AlertmanagerPayload>>(body).map_err(invalid)?;
            if payload.version != "4" {
                return Err(PayloadError::UnsupportedVersion { found: cut(&payload.version) });
            }
            let values = alert_values(source, body)?;
            let alerts = payload.alerts.into_iter().zip(values);
            Ok(alerts.map(|(Object(alert), value)| alert.into_alert(value)).collect())
        }
        AlertSource::Grafana => {
            let Object(payload) =
                serde_json::from_slice::<Object<GrafanaPayload>>(body).map_err(invalid)?;
            let values = alert_values(source, body)?;
            let alerts = payload.alerts.into_iter().zip(values);
            Ok(alerts.map(|(Object(alert), value)| alert.into_alert(value)).collect())
        }
        AlertSource::Json => {
            let value: serde_json::Value = serde_json::from_slice(body).map_err(invalid)?;
            if !value.is_object() {
                return Err(PayloadError::NotAnObject { found: describe(&value) });
            }
            let Object(alert) =
                serde_json::from_slice::<Object<JsonAlert>>(body).map_err(invalid)?;
            Ok(vec![Alert {
                source,
                status: alert.status.unwrap_or(AlertStatus::Firing),
                labels: alert.labels.unwrap_or_default(),
                annotations: alert.annotations.unwrap_or_default(),
                starts_at: alert.starts_at.map(|at| at.0),
                fingerprint: alert.fingerprint.filter(|fingerprint| !fingerprint.is_empty()),
                value,
            }])
        }
    }
}

fn invalid(format: AlertSource, error: serde_json::Error) -> PayloadError {
    let (line, column) = (error.line(), error.column());
    // serde_json ends its message with the position, which the error holds on its own.
    let message = error.to_string();
    let full =
        message.strip_suffix(&format!(" at line {line} column {column}")).unwrap_or(&message);
    // serde quotes the value it did not expect: a long one is cut, not echoed whole.
    let mut reason: String = full.chars().take(MAX_REASON).collect();
    if reason.len() < full.len() {
        reason.push('…');
    }
    PayloadError::Invalid { format, reason, line, column }
}

/// The most characters of serde_json's reason an error repeats.
const MAX_REASON: usize = 200;

/// Each alert as sent, every field kept: what templates see as `alert`. Read after the typed
/// payload, which has already refused anything malformed.
fn alert_values(source: AlertSource, body: &[u8]) -> Result<Vec<serde_json::Value>, PayloadError> {
    #[derive(Deserialize)]
    struct Alerts {
        alerts: Vec<serde_json::Value>,
    }
    let alerts: Alerts = serde_json::from_slice(body).map_err(|error| invalid(source, error))?;
    Ok(alerts.alerts)
}

/// A value of the sender's as an error repeats it: a long one is cut, not echoed whole.
fn cut(text: &str) -> String {
    let mut shown: String = text.chars().take(40).collect();
    if shown.len() < text.len() {
        shown.push('…');
    }
    shown
}

fn describe(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// Labels and annotations: names to text.
type Labels = BTreeMap<String, String>;

/// Alertmanager's `webhook_config` payload, version 4: one notification for a group of alerts.
/// (`prometheus/alertmanager`, `notify/webhook`: `Message` and `template.Data`.)
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)] // Fields only read for their types: a field Steady knows has its type.
struct AlertmanagerPayload {
    /// `"4"`, the version of this format, which Alertmanager has sent since 0.4.
    version: String,
    /// `firing` while any alert of the group fires.
    status: AlertStatus,
    alerts: Vec<Object<AlertmanagerAlert>>,
    receiver: Option<String>,
    group_key: Option<String>,
    /// Alerts left out by the receiver's `max_alerts` (since Alertmanager 0.23).
    truncated_alerts: Option<u64>,
    group_labels: Option<Labels>,
    common_labels: Option<Labels>,
    common_annotations: Option<Labels>,
    #[serde(rename = "externalURL")]
    external_url: Option<String>,
}

/// One alert of an Alertmanager notification.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
struct AlertmanagerAlert {
    status: AlertStatus,
    labels: Labels,
    annotations: Option<Labels>,
    starts_at: Timestamp,
    /// `0001-01-01T00:00:00Z` while the alert fires with no known end.
    ends_at: Option<Timestamp>,
    #[serde(rename = "generatorURL")]
    generator_url: Option<String>,
    /// A hash of the labels (since Alertmanager 0.19): the same alert, notification after
    /// notification.
    fingerprint: Option<String>,
}

impl AlertmanagerAlert {
    fn into_alert(self, value: serde_json::Value) -> Alert {
        let Self { status, labels, annotations, starts_at, fingerprint, .. } = self;
        let read = Read { status, labels, annotations, starts_at, fingerprint };
        read.into_alert(AlertSource::Alertmanager, value)
    }
}

/// What Alertmanager's and Grafana's alerts both say, read the same way: Grafana's alert is
/// Alertmanager's with additions.
struct Read {
    status: AlertStatus,
    labels: Labels,
    annotations: Option<Labels>,
    starts_at: Timestamp,
    fingerprint: Option<String>,
}

impl Read {
    fn into_alert(self, source: AlertSource, value: serde_json::Value) -> Alert {
        Alert {
            source,
            status: self.status,
            labels: self.labels,
            annotations: self.annotations.unwrap_or_default(),
            starts_at: Some(self.starts_at.0),
            // An empty fingerprint tells nothing: the labels tell the alert instead.
            fingerprint: self.fingerprint.filter(|fingerprint| !fingerprint.is_empty()),
            value,
        }
    }
}

/// Grafana unified alerting's webhook contact point payload: Alertmanager's, with Grafana's
/// additions. (`grafana/alerting`, `receivers/webhook`: `webhookMessage` and `ExtendedData`.)
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
struct GrafanaPayload {
    status: AlertStatus,
    alerts: Vec<Object<GrafanaAlert>>,
    /// `"1"` so far; Grafana's own versioning, not Alertmanager's.
    version: Option<String>,
    receiver: Option<String>,
    org_id: Option<i64>,
    group_key: Option<String>,
    truncated_alerts: Option<u64>,
    group_labels: Option<Labels>,
    common_labels: Option<Labels>,
    common_annotations: Option<Labels>,
    #[serde(rename = "externalURL")]
    external_url: Option<String>,
    /// `[FIRING:1] …`, rendered from the contact point's title template.
    title: Option<String>,
    /// `alerting` or `ok`: the legacy alerting's state, kept for compatibility.
    state: Option<String>,
    message: Option<String>,
}

/// One alert of a Grafana notification.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
struct GrafanaAlert {
    status: AlertStatus,
    labels: Labels,
    annotations: Option<Labels>,
    starts_at: Timestamp,
    ends_at: Option<Timestamp>,
    #[serde(rename = "generatorURL")]
    generator_url: Option<String>,
    fingerprint: Option<String>,
    #[serde(rename = "silenceURL")]
    silence_url: Option<String>,
    #[serde(rename = "dashboardURL")]
    dashboard_url: Option<String>,
    #[serde(rename = "panelURL")]
    panel_url: Option<String>,
    #[serde(rename = "imageURL")]
    image_url: Option<String>,
    /// The rule's query and expression results by reference id (`B`, `C`); absent or null
    /// when the rule has none.
    values: Option<BTreeMap<String, Option<f64>>>,
    value_string: Option<String>,
}

impl GrafanaAlert {
    fn into_alert(self, value: serde_json::Value) -> Alert {
        let Self { status, labels, annotations, starts_at, fingerprint, .. } = self;
        let read = Read { status, labels, annotations, starts_at, fingerprint };
        read.into_alert(AlertSource::Grafana, value)
    }
}

/// A `json` body's conventional fields, read as Alertmanager's when the object has them:
/// anything else in it is the sender's own.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonAlert {
    status: Option<AlertStatus>,
    labels: Option<Labels>,
    annotations: Option<Labels>,
    starts_at: Option<Timestamp>,
    fingerprint: Option<String>,
}

/// A JSON object read as `T`. serde's derived structs also accept an array (the fields by
/// position), which no sender means: `[]` would be "invalid length 0" instead of "expected a
/// JSON object".
#[derive(Debug)]
struct Object<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Fields<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for Fields<T> {
            type Value = T;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map))
            }
        }
        deserializer.deserialize_map(Fields(std::marker::PhantomData)).map(Object)
    }
}

/// An RFC 3339 timestamp, as Go's `time.Time` writes one.
#[derive(Debug)]
struct Timestamp(DateTime<Utc>);

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        DateTime::parse_from_rfc3339(&text).map(|at| Timestamp(at.with_timezone(&Utc))).map_err(
            |_| {
                serde::de::Error::custom(format!(
                    "`{}` is not an RFC 3339 timestamp such as 2024-05-01T12:00:00Z",
                    cut(&text)
                ))
            },
        )
    }
}
