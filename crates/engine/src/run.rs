//! Runs as the engine and its store see them: modes, statuses, the records a store keeps, and
//! the `Transition` that changes them, committed whole or not at all.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::audit::Binding;
use crate::params::ParamValues;
use crate::plan::Rendered;

mod actor;
mod snapshot;
mod step;
mod transition;

pub use actor::{Actor, UnknownActor};
pub use snapshot::{RunSnapshot, StepIndex};
pub use transition::{LeaseChange, NewRun, RunChange, Transition};

pub type Timestamp = DateTime<Utc>;

/// Declares a closed set of names stored as text, with `as_str`, `FromStr` and `Display`.
macro_rules! named_enum {
    ($(#[$meta:meta])* pub enum $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        pub enum $name { $($(#[$vmeta])* #[serde(rename = $text)] $variant,)* }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text,)* }
            }
        }

        impl std::str::FromStr for $name {
            type Err = $crate::run::UnknownName;

            fn from_str(text: &str) -> Result<Self, Self::Err> {
                match text {
                    $($text => Ok($name::$variant),)*
                    _ => Err($crate::run::UnknownName { kind: stringify!($name), text: text.to_owned() }),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}
pub(crate) use named_enum;

/// A stored name that is not one of its type's values: a corrupt row or a newer schema.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} `{text}`")]
pub struct UnknownName {
    pub kind: &'static str,
    pub text: String,
}

named_enum! {
    /// How a run treats the world.
    pub enum RunMode {
        /// For real.
        Live => "live",
        /// For real, labelled a drill everywhere and counted as a rehearsal.
        Drill => "drill",
        /// Only read-only steps and checks execute; everything else is recorded as `would_run`.
        DryRun => "dry-run",
    }
}

named_enum! {
    /// Why a run exists: a person started it, or Steady did on a runbook's `verify` schedule.
    pub enum RunOrigin {
        /// Someone started it: at a terminal, in a browser, over the API.
        Person => "person",
        /// Steady started it as a dry run on the runbook's `verify` schedule.
        Verification => "verification",
        /// An alert proposed it through one of the runbook's `triggers` (the proposal, and
        /// the dry run that gathered its facts).
        Trigger => "trigger",
    }
}

/// A run is a person's unless it says otherwise (as every run stored before origins did).
impl Default for RunOrigin {
    fn default() -> Self {
        RunOrigin::Person
    }
}

named_enum! {
    pub enum RunStatus {
        /// An alert proposed it: it runs nothing and holds no lock until a person takes
        /// command, or it is dismissed.
        Proposed => "proposed",
        Running => "running",
        /// At a gate or a manual step; no process drives it.
        Waiting => "waiting",
        /// A failed or interrupted step awaits the commander's decision.
        NeedsAttention => "needs_attention",
        Succeeded => "succeeded",
        Failed => "failed",
        RolledBack => "rolled_back",
        Cancelled => "cancelled",
        /// A proposal nobody took: dismissed by a person with a reason, or expired.
        Dismissed => "dismissed",
    }
}

impl RunStatus {
    /// Active runs hold their lock key and can still change.
    pub fn is_active(self) -> bool {
        matches!(self, RunStatus::Running | RunStatus::Waiting | RunStatus::NeedsAttention)
    }

    /// The run has ended: it will never change again.
    pub fn is_finished(self) -> bool {
        !self.is_active() && self != RunStatus::Proposed
    }
}

named_enum! {
    pub enum StepStatus {
        Pending => "pending",
        Running => "running",
        Waiting => "waiting",
        Succeeded => "succeeded",
        Failed => "failed",
        Skipped => "skipped",
        Approved => "approved",
        Rejected => "rejected",
        TimedOut => "timed_out",
        /// It was running when its driver died, and it is not safe to run again unasked.
        Interrupted => "interrupted",
        /// A dry run recorded what it would have done.
        WouldRun => "would_run",
        Cancelled => "cancelled",
    }
}

impl StepStatus {
    /// The run moves past a step in this status without anyone deciding anything.
    pub fn is_passed(self) -> bool {
        matches!(
            self,
            StepStatus::Succeeded
                | StepStatus::Skipped
                | StepStatus::Approved
                | StepStatus::WouldRun
        )
    }

    /// The step ended badly; its `on_failure` says what happens next.
    pub fn is_failure(self) -> bool {
        matches!(self, StepStatus::Failed | StepStatus::Rejected | StepStatus::TimedOut)
    }
}

named_enum! {
    /// Which sequence of the runbook a run is in.
    pub enum Phase {
        Main => "main",
        Rollback => "rollback",
    }
}

named_enum! {
    /// The commander's answer to a run that needs attention.
    pub enum Decision {
        /// Run the failed or interrupted step again.
        Retry => "retry",
        /// Mark it skipped and go on.
        Skip => "skip",
        /// Start the runbook's rollback sequence.
        Rollback => "rollback",
        /// End the run as failed.
        Abort => "abort",
    }
}

/// A person's answer to a gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Answer {
    /// Counts towards the gate's quorum; at the quorum the gate opens.
    Approve,
    /// Ends the gate at once, as `rejected`.
    Reject,
}

/// How a person ends a manual step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Completion {
    /// Done: the step `succeeded`.
    Done,
    /// It could not be done: the step `failed`, and its `on_failure` decides what follows.
    Failed,
}

/// Whether the commander gives a run role to a person or takes it away.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RoleChange {
    Assign,
    Unassign,
}

/// A published, immutable version of a runbook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunbookVersion {
    pub name: String,
    pub version: u32,
    /// SHA-256 of `source`, in hex.
    pub sha256: String,
    pub source: String,
    pub published_by: Actor,
    pub published_at: Timestamp,
    /// What the author said changed, when they said it (publishing from the browser or the
    /// API asks for it); versions published from files have none.
    pub message: Option<String>,
    /// The test file published with the version (`NAME.test.yaml`), whose every case passed
    /// against it before it was stored; `None` when it was published without tests.
    pub tests: Option<String>,
}

/// Who drives a run, until when. Only the holder of an unexpired lease executes its steps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub owner: String,
    pub expires_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RunRecord {
    pub id: Uuid,
    pub runbook: String,
    pub version: u32,
    pub sha256: String,
    pub mode: RunMode,
    /// Who or what started it: a verification is labelled so wherever its mode is shown.
    pub origin: RunOrigin,
    pub status: RunStatus,
    pub phase: Phase,
    /// Who started the run: never allowed to approve its gates unless a gate says so.
    pub started_by: Actor,
    /// Who steers the run now; starts as `started_by`, transferable.
    pub commander: Actor,
    pub params: ParamValues,
    pub lock_key: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub finished_at: Option<Timestamp>,
    pub lease: Option<Lease>,
    /// Bumped by every committed transition; a transition names the revision it was computed
    /// from, so that two writers never both act on the same state.
    pub revision: i64,
    /// For a proposal whose trigger said `then: dry-run`: the dry run that gathered its facts.
    pub dry_run: Option<Uuid>,
}

impl RunRecord {
    /// A live run of `runbook` as it would start, with `starter` its commander: running, in
    /// its main phase, without parameters, lock or lease, revision 0, the nil id and version 0,
    /// made at the Unix epoch. What the policy asks about before a run exists
    /// ([`crate::policy::gates_out_of_reach`]); stories set the fields they are about.
    pub fn would_start(runbook: &str, starter: &Actor) -> RunRecord {
        let at = chrono::DateTime::<chrono::Utc>::UNIX_EPOCH;
        RunRecord {
            id: Uuid::nil(),
            runbook: runbook.to_owned(),
            version: 0,
            sha256: String::new(),
            mode: RunMode::Live,
            origin: RunOrigin::Person,
            status: RunStatus::Running,
            phase: Phase::Main,
            started_by: starter.clone(),
            commander: starter.clone(),
            params: Default::default(),
            lock_key: None,
            created_at: at,
            updated_at: at,
            finished_at: None,
            lease: None,
            revision: 0,
            dry_run: None,
        }
    }

    /// What the run acts on, as alerts are matched to runs: `lock:HASH` of the lock key a run
    /// holds (or, proposed, will hold); without a lock, `params:RUNBOOK:HASH` of its runbook
    /// and parameters. Hashed, so that a subject is short whatever the key (it is indexed). `None` for a dry run, which acts on nothing. A repeated or related alert is
    /// added to the proposal or active run with the same subject instead of proposing again.
    pub fn subject(&self) -> Option<String> {
        if self.mode == RunMode::DryRun {
            return None;
        }
        Some(match &self.lock_key {
            Some(key) => format!("lock:{}", &crate::audit::sha256_hex(key.as_bytes())[..32]),
            None => {
                let params = crate::audit::canonical_json(
                    &serde_json::to_value(&self.params).unwrap_or_default(),
                );
                let digest = crate::audit::sha256_hex(params.as_bytes());
                format!("params:{}:{}", self.runbook, &digest[..16])
            }
        })
    }
}

/// The current state of one step of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct StepState {
    pub step_id: String,
    pub phase: Phase,
    /// Position within its phase's sequence, from 0.
    pub position: u32,
    pub status: StepStatus,
    /// Attempts started so far.
    pub attempt: u32,
    /// Attempts started before the commander last decided to retry: retries count from here.
    pub attempts_before_round: u32,
    pub started_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
    /// When a waiting gate or manual step times out.
    pub deadline: Option<Timestamp>,
    /// The role a timed-out gate passed to.
    pub escalated_to: Option<String>,
    /// What the step does, rendered with secrets masked: the command, request or prompt.
    pub rendered: Option<Rendered>,
    /// The note of whoever completed or failed a manual step, or why Steady ended the step.
    pub note: Option<String>,
    pub completed_by: Option<Actor>,
    /// For a branch of a group or an item of a fan-out: the id of the step it belongs to.
    /// A child's `position` is its place among its siblings, from 0.
    pub parent: Option<String>,
    /// For an item of a fan-out: the item, as the `for_each` expression yielded it.
    pub item: Option<serde_json::Value>,
}

/// The id of the `index`-th item (from 0) of the fan-out step `step_id`: `restart[3]`. Step
/// ids are `[a-z][a-z0-9_]*`, so an item's id never names a step.
pub fn item_id(step_id: &str, index: usize) -> String {
    format!("{step_id}[{index}]")
}

impl StepState {
    /// A branch or item of group `parent`, pending: the `index`-th of its siblings.
    pub fn child(step_id: &str, parent: &str, phase: Phase, index: usize) -> StepState {
        let mut child =
            StepState::pending(step_id, phase, u32::try_from(index).unwrap_or(u32::MAX));
        child.parent = Some(parent.to_owned());
        child
    }

    /// Every step of `runbook`, main sequence then rollback, pending: a run as it starts.
    pub fn all_pending(runbook: &crate::runbook::Runbook) -> Vec<StepState> {
        [(Phase::Main, &runbook.steps), (Phase::Rollback, &runbook.rollback)]
            .into_iter()
            .flat_map(|(phase, steps)| {
                let pending = move |(n, step): (usize, &crate::runbook::Step)| {
                    StepState::pending(&step.id, phase, u32::try_from(n).unwrap_or(u32::MAX))
                };
                steps.iter().enumerate().map(pending)
            })
            .collect()
    }

    /// A step of a run that has just started: pending, never attempted.
    pub fn pending(step_id: &str, phase: Phase, position: u32) -> StepState {
        StepState {
            parent: None,
            item: None,
            step_id: step_id.to_owned(),
            phase,
            position,
            status: StepStatus::Pending,
            attempt: 0,
            attempts_before_round: 0,
            started_at: None,
            finished_at: None,
            deadline: None,
            escalated_to: None,
            rendered: None,
            note: None,
            completed_by: None,
        }
    }
}

/// One execution of a step, with what it produced.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Attempt {
    pub step_id: String,
    pub number: u32,
    pub status: Option<StepStatus>,
    pub started_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
    pub exit_code: Option<i32>,
    pub http_status: Option<u16>,
    /// The URL that answered an `http` step after the redirects it followed, secrets masked.
    pub final_url: Option<String>,
    /// Captured output, secrets masked, bounded by `MAX_OUTPUT`.
    pub stdout: String,
    pub stderr: String,
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
    /// The HTTP response body or stdout parsed as JSON, when it is JSON.
    pub json: Option<serde_json::Value>,
    /// Why it failed, in words, when the output does not say.
    pub error: Option<String>,
}

/// What a NUL character becomes before it is stored: PostgreSQL's text and JSON refuse NUL, so
/// everything a step or a person produces is stored with U+2400 SYMBOL FOR NULL in its place.
pub const NUL_SHOWN_AS: &str = "\u{2400}";

/// Replaces every NUL in `text` with [`NUL_SHOWN_AS`]; true when there was one.
pub fn make_storable(text: &mut String) -> bool {
    if !text.contains('\0') {
        return false;
    }
    *text = text.replace('\0', NUL_SHOWN_AS);
    true
}

/// [`make_storable`] for every string and key in a JSON value.
pub fn make_json_storable(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::String(text) => {
            make_storable(text);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(make_json_storable),
        serde_json::Value::Object(map) => {
            if map.keys().any(|key| key.contains('\0')) {
                *map = std::mem::take(map)
                    .into_iter()
                    .map(|(mut key, value)| {
                        make_storable(&mut key);
                        (key, value)
                    })
                    .collect();
            }
            map.values_mut().for_each(make_json_storable);
        }
        _ => {}
    }
}

impl Attempt {
    /// Makes the attempt storable on every database, and says so in its `error` when its
    /// output held NUL bytes.
    pub fn make_storable(&mut self) {
        let stdout = make_storable(&mut self.stdout);
        let stderr = make_storable(&mut self.stderr);
        if let Some(error) = &mut self.error {
            make_storable(error);
        }
        if let Some(json) = &mut self.json {
            make_json_storable(json);
        }
        if stdout || stderr {
            let said = format!("output contained NUL bytes, shown as {NUL_SHOWN_AS}");
            self.error = Some(match self.error.take() {
                Some(error) => format!("{error}; {said}"),
                None => said,
            });
        }
    }
}

/// Output beyond this many bytes per stream is dropped, and the truncation recorded.
pub const MAX_OUTPUT: usize = 1024 * 1024;

/// An approval or rejection of a gate.
#[derive(Debug, Clone, PartialEq)]
pub struct Vote {
    pub id: Uuid,
    pub step_id: String,
    pub actor: Actor,
    pub approve: bool,
    pub comment: Option<String>,
    /// What the approver saw: the run's parameters and the rendered steps the gate guards.
    pub bound: Binding,
    /// SHA-256 of `bound`'s canonical JSON.
    pub digest: String,
    pub at: Timestamp,
    /// Set when the guarded steps rendered differently from what was approved.
    pub void: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    pub role: String,
    pub person: Actor,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub id: Uuid,
    pub step_id: Option<String>,
    pub author: Actor,
    pub text: String,
    pub at: Timestamp,
}

/// Which runs to list, newest first.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    pub status: Option<RunStatus>,
    pub runbook: Option<String>,
    pub mode: Option<RunMode>,
    pub origin: Option<RunOrigin>,
    /// Only runs of this runbook version (with `runbook`).
    pub version: Option<u32>,
    /// Only runs created at or after this time.
    pub since: Option<Timestamp>,
    /// Keyset paging: only runs older than this one (by creation time, then id).
    pub before: Option<Uuid>,
    pub limit: Option<u32>,
}
