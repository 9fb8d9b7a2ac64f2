//! Starting a run: its parameters resolved and checked, its role holders checked, its lock key
//! rendered, and the run created with every step pending.

use uuid::Uuid;

use crate::audit::{AuditData, NewEvent, RoleHolder, RunStarted};
use crate::params::{self, ParamValues};
use crate::run::*;
use crate::runbook::Runbook;
use crate::secrets::Secrets;
use crate::template::{self, Context, Target};

use crate::engine::{Engine, EngineError};

/// A run to start.
#[derive(Debug, Clone)]
pub struct StartRun {
    pub runbook: String,
    /// The latest version when `None`.
    pub version: Option<u32>,
    /// Parameter values as text, as typed on a command line or in a form.
    pub params: Vec<(String, String)>,
    pub mode: RunMode,
    /// A person's run, or a verification Steady starts on a runbook's schedule.
    pub origin: RunOrigin,
    pub actor: Actor,
    pub assignments: Vec<Assignment>,
}

impl Engine {
    /// Creates a run of the latest (or the given) version with its steps pending. It holds
    /// the runbook's lock key from now until it ends.
    pub async fn start_run(&self, start: StartRun) -> Result<Uuid, EngineError> {
        self.start_run_as(start, Uuid::now_v7(), None).await
    }

    /// [`Engine::start_run`] for a run this process drives itself (`steady run`): created
    /// under this node's lease, so that a server polling the same database for runs without a
    /// driver cannot take it first and run its steps with the server's environment and
    /// secrets. Should this process die before driving it, the lease expires and the run is
    /// taken over like any other.
    pub async fn start_run_here(&self, start: StartRun) -> Result<Uuid, EngineError> {
        self.start_run_as(start, Uuid::now_v7(), Some(self.lease_here())).await
    }

    /// [`Engine::start_run`], with the id the run gets (a verification's id is recorded with
    /// its period before the run exists) and the lease it is created under, if any.
    pub(in crate::engine) async fn start_run_as(
        &self,
        start: StartRun,
        id: Uuid,
        lease: Option<Lease>,
    ) -> Result<Uuid, EngineError> {
        let stored = self
            .store
            .runbook_version(&start.runbook, start.version)
            .await?
            .ok_or_else(|| EngineError::NoSuchRunbook(start.runbook.clone()))?;
        let runbook = self.runbook(&stored.name, stored.version).await?;
        // What people type is stored; NUL cannot be (see `make_storable`).
        let texts: Vec<(String, String)> = start
            .params
            .iter()
            .map(|(key, value)| {
                let (mut key, mut value) = (key.clone(), value.clone());
                make_storable(&mut key);
                make_storable(&mut value);
                (key, value)
            })
            .collect();
        let params = params::resolve(&runbook, &texts).map_err(EngineError::Params)?;
        let secrets =
            Secrets::for_runbook(&runbook, &self.config.secrets).map_err(EngineError::Secrets)?;
        secrets
            .check_params(params.iter().map(|(name, value)| (name.as_str(), value.to_string())))
            .map_err(EngineError::Secrets)?;
        for assignment in &start.assignments {
            if runbook.role(&assignment.role).is_none() {
                return Err(EngineError::NoSuchRole(assignment.role.clone()));
            }
            self.check_person(&start.actor, &assignment.person).await?;
        }
        // A dry run never takes the lock, so it never blocks a live run.
        let lock_key = match start.mode {
            RunMode::DryRun => None,
            _ => lock_key(&runbook, &params)?,
        };
        let at = self.now();
        let run = RunRecord {
            id,
            runbook: stored.name.clone(),
            version: stored.version,
            sha256: stored.sha256.clone(),
            mode: start.mode,
            origin: start.origin,
            status: RunStatus::Running,
            phase: Phase::Main,
            started_by: start.actor.clone(),
            commander: start.actor.clone(),
            params: params.clone(),
            lock_key: lock_key.clone(),
            created_at: at,
            updated_at: at,
            finished_at: None,
            lease,
            revision: 0,
            dry_run: None,
        };
        let steps = StepState::all_pending(&runbook);
        let started = RunStarted {
            runbook: stored.name.clone(),
            version: stored.version,
            sha256: stored.sha256.clone(),
            mode: start.mode,
            params,
            lock: lock_key,
            assignments: start
                .assignments
                .iter()
                .map(|a| RoleHolder { role: a.role.clone(), person: a.person.clone() })
                .collect(),
            origin: start.origin,
        };
        let event = NewEvent::typed(&start.actor, Some(id), AuditData::RunStarted(started));
        self.store.create_run(NewRun { run, steps, assignments: start.assignments, event }).await?;
        Ok(id)
    }
}

/// The most bytes a rendered lock key has: a key is compared and indexed, and a parameter
/// from outside (an alert's label) must not make it unstorable.
pub const MAX_LOCK_KEY_BYTES: usize = 512;

/// The runbook's lock key rendered with `params`, or `None` when it has no `lock`.
///
/// Errors: `LockKey` when it cannot be rendered, or is longer than [`MAX_LOCK_KEY_BYTES`].
pub(in crate::engine) fn lock_key(
    runbook: &Runbook,
    params: &ParamValues,
) -> Result<Option<String>, EngineError> {
    let Some(lock) = &runbook.lock else { return Ok(None) };
    let key = template::render(lock, Target::Text, &Context::offline(runbook, params))
        .map_err(|error| EngineError::LockKey(error.to_string()))?;
    if key.len() > MAX_LOCK_KEY_BYTES {
        return Err(EngineError::LockKey(format!(
            "it is {} bytes long; a lock key has at most {MAX_LOCK_KEY_BYTES}",
            key.len()
        )));
    }
    Ok(Some(key))
}
