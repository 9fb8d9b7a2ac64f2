//! What each audit event says, as types: one variant of [`AuditData`] per [`AuditAction`],
//! serializing to exactly the `data` JSON the event has always been written with, so that
//! building events from these types changes no stored hash.
//!
//! The shapes are the ones the product writes; where one action is written in several shapes
//! ([`StepFinished`], [`UserChanged`], [`CommanderTransferred`]'s optional key) each shape is
//! its own type, and reading back is strict — no unknown key, no missing one, `null` kept
//! apart from absent — so that what [`AuditData::from_stored`] accepts writes back the same
//! canonical JSON.

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::{AuditAction, present};
use crate::accounts::GlobalRole;
use crate::params::ParamValues;
pub use crate::plan::{PendingCondition, Rendered};
use crate::run::{Actor, Decision, RunMode, RunOrigin, RunStatus, StepStatus, UnknownName};

mod payloads;
pub use payloads::*;

/// Why stored event data could not be read as its action's type.
#[derive(Debug, thiserror::Error)]
pub enum AuditDataError {
    /// The stored action is none Steady knows.
    #[error(transparent)]
    UnknownAction(#[from] UnknownName),
    /// The data is not any shape this action is written in.
    #[error("`{action}` data does not fit its type: {source}")]
    Shape {
        action: AuditAction,
        #[source]
        source: serde_json::Error,
    },
    /// The data was read, but would be written back as different JSON (another hash).
    #[error("`{action}` data does not write back as it was stored")]
    NotCanonical { action: AuditAction },
}

/// Declares [`AuditData`] with one variant per audit action: a unit variant for an action
/// written with `null` data, a tuple variant holding the data's type otherwise. The matches
/// on [`AuditAction`] it generates are exhaustive, so an action without a variant does not
/// compile.
macro_rules! audit_data {
    ($($(#[$meta:meta])* $variant:ident $(($payload:ty))?,)*) => {
        /// The data of an audit event, typed by its action. [`AuditData::to_value`] is what an
        /// event's `data` holds; actions without data are unit variants and write `null`.
        #[derive(Debug, Clone, PartialEq)]
        pub enum AuditData {
            $($(#[$meta])* $variant $(($payload))?,)*
        }

        impl AuditData {
            /// The action this data belongs to.
            pub fn action(&self) -> AuditAction {
                match self {
                    $(AuditData::$variant { .. } => AuditAction::$variant,)*
                }
            }

            /// The event's `data` JSON, exactly as it has always been written.
            pub fn to_value(&self) -> Value {
                match self {
                    $(audit_data!(@pattern $variant payload $($payload)?) =>
                        audit_data!(@write payload $($payload)?),)*
                }
            }

            /// Reads stored data, without checking that it writes back the same.
            fn read(action: AuditAction, data: &Value) -> Result<AuditData, serde_json::Error> {
                match action {
                    $(AuditAction::$variant => audit_data!(@read $variant data $($payload)?),)*
                }
            }
        }
    };
    (@pattern $variant:ident $payload:ident $type:ty) => { AuditData::$variant($payload) };
    (@pattern $variant:ident $payload:ident) => { AuditData::$variant };
    // Serializing these types into a `Value` cannot fail: every map key is a string.
    (@write $payload:ident $type:ty) => { serde_json::to_value($payload).unwrap_or_default() };
    (@write $payload:ident) => { Value::Null };
    (@read $variant:ident $data:ident $type:ty) => {
        <$type>::deserialize($data).map(AuditData::$variant)
    };
    (@read $variant:ident $data:ident) => {
        match $data {
            Value::Null => Ok(AuditData::$variant),
            _ => Err(serde_json::Error::custom("expected no data (`null`)")),
        }
    };
}

audit_data! {
    /// `runbook.published`
    RunbookPublished(RunbookPublished),
    /// `run.started`
    RunStarted(RunStarted),
    /// `run.waiting`: no path writes it today; it would carry no data.
    RunWaiting,
    /// `run.needs_attention`, on the step that needs it.
    RunNeedsAttention,
    /// `run.finished`
    RunFinished(RunFinished),
    /// `run.cancelled`: `null`, or `{"reason"}` when the commander gave one.
    RunCancelled(Option<CancelReason>),
    /// `run.taken_over`
    RunTakenOver(RunTakenOver),
    /// `run.rollback_started`
    RunRollbackStarted,
    /// `run.commander_transferred`
    CommanderTransferred(CommanderTransferred),
    /// `step.started`
    StepStarted(StepStarted),
    /// `step.finished`, in one of its four shapes.
    StepFinished(StepFinished),
    /// `step.skipped`: `status` is `skipped`.
    StepSkipped(StepSettled),
    /// `step.would_run`
    StepWouldRun(StepWouldRun),
    /// `step.interrupted`
    StepInterrupted(StepInterrupted),
    /// `step.waiting`
    StepWaiting(StepWaiting),
    /// `output.stored`
    OutputStored(OutputStored),
    /// `approval.granted`
    ApprovalGranted(ApprovalAnswer),
    /// `approval.rejected`
    ApprovalRejected(ApprovalAnswer),
    /// `approval.voided`, on the gate.
    ApprovalVoided(ApprovalVoided),
    /// `gate.timed_out`
    GateTimedOut,
    /// `gate.escalated`
    GateEscalated(GateEscalated),
    /// `manual.completed`
    ManualCompleted(ManualAnswer),
    /// `manual.failed`
    ManualFailed(ManualAnswer),
    /// `role.assigned`
    RoleAssigned(RoleHolder),
    /// `role.unassigned`
    RoleUnassigned(RoleHolder),
    /// `decision.taken`
    DecisionTaken(DecisionTaken),
    /// `note.added`
    NoteAdded(NoteAdded),
    /// `user.created`
    UserCreated(UserCreated),
    /// `user.changed`
    UserChanged(UserChanged),
    /// `user.roles_changed`
    UserRolesChanged(UserRolesChanged),
    /// `user.password_reset`
    PasswordReset(PasswordReset),
    /// `token.created`
    TokenCreated(TokenCreated),
    /// `token.revoked`
    TokenRevoked(TokenRevoked),
    /// `login.failed`
    LoginFailed(Login),
    /// `login.succeeded`
    LoginSucceeded(Login),
    /// `verification.failed`
    VerificationFailed(VerificationFailed),
    /// `verification.recovered`
    VerificationRecovered(VerificationRecovered),
    /// `run.proposed`
    RunProposed(RunProposed),
    /// `run.alert_added`: a repeated, related or resolved alert, on the proposal or active
    /// run it concerns.
    AlertAdded(AlertSeen),
    /// `run.taken`
    RunTaken(RunTaken),
    /// `run.dismissed`
    RunDismissed(RunDismissed),
    /// `run.expired`
    RunExpired(RunExpired),
}

impl AuditData {
    /// Reads a stored event's data as the type of its stored `action`.
    ///
    /// Errors: `UnknownAction` for an action Steady does not know; `Shape` when the data is
    /// not a shape the action is written in; `NotCanonical` when it would not write back as
    /// the same JSON (and so would not hash the same).
    pub fn from_stored(action: &str, data: &Value) -> Result<AuditData, AuditDataError> {
        let action: AuditAction = action.parse()?;
        let typed = AuditData::read(action, data)
            .map_err(|source| AuditDataError::Shape { action, source })?;
        // `Value` equality tells `1` from `1.0` and `null` from absent, as canonical JSON does.
        if typed.to_value() != *data {
            return Err(AuditDataError::NotCanonical { action });
        }
        Ok(typed)
    }
}

#[cfg(test)]
mod tests {
    //! The shapes the fixture database of the storage tests lacks, each against the `json!`
    //! literal the engine writes today.

    use serde_json::json;

    use crate::plan::{Action, Rendered};

    use super::*;
    use crate::audit::canonical_json;
    use crate::runbook::ParamValue;

    /// `data` is `action`'s, writes `today`'s canonical JSON, and reads back from it.
    fn check(data: AuditData, action: AuditAction, today: Value) {
        assert_eq!(data.action(), action);
        assert_eq!(canonical_json(&data.to_value()), canonical_json(&today));
        let read = AuditData::from_stored(action.as_str(), &today);
        assert_eq!(read.ok(), Some(data));
    }

    #[test]
    fn run_waiting_has_no_data() {
        check(AuditData::RunWaiting, AuditAction::RunWaiting, Value::Null);
        let event = crate::audit::NewEvent::typed(&Actor::steady(), None, AuditData::RunWaiting);
        assert_eq!((event.action, event.data), (AuditAction::RunWaiting, Value::Null));
    }

    #[test]
    fn an_admin_taking_command_adds_taken_by_admin() {
        let (from, to) = (Actor::user("alice"), Actor::user("root"));
        check(
            AuditData::CommanderTransferred(CommanderTransferred {
                from: from.clone(),
                to: to.clone(),
                taken_by_admin: true,
            }),
            AuditAction::CommanderTransferred,
            json!({ "from": from.to_string(), "to": to.to_string(), "taken_by_admin": true }),
        );
        check(
            AuditData::CommanderTransferred(CommanderTransferred {
                from: from.clone(),
                to: to.clone(),
                taken_by_admin: false,
            }),
            AuditAction::CommanderTransferred,
            json!({ "from": from.to_string(), "to": to.to_string() }),
        );
        let written_false = json!({ "from": "user:a", "to": "user:b", "taken_by_admin": false });
        assert!(AuditData::from_stored("run.commander_transferred", &written_false).is_err());
    }

    #[test]
    fn a_step_that_fails_before_it_starts_finishes_with_a_note() {
        let note = Some("could not render the step: undefined value".to_owned());
        check(
            AuditData::StepFinished(StepFinished::Settled(StepSettled {
                status: StepStatus::Failed,
                note: note.clone(),
            })),
            AuditAction::StepFinished,
            json!({ "status": StepStatus::Failed.as_str(), "note": note }),
        );
    }

    #[test]
    fn a_step_the_store_refused_finishes_with_its_error() {
        let message = "the database refused to record this step: disk full".to_owned();
        check(
            AuditData::StepFinished(StepFinished::Unrecorded(StepUnrecorded {
                attempt: 2,
                status: StepStatus::Failed,
                error: message.clone(),
                retry: false,
            })),
            AuditAction::StepFinished,
            json!({
                "attempt": 2,
                "status": StepStatus::Failed.as_str(),
                "error": message,
                "retry": false,
            }),
        );
    }

    #[test]
    fn each_step_finished_shape_reads_back_as_itself() {
        let answered = json!({ "status": "approved" });
        let settled = json!({ "status": "failed", "note": null });
        let attempted = json!({
            "attempt": 1, "status": "failed", "exit_code": -1, "http_status": null,
            "duration_ms": 12, "error": "killed", "retry": true,
        });
        let read = |json: &Value| AuditData::from_stored("step.finished", json).ok();
        assert!(matches!(
            read(&answered),
            Some(AuditData::StepFinished(StepFinished::Answered(_)))
        ));
        assert!(matches!(read(&settled), Some(AuditData::StepFinished(StepFinished::Settled(_)))));
        assert!(matches!(
            read(&attempted),
            Some(AuditData::StepFinished(StepFinished::Attempted(_)))
        ));
        // Absent is not `null`: `{"status"}` with a `note` key missing elsewhere is refused.
        let missing = json!({ "attempt": 1, "status": "failed", "duration_ms": 0, "retry": false });
        assert!(read(&missing).is_none());
    }

    #[test]
    fn a_dry_run_records_a_pending_condition_or_a_check() {
        let note = Some("depends on a step that did not run in this dry run");
        let when = "steps.probe.exit_code == 0".to_owned();
        check(
            AuditData::StepWouldRun(StepWouldRun {
                rendered: Rendered::Condition(PendingCondition { when: when.clone() }),
                note: note.map(str::to_owned),
            }),
            AuditAction::StepWouldRun,
            json!({ "rendered": json!({ "when": when }), "note": note }),
        );
        let check_action = Action::Check { expression: "steps.probe.json.ok".to_owned() };
        check(
            AuditData::StepWouldRun(StepWouldRun {
                rendered: Rendered::Action(check_action.clone()),
                note: note.map(str::to_owned),
            }),
            AuditAction::StepWouldRun,
            json!({ "rendered": serde_json::to_value(&check_action).ok(), "note": note }),
        );
    }

    #[test]
    fn a_run_with_a_lock_and_every_kind_of_parameter_starts() {
        let params: ParamValues = [
            ("host".to_owned(), ParamValue::String("db-1".to_owned())),
            ("count".to_owned(), ParamValue::Integer(-3)),
            ("ratio".to_owned(), ParamValue::Number(2.0)),
            ("force".to_owned(), ParamValue::Boolean(true)),
        ]
        .into_iter()
        .collect();
        let lock = Some("db:db-1".to_owned());
        let person = Actor::user("bob");
        check(
            AuditData::RunStarted(RunStarted {
                runbook: "restart".to_owned(),
                version: 4,
                sha256: "ab".repeat(32),
                mode: RunMode::DryRun,
                params: params.clone(),
                lock: lock.clone(),
                assignments: vec![RoleHolder { role: "dba".to_owned(), person: person.clone() }],
                origin: RunOrigin::Person,
            }),
            AuditAction::RunStarted,
            json!({
                "runbook": "restart",
                "version": 4u32,
                "sha256": "ab".repeat(32),
                "mode": RunMode::DryRun.as_str(),
                "params": params,
                "lock": lock,
                "assignments": [json!({ "role": "dba", "person": person.to_string() })],
            }),
        );
    }

    #[test]
    fn enabling_a_user_counts_nothing() {
        check(
            AuditData::UserChanged(UserChanged::Enabled { user: "eve".to_owned() }),
            AuditAction::UserChanged,
            json!({ "user": "eve", "disabled": false }),
        );
        let mixed = json!({ "user": "eve", "disabled": false, "sessions_ended": 1 });
        assert!(AuditData::from_stored("user.changed", &mixed).is_err());
    }

    #[test]
    fn stored_data_that_fits_no_type_is_refused_with_its_reason() {
        let unknown = AuditData::from_stored("run.exploded", &Value::Null);
        assert!(matches!(unknown, Err(AuditDataError::UnknownAction(_))));
        let extra = AuditData::from_stored("note.added", &json!({ "text": "hi", "mood": "ok" }));
        assert!(matches!(extra, Err(AuditDataError::Shape { action: AuditAction::NoteAdded, .. })));
        let data = AuditData::from_stored("run.cancelled", &json!({ "why": "no" }));
        assert!(matches!(data, Err(AuditDataError::Shape { .. })));
        // A float where an integer was written would write back as another number.
        let float = json!({ "attempt": 1.0, "then": "run again: the step is safe to repeat" });
        assert!(AuditData::from_stored("step.interrupted", &float).is_err());
    }

    #[test]
    fn a_step_an_earlier_steady_masked_in_its_keys_still_reads_and_writes_back_the_same() {
        // Before masking touched values only, a secret `argv` turned the key into `***`.
        let stored =
            json!({ "attempt": 1, "rendered": { "***": ["echo", "hello"], "kind": "run" } });
        let data = AuditData::from_stored("step.started", &stored).unwrap();
        let AuditData::StepStarted(started) = &data else { panic!("{data:?}") };
        assert!(matches!(started.rendered, Rendered::Stored(_)));
        assert_eq!(data.to_value(), stored);
        let state: Rendered =
            serde_json::from_value(json!({ "argv": ["x"], "kind": "***" })).unwrap();
        assert!(matches!(state, Rendered::Stored(_)));
        let fresh: Rendered =
            serde_json::from_value(json!({ "argv": ["x"], "kind": "run" })).unwrap();
        assert_eq!(fresh, Rendered::Action(Action::Run { argv: vec!["x".to_owned()] }));
    }
}
