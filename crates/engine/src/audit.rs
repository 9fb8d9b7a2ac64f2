//! The audit log's events and its hash chain: `hash` = SHA-256 over `prev_hash` and the
//! canonical JSON of the event's other fields, so that changing, removing or reordering any
//! stored event breaks every hash after it.

use serde_json::Value;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::run::{Actor, Timestamp};

mod binding;
mod data;

pub use binding::Binding;
pub use data::*;

/// The `prev_hash` of the first event.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Declares the closed set of audit actions with their stored names.
macro_rules! actions {
    ($($variant:ident => $text:literal,)*) => {
        /// Every change of state that lands in the audit log.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum AuditAction { $($variant,)* }

        impl AuditAction {
            /// Every action, in the order they are declared.
            pub const ALL: &[AuditAction] = &[$(AuditAction::$variant,)*];

            pub fn as_str(self) -> &'static str {
                match self { $(AuditAction::$variant => $text,)* }
            }
        }

        impl std::str::FromStr for AuditAction {
            type Err = crate::run::UnknownName;

            fn from_str(text: &str) -> Result<Self, Self::Err> {
                match text {
                    $($text => Ok(AuditAction::$variant),)*
                    _ => Err(crate::run::UnknownName { kind: "audit action", text: text.to_owned() }),
                }
            }
        }
    };
}

actions! {
    RunbookPublished => "runbook.published",
    RunStarted => "run.started",
    RunWaiting => "run.waiting",
    RunNeedsAttention => "run.needs_attention",
    RunFinished => "run.finished",
    RunCancelled => "run.cancelled",
    RunTakenOver => "run.taken_over",
    RunRollbackStarted => "run.rollback_started",
    CommanderTransferred => "run.commander_transferred",
    StepStarted => "step.started",
    StepFinished => "step.finished",
    StepSkipped => "step.skipped",
    StepWouldRun => "step.would_run",
    StepInterrupted => "step.interrupted",
    StepWaiting => "step.waiting",
    OutputStored => "output.stored",
    ApprovalGranted => "approval.granted",
    ApprovalRejected => "approval.rejected",
    ApprovalVoided => "approval.voided",
    GateTimedOut => "gate.timed_out",
    GateEscalated => "gate.escalated",
    ManualCompleted => "manual.completed",
    ManualFailed => "manual.failed",
    RoleAssigned => "role.assigned",
    RoleUnassigned => "role.unassigned",
    DecisionTaken => "decision.taken",
    NoteAdded => "note.added",
    UserCreated => "user.created",
    UserChanged => "user.changed",
    UserRolesChanged => "user.roles_changed",
    PasswordReset => "user.password_reset",
    TokenCreated => "token.created",
    TokenRevoked => "token.revoked",
    LoginFailed => "login.failed",
    LoginSucceeded => "login.succeeded",
    VerificationFailed => "verification.failed",
    VerificationRecovered => "verification.recovered",
    RunProposed => "run.proposed",
    AlertAdded => "run.alert_added",
    RunTaken => "run.taken",
    RunDismissed => "run.dismissed",
    RunExpired => "run.expired",
}

impl std::fmt::Display for AuditAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An event to append; the store gives it its `seq`, `id`, `at` and hashes. Built with
/// [`NewEvent::typed`], so that `action` and `data` always agree; the fields are the stored
/// form, kept as JSON so that what is hashed is exactly what is stored.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub actor: Actor,
    pub action: AuditAction,
    pub run_id: Option<Uuid>,
    pub step_id: Option<String>,
    /// [`AuditData::to_value`] of the event's data.
    pub data: Value,
}

impl NewEvent {
    /// The event is about this step of its run.
    pub fn step(mut self, step_id: &str) -> NewEvent {
        self.step_id = Some(step_id.to_owned());
        self
    }

    /// An event whose action and data come from one typed value, so that they cannot disagree:
    /// `action` is `data.action()` and `data` its JSON. Add the step with [`NewEvent::step`].
    pub fn typed(actor: &Actor, run_id: Option<Uuid>, data: AuditData) -> NewEvent {
        NewEvent {
            actor: actor.clone(),
            action: data.action(),
            run_id,
            step_id: None,
            data: data.to_value(),
        }
    }
}

/// A stored event of the chain.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEvent {
    pub seq: i64,
    pub id: Uuid,
    pub at: Timestamp,
    pub actor: Actor,
    /// Kept as stored text, so that verifying never depends on knowing every action.
    pub action: String,
    pub run_id: Option<Uuid>,
    pub step_id: Option<String>,
    pub data: Value,
    pub prev_hash: String,
    pub hash: String,
}

impl AuditEvent {
    /// Builds the stored event that follows `prev_hash` at position `seq`.
    pub fn chain(
        seq: i64,
        id: Uuid,
        at: Timestamp,
        prev_hash: &str,
        event: &NewEvent,
    ) -> AuditEvent {
        let mut stored = AuditEvent {
            seq,
            id,
            at,
            actor: event.actor.clone(),
            action: event.action.as_str().to_owned(),
            run_id: event.run_id,
            step_id: event.step_id.clone(),
            data: event.data.clone(),
            prev_hash: prev_hash.to_owned(),
            hash: String::new(),
        };
        stored.hash = stored.expected_hash();
        stored
    }

    /// The canonical JSON the hash covers: what a store keeps as the event.
    pub fn body(&self) -> String {
        let id = self.id.to_string();
        let run_id = self.run_id.map(|id| id.to_string());
        let actor = self.actor.to_string();
        hashed_body(&HashedFields {
            seq: self.seq,
            id: &id,
            at: &format_timestamp(self.at),
            actor: &actor,
            action: &self.action,
            run_id: run_id.as_deref(),
            step_id: self.step_id.as_deref(),
            data: &canonical_json(&self.data),
        })
    }

    /// Reads a stored event back from its body and hashes.
    pub fn from_stored(body: &str, prev_hash: &str, hash: &str) -> Result<AuditEvent, String> {
        #[derive(serde::Deserialize)]
        struct Body {
            seq: i64,
            id: Uuid,
            at: String,
            actor: Actor,
            action: String,
            run_id: Option<Uuid>,
            step_id: Option<String>,
            data: Value,
        }
        let body: Body =
            serde_json::from_str(body).map_err(|error| format!("audit event: {error}"))?;
        let at = chrono::DateTime::parse_from_rfc3339(&body.at)
            .map_err(|error| format!("audit event time `{}`: {error}", body.at))?
            .with_timezone(&chrono::Utc);
        Ok(AuditEvent {
            seq: body.seq,
            id: body.id,
            at,
            actor: body.actor,
            action: body.action,
            run_id: body.run_id,
            step_id: body.step_id,
            data: body.data,
            prev_hash: prev_hash.to_owned(),
            hash: hash.to_owned(),
        })
    }

    /// The hash this event must have, given its fields and `prev_hash`.
    pub fn expected_hash(&self) -> String {
        chain_hash(&self.prev_hash, &self.body())
    }
}

/// An event's fields as stored text: what the chain hashes. `data` is canonical JSON.
#[derive(Debug, Clone, Copy)]
pub struct HashedFields<'a> {
    pub seq: i64,
    pub id: &'a str,
    pub at: &'a str,
    pub actor: &'a str,
    pub action: &'a str,
    pub run_id: Option<&'a str>,
    pub step_id: Option<&'a str>,
    pub data: &'a str,
}

/// The canonical JSON of an event's fields other than the hashes: keys sorted, no spaces.
pub fn hashed_body(fields: &HashedFields<'_>) -> String {
    let mut out = Vec::with_capacity(192 + fields.data.len());
    write_hashed_body(&mut out, fields);
    String::from_utf8(out).unwrap_or_default()
}

/// Writes the hashed body into `out`. Written out directly rather than through a `Value`,
/// because verifying a long chain is mostly this.
fn write_hashed_body(out: &mut Vec<u8>, fields: &HashedFields<'_>) {
    fn string(out: &mut Vec<u8>, text: &str) {
        // Writing a string into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, text);
    }
    fn optional(out: &mut Vec<u8>, text: Option<&str>) {
        match text {
            Some(text) => string(out, text),
            None => out.extend_from_slice(b"null"),
        }
    }
    out.extend_from_slice(b"{\"action\":");
    string(out, fields.action);
    out.extend_from_slice(b",\"actor\":");
    string(out, fields.actor);
    out.extend_from_slice(b",\"at\":");
    string(out, fields.at);
    out.extend_from_slice(b",\"data\":");
    out.extend_from_slice(fields.data.as_bytes());
    out.extend_from_slice(b",\"id\":");
    string(out, fields.id);
    out.extend_from_slice(b",\"run_id\":");
    optional(out, fields.run_id);
    out.extend_from_slice(b",\"seq\":");
    out.extend_from_slice(fields.seq.to_string().as_bytes());
    out.extend_from_slice(b",\"step_id\":");
    optional(out, fields.step_id);
    out.push(b'}');
}

/// SHA-256 over the previous event's hash and this event's hashed body, in hex.
pub fn chain_hash(prev_hash: &str, body: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(prev_hash.as_bytes());
    hasher.update(body.as_bytes());
    hex::encode(hasher.finalize())
}

/// Timestamps as the chain hashes them: RFC 3339, UTC, microseconds.
pub fn format_timestamp(at: Timestamp) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// JSON with object keys sorted at every level and no insignificant white space, so that the
/// same value always hashes the same whatever order its keys were built in.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (index, key) in keys.into_iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(&map[key], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        leaf => out.push_str(&leaf.to_string()),
    }
}

/// SHA-256 of a value's canonical JSON, in hex.
pub fn digest(value: &Value) -> String {
    hex::encode(Sha256::digest(canonical_json(value).as_bytes()))
}

/// SHA-256 of bytes, in hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The result of recomputing the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    pub events: u64,
    /// The first event whose hash, `prev_hash` or `seq` does not follow from the one before.
    pub first_broken: Option<i64>,
}

/// Recomputes a chain event by event, in `seq` order, without holding it in memory.
#[derive(Debug)]
pub struct ChainVerifier {
    prev_hash: String,
    prev_seq: i64,
    events: u64,
    first_broken: Option<i64>,
}

impl Default for ChainVerifier {
    fn default() -> Self {
        ChainVerifier { prev_hash: GENESIS.to_owned(), prev_seq: 0, events: 0, first_broken: None }
    }
}

impl ChainVerifier {
    pub fn push(&mut self, event: &AuditEvent) {
        self.push_stored(event.seq, &event.body(), &event.prev_hash, &event.hash);
    }

    /// Checks one event as stored, without decoding it: the fast path of `audit verify`.
    /// `body` is the exact text the hash covers; its `seq` must be the row's.
    pub fn push_stored(&mut self, seq: i64, body: &str, prev_hash: &str, hash: &str) {
        self.events += 1;
        if self.first_broken.is_none() {
            let linked = seq == self.prev_seq + 1 && prev_hash == self.prev_hash;
            // `seq` is the last key but `step_id`, whose string cannot hold a bare quote: the
            // last `,"seq":` is the event's own.
            let own_seq = body
                .rfind(",\"seq\":")
                .and_then(|at| body[at + 7..].split(',').next())
                .and_then(|digits| digits.parse::<i64>().ok())
                == Some(seq);
            let mut hasher = Sha256::new();
            hasher.update(prev_hash.as_bytes());
            hasher.update(body.as_bytes());
            let mut hex = [0u8; 64];
            let matches =
                hex::encode_to_slice(hasher.finalize(), &mut hex).is_ok() && hex == hash.as_bytes();
            if !linked || !own_seq || !matches {
                self.first_broken = Some(seq);
            }
        }
        self.prev_hash.clear();
        self.prev_hash.push_str(hash);
        self.prev_seq = seq;
    }

    /// An event whose row could not be read back counts as broken; the chain goes on from it
    /// unverifiable.
    pub fn push_unreadable(&mut self) {
        let seq = self.prev_seq + 1;
        self.events += 1;
        self.first_broken.get_or_insert(seq);
        self.prev_seq = seq;
        self.prev_hash.clear();
    }

    pub fn finish(self) -> Verification {
        Verification { events: self.events, first_broken: self.first_broken }
    }
}

/// A cheap stand-in for a vote id or note id where the caller has none yet.
pub fn new_id() -> Uuid {
    Uuid::now_v7()
}

/// For `#[serde(deserialize_with)]` on an `Option` field of stored JSON: the key must be
/// present, `null` when there is no value. (Serde's default takes a missing key for `None`,
/// which would read `{}` and write `{"key":null}`: a different canonical JSON, another hash.)
pub(crate) fn present<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    <Option<T> as serde::Deserialize>::deserialize(deserializer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fast_body_is_the_canonical_json_of_the_fields() {
        let event = AuditEvent::chain(
            7,
            Uuid::nil(),
            chrono::DateTime::UNIX_EPOCH,
            GENESIS,
            // Data no action is written with, for the corners of canonical JSON.
            &NewEvent {
                actor: Actor::user("a\"lice"),
                action: AuditAction::NoteAdded,
                run_id: None,
                step_id: Some("x".to_owned()),
                data: serde_json::json!({ "z": [1, 2.5, "é\n"], "a": { "c": null, "b": true } }),
            },
        );
        let slow = canonical_json(&serde_json::json!({
            "seq": 7, "id": Uuid::nil().to_string(), "at": "1970-01-01T00:00:00.000000Z",
            "actor": "user:a\"lice", "action": "note.added", "run_id": null, "step_id": "x",
            "data": event.data,
        }));
        let id = Uuid::nil().to_string();
        let fast = hashed_body(&HashedFields {
            seq: 7,
            id: &id,
            at: "1970-01-01T00:00:00.000000Z",
            actor: "user:a\"lice",
            action: "note.added",
            run_id: None,
            step_id: Some("x"),
            data: &canonical_json(&event.data),
        });
        assert_eq!(fast, slow);
        assert_eq!(event.hash, chain_hash(GENESIS, &slow));
    }
}
