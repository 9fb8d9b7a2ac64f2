//! The payload of each audit action: the types [`AuditData`](super::AuditData)'s variants
//! hold, each documented with the JSON it writes.

use super::*;

/// `{"runbook", "version", "sha256", "tests_sha256"?}`: a new version of a runbook was stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunbookPublished {
    pub runbook: String,
    pub version: u32,
    /// SHA-256 of the source, in hex.
    pub sha256: String,
    /// SHA-256 of the test file published with it, in hex; absent without tests (and in
    /// every event written before tests were published, whose hashes stay as they were).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tests_sha256: Option<String>,
}

/// `{"runbook", "version", "sha256", "mode", "params", "lock", "assignments"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunStarted {
    pub runbook: String,
    pub version: u32,
    /// SHA-256 of the runbook version's source, in hex.
    pub sha256: String,
    pub mode: RunMode,
    /// Every parameter's value, defaults included.
    pub params: ParamValues,
    /// The rendered lock key, `null` when the runbook has none.
    #[serde(deserialize_with = "present")]
    pub lock: Option<String>,
    /// Run roles given at the start.
    pub assignments: Vec<RoleHolder>,
    /// `"origin": "verification"` for a run Steady started on the runbook's `verify`
    /// schedule; the key is absent for a person's run (as in every event written before it).
    #[serde(default, skip_serializing_if = "is_person", deserialize_with = "not_person")]
    pub origin: RunOrigin,
}

/// `{"role", "person"}`: who holds a run role (`role.assigned`, `role.unassigned`, and each
/// of `run.started`'s assignments).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleHolder {
    pub role: String,
    pub person: Actor,
}

/// `{"status"}`: how the run ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunFinished {
    pub status: RunStatus,
}

/// `{"by"}`: the node that took over a run whose driver died.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunTakenOver {
    /// The node's name.
    pub by: String,
}

/// `{"from", "to"}`, with `"taken_by_admin": true` when an admin took command: the key is
/// absent otherwise, never `false`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommanderTransferred {
    pub from: Actor,
    pub to: Actor,
    #[serde(default, skip_serializing_if = "is_false", deserialize_with = "only_true")]
    pub taken_by_admin: bool,
}

/// `{"attempt", "rendered"}`: an attempt of a `run`, `http` or `sleep` step began.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepStarted {
    /// 1 for the first attempt.
    pub attempt: u32,
    /// What runs, secrets masked (an earlier Steady's unreadable form is kept as stored).
    pub rendered: Rendered,
}

/// `step.finished`, whose keys say how the step ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum StepFinished {
    /// A gate answered by people: `{"status"}`.
    Answered(StepAnswered),
    /// A step that could not start (its `when` or template failed): `{"status", "note"}`.
    Settled(StepSettled),
    /// A step the store refused to record: `{"attempt", "status", "error", "retry"}`.
    Unrecorded(StepUnrecorded),
    /// An attempt that ran (or a check evaluated):
    /// `{"attempt", "status", "exit_code", "http_status", "duration_ms", "error", "retry"}`.
    Attempted(AttemptFinished),
}

/// `{"status"}`: `approved` or `rejected`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepAnswered {
    pub status: StepStatus,
}

/// `{"status", "note"}`: a step ended without running (`step.skipped`, or `step.finished`
/// when it failed before it could start).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepSettled {
    pub status: StepStatus,
    /// Why, secrets masked.
    #[serde(deserialize_with = "present")]
    pub note: Option<String>,
}

/// `{"attempt", "status", "error", "retry"}`: the store refused to record the step starting
/// or ending, so it failed once with that error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepUnrecorded {
    /// The step's last attempt number (0 when none started).
    pub attempt: u32,
    pub status: StepStatus,
    pub error: String,
    /// Always `false`: such a failure is not retried.
    pub retry: bool,
}

/// `{"attempt", "status", "exit_code", "http_status", "duration_ms", "error", "retry"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttemptFinished {
    pub attempt: u32,
    /// The attempt's own status (a failed attempt that is retried is `failed` here).
    pub status: StepStatus,
    /// A process's exit code, `null` for other steps or when it was killed.
    #[serde(deserialize_with = "present")]
    pub exit_code: Option<i32>,
    /// An HTTP step's response status, `null` otherwise.
    #[serde(deserialize_with = "present")]
    pub http_status: Option<u16>,
    /// Milliseconds from start to end, 0 when either is unknown.
    pub duration_ms: i64,
    #[serde(deserialize_with = "present")]
    pub error: Option<String>,
    /// The step will be tried again.
    pub retry: bool,
}

/// `{"rendered", "note"}`: what a dry run would have done.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepWouldRun {
    pub rendered: Rendered,
    #[serde(deserialize_with = "present")]
    pub note: Option<String>,
}

/// `{"attempt", "then"}`: a step was found running after its driver died.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepInterrupted {
    pub attempt: u32,
    pub then: AfterInterruption,
}

/// What happens to an interrupted step, in the words the log has always used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AfterInterruption {
    /// The step is safe to repeat (read-only or idempotent).
    #[serde(rename = "run again: the step is safe to repeat")]
    RunAgain,
    #[serde(rename = "wait for a decision: the step is not safe to repeat")]
    WaitForDecision,
}

/// `{"rendered", "role", "holders"}`: a gate or manual step waits for people.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepWaiting {
    /// The gate or manual step, rendered (an earlier Steady's unreadable form kept as stored).
    pub rendered: Rendered,
    /// The run role that may answer.
    pub role: String,
    /// Who held that role then.
    pub holders: Vec<Actor>,
}

/// `{"attempt", "stream", "sha256", "bytes", "truncated"}`: an attempt's captured output was
/// stored (the text is in the attempt; the log keeps its digest).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputStored {
    pub attempt: u32,
    pub stream: OutputStream,
    /// SHA-256 of the stored text, in hex.
    pub sha256: String,
    /// Length of the stored text, in bytes.
    pub bytes: u64,
    /// The output was cut at the storage limit.
    pub truncated: bool,
}

/// Which output of a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputStream {
    Stdout,
    Stderr,
}

/// `{"comment", "digest", "approvals", "quorum"}`: a person approved or rejected a gate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalAnswer {
    /// Secrets masked.
    #[serde(deserialize_with = "present")]
    pub comment: Option<String>,
    /// SHA-256 of the canonical JSON of the [`Binding`](super::Binding) answered, in hex.
    pub digest: String,
    /// Live approvals, this one included.
    pub approvals: u32,
    /// Approvals the gate needs.
    pub quorum: u32,
}

/// `{"approver", "digest", "step", "reason"}`: an approval no longer matches what a guarded
/// step renders to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalVoided {
    pub approver: Actor,
    /// The voided approval's digest.
    pub digest: String,
    /// The guarded step that renders differently.
    pub step: String,
    pub reason: VoidReason,
}

/// Why approvals are voided, in the words the log has always used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum VoidReason {
    #[serde(rename = "the step renders differently from what was approved")]
    RendersDifferently,
}

/// `{"to", "holders"}`: a gate past its deadline escalated to another role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GateEscalated {
    /// The run role escalated to.
    pub to: String,
    /// Who held it then.
    pub holders: Vec<Actor>,
}

/// `{"note"}`: a manual step marked done or failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManualAnswer {
    /// Secrets masked.
    #[serde(deserialize_with = "present")]
    pub note: Option<String>,
}

/// `{"decision"}`, or `{"decision", "reason"}` when the commander said why: the commander's
/// answer to a run that needs attention.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionTaken {
    pub decision: Decision,
    /// Why, in the commander's words, secrets masked. Absent from events written before
    /// Steady asked (and from decisions given without one), so those keep their hashes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `{"reason"}`: why the commander cancelled a run, secrets masked. A cancel without a reason
/// writes `null`, as every cancel did before.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CancelReason {
    pub reason: String,
}

/// `{"text"}`: a participant's note, secrets masked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoteAdded {
    pub text: String,
}

/// `{"user", "roles"}`: an account was created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserCreated {
    /// The account name (without `user:`).
    pub user: String,
    pub roles: Vec<GlobalRole>,
}

/// `{"user", "roles"}`: an admin gave an account these global roles (all of them, not the
/// difference).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserRolesChanged {
    pub user: String,
    pub roles: Vec<GlobalRole>,
}

/// `{"user", "sessions_ended"}`: an admin set a new password; the account's sessions ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordReset {
    pub user: String,
    pub sessions_ended: u64,
}

/// `user.changed`: `{"user", "disabled": false}` when enabled,
/// `{"user", "disabled": true, "sessions_ended", "tokens_revoked"}` when disabled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "UserChangedJson", into = "UserChangedJson")]
pub enum UserChanged {
    Enabled {
        user: String,
    },
    /// Disabling ends the user's sessions and revokes their tokens, counted here.
    Disabled {
        user: String,
        sessions_ended: u64,
        tokens_revoked: u64,
    },
}

/// `user.changed` as written, before its keys are checked to agree with `disabled`.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct UserChangedJson {
    user: String,
    disabled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sessions_ended: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tokens_revoked: Option<u64>,
}

impl From<UserChanged> for UserChangedJson {
    fn from(change: UserChanged) -> Self {
        match change {
            UserChanged::Enabled { user } => UserChangedJson {
                user,
                disabled: false,
                sessions_ended: None,
                tokens_revoked: None,
            },
            UserChanged::Disabled { user, sessions_ended, tokens_revoked } => UserChangedJson {
                user,
                disabled: true,
                sessions_ended: Some(sessions_ended),
                tokens_revoked: Some(tokens_revoked),
            },
        }
    }
}

impl TryFrom<UserChangedJson> for UserChanged {
    type Error = &'static str;

    fn try_from(json: UserChangedJson) -> Result<Self, Self::Error> {
        match json {
            UserChangedJson {
                user,
                disabled: false,
                sessions_ended: None,
                tokens_revoked: None,
            } => Ok(UserChanged::Enabled { user }),
            UserChangedJson {
                user,
                disabled: true,
                sessions_ended: Some(sessions_ended),
                tokens_revoked: Some(tokens_revoked),
            } => Ok(UserChanged::Disabled { user, sessions_ended, tokens_revoked }),
            _ => Err("`sessions_ended` and `tokens_revoked` are written exactly when `disabled`"),
        }
    }
}

/// `{"token", "label", "user"}`: an API token was issued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenCreated {
    pub token: Uuid,
    pub label: String,
    /// The account it acts as.
    pub user: String,
}

/// `{"token"}`: an API token was revoked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRevoked {
    pub token: Uuid,
}

/// `{"user", "address"}`: a sign-in, failed or succeeded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Login {
    /// The account name as typed (a failed sign-in may name no account).
    pub user: String,
    /// The client's address.
    pub address: String,
}

/// `{"runbook", "version", "run_id", "step", "reason"}`: a runbook's verification failed
/// after passing, or at its first. Written once per spell of failures: a verification that
/// fails again says nothing new.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerificationFailed {
    pub runbook: String,
    /// The version verified.
    pub version: u32,
    /// The verification's run, `null` when it could not start.
    #[serde(deserialize_with = "present")]
    pub run_id: Option<Uuid>,
    /// The first step that failed, `null` when none did (the run could not start).
    #[serde(deserialize_with = "present")]
    pub step: Option<String>,
    /// Why, in a few words: `exited 2`, `check was false: …`, the reason it could not start.
    /// Made of stored, masked text only.
    pub reason: String,
}

/// `{"runbook", "version", "run_id", "failing_since"}`: a runbook's verification passed again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerificationRecovered {
    pub runbook: String,
    pub version: u32,
    /// The verification's run that passed.
    pub run_id: Uuid,
    /// When the failures began, as the chain writes timestamps.
    pub failing_since: String,
}

/// `{"source", "status", "key", "labels"}`: an alert as the audit log keeps it, the labels
/// masked like everything people and systems send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertSeen {
    pub source: crate::runbook::AlertSource,
    pub status: crate::trigger::AlertStatus,
    /// What tells the same alert again ([`crate::trigger::alert_key`]).
    pub key: String,
    pub labels: std::collections::BTreeMap<String, String>,
}

/// `run.proposed`: `{"runbook", "version", "sha256", "params", "lock", "alert", "dry_run"}`,
/// by the trigger account that delivered the alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunProposed {
    pub runbook: String,
    pub version: u32,
    pub sha256: String,
    /// Every parameter's value, as the trigger rendered it from the alert, defaults included.
    pub params: ParamValues,
    /// The lock key the run will take when someone takes command, `null` without a lock.
    #[serde(deserialize_with = "present")]
    pub lock: Option<String>,
    /// The alert that proposed it.
    pub alert: AlertSeen,
    /// The dry run gathering its facts (`then: dry-run`), `null` otherwise.
    #[serde(deserialize_with = "present")]
    pub dry_run: Option<Uuid>,
}

/// `run.taken`: `{"assignments"}`: a person took command of a proposal, which starts live now
/// with them as its starter and commander, and these roles given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunTaken {
    pub assignments: Vec<RoleHolder>,
}

/// `run.dismissed`: `{"reason"}`, secrets masked: a person decided a proposal needs no run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunDismissed {
    pub reason: String,
}

/// `run.expired`: `{"idle_seconds"}`: nobody took a proposal, and no alert came for it, for
/// this long; Steady ended it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunExpired {
    pub idle_seconds: u64,
}

fn is_person(origin: &RunOrigin) -> bool {
    *origin == RunOrigin::Person
}

/// Reads an origin written only when it is not a person's: `person` would write back as an
/// absent key.
fn not_person<'de, D: Deserializer<'de>>(deserializer: D) -> Result<RunOrigin, D::Error> {
    match RunOrigin::deserialize(deserializer)? {
        RunOrigin::Person => Err(D::Error::custom("written only when not `person`")),
        origin => Ok(origin),
    }
}

fn is_false(value: &bool) -> bool {
    !*value
}

/// Reads a key written only as `true`: `false` would write back as an absent key.
fn only_true<'de, D: Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    match bool::deserialize(deserializer)? {
        true => Ok(true),
        false => Err(D::Error::custom("written only as `true`")),
    }
}
