//! The `Store` trait: everything the engine needs kept durably, as the few traits it is made
//! of (`Runbooks`, `People`, `Runs`, `Leases`, `Audit`, `Notifications`, `Cluster`,
//! `Verifications`). The engine
//! defines them; the `steady-storage` crate implements them for SQLite and PostgreSQL, mapping
//! its own errors.

pub mod memory;

use async_trait::async_trait;
use uuid::Uuid;

use crate::audit::{AuditEvent, NewEvent, Verification};
use crate::rehearsal::{Rehearsal, RehearsalQuery};
use crate::run::{
    Actor, Lease, NewRun, RunFilter, RunRecord, RunSnapshot, RunStatus, RunbookVersion, Timestamp,
    Transition,
};
use crate::verification::{VerificationSlot, VerificationState};

/// Why a store refused or failed an operation: the variants callers branch on.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The run changed since the transition was computed: reload and decide again.
    #[error("the run changed while this change was being made")]
    Conflict,
    /// The lease on the run is not (or no longer) held by this driver.
    #[error("the lease on this run is held by someone else")]
    LeaseLost,
    /// Another active run holds the lock key.
    #[error("lock `{key}` is held by run {run_id}")]
    LockHeld { key: String, run_id: Uuid },
    #[error("no such run {0}")]
    NoSuchRun(Uuid),
    /// Something with that name already exists (a user).
    #[error("`{0}` already exists")]
    Exists(String),
    /// The change would lock people out: an admin disabling their own account, or the last
    /// enabled admin.
    #[error("{0}")]
    LockOut(String),
    /// A value the database cannot hold, such as text with a NUL character in PostgreSQL:
    /// the caller's input is wrong, not the database.
    #[error("{0}")]
    Unstorable(String),
    /// The database could not be reached or refused the operation.
    #[error("database: {0}")]
    Database(String),
    /// A stored value could not be read back: a corrupt row or a newer schema.
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
}

/// Which audit events to read, in `seq` order (or newest first).
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub run_id: Option<Uuid>,
    /// Only events of runs whose id starts with this: lowercase hex digits and dashes only
    /// (what a page shows of an id), so that it never holds a `LIKE` wildcard.
    pub run_prefix: Option<String>,
    pub actor: Option<Actor>,
    pub action: Option<String>,
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
    /// Only events after this `seq`, for paging.
    pub after_seq: Option<i64>,
    /// Only events before this `seq`, for paging newest first.
    pub before_seq: Option<i64>,
    /// The newest event first instead of chain order, as people read a log.
    pub newest_first: bool,
    pub limit: Option<u32>,
}

/// A `steady serve` process as the database knows it: it says it is alive every few seconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRecord {
    /// The node's lease-owner name, `serve:<host>:<pid>`.
    pub id: String,
    /// Where it serves HTTP, as it was told to listen.
    pub address: String,
    pub started_at: Timestamp,
    pub last_seen: Timestamp,
}

/// Hints that the database changed, made by this process or, where the database can say so
/// (PostgreSQL's `LISTEN/NOTIFY`), by another. A hint can be missed (another process writing
/// SQLite, a dropped listener connection), so whoever waits on one also polls now and then.
#[derive(Debug, Clone)]
pub struct Changes {
    /// Bumped when audit events were appended: what live event streams wait on.
    pub events: tokio::sync::watch::Receiver<u64>,
    /// Bumped when a run may need a driver (started, answered, decided, lease given up):
    /// what executors wait on.
    pub work: tokio::sync::watch::Receiver<u64>,
}

/// The sending side of [`Changes`], kept by a store.
#[derive(Debug)]
pub struct ChangeSignals {
    events: tokio::sync::watch::Sender<u64>,
    work: tokio::sync::watch::Sender<u64>,
}

impl Default for ChangeSignals {
    fn default() -> Self {
        ChangeSignals {
            events: tokio::sync::watch::Sender::new(0),
            work: tokio::sync::watch::Sender::new(0),
        }
    }
}

impl ChangeSignals {
    pub fn events_appended(&self) {
        self.events.send_modify(|count| *count = count.wrapping_add(1));
    }

    pub fn work_available(&self) {
        self.work.send_modify(|count| *count = count.wrapping_add(1));
    }

    pub fn subscribe(&self) -> Changes {
        Changes { events: self.events.subscribe(), work: self.work.subscribe() }
    }
}

/// Where [`Runs::file_alert`] put an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filed {
    /// Added to this proposal or active run, which has the alert's subject.
    Added(Uuid),
    /// No run had the subject: the proposal given was created.
    Proposed(Uuid),
    /// No run had the subject, and there was no proposal to make (a resolved alert).
    Unmatched,
}

/// What publishing a runbook source did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Published {
    /// The content is new: stored as this version.
    New(RunbookVersion),
    /// The content equals the latest version: nothing was stored.
    Unchanged(RunbookVersion),
}

/// What publishing `source` (with `tests` and the author's `message`) as runbook `name` makes
/// after its `latest` version: that version again when neither the source nor the tests
/// changed, else the next one. Every store decides a publication so; only storing it differs.
pub fn next_version(
    latest: Option<&RunbookVersion>,
    name: &str,
    source: &str,
    by: &Actor,
    at: Timestamp,
    message: Option<&str>,
    tests: Option<&str>,
) -> Published {
    let sha256 = crate::audit::sha256_hex(source.as_bytes());
    if let Some(latest) =
        latest.filter(|latest| latest.sha256 == sha256 && latest.tests.as_deref() == tests)
    {
        return Published::Unchanged(latest.clone());
    }
    Published::New(RunbookVersion {
        name: name.to_owned(),
        version: latest.map_or(1, |latest| latest.version + 1),
        sha256,
        source: source.to_owned(),
        published_by: by.clone(),
        published_at: at,
        message: message.map(str::to_owned),
        tests: tests.map(str::to_owned),
    })
}

/// The audit event of a new runbook version, stored with it.
pub fn published_event(version: &RunbookVersion) -> NewEvent {
    let published = crate::audit::RunbookPublished {
        runbook: version.name.clone(),
        version: version.version,
        sha256: version.sha256.clone(),
        tests_sha256: version
            .tests
            .as_deref()
            .map(|tests| crate::audit::sha256_hex(tests.as_bytes())),
    };
    NewEvent::typed(
        &version.published_by,
        None,
        crate::audit::AuditData::RunbookPublished(published),
    )
}

/// Everything the engine keeps durably, as one object: what `Arc<dyn Store>` names. Each part
/// is its own trait so that a reader sees which methods belong together; anything that
/// implements all of them is a `Store`.
pub trait Store:
    Runbooks
    + People
    + Runs
    + Leases
    + Audit
    + Notifications
    + Cluster
    + Verifications
    + std::fmt::Debug
{
}

impl<T> Store for T where
    T: Runbooks
        + People
        + Runs
        + Leases
        + Audit
        + Notifications
        + Cluster
        + Verifications
        + std::fmt::Debug
        + ?Sized
{
}

/// Published runbooks: every version of each, by name, immutable once stored.
#[async_trait]
pub trait Runbooks: Send + Sync {
    /// Stores `source` as the next version of `name` unless it equals the latest version,
    /// with its audit event.
    async fn publish(
        &self,
        name: &str,
        source: &str,
        by: &Actor,
        at: Timestamp,
    ) -> Result<Published, StoreError> {
        self.publish_with_message(name, source, by, at, None, None).await
    }

    /// [`Runbooks::publish`], keeping the author's `message` about what changed and the test
    /// file that passed against it (`tests`) with the new version. The latest version is kept
    /// as it was when both its source and its tests are the same.
    async fn publish_with_message(
        &self,
        name: &str,
        source: &str,
        by: &Actor,
        at: Timestamp,
        message: Option<&str>,
        tests: Option<&str>,
    ) -> Result<Published, StoreError>;

    /// One version of a runbook, or the latest when `version` is `None`.
    async fn runbook_version(
        &self,
        name: &str,
        version: Option<u32>,
    ) -> Result<Option<RunbookVersion>, StoreError>;

    /// The names of every published runbook, sorted.
    async fn runbook_names(&self) -> Result<Vec<String>, StoreError>;

    /// Every version of a runbook, oldest first.
    async fn runbook_versions(&self, name: &str) -> Result<Vec<RunbookVersion>, StoreError>;
}

/// The one question the engine asks about accounts; managing them is
/// [`Accounts`](crate::accounts::Accounts), which the engine does not need.
#[async_trait]
pub trait People: Send + Sync {
    /// Whether `name` is an existing, enabled user account of a person: only such a person may
    /// be given a run role or the command of a run. An alerting system's `trigger` account is
    /// no person: false.
    async fn enabled_user(&self, name: &str) -> Result<bool, StoreError>;
}

/// Runs and everything recorded of them (steps, attempts, votes, roles, notes), changed only
/// by guarded transitions.
#[async_trait]
pub trait Runs: Send + Sync {
    /// Creates a run with its steps and audit event; fails with `LockHeld` when another active
    /// run holds its lock key.
    async fn create_run(&self, new: NewRun) -> Result<(), StoreError>;

    /// Everything recorded of one run, read as one consistent snapshot; `None` when there is
    /// no such run.
    async fn run(&self, id: Uuid) -> Result<Option<RunSnapshot>, StoreError>;

    /// One run's own record, without its steps, attempts, votes or notes: one row however
    /// long the runbook, for a caller that needs only the run's runbook, version or status.
    /// `None` when there is no such run.
    async fn run_record(&self, id: Uuid) -> Result<Option<RunRecord>, StoreError>;

    /// Just a run's status: what a driver polls to notice a cancellation.
    async fn run_status(&self, id: Uuid) -> Result<Option<RunStatus>, StoreError>;

    /// Runs, newest first.
    async fn runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>, StoreError>;

    /// How many runs there are in each status.
    async fn count_runs_by_status(&self) -> Result<Vec<(RunStatus, u64)>, StoreError>;

    /// Finds a run by a prefix of its id, as people type them: at most 10, newest first.
    async fn find_run(&self, id_prefix: &str) -> Result<Vec<Uuid>, StoreError>;

    /// What the rehearsals of a runbook measured ([`RehearsalQuery`]): its succeeded live runs
    /// and drills of every version, newest first, each with how long its main steps and
    /// branches took when the query asks for steps. What counts, and how a step is measured,
    /// is said in [`crate::rehearsal`].
    async fn rehearsals(&self, query: &RehearsalQuery) -> Result<Vec<Rehearsal>, StoreError>;

    /// Applies a transition atomically; `Conflict` when the run's revision moved on, `LeaseLost`
    /// when the transition requires a lease its owner no longer holds.
    async fn commit(&self, run_id: Uuid, transition: Transition) -> Result<(), StoreError>;

    /// Files an alert on the run it concerns, in one transaction: `event` (its `run_id` filled
    /// in) is added to the proposal or active run whose [`RunRecord::subject`] is `subject`,
    /// the newest active run before a proposal; a proposal's idle time starts again `at`. When no
    /// run has the subject, `proposal` (a run with status `proposed` and its `run.proposed`
    /// event) is created instead, if given. At most one proposal per subject ever exists at
    /// once, however many deliveries race on however many nodes.
    async fn file_alert(
        &self,
        subject: &str,
        event: NewEvent,
        proposal: Option<NewRun>,
        at: Timestamp,
    ) -> Result<Filed, StoreError>;

    /// Commits `transition`, which makes a proposal an active run, unless another active run
    /// holds the proposal's lock key: `LockHeld`, and nothing changes. `Conflict` as
    /// [`Runs::commit`].
    async fn take_proposal(&self, run_id: Uuid, transition: Transition) -> Result<(), StoreError>;
}

/// Who drives a run: a lease on its row that one node holds at a time and renews while it
/// works, so that another node takes the run over when the holder goes silent.
#[async_trait]
pub trait Leases: Send + Sync {
    /// Takes the lease of a run that has none or whose lease expired before `now`, or renews
    /// one `owner` already holds. Returns whether `owner` now holds it.
    async fn acquire_lease(
        &self,
        run_id: Uuid,
        lease: &Lease,
        now: Timestamp,
    ) -> Result<bool, StoreError>;

    /// Extends a lease `owner` still holds; false when it no longer does (taken over, or
    /// released by someone who found it expired). Never takes a lease.
    async fn renew_lease(&self, run_id: Uuid, lease: &Lease) -> Result<bool, StoreError>;

    /// Gives the lease up, if `owner` holds it.
    async fn release_lease(&self, run_id: Uuid, owner: &str) -> Result<(), StoreError>;

    /// Active runs that need a driver: running with no lease or an expired one, and waiting
    /// runs whose gate or manual step is past its deadline.
    async fn runs_needing_a_driver(&self, now: Timestamp) -> Result<Vec<Uuid>, StoreError>;
}

/// The hash-chained audit log: appended with the change it records, never changed after.
#[async_trait]
pub trait Audit: Send + Sync {
    /// Appends events that belong to no run's transition (users, tokens, logins).
    async fn append_events(&self, events: Vec<NewEvent>) -> Result<(), StoreError>;

    /// The events a filter selects, in `seq` order (or newest first if it says so).
    async fn audit_events(&self, filter: &AuditFilter) -> Result<Vec<AuditEvent>, StoreError>;

    /// How many events a filter selects, ignoring its paging (`after_seq`, `before_seq`,
    /// `limit`).
    async fn count_audit_events(&self, filter: &AuditFilter) -> Result<u64, StoreError>;

    /// The `seq` of the newest audit event, 0 when there is none.
    async fn latest_seq(&self) -> Result<i64, StoreError>;

    /// Recomputes the whole chain in `seq` order.
    async fn verify_audit(&self) -> Result<Verification, StoreError>;
}

/// Where each notification target stands in the audit log, which is their durable outbox,
/// and which node delivers to it.
#[async_trait]
pub trait Notifications: Send + Sync {
    /// Where a notification target stands in the audit log: the last `seq` it was sent.
    async fn notification_cursor(&self, target: &str) -> Result<Option<i64>, StoreError>;

    /// Moves a target's cursor to `after_seq`, never back.
    async fn set_notification_cursor(&self, target: &str, after_seq: i64)
    -> Result<(), StoreError>;

    /// Takes or renews the right to deliver to a notification target, which one node holds at
    /// a time like a run's lease, so that several nodes do not each send every message.
    /// A target seen for the first time starts at the newest event. True when `lease.owner`
    /// now holds it.
    async fn claim_notification_target(
        &self,
        target: &str,
        lease: &Lease,
        now: Timestamp,
    ) -> Result<bool, StoreError>;
}

/// The `steady serve` processes sharing the database, and the hints that something changed.
#[async_trait]
pub trait Cluster: Send + Sync {
    /// Records that a server node is alive (inserting it the first time), and forgets nodes
    /// silent for a day: each start of a process is a new node.
    async fn heartbeat(&self, node: &NodeRecord) -> Result<(), StoreError>;

    /// Every node the database knows, oldest first; whether one is alive is read from
    /// `last_seen`.
    async fn nodes(&self) -> Result<Vec<NodeRecord>, StoreError>;

    /// Hints that the database changed; see [`Changes`].
    fn changes(&self) -> Changes;
}

/// Continuous verification: the periods of each runbook's `verify` schedule, claimed by one
/// node each, and where each runbook's verification stands.
#[async_trait]
pub trait Verifications: Send + Sync {
    /// Claims one period of a runbook's schedule for `slot.node`: true for exactly one caller
    /// per runbook and period start, whichever node and however many ask at once. Periods
    /// claimed over a day before this one are forgotten.
    async fn claim_verification_slot(&self, slot: &VerificationSlot) -> Result<bool, StoreError>;

    /// Where a runbook's verification stands; `None` before its first.
    async fn verification(&self, runbook: &str) -> Result<Option<VerificationState>, StoreError>;

    /// Where every runbook's verification stands, by runbook name.
    async fn verifications(&self) -> Result<Vec<VerificationState>, StoreError>;

    /// Records a verification that ended without a run (it could not start) and the events
    /// it calls for, in one transaction. A verification run's end is recorded by the
    /// transition that finishes it ([`Transition::verification`]).
    async fn record_verification(
        &self,
        state: &VerificationState,
        events: Vec<crate::audit::NewEvent>,
    ) -> Result<(), StoreError>;
}
