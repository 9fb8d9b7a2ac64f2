//! The engine: publishes runbooks, starts runs, drives them step by step under a lease, and
//! takes people's answers (approvals, manual steps, decisions, assignments, notes).
//!
//! Every change is computed from a snapshot of the run as a `Transition` and committed before
//! the effect it announces: a step is recorded `running` before its process starts, its result
//! before the next step starts, an approval before the caller is answered. A transition names
//! the run's revision it was computed from; when someone else changed the run meanwhile, the
//! store refuses it and the engine reloads and decides again.
//!
//! One file per job: `publish` (new versions), `commands` (what people ask for, after asking
//! [`policy`](crate::policy)), `driver` (the drive of a run: its loop, `start`ing steps,
//! `recover`ing them), `lease` (the lease keeper), `expiry` (gates past their deadline),
//! `binding` (what an approval binds to), `context` (a run's template context), `verdict`
//! (an attempt judged, and its retry), `cache` (parsed runbook versions), `verify`
//! (continuous verification: a period's dry run started, a verification's end recorded).

mod binding;
mod cache;
mod commands;
mod context;
mod driver;
mod expiry;
mod lease;
mod proposals;
mod publish;
mod verdict;
mod verify;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use crate::clock::{Clock, SystemClock};
use uuid::Uuid;

use crate::audit::{AuditData, NewEvent, RunFinished};
use crate::params::ParamError;
use crate::plan::Action;
use crate::policy::Refusal;
use crate::run::*;
use crate::runbook::{self, Runbook, Step};
use crate::runner::{Effects, World};
use crate::secrets::SecretsError;
use crate::store::{Store, StoreError};

pub use crate::policy::waiting_for;
pub use commands::{StartRun, Then};
pub use proposals::{AlertOutcome, Filing};
pub use publish::{FolderFile, VersionTests, run_tests};
pub use verify::Verifying;

/// How a process identifies itself and drives runs.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// This process as a lease owner: unique per process, readable in `steady show`.
    pub node: String,
    /// How long a lease lasts without renewal: how soon another process may take over a run
    /// whose driver died.
    pub lease: StdDuration,
    /// Every secret value this process has, by name, read by the binary from
    /// `STEADY_SECRET_<NAME>`. A run sees (and masks) only those its runbook declares.
    pub secrets: BTreeMap<String, String>,
    /// How often a driver renews its lease and looks for a cancellation of its run: a third
    /// of the lease, at most a second, so that a cancelled step stops within a second.
    pub renew_every: StdDuration,
}

impl EngineConfig {
    /// A process named `node` holding leases of `lease`, with these secret values.
    pub fn new(
        node: impl Into<String>,
        lease: StdDuration,
        secrets: BTreeMap<String, String>,
    ) -> Self {
        let renew_every = (lease / 3).min(StdDuration::from_secs(1));
        EngineConfig { node: node.into(), lease, secrets, renew_every }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("no runbook named `{0}` has been published")]
    NoSuchRunbook(String),
    #[error("runbook `{name}` version {version} no longer validates: {message}")]
    InvalidStoredRunbook { name: String, version: u32, message: String },
    #[error("the runbook is invalid")]
    InvalidRunbook(Vec<crate::Diagnostic>),
    /// The test file published with a runbook does not parse or does not fit the runbook.
    #[error("the runbook's tests are invalid")]
    InvalidTests(Vec<crate::Diagnostic>),
    /// A case of the test file published with a runbook failed: the version is not stored.
    #[error("{}", .0.iter().map(|case| format!("test `{}` failed: {}", case.name, case.failure.as_deref().unwrap_or_default())).collect::<Vec<_>>().join("; "))]
    TestsFailed(Vec<crate::testing::CaseReport>),
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Params(Vec<ParamError>),
    /// The runbook's declared secrets are not all usable: the run does not start.
    #[error("{0}")]
    Secrets(SecretsError),
    #[error("lock `{key}` is held by run {run_id}")]
    LockHeld { key: String, run_id: Uuid },
    /// The lock key cannot be rendered with these parameters.
    #[error("the lock key cannot be rendered with these parameters: {0}")]
    LockKey(String),
    #[error("no run {0}")]
    NoSuchRun(Uuid),
    #[error("the runbook has no step `{0}`")]
    NoSuchStep(String),
    #[error("the runbook has no role `{0}`")]
    NoSuchRole(String),
    /// Only existing, enabled users hold run roles and command runs.
    #[error("`{0}` is not an existing, enabled user")]
    NoSuchPerson(String),
    #[error("step `{step}` is {status}, not waiting for an answer")]
    NotWaiting { step: String, status: StepStatus },
    #[error("step `{step}` is not {expected} step")]
    WrongKind { step: String, expected: &'static str },
    #[error("{actor} does not hold role `{role}` in this run")]
    NotEligible { actor: Actor, role: String },
    #[error("{actor} started this run and may not approve its gates")]
    SelfApproval { actor: Actor },
    #[error("{actor} has already answered gate `{step}`")]
    AlreadyAnswered { actor: Actor, step: String },
    #[error("gate `{step}` timed out and can no longer be answered")]
    GateTimedOut { step: String },
    #[error("{actor} takes no part in this run: only its commander and role holders add notes")]
    NotParticipant { actor: Actor },
    #[error("only the commander ({commander}) may do this")]
    NotCommander { commander: Actor },
    #[error(
        "gate `{step}` cannot be skipped: retry it so that people can answer, roll back or abort"
    )]
    GateCannotBeSkipped { step: String },
    #[error("the run is {status}: there is no decision to take")]
    NothingToDecide { status: RunStatus },
    #[error(
        "`{step}` is not a failed or interrupted branch or item of `{group}`, the step that awaits a decision"
    )]
    NotDecidable { step: String, group: String },
    #[error("`{decision}` decides the whole run: leave out the branch or item")]
    WholeRunDecision { decision: Decision },
    #[error("the run is {status}")]
    RunNotActive { status: RunStatus },
    /// Only a proposal is taken or dismissed.
    #[error("the run is {status}, not a proposal: it can no longer be taken or dismissed")]
    NotProposed { status: RunStatus },
    /// A trigger could not be applied to an alert: where it is written, and why.
    #[error("{0}")]
    Trigger(String),
    /// Dismissing a proposal says why.
    #[error("say why: a reason is required")]
    ReasonRequired,
    #[error("the run is driven by {owner} until {until}")]
    LeaseHeld { owner: String, until: Timestamp },
    #[error("this process lost the lease on the run; another takes it over")]
    LeaseLost,
    #[error("the run kept changing while this change was being made; try again")]
    Busy,
    #[error("{0}")]
    Store(StoreError),
}

impl From<StoreError> for EngineError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::LockHeld { key, run_id } => EngineError::LockHeld { key, run_id },
            StoreError::NoSuchRun(id) => EngineError::NoSuchRun(id),
            StoreError::LeaseLost => EngineError::LeaseLost,
            other => EngineError::Store(other),
        }
    }
}

/// The engine's error for each refusal of [`policy`](crate::policy): the variants (and so the
/// messages and HTTP statuses) callers knew before the rules moved there.
impl From<Refusal> for EngineError {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::NotHolder { person, role } => EngineError::NotEligible { actor: person, role },
            Refusal::SelfApproval { person } => EngineError::SelfApproval { actor: person },
            Refusal::AlreadyAnswered { person, step } => {
                EngineError::AlreadyAnswered { actor: person, step }
            }
            Refusal::NotCommander { commander } => EngineError::NotCommander { commander },
            Refusal::NotParticipant { person } => EngineError::NotParticipant { actor: person },
            Refusal::NotAUser(name) => EngineError::NoSuchPerson(name),
            Refusal::NotAnswerable { step } => {
                EngineError::WrongKind { step, expected: "an approval or a manual" }
            }
        }
    }
}

/// What a driver reports as it goes, for a terminal or a log.
#[derive(Debug, Clone)]
pub enum Progress<'a> {
    StepStarted {
        step: &'a Step,
        attempt: u32,
        rendered: &'a Action,
    },
    StepEnded {
        step: &'a Step,
        status: StepStatus,
        attempt: u32,
        detail: Option<String>,
        /// How long the attempt that just ended took, when this driver ran one and recorded
        /// its result; `None` for a step skipped, settled without running, recovered or
        /// recorded as a dry run. What a server's step-duration histogram is fed.
        duration: Option<StdDuration>,
    },
    RetryIn {
        step: &'a Step,
        delay: StdDuration,
    },
    Waiting {
        step: &'a Step,
        what: String,
    },
    ApprovalVoided {
        gate: &'a Step,
    },
    NeedsAttention {
        step: &'a Step,
    },
    RolledBack,
    Finished {
        status: RunStatus,
    },
}

/// Receives a driver's progress.
pub trait Observer: Send + Sync {
    fn progress(&self, run: &RunRecord, event: Progress<'_>);
}

/// An observer that ignores everything.
#[derive(Debug)]
pub struct Quiet;

impl Observer for Quiet {
    fn progress(&self, _: &RunRecord, _: Progress<'_>) {}
}

/// Why a driver stopped driving a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriveEnd {
    /// The run reached a state that needs people or is finished.
    Settled(RunStatus),
    /// The driver was asked to stop; the run is still `running` and can be resumed.
    Stopped,
}

/// Steady's engine for one process: publishes runbooks, starts, drives and answers runs
/// through one `Store`. Cheap to share behind an `Arc`; every method may run concurrently.
#[derive(Debug)]
pub struct Engine {
    store: Arc<dyn Store>,
    config: EngineConfig,
    /// Where steps' effects happen: the [`World`], or a runbook test's stubs.
    effects: Arc<dyn Effects>,
    runbooks: Mutex<cache::RunbookCache>,
    /// Where "now" comes from for deadlines, leases and timestamps: the system's clock, or a
    /// test's [`TestClock`](crate::clock::TestClock).
    clock: Arc<dyn Clock>,
}

/// The current time as stored, by the system's clock: UTC, microseconds. What the web crate
/// and the CLI read; the engine reads its own [`Clock`].
pub fn now() -> Timestamp {
    SystemClock.now()
}

impl Engine {
    /// An engine on `store`, driving runs as `config.node`.
    pub fn new(store: Arc<dyn Store>, config: EngineConfig) -> Engine {
        Engine::with_clock(store, config, Arc::new(SystemClock))
    }

    /// An engine that reads the time from `clock` (a test's manual clock, say).
    pub fn with_clock(
        store: Arc<dyn Store>,
        config: EngineConfig,
        clock: Arc<dyn Clock>,
    ) -> Engine {
        Engine::with_effects(store, config, clock, Arc::new(World::default()))
    }

    /// An engine whose steps' effects happen through `effects` instead of the world: what
    /// `steady test` runs a runbook's cases with.
    pub fn with_effects(
        store: Arc<dyn Store>,
        config: EngineConfig,
        clock: Arc<dyn Clock>,
        effects: Arc<dyn Effects>,
    ) -> Engine {
        Engine { store, config, effects, runbooks: Mutex::default(), clock }
    }

    /// The current time by this engine's clock.
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// This engine's clock, for what must keep the same time (the web crate's sessions).
    pub fn clock(&self) -> Arc<dyn Clock> {
        self.clock.clone()
    }

    /// `duration` from now by this engine's clock; the end of time when that overflows.
    pub(crate) fn later(&self, duration: StdDuration) -> Timestamp {
        self.clock.later(duration)
    }

    /// A lease on a run for this node, from now for the configured lease time: what a driver
    /// takes, and what a run driven here next is created or taken under.
    pub(crate) fn lease_here(&self) -> Lease {
        Lease { owner: self.config.node.clone(), expires_at: self.later(self.config.lease) }
    }

    /// The store every run lives in.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// How this process drives runs.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// The runbook a run follows, parsed from the version it pinned.
    pub async fn runbook(&self, name: &str, version: u32) -> Result<Arc<Runbook>, EngineError> {
        let key = (name.to_owned(), version);
        if let Some(runbook) = self.runbooks.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
            return Ok(runbook.clone());
        }
        let stored = self
            .store
            .runbook_version(name, Some(version))
            .await?
            .ok_or_else(|| EngineError::NoSuchRunbook(name.to_owned()))?;
        let parsed = runbook::parse(&stored.source);
        let runbook = parsed.runbook.ok_or_else(|| EngineError::InvalidStoredRunbook {
            name: name.to_owned(),
            version,
            message: parsed.diagnostics.first().map(|d| d.message.clone()).unwrap_or_default(),
        })?;
        let runbook = Arc::new(runbook);
        self.runbooks.lock().unwrap_or_else(|e| e.into_inner()).insert(key, runbook.clone());
        Ok(runbook)
    }

    /// Keeps `runbook`, already parsed, as version `version` of its name: what a runbook test
    /// does so that its cases do not each parse the runbook again.
    pub(crate) fn remember(&self, version: u32, runbook: Arc<Runbook>) {
        let key = (runbook.name.clone(), version);
        self.runbooks.lock().unwrap_or_else(|e| e.into_inner()).insert(key, runbook);
    }

    async fn snapshot(&self, run_id: Uuid) -> Result<(RunSnapshot, Arc<Runbook>), EngineError> {
        let snapshot = self.store.run(run_id).await?.ok_or(EngineError::NoSuchRun(run_id))?;
        let runbook = self.runbook(&snapshot.run.runbook, snapshot.run.version).await?;
        Ok((snapshot, runbook))
    }
}

/// An empty change computed from `snapshot`: the store refuses it if the run moved on.
fn transition_from(snapshot: &RunSnapshot) -> Transition {
    Transition { revision: snapshot.run.revision, ..Transition::default() }
}

/// The audit event of a run ending with `status`.
fn finished_event(run_id: Uuid, status: RunStatus) -> NewEvent {
    NewEvent::typed(&Actor::steady(), Some(run_id), AuditData::RunFinished(RunFinished { status }))
}
