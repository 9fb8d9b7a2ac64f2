//! The engine: publishes runbooks, starts runs, drives them step by step under a lease, and
//! takes people's answers (approvals, manual steps, decisions, assignments, notes).
//!
//! Every change is computed from a snapshot of the run as a `Transition` and committed before
//! the effect it announces: a step is recorded `running` before its process starts, its result
//! before the next step starts, an approval before the caller is answered. A transition names
//! the run's revision it was computed from; when someone else changed the run meanwhile, the
//! store refuses it and the engine reloads and decides again.

mod cache;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use chrono::SubsecRound;
use serde_json::{Value, json};
use tokio::sync::watch;
use uuid::Uuid;

use crate::audit::{AuditAction, NewEvent, canonical_json, digest, new_id, object, sha256_hex};
use crate::machine::{self, Next, attention_step, governing_gate, guarded_steps, safe_to_repeat};
use crate::params::{self, ParamError};
use crate::plan::{self, Action};
use crate::run::*;
use crate::runbook::{self, OnTimeout, Runbook, Step, StepKind};
use crate::runner::{self, Effect, Ending, HttpBody, HttpClients, Stop};
use crate::secrets::{Secrets, SecretsError};
use crate::store::{Published, Store, StoreError};
use crate::template::{self, Context, RunFacts, SecretValues, Target};

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
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("no runbook named `{0}` has been published")]
    NoSuchRunbook(String),
    #[error("runbook `{name}` version {version} no longer validates: {message}")]
    InvalidStoredRunbook { name: String, version: u32, message: String },
    #[error("the runbook is invalid")]
    InvalidRunbook(Vec<crate::Diagnostic>),
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
    #[error("the run is {status}")]
    RunNotActive { status: RunStatus },
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

/// What publishing a file of the server's runbooks folder did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FolderFile {
    /// Its content was new: stored as this version.
    Published(RunbookVersion),
    /// It is the latest version already.
    Latest(RunbookVersion),
    /// It is an older stored version than the latest: nothing was stored.
    Behind { name: String, file: u32, latest: u32 },
}

/// A run to start.
#[derive(Debug, Clone)]
pub struct StartRun {
    pub runbook: String,
    /// The latest version when `None`.
    pub version: Option<u32>,
    /// Parameter values as text, as typed on a command line or in a form.
    pub params: Vec<(String, String)>,
    pub mode: RunMode,
    pub actor: Actor,
    pub assignments: Vec<Assignment>,
}

/// What a driver reports as it goes, for a terminal or a log.
#[derive(Debug, Clone)]
pub enum Progress<'a> {
    StepStarted { step: &'a Step, attempt: u32, rendered: &'a Value },
    StepEnded { step: &'a Step, status: StepStatus, attempt: u32, detail: Option<String> },
    RetryIn { step: &'a Step, delay: StdDuration },
    Waiting { step: &'a Step, what: String },
    ApprovalVoided { gate: &'a Step },
    NeedsAttention { step: &'a Step },
    RolledBack,
    Finished { status: RunStatus },
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

#[derive(Debug)]
pub struct Engine {
    store: Arc<dyn Store>,
    config: EngineConfig,
    http: HttpClients,
    runbooks: Mutex<cache::RunbookCache>,
}

/// The current time as stored: UTC, microseconds.
pub fn now() -> Timestamp {
    chrono::Utc::now().trunc_subsecs(6)
}

fn later(duration: StdDuration) -> Timestamp {
    chrono::Duration::from_std(duration)
        .ok()
        .and_then(|duration| now().checked_add_signed(duration))
        .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC)
}

impl Engine {
    pub fn new(store: Arc<dyn Store>, config: EngineConfig) -> Engine {
        Engine { store, config, http: HttpClients::new(), runbooks: Mutex::default() }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Stores a runbook's source as a new version when its content changed. The source must
    /// validate; warnings do not stop it.
    pub async fn publish(&self, source: &str, actor: &Actor) -> Result<Published, EngineError> {
        let parsed = runbook::parse(source);
        let Some(runbook) = parsed.runbook else {
            return Err(EngineError::InvalidRunbook(parsed.diagnostics));
        };
        Ok(self.store.publish(&runbook.name, source, actor, now()).await?)
    }

    /// Publishes a runbook file from the server's folder unless its content is already one of
    /// the runbook's stored versions: a restart never turns an older file back into the latest
    /// version over an author's newer one.
    pub async fn publish_from_folder(
        &self,
        source: &str,
        actor: &Actor,
    ) -> Result<FolderFile, EngineError> {
        let parsed = runbook::parse(source);
        let Some(runbook) = parsed.runbook else {
            return Err(EngineError::InvalidRunbook(parsed.diagnostics));
        };
        let sha256 = sha256_hex(source.as_bytes());
        let versions = self.store.runbook_versions(&runbook.name).await?;
        let (Some(stored), Some(latest)) =
            (versions.iter().find(|version| version.sha256 == sha256), versions.last())
        else {
            return Ok(match self.store.publish(&runbook.name, source, actor, now()).await? {
                Published::New(version) => FolderFile::Published(version),
                Published::Unchanged(version) => FolderFile::Latest(version),
            });
        };
        if stored.version == latest.version {
            Ok(FolderFile::Latest(latest.clone()))
        } else {
            Ok(FolderFile::Behind {
                name: runbook.name,
                file: stored.version,
                latest: latest.version,
            })
        }
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

    async fn snapshot(&self, run_id: Uuid) -> Result<(RunSnapshot, Arc<Runbook>), EngineError> {
        let snapshot = self.store.run(run_id).await?.ok_or(EngineError::NoSuchRun(run_id))?;
        let runbook = self.runbook(&snapshot.run.runbook, snapshot.run.version).await?;
        Ok((snapshot, runbook))
    }

    /// Creates a run of the latest (or the given) version with its steps pending. It holds
    /// the runbook's lock key from now until it ends.
    pub async fn start_run(&self, start: StartRun) -> Result<Uuid, EngineError> {
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
        let lock_key = match &runbook.lock {
            Some(lock) if start.mode != RunMode::DryRun => Some(
                template::render(lock, Target::Text, &Context::offline(&runbook, &params))
                    .map_err(|error| EngineError::LockKey(error.to_string()))?,
            ),
            _ => None,
        };
        let id = Uuid::now_v7();
        let at = now();
        let run = RunRecord {
            id,
            runbook: stored.name.clone(),
            version: stored.version,
            sha256: stored.sha256.clone(),
            mode: start.mode,
            status: RunStatus::Running,
            phase: Phase::Main,
            started_by: start.actor.clone(),
            commander: start.actor.clone(),
            params: params.clone(),
            lock_key: lock_key.clone(),
            created_at: at,
            updated_at: at,
            finished_at: None,
            lease: None,
            revision: 0,
        };
        let steps = [(Phase::Main, &runbook.steps), (Phase::Rollback, &runbook.rollback)]
            .into_iter()
            .flat_map(|(phase, steps)| {
                steps.iter().enumerate().map(move |(position, step)| {
                    StepState::pending(&step.id, phase, position as u32)
                })
            })
            .collect();
        let event = NewEvent::new(&start.actor, AuditAction::RunStarted, Some(id)).data(json!({
            "runbook": stored.name,
            "version": stored.version,
            "sha256": stored.sha256,
            "mode": start.mode.as_str(),
            "params": params,
            "lock": lock_key,
            "assignments": start.assignments.iter()
                .map(|a| json!({"role": a.role, "person": a.person.as_str()})).collect::<Vec<_>>(),
        }));
        self.store.create_run(NewRun { run, steps, assignments: start.assignments, event }).await?;
        Ok(id)
    }

    /// Refuses anyone but an existing, enabled user as a role holder or commander, so that a
    /// typo can never be handed a run. The local operator at a terminal may name themselves.
    async fn check_person(&self, actor: &Actor, person: &Actor) -> Result<(), EngineError> {
        if person.as_str().starts_with("local:") && person == actor {
            return Ok(());
        }
        let name = person.as_str().strip_prefix("user:");
        match name {
            Some(name) if self.store.enabled_user(name).await? => Ok(()),
            Some(name) => Err(EngineError::NoSuchPerson(name.to_owned())),
            None => Err(EngineError::NoSuchPerson(person.as_str().to_owned())),
        }
    }

    /// Applies a change people asked for, computed from a fresh snapshot each time the run
    /// moved on under it. `change` returns the transition to commit (if any) and the answer.
    async fn act<T>(
        &self,
        run_id: Uuid,
        change: impl Fn(
            &Runbook,
            &RunSnapshot,
            Timestamp,
        ) -> (Option<Transition>, Result<T, EngineError>),
    ) -> Result<T, EngineError> {
        for _ in 0..20 {
            let (snapshot, runbook) = self.snapshot(run_id).await?;
            let (transition, answer) = change(&runbook, &snapshot, now());
            let Some(mut transition) = transition else { return answer };
            transition.make_storable();
            match self.store.commit(run_id, transition).await {
                Ok(()) => return answer,
                Err(StoreError::Conflict) => continue,
                Err(error) => return Err(error.into()),
            }
        }
        Err(EngineError::Busy)
    }

    /// Approves a gate. When the quorum is reached the gate opens and the run needs a driver.
    pub async fn approve(
        &self,
        run_id: Uuid,
        step_id: &str,
        actor: &Actor,
        comment: Option<&str>,
    ) -> Result<StepStatus, EngineError> {
        self.answer_gate(run_id, step_id, actor, comment, true).await
    }

    /// Rejects a gate: one rejection ends it, and the step's `on_failure` decides what follows.
    pub async fn reject(
        &self,
        run_id: Uuid,
        step_id: &str,
        actor: &Actor,
        comment: Option<&str>,
    ) -> Result<StepStatus, EngineError> {
        self.answer_gate(run_id, step_id, actor, comment, false).await
    }

    async fn answer_gate(
        &self,
        run_id: Uuid,
        step_id: &str,
        actor: &Actor,
        comment: Option<&str>,
        approve: bool,
    ) -> Result<StepStatus, EngineError> {
        self.act(run_id, |runbook, snapshot, now| {
            let comment = comment.map(|text| self.people_text(runbook, text));
            let comment = comment.as_deref();
            let (step, state) = match waiting_step(runbook, snapshot, step_id) {
                Ok(found) => found,
                Err(error) => return (None, Err(error)),
            };
            let StepKind::Approval(gate) = &step.kind else {
                let error =
                    EngineError::WrongKind { step: step_id.to_owned(), expected: "an approval" };
                return (None, Err(error));
            };
            if state.deadline.is_some_and(|deadline| deadline <= now) {
                let transition = self.late_expiry(runbook, snapshot, step);
                return (
                    Some(transition),
                    Err(EngineError::GateTimedOut { step: step_id.to_owned() }),
                );
            }
            let eligible = snapshot.holds(actor, &gate.role.name)
                || state.escalated_to.as_deref().is_some_and(|role| snapshot.holds(actor, role));
            if !eligible {
                let role = state.escalated_to.clone().unwrap_or_else(|| gate.role.name.clone());
                return (None, Err(EngineError::NotEligible { actor: actor.clone(), role }));
            }
            if approve && *actor == snapshot.run.started_by && !gate.allow_self_approval {
                return (None, Err(EngineError::SelfApproval { actor: actor.clone() }));
            }
            if snapshot.live_votes(step_id).any(|vote| vote.actor == *actor) {
                let error =
                    EngineError::AlreadyAnswered { actor: actor.clone(), step: step_id.to_owned() };
                return (None, Err(error));
            }
            let bound = self.binding(runbook, snapshot, step);
            let vote = Vote {
                id: new_id(),
                step_id: step_id.to_owned(),
                actor: actor.clone(),
                approve,
                comment: comment.map(str::to_owned),
                digest: digest(&bound),
                bound,
                at: now,
                void: false,
            };
            let approvals = snapshot.live_votes(step_id).filter(|v| v.approve).count() as u32
                + u32::from(approve);
            let mut transition = transition_from(snapshot);
            let mut new_state = state.clone();
            let action =
                if approve { AuditAction::ApprovalGranted } else { AuditAction::ApprovalRejected };
            transition.events.push(
                NewEvent::new(actor, action, Some(snapshot.run.id)).step(step_id).data(json!({
                    "comment": comment,
                    "digest": vote.digest,
                    "approvals": approvals,
                    "quorum": gate.approvals,
                })),
            );
            if !approve || approvals >= gate.approvals {
                new_state.status =
                    if approve { StepStatus::Approved } else { StepStatus::Rejected };
                new_state.finished_at = Some(now);
                new_state.deadline = None;
                new_state.completed_by = Some(actor.clone());
                new_state.note = comment.map(str::to_owned);
                let mut run = RunChange::from(&snapshot.run);
                run.status = RunStatus::Running;
                transition.run = Some(run);
                transition.events.push(
                    NewEvent::new(actor, AuditAction::StepFinished, Some(snapshot.run.id))
                        .step(step_id)
                        .data(json!({ "status": new_state.status.as_str() })),
                );
            }
            let status = new_state.status;
            transition.steps.push(new_state);
            transition.votes.push(vote);
            (Some(transition), Ok(status))
        })
        .await
    }

    /// What a person wrote (a comment, a note), with the run's secrets masked: someone who
    /// pastes a credential into a note must not write it into the append-only audit log.
    fn people_text(&self, runbook: &Runbook, text: &str) -> String {
        Secrets::available_for(runbook, &self.config.secrets).mask(text)
    }

    /// What an approver approves: the run's parameters and the steps the gate guards, rendered
    /// as far as they can be before those steps run.
    fn binding(&self, runbook: &Runbook, snapshot: &RunSnapshot, gate: &Step) -> Value {
        let context = run_context(runbook, &Arc::new(snapshot.clone()), SecretValues::Masked, true);
        let steps: serde_json::Map<String, Value> =
            guarded_steps(runbook, snapshot.run.phase, &gate.id)
                .iter()
                .map(|step| {
                    let rendered = plan::render_action(step, &context)
                        .ok()
                        .and_then(|action| serde_json::to_value(&action).ok())
                        .map_or(Value::Null, |action| Value::String(canonical_json(&action)));
                    (step.id.clone(), rendered)
                })
                .collect();
        json!({
            "gate": gate.id,
            "params": digest(&serde_json::to_value(&snapshot.run.params).unwrap_or_default()),
            "steps": steps,
        })
    }

    /// What each gate of the run guards, rendered as its approvers see it (with placeholders
    /// for outputs not known yet): gate id → guarded step id → rendered action.
    pub fn approval_preview(
        &self,
        runbook: &Runbook,
        snapshot: &RunSnapshot,
    ) -> BTreeMap<String, BTreeMap<String, Value>> {
        let context = run_context(runbook, &Arc::new(snapshot.clone()), SecretValues::Masked, true);
        let mut preview = BTreeMap::new();
        for phase in [Phase::Main, Phase::Rollback] {
            for gate in machine::sequence(runbook, phase).iter().filter(|step| step.is_gate()) {
                let steps = guarded_steps(runbook, phase, &gate.id)
                    .iter()
                    .filter_map(|step| {
                        let action = plan::render_action(step, &context).ok()?;
                        Some((step.id.clone(), serde_json::to_value(&action).ok()?))
                    })
                    .collect();
                preview.insert(gate.id.clone(), steps);
            }
        }
        preview
    }

    /// Marks a waiting manual step done (`succeeded`) or failed, with a note.
    pub async fn complete_manual(
        &self,
        run_id: Uuid,
        step_id: &str,
        actor: &Actor,
        succeeded: bool,
        note: Option<&str>,
    ) -> Result<StepStatus, EngineError> {
        self.act(run_id, |runbook, snapshot, now| {
            let note = note.map(|text| self.people_text(runbook, text));
            let note = note.as_deref();
            let (step, state) = match waiting_step(runbook, snapshot, step_id) {
                Ok(found) => found,
                Err(error) => return (None, Err(error)),
            };
            let StepKind::Manual(manual) = &step.kind else {
                let error =
                    EngineError::WrongKind { step: step_id.to_owned(), expected: "a manual" };
                return (None, Err(error));
            };
            if !snapshot.holds(actor, &manual.role.name) {
                let error = EngineError::NotEligible {
                    actor: actor.clone(),
                    role: manual.role.name.clone(),
                };
                return (None, Err(error));
            }
            let mut new_state = state.clone();
            new_state.status = if succeeded { StepStatus::Succeeded } else { StepStatus::Failed };
            new_state.finished_at = Some(now);
            new_state.completed_by = Some(actor.clone());
            new_state.note = note.map(str::to_owned);
            let mut transition = transition_from(snapshot);
            let action =
                if succeeded { AuditAction::ManualCompleted } else { AuditAction::ManualFailed };
            transition.events.push(
                NewEvent::new(actor, action, Some(run_id))
                    .step(step_id)
                    .data(json!({ "note": note })),
            );
            let mut run = RunChange::from(&snapshot.run);
            run.status = RunStatus::Running;
            transition.run = Some(run);
            let status = new_state.status;
            transition.steps.push(new_state);
            (Some(transition), Ok(status))
        })
        .await
    }

    /// The commander's answer to a run that needs attention.
    pub async fn decide(
        &self,
        run_id: Uuid,
        actor: &Actor,
        decision: Decision,
    ) -> Result<RunStatus, EngineError> {
        self.act(run_id, |runbook, snapshot, now| {
            let run = &snapshot.run;
            if let Err(error) = may_command(run, actor) {
                return (None, Err(error));
            }
            if run.status != RunStatus::NeedsAttention {
                return (None, Err(EngineError::NothingToDecide { status: run.status }));
            }
            let Some(step) = attention_step(runbook, snapshot) else {
                return (None, Err(EngineError::NothingToDecide { status: run.status }));
            };
            let Some(state) = snapshot.step(&step.id) else {
                return (None, Err(EngineError::NoSuchStep(step.id.clone())));
            };
            let mut transition = transition_from(snapshot);
            let mut change = RunChange::from(run);
            change.status = RunStatus::Running;
            let mut new_state = state.clone();
            match decision {
                Decision::Retry => {
                    new_state.status = StepStatus::Pending;
                    new_state.attempts_before_round = state.attempt;
                    new_state.finished_at = None;
                    // A gate asked again starts afresh: earlier answers and escalation are void.
                    if step.is_gate() {
                        new_state.escalated_to = None;
                        new_state.deadline = None;
                        new_state.completed_by = None;
                        transition.voided_votes =
                            snapshot.live_votes(&step.id).map(|vote| vote.id).collect();
                    }
                }
                Decision::Skip if step.is_gate() => {
                    return (None, Err(EngineError::GateCannotBeSkipped { step: step.id.clone() }));
                }
                Decision::Skip => {
                    new_state.status = StepStatus::Skipped;
                    new_state.note = Some(format!("skipped by {actor}"));
                }
                Decision::Rollback if run.phase == Phase::Main => change.phase = Phase::Rollback,
                Decision::Rollback => {
                    return (None, Err(EngineError::NothingToDecide { status: run.status }));
                }
                Decision::Abort => {
                    change.status = RunStatus::Failed;
                    change.finished_at = Some(now);
                    change.release_lease = true;
                }
            }
            transition.events.push(
                NewEvent::new(actor, AuditAction::DecisionTaken, Some(run.id))
                    .step(&step.id)
                    .data(json!({ "decision": decision.as_str() })),
            );
            if decision == Decision::Abort {
                transition.events.push(finished_event(run.id, RunStatus::Failed));
            }
            if new_state != *state {
                transition.steps.push(new_state);
            }
            let status = change.status;
            transition.run = Some(change);
            (Some(transition), Ok(status))
        })
        .await
    }

    /// Gives a run role to a person, or takes it away. Only the commander may.
    pub async fn assign(
        &self,
        run_id: Uuid,
        actor: &Actor,
        role: &str,
        person: &Actor,
        assign: bool,
    ) -> Result<(), EngineError> {
        // Taking a role away from anyone is allowed: it cleans up after a departed person.
        if assign {
            self.check_person(actor, person).await?;
        }
        self.act(run_id, |runbook, snapshot, _| {
            if let Err(error) = may_command(&snapshot.run, actor) {
                return (None, Err(error));
            }
            if runbook.role(role).is_none() {
                return (None, Err(EngineError::NoSuchRole(role.to_owned())));
            }
            if snapshot.holds(person, role) == assign {
                return (None, Ok(()));
            }
            let mut transition = transition_from(snapshot);
            let assignment = Assignment { role: role.to_owned(), person: person.clone() };
            let action =
                if assign { AuditAction::RoleAssigned } else { AuditAction::RoleUnassigned };
            transition.events.push(
                NewEvent::new(actor, action, Some(run_id))
                    .data(json!({ "role": role, "person": person.as_str() })),
            );
            if assign {
                transition.assign.push(assignment)
            } else {
                transition.unassign.push(assignment)
            }
            (Some(transition), Ok(()))
        })
        .await
    }

    /// Hands the run to another commander, who must be an existing, enabled user.
    pub async fn transfer_command(
        &self,
        run_id: Uuid,
        actor: &Actor,
        to: &Actor,
    ) -> Result<(), EngineError> {
        self.check_person(actor, to).await?;
        self.change_commander(run_id, actor, to, Authority::Commander).await
    }

    /// An admin takes command of an active run, whoever commands it, so that no run is ever
    /// left without a commander. The caller checked that `admin` holds the global role; it is
    /// audited as a transfer made by the admin.
    pub async fn take_command(&self, run_id: Uuid, admin: &Actor) -> Result<(), EngineError> {
        self.check_person(admin, admin).await?;
        self.change_commander(run_id, admin, admin, Authority::Admin).await
    }

    async fn change_commander(
        &self,
        run_id: Uuid,
        actor: &Actor,
        to: &Actor,
        authority: Authority,
    ) -> Result<(), EngineError> {
        self.act(run_id, |_, snapshot, _| {
            match authority {
                Authority::Commander => {
                    if let Err(error) = may_command(&snapshot.run, actor) {
                        return (None, Err(error));
                    }
                }
                Authority::Admin if !snapshot.run.status.is_active() => {
                    return (None, Err(EngineError::RunNotActive { status: snapshot.run.status }));
                }
                Authority::Admin if snapshot.run.commander == *to => return (None, Ok(())),
                Authority::Admin => {}
            }
            let mut transition = transition_from(snapshot);
            let mut change = RunChange::from(&snapshot.run);
            change.commander = to.clone();
            transition.run = Some(change);
            transition.events.push(
                NewEvent::new(actor, AuditAction::CommanderTransferred, Some(run_id)).data(
                    match authority {
                        Authority::Commander => json!({
                            "from": snapshot.run.commander.as_str(),
                            "to": to.as_str(),
                        }),
                        Authority::Admin => json!({
                            "from": snapshot.run.commander.as_str(),
                            "to": to.as_str(),
                            "taken_by_admin": true,
                        }),
                    },
                ),
            );
            (Some(transition), Ok(()))
        })
        .await
    }

    /// Adds a participant's note to the run's timeline.
    pub async fn add_note(
        &self,
        run_id: Uuid,
        actor: &Actor,
        step_id: Option<&str>,
        text: &str,
    ) -> Result<(), EngineError> {
        self.act(run_id, |runbook, snapshot, now| {
            let text = self.people_text(runbook, text);
            let text = text.as_str();
            let participant = *actor == snapshot.run.commander
                || *actor == snapshot.run.started_by
                || snapshot.assignments.iter().any(|a| a.person == *actor)
                || actor.as_str().starts_with("local:");
            if !participant {
                return (None, Err(EngineError::NotParticipant { actor: actor.clone() }));
            }
            if let Some(step_id) = step_id
                && find_step(runbook, step_id).is_none()
            {
                return (None, Err(EngineError::NoSuchStep(step_id.to_owned())));
            }
            let mut transition = transition_from(snapshot);
            let note = Note {
                id: new_id(),
                step_id: step_id.map(str::to_owned),
                author: actor.clone(),
                text: text.to_owned(),
                at: now,
            };
            let mut event = NewEvent::new(actor, AuditAction::NoteAdded, Some(run_id))
                .data(json!({ "text": text }));
            event.step_id = note.step_id.clone();
            transition.events.push(event);
            transition.notes.push(note);
            (Some(transition), Ok(()))
        })
        .await
    }

    /// Cancels an active run. A step that is running is stopped by its driver, which notices
    /// within a second.
    pub async fn cancel(&self, run_id: Uuid, actor: &Actor) -> Result<(), EngineError> {
        self.act(run_id, |_, snapshot, now| {
            let run = &snapshot.run;
            if let Err(error) = may_command(run, actor) {
                return (None, Err(error));
            }
            if !run.status.is_active() {
                return (None, Err(EngineError::RunNotActive { status: run.status }));
            }
            let mut transition = transition_from(snapshot);
            let mut change = RunChange::from(run);
            change.status = RunStatus::Cancelled;
            change.finished_at = Some(now);
            transition.run = Some(change);
            for state in &snapshot.steps {
                if matches!(state.status, StepStatus::Waiting | StepStatus::Pending)
                    && state.phase == run.phase
                {
                    let mut cancelled = state.clone();
                    cancelled.status = StepStatus::Cancelled;
                    cancelled.deadline = None;
                    transition.steps.push(cancelled);
                }
            }
            transition.events.push(NewEvent::new(actor, AuditAction::RunCancelled, Some(run.id)));
            (Some(transition), Ok(()))
        })
        .await
    }

    /// Drives a run until it needs people, finishes, or `stop` asks the driver to go. Takes
    /// the run's lease first; fails with `LeaseHeld` when another live driver has it.
    pub async fn drive(
        &self,
        run_id: Uuid,
        observer: &dyn Observer,
        stop: watch::Receiver<Stop>,
    ) -> Result<DriveEnd, EngineError> {
        let lease = Lease { owner: self.config.node.clone(), expires_at: later(self.config.lease) };
        if !self.store.acquire_lease(run_id, &lease, now()).await? {
            let (snapshot, _) = self.snapshot(run_id).await?;
            return match snapshot.run.lease {
                Some(held) => {
                    Err(EngineError::LeaseHeld { owner: held.owner, until: held.expires_at })
                }
                None => Err(EngineError::LeaseLost),
            };
        }
        let (steps_stop, steps_stop_rx) = watch::channel(Stop::No);
        let keeper = AbortOnDrop(tokio::spawn(keep_lease(
            self.store.clone(),
            run_id,
            self.config.clone(),
            stop,
            steps_stop,
        )));
        let result = match self.snapshot(run_id).await {
            Ok((snapshot, runbook)) => {
                let snapshot = Arc::new(snapshot);
                let secrets = Secrets::available_for(&runbook, &self.config.secrets);
                let mut driver = Driver {
                    engine: self,
                    run_id,
                    observer,
                    stop: steps_stop_rx,
                    snapshot,
                    runbook,
                    secrets,
                    revealed: Arc::new(HashMap::new()),
                };
                driver.run().await
            }
            Err(error) => Err(error),
        };
        // Stop renewing first, so that the keeper cannot take the lease back after it is given up.
        drop(keeper);
        let _ = self.store.release_lease(run_id, &self.config.node).await;
        result
    }

    /// A gate found past its deadline by a late answer rather than by a driver. The timeout is
    /// committed together with what follows it when that needs no driver (the run needs
    /// attention, or ends), so that the run never reads `running` with nobody driving it. What
    /// does need a driver (a rollback) is left `running` without a lease, where the server's
    /// executor and `steady resume` find it.
    fn late_expiry(&self, runbook: &Runbook, snapshot: &RunSnapshot, step: &Step) -> Transition {
        let mut transition = self.expiry(snapshot, step, None);
        let mut after = snapshot.clone();
        after.apply(&transition, now());
        let run_id = snapshot.run.id;
        let Some(change) = transition.run.as_mut() else { return transition };
        match machine::next(runbook, &after, now()) {
            Next::Attention(attention) => {
                change.status = RunStatus::NeedsAttention;
                transition.events.push(
                    NewEvent::new(&Actor::steady(), AuditAction::RunNeedsAttention, Some(run_id))
                        .step(&attention.id),
                );
            }
            Next::Finish(status) => {
                change.status = status;
                change.finished_at = Some(now());
                transition.events.push(finished_event(run_id, status));
            }
            _ => {}
        }
        transition
    }

    /// Transitions a waiting gate past its deadline: it escalates once if the runbook says so,
    /// otherwise it times out.
    fn expiry(&self, snapshot: &RunSnapshot, step: &Step, lease_owner: Option<&str>) -> Transition {
        let mut transition = transition_from(snapshot);
        transition.lease_owner = lease_owner.map(str::to_owned);
        let Some(state) = snapshot.step(&step.id) else { return transition };
        let mut new_state = state.clone();
        let escalation = match &step.kind {
            StepKind::Approval(gate) => match &gate.on_timeout {
                OnTimeout::Escalate { role, timeout } if state.escalated_to.is_none() => {
                    Some((role, timeout))
                }
                _ => None,
            },
            _ => None,
        };
        let run_id = snapshot.run.id;
        match escalation {
            Some((role, timeout)) => {
                new_state.escalated_to = Some(role.name.clone());
                new_state.deadline = Some(later(timeout.as_std()));
                transition.events.push(
                    NewEvent::new(&Actor::steady(), AuditAction::GateEscalated, Some(run_id))
                        .step(&step.id)
                        .data(json!({ "to": role.name, "holders": holder_names(snapshot, &role.name) })),
                );
            }
            None => {
                new_state.status = StepStatus::TimedOut;
                new_state.finished_at = Some(now());
                new_state.deadline = None;
                let mut run = RunChange::from(&snapshot.run);
                run.status = RunStatus::Running;
                transition.run = Some(run);
                transition.events.push(
                    NewEvent::new(&Actor::steady(), AuditAction::GateTimedOut, Some(run_id))
                        .step(&step.id),
                );
            }
        }
        transition.steps.push(new_state);
        transition
    }
}

/// Aborts a task when dropped: a driver whose future is dropped (its process is dying) stops
/// renewing its lease, so that another process can take the run over.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Renews the lease while a driver works, and turns a cancelled run, a lost lease or the
/// caller's request into a stop for the running step.
async fn keep_lease(
    store: Arc<dyn Store>,
    run_id: Uuid,
    config: EngineConfig,
    mut outside: watch::Receiver<Stop>,
    steps_stop: watch::Sender<Stop>,
) {
    let tick = (config.lease / 3).min(StdDuration::from_secs(1));
    let mut held_until = later(config.lease);
    // Once the caller can no longer ask anything (its sender is gone), stop listening to it.
    let mut listening = true;
    loop {
        tokio::select! {
            () = tokio::time::sleep(tick) => {}
            changed = outside.changed(), if listening => {
                match changed {
                    Ok(()) => {
                        let _ = steps_stop.send(*outside.borrow_and_update());
                    }
                    Err(_) => listening = false,
                }
                continue;
            }
        }
        let lease = Lease { owner: config.node.clone(), expires_at: later(config.lease) };
        match store.renew_lease(run_id, &lease).await {
            Ok(true) => held_until = lease.expires_at,
            // Someone else took the run over, or let it go: stop touching it.
            Ok(false) => {
                let _ = steps_stop.send(Stop::Interrupt);
                return;
            }
            // A database hiccup: try again next tick, but never past the lease's own end.
            Err(_) if now() < held_until => continue,
            Err(_) => {
                let _ = steps_stop.send(Stop::Interrupt);
                return;
            }
        }
        if let Ok(Some(RunStatus::Cancelled)) = store.run_status(run_id).await {
            let _ = steps_stop.send(Stop::Cancel);
        }
    }
}

/// One drive of one run. It keeps the run's snapshot in memory and applies each transition it
/// commits, reloading only when someone else changed the run meanwhile.
struct Driver<'e> {
    engine: &'e Engine,
    run_id: Uuid,
    observer: &'e dyn Observer,
    stop: watch::Receiver<Stop>,
    snapshot: Arc<RunSnapshot>,
    runbook: Arc<Runbook>,
    /// The run's declared secrets: real values for effects, and the masker for everything kept.
    secrets: Secrets,
    /// Step id → the real output of its last attempt in this drive, where masking changed it:
    /// what `expect`, `check`, `when` and later templates read, never stored.
    revealed: Arc<HashMap<String, Arc<Revealed>>>,
}

/// The unmasked output of one attempt, kept in memory only.
#[derive(Debug)]
struct Revealed {
    attempt: u32,
    stdout: String,
    stderr: String,
}

impl Driver<'_> {
    fn owner(&self) -> &str {
        &self.engine.config.node
    }

    fn run_record(&self) -> &RunRecord {
        &self.snapshot.run
    }

    async fn reload(&mut self) -> Result<(), EngineError> {
        let (snapshot, runbook) = self.engine.snapshot(self.run_id).await?;
        self.snapshot = Arc::new(snapshot);
        self.runbook = runbook;
        Ok(())
    }

    async fn run(&mut self) -> Result<DriveEnd, EngineError> {
        loop {
            if matches!(*self.stop.borrow(), Stop::AfterStep | Stop::Interrupt) {
                return Ok(DriveEnd::Stopped);
            }
            let runbook = self.runbook.clone();
            match machine::next(&runbook, &self.snapshot, now()) {
                Next::Idle => return Ok(DriveEnd::Settled(self.run_record().status)),
                Next::Start(step) => match self.start(&runbook, step).await {
                    Err(error @ EngineError::Store(_)) => {
                        self.fail_unrecorded(step, &error).await?
                    }
                    other => other?,
                },
                Next::Recover(step) => self.recover(step).await?,
                Next::Expire(step) => {
                    let transition = self.engine.expiry(&self.snapshot, step, Some(self.owner()));
                    self.commit(transition).await?;
                }
                Next::Wait(step) => {
                    if self.run_record().status != RunStatus::Waiting {
                        self.change_run(
                            |change| {
                                change.status = RunStatus::Waiting;
                                change.release_lease = true;
                            },
                            AuditAction::RunWaiting,
                            Some(&step.id),
                        )
                        .await?;
                    }
                    let what = waiting_for(&self.snapshot, step);
                    self.observer.progress(self.run_record(), Progress::Waiting { step, what });
                    return Ok(DriveEnd::Settled(RunStatus::Waiting));
                }
                Next::Attention(step) => {
                    self.change_run(
                        |change| {
                            change.status = RunStatus::NeedsAttention;
                            change.release_lease = true;
                        },
                        AuditAction::RunNeedsAttention,
                        Some(&step.id),
                    )
                    .await?;
                    self.observer.progress(self.run_record(), Progress::NeedsAttention { step });
                    return Ok(DriveEnd::Settled(RunStatus::NeedsAttention));
                }
                Next::EnterRollback => {
                    self.change_run(
                        |change| change.phase = Phase::Rollback,
                        AuditAction::RunRollbackStarted,
                        None,
                    )
                    .await?;
                    self.observer.progress(self.run_record(), Progress::RolledBack);
                }
                Next::Finish(status) => {
                    let mut transition = self.transition();
                    let mut change = RunChange::from(self.run_record());
                    change.status = status;
                    change.finished_at = Some(now());
                    change.release_lease = true;
                    transition.run = Some(change);
                    transition.events.push(finished_event(self.run_id, status));
                    if self.commit(transition).await? {
                        self.observer.progress(self.run_record(), Progress::Finished { status });
                        return Ok(DriveEnd::Settled(status));
                    }
                }
            }
        }
    }

    fn transition(&self) -> Transition {
        let mut transition = transition_from(&self.snapshot);
        transition.lease_owner = Some(self.owner().to_owned());
        transition
    }

    /// Changes the run's own fields, with one audit event.
    async fn change_run(
        &mut self,
        edit: impl FnOnce(&mut RunChange),
        action: AuditAction,
        step_id: Option<&str>,
    ) -> Result<bool, EngineError> {
        let mut transition = self.transition();
        let mut change = RunChange::from(self.run_record());
        edit(&mut change);
        transition.run = Some(change);
        let mut event = NewEvent::new(&Actor::steady(), action, Some(self.run_id));
        event.step_id = step_id.map(str::to_owned);
        transition.events.push(event);
        self.commit(transition).await
    }

    /// Commits a transition computed from the snapshot. Returns false when the run changed
    /// meanwhile (a note, a cancellation): the snapshot is reloaded and the driver decides again.
    async fn commit(&mut self, mut transition: Transition) -> Result<bool, EngineError> {
        transition.make_storable();
        match self.engine.store.commit(self.run_id, transition.clone()).await {
            Ok(()) => {
                Arc::make_mut(&mut self.snapshot).apply(&transition, now());
                Ok(true)
            }
            Err(StoreError::Conflict) => {
                self.reload().await?;
                Ok(false)
            }
            Err(error) => Err(error.into()),
        }
    }

    /// Commits a change that records something that already happened, such as a step's
    /// result: it must land, so it is rebuilt from fresh state until it does.
    async fn record(
        &mut self,
        build: impl Fn(&RunSnapshot) -> Transition,
    ) -> Result<(), EngineError> {
        for _ in 0..50 {
            let mut transition = build(&self.snapshot);
            transition.revision = self.snapshot.run.revision;
            transition.lease_owner = Some(self.owner().to_owned());
            if self.commit(transition).await? {
                return Ok(());
            }
        }
        Err(EngineError::Busy)
    }

    /// The store refused to record a step starting or ending: the step fails with the store's
    /// error, once, rather than being left `running` for the next driver to run again and again.
    async fn fail_unrecorded(
        &mut self,
        step: &Step,
        error: &EngineError,
    ) -> Result<(), EngineError> {
        let message = format!("the database refused to record this step: {error}");
        let run_id = self.run_id;
        self.record(|fresh| {
            let mut transition = transition_from(fresh);
            let Some(state) = fresh.step(&step.id) else { return transition };
            let mut failed = state.clone();
            failed.status = StepStatus::Failed;
            failed.finished_at = Some(now());
            failed.note = Some(message.clone());
            transition.steps.push(failed);
            // The attempt recorded `running`, if it got that far, ends with the error.
            let attempt = fresh
                .attempt(&step.id, state.attempt)
                .filter(|_| state.status == StepStatus::Running)
                .map(|attempt| Attempt {
                    status: Some(StepStatus::Failed),
                    finished_at: Some(now()),
                    error: Some(message.clone()),
                    ..attempt.clone()
                });
            transition.attempts.extend(attempt);
            transition.events.push(
                NewEvent::new(&Actor::steady(), AuditAction::StepFinished, Some(run_id))
                    .step(&step.id)
                    .data(json!({
                        "attempt": state.attempt,
                        "status": StepStatus::Failed.as_str(),
                        "error": message,
                        "retry": false,
                    })),
            );
            transition
        })
        .await?;
        let attempt = self.snapshot.step(&step.id).map_or(0, |state| state.attempt);
        self.observer.progress(
            self.run_record(),
            Progress::StepEnded {
                step,
                status: StepStatus::Failed,
                attempt,
                detail: Some(message),
            },
        );
        Ok(())
    }

    /// A step found `running`: its driver died. Safe steps run again; others wait for a person.
    async fn recover(&mut self, step: &Step) -> Result<(), EngineError> {
        let Some(state) = self.snapshot.step(&step.id).cloned() else { return Ok(()) };
        let rerun = safe_to_repeat(step);
        let mut transition = self.transition();
        let mut new_state = state.clone();
        new_state.status = if rerun { StepStatus::Pending } else { StepStatus::Interrupted };
        new_state.finished_at = Some(now());
        if let Some(attempt) = self.snapshot.attempt(&step.id, state.attempt) {
            let mut attempt = attempt.clone();
            attempt.status = Some(StepStatus::Interrupted);
            attempt.finished_at = Some(now());
            attempt.error = Some("the process driving this step stopped while it ran".to_owned());
            transition.attempts.push(attempt);
        }
        transition.steps.push(new_state);
        let then = if rerun {
            "run again: the step is safe to repeat"
        } else {
            "wait for a decision: the step is not safe to repeat"
        };
        transition.events.push(
            NewEvent::new(&Actor::steady(), AuditAction::StepInterrupted, Some(self.run_id))
                .step(&step.id)
                .data(json!({ "attempt": state.attempt, "then": then })),
        );
        transition.events.push(
            NewEvent::new(&Actor::steady(), AuditAction::RunTakenOver, Some(self.run_id))
                .data(json!({ "by": self.owner() })),
        );
        if self.commit(transition).await? {
            let detail = if rerun {
                "safe to repeat: running it again"
            } else {
                "not safe to repeat: needs a decision"
            };
            self.observer.progress(
                self.run_record(),
                Progress::StepEnded {
                    step,
                    status: StepStatus::Interrupted,
                    attempt: state.attempt,
                    detail: Some(detail.to_owned()),
                },
            );
        }
        Ok(())
    }

    /// The context for what is stored and shown: secrets as `***`, outputs as stored.
    fn masked_context(&self) -> Context {
        run_context(&self.runbook, &self.snapshot, SecretValues::Masked, false)
    }

    /// The context for what is executed and judged: real secrets and real outputs.
    fn revealed_context(&self) -> Context {
        let results = SnapshotResults {
            snapshot: self.snapshot.clone(),
            revealed: Some(self.revealed.clone()),
        };
        run_context_with(
            &self.runbook,
            &self.snapshot,
            SecretValues::Revealed(self.secrets.values()),
            Arc::new(results),
            false,
        )
    }

    async fn start(&mut self, runbook: &Runbook, step: &Step) -> Result<(), EngineError> {
        let dry_run = self.run_record().mode == RunMode::DryRun;

        if let Some(when) = &step.when {
            if dry_run && depends_on_dry_steps(&self.snapshot, &when.source) {
                let note = "depends on a step that did not run in this dry run";
                return self.would_run(step, json!({ "when": when.source }), Some(note)).await;
            }
            match template::evaluate(when, &self.revealed_context()) {
                Ok(true) => {}
                Ok(false) => {
                    let note = format!("`when` was false: {}", when.source);
                    return self.settle(step, StepStatus::Skipped, Some(note)).await;
                }
                Err(error) => {
                    let note = format!(
                        "`when` could not be evaluated: {}",
                        self.unusable(&error.to_string())
                    );
                    return self.settle(step, StepStatus::Failed, Some(note)).await;
                }
            }
        }

        let rendered = match plan::render_action(step, &self.masked_context()) {
            Ok(action) => {
                // Rendered with `***` for secrets; masked again for what earlier outputs or
                // parameters could still carry in another form.
                let mut rendered = serde_json::to_value(&action).unwrap_or_default();
                self.secrets.mask_json(&mut rendered);
                rendered
            }
            Err(error) => {
                let note =
                    format!("could not render the step: {}", self.unusable(&error.to_string()));
                return self.settle(step, StepStatus::Failed, Some(note)).await;
            }
        };

        match &step.kind {
            StepKind::Manual(_) | StepKind::Approval(_) if dry_run => {
                self.would_run(step, rendered, None).await
            }
            StepKind::Manual(_) | StepKind::Approval(_) => {
                self.wait_for_people(step, rendered).await
            }
            StepKind::Check(expression) => {
                if dry_run && depends_on_dry_steps(&self.snapshot, &expression.source) {
                    let note = "depends on a step that did not run in this dry run";
                    return self.would_run(step, rendered, Some(note)).await;
                }
                let (status, error) = match template::evaluate(expression, &self.revealed_context())
                {
                    Ok(true) => (StepStatus::Succeeded, None),
                    Ok(false) => (
                        StepStatus::Failed,
                        Some(format!("check was false: {}", expression.source)),
                    ),
                    Err(error) => (StepStatus::Failed, Some(self.unusable(&error.to_string()))),
                };
                let attempt = Attempt {
                    step_id: step.id.clone(),
                    number: self.snapshot.step(&step.id).map_or(0, |s| s.attempt) + 1,
                    status: Some(status),
                    started_at: Some(now()),
                    finished_at: Some(now()),
                    error,
                    ..Attempt::default()
                };
                self.finish_attempt(step, rendered, attempt).await
            }
            StepKind::Run(_) | StepKind::Http(_) | StepKind::Sleep(_)
                if dry_run && !step.read_only =>
            {
                self.would_run(step, rendered, None).await
            }
            StepKind::Run(_) | StepKind::Http(_) | StepKind::Sleep(_) => {
                if self.approval_void(runbook, step, &rendered).await? {
                    return Ok(());
                }
                let (effect, env) = {
                    let revealed = self.revealed_context();
                    let effect = plan::render_action(step, &revealed).map(effect_of);
                    let env = self.step_env(step, &revealed);
                    (effect, env)
                };
                let effect = match effect {
                    Ok(Some(effect)) => effect,
                    Ok(None) => return Ok(()),
                    Err(error) => {
                        let note = format!(
                            "could not render the step: {}",
                            self.unusable(&error.to_string())
                        );
                        return self.settle(step, StepStatus::Failed, Some(note)).await;
                    }
                };
                let env = match env {
                    Ok(env) => env,
                    Err(note) => return self.settle(step, StepStatus::Failed, Some(note)).await,
                };
                self.execute(step, rendered, effect, env).await
            }
        }
    }

    /// Why a template or expression could not be used, masked, and naming the declared
    /// secrets this process has no value for (a run started elsewhere, taken over here).
    fn unusable(&self, error: &str) -> String {
        let mut note = self.secrets.mask(error);
        let missing = self.secrets.missing();
        if !missing.is_empty() {
            let names: Vec<String> =
                missing.iter().map(|name| format!("STEADY_SECRET_{name}")).collect();
            note.push_str(&format!(
                " (this process has no value for {}: secrets are never rendered empty)",
                names.join(", ")
            ));
        }
        note
    }

    /// The step's own `env`, rendered with real values. The runner adds only the few
    /// variables of Steady's environment a process needs (`runner::INHERITED_ENV`).
    fn step_env(&self, step: &Step, context: &Context) -> Result<Vec<(String, String)>, String> {
        let mut env = Vec::new();
        for (name, value) in &step.env {
            let value = template::render(value, Target::Text, context).map_err(|error| {
                format!("could not render env `{name}`: {}", self.unusable(&error.to_string()))
            })?;
            env.push((name.clone(), value));
        }
        Ok(env)
    }

    /// Records a step as what a dry run would have done.
    async fn would_run(
        &mut self,
        step: &Step,
        rendered: Value,
        note: Option<&str>,
    ) -> Result<(), EngineError> {
        let Some(state) = self.snapshot.step(&step.id) else { return Ok(()) };
        let mut transition = self.transition();
        let mut new_state = state.clone();
        new_state.status = StepStatus::WouldRun;
        new_state.rendered = Some(rendered.clone());
        new_state.note = note.map(str::to_owned);
        new_state.finished_at = Some(now());
        transition.steps.push(new_state);
        transition.events.push(
            NewEvent::new(&Actor::steady(), AuditAction::StepWouldRun, Some(self.run_id))
                .step(&step.id)
                .data(json!({ "rendered": rendered, "note": note })),
        );
        if self.commit(transition).await? {
            let detail = note.map(str::to_owned);
            self.observer.progress(
                self.run_record(),
                Progress::StepEnded { step, status: StepStatus::WouldRun, attempt: 0, detail },
            );
        }
        Ok(())
    }

    /// Ends a step without running it: skipped by `when`, or failed before it could start.
    async fn settle(
        &mut self,
        step: &Step,
        status: StepStatus,
        note: Option<String>,
    ) -> Result<(), EngineError> {
        let Some(state) = self.snapshot.step(&step.id) else { return Ok(()) };
        let attempt = state.attempt;
        let mut transition = self.transition();
        let mut new_state = state.clone();
        new_state.status = status;
        new_state.note = note.clone();
        new_state.finished_at = Some(now());
        transition.steps.push(new_state);
        let action = if status == StepStatus::Skipped {
            AuditAction::StepSkipped
        } else {
            AuditAction::StepFinished
        };
        transition.events.push(
            NewEvent::new(&Actor::steady(), action, Some(self.run_id))
                .step(&step.id)
                .data(json!({ "status": status.as_str(), "note": note })),
        );
        if self.commit(transition).await? {
            self.observer.progress(
                self.run_record(),
                Progress::StepEnded { step, status, attempt, detail: note },
            );
        }
        Ok(())
    }

    /// A gate or manual step: record what it waits for, and leave the run to the people. A
    /// waiting run holds no lease, task or process.
    async fn wait_for_people(&mut self, step: &Step, rendered: Value) -> Result<(), EngineError> {
        let Some(state) = self.snapshot.step(&step.id) else { return Ok(()) };
        let mut transition = self.transition();
        let mut new_state = state.clone();
        new_state.status = StepStatus::Waiting;
        new_state.started_at = Some(now());
        new_state.rendered = Some(rendered.clone());
        new_state.deadline = match &step.kind {
            StepKind::Approval(gate) => gate.timeout.map(|timeout| later(timeout.as_std())),
            _ => None,
        };
        transition.steps.push(new_state);
        let mut change = RunChange::from(self.run_record());
        change.status = RunStatus::Waiting;
        change.release_lease = true;
        transition.run = Some(change);
        let role = match &step.kind {
            StepKind::Approval(gate) => gate.role.name.clone(),
            StepKind::Manual(manual) => manual.role.name.clone(),
            _ => String::new(),
        };
        transition.events.push(
            NewEvent::new(&Actor::steady(), AuditAction::StepWaiting, Some(self.run_id))
                .step(&step.id)
                .data(json!({ "rendered": rendered, "role": role, "holders": holder_names(&self.snapshot, &role) })),
        );
        self.commit(transition).await.map(|_| ())
    }

    /// Checks, before a step behind a gate runs, that it still renders as its approvers saw
    /// it. Approvals that no longer match are void; when too few remain, the gate waits again.
    /// Returns whether the step must not run now.
    async fn approval_void(
        &mut self,
        runbook: &Runbook,
        step: &Step,
        rendered: &Value,
    ) -> Result<bool, EngineError> {
        let phase = self.run_record().phase;
        let Some(gate) = governing_gate(runbook, phase, &step.id) else { return Ok(false) };
        let StepKind::Approval(approval) = &gate.kind else { return Ok(false) };
        let Some(gate_state) = self.snapshot.step(&gate.id) else { return Ok(false) };
        match gate_state.status {
            StepStatus::Approved => {}
            // Skipped by its own `when`, or recorded by a dry run: nothing to bind to.
            StepStatus::Skipped | StepStatus::WouldRun => return Ok(false),
            // Validation and decisions keep a closed gate from being passed; should one ever
            // be, the steps it guards still do not run.
            _ => return Ok(true),
        }
        let actual = canonical_json(rendered);
        let stale: Vec<&Vote> = self
            .snapshot
            .live_votes(&gate.id)
            .filter(|vote| vote.approve)
            .filter(|vote| match vote.bound["steps"][&step.id].as_str() {
                Some(approved) => !template::matches_with_placeholders(approved, &actual),
                None => false,
            })
            .collect();
        if stale.is_empty() {
            return Ok(false);
        }
        let remaining =
            self.snapshot.live_votes(&gate.id).filter(|v| v.approve).count() - stale.len();
        let reopen = remaining < approval.approvals as usize;
        let mut transition = self.transition();
        transition.voided_votes = stale.iter().map(|vote| vote.id).collect();
        for vote in &stale {
            transition.events.push(
                NewEvent::new(&Actor::steady(), AuditAction::ApprovalVoided, Some(self.run_id))
                    .step(&gate.id)
                    .data(json!({
                        "approver": vote.actor.as_str(),
                        "digest": vote.digest,
                        "step": step.id,
                        "reason": "the step renders differently from what was approved",
                    })),
            );
        }
        if reopen {
            let mut reopened = gate_state.clone();
            reopened.status = StepStatus::Waiting;
            reopened.finished_at = None;
            reopened.completed_by = None;
            reopened.deadline = approval.timeout.map(|timeout| later(timeout.as_std()));
            transition.steps.push(reopened);
            let mut change = RunChange::from(self.run_record());
            change.status = RunStatus::Waiting;
            change.release_lease = true;
            transition.run = Some(change);
        }
        if !self.commit(transition).await? {
            return Ok(true);
        }
        self.observer.progress(self.run_record(), Progress::ApprovalVoided { gate });
        Ok(reopen)
    }

    /// Runs one attempt of a `run`, `http` or `sleep` step: `running` is committed before the
    /// effect starts, the result after it ends.
    async fn execute(
        &mut self,
        step: &Step,
        rendered: Value,
        effect: Effect,
        env: Vec<(String, String)>,
    ) -> Result<(), EngineError> {
        let Some(state) = self.snapshot.step(&step.id) else { return Ok(()) };
        let number = state.attempt + 1;
        let started_at = now();
        let mut transition = self.transition();
        let mut running = state.clone();
        running.status = StepStatus::Running;
        running.attempt = number;
        running.started_at = Some(started_at);
        running.finished_at = None;
        running.rendered = Some(rendered.clone());
        transition.steps.push(running);
        transition.attempts.push(Attempt {
            step_id: step.id.clone(),
            number,
            status: Some(StepStatus::Running),
            started_at: Some(started_at),
            ..Attempt::default()
        });
        transition.events.push(
            NewEvent::new(&Actor::steady(), AuditAction::StepStarted, Some(self.run_id))
                .step(&step.id)
                .data(json!({ "attempt": number, "rendered": rendered })),
        );
        // If the run changed meanwhile, nothing may start on stale state: decide again.
        if !self.commit(transition).await? {
            return Ok(());
        }
        self.observer.progress(
            self.run_record(),
            Progress::StepStarted { step, attempt: number, rendered: &rendered },
        );

        let timeout = match (&effect, step.timeout) {
            (Effect::Sleep(duration), _) => duration.saturating_add(StdDuration::from_secs(60)),
            (_, Some(timeout)) => timeout.as_std(),
            (_, None) => Step::DEFAULT_TIMEOUT,
        };
        // A little more than is stored, so that a secret straddling the limit is masked whole
        // before the output is cut.
        let capture = MAX_OUTPUT + self.secrets.capture_margin();
        let output =
            runner::execute(&effect, &env, timeout, &self.engine.http, capture, &mut self.stop)
                .await;
        let (attempt, revealed) = self.judge(step, number, started_at, output, timeout);
        if let Some(revealed) = revealed {
            Arc::make_mut(&mut self.revealed).insert(step.id.clone(), Arc::new(revealed));
        }
        self.finish_attempt(step, rendered, attempt).await
    }

    /// Turns what an effect produced into an attempt's result, by the step's `expect`. The
    /// verdict reads the real output; the attempt keeps it masked (masked first, then cut to
    /// `MAX_OUTPUT`). The real output comes back too when masking changed it, for the
    /// expressions and templates of later steps in this drive.
    fn judge(
        &self,
        step: &Step,
        number: u32,
        started_at: Timestamp,
        output: runner::Output,
        timeout: StdDuration,
    ) -> (Attempt, Option<Revealed>) {
        let real_stdout = String::from_utf8_lossy(&output.stdout);
        let trimmed = real_stdout.trim_end_matches(['\n', '\r']);
        let (stdout, stdout_truncated) =
            self.secrets.mask_capture(&output.stdout, output.stdout_truncated, MAX_OUTPUT);
        let (stderr, stderr_truncated) =
            self.secrets.mask_capture(&output.stderr, output.stderr_truncated, MAX_OUTPUT);
        let (status, error) = match output.ending {
            Ending::Completed => match &step.kind {
                StepKind::Run(_) => match output.exit_code {
                    None => (
                        StepStatus::Failed,
                        Some(format!("killed by {}", output.signal.unwrap_or("a signal"))),
                    ),
                    Some(code) => {
                        let expected: &[i32] = if step.expect.exit_code.is_empty() {
                            &[0]
                        } else {
                            &step.expect.exit_code
                        };
                        if !expected.contains(&code) {
                            (
                                StepStatus::Failed,
                                Some(format!("exit code {code}, expected {}", join(expected))),
                            )
                        } else if let Some(pattern) =
                            step.expect.stdout.as_ref().filter(|p| !p.is_match(trimmed))
                        {
                            (
                                StepStatus::Failed,
                                Some(format!("stdout does not match `{}`", pattern.as_str())),
                            )
                        } else {
                            (StepStatus::Succeeded, None)
                        }
                    }
                },
                StepKind::Http(_) => {
                    let code = output.http_status.unwrap_or(0);
                    let ok = if step.expect.status.is_empty() {
                        (200..300).contains(&code)
                    } else {
                        step.expect.status.contains(&code)
                    };
                    let expected = if step.expect.status.is_empty() {
                        "2xx".to_owned()
                    } else {
                        join(&step.expect.status)
                    };
                    if ok {
                        (StepStatus::Succeeded, None)
                    } else if let Some(location) = &output.location {
                        let location = self.secrets.mask(location);
                        (
                            StepStatus::Failed,
                            Some(format!(
                                "HTTP status {code}, expected {expected}: the redirect to {location} was not followed (only GET and HEAD follow redirects, and only within the same origin)"
                            )),
                        )
                    } else {
                        (
                            StepStatus::Failed,
                            Some(format!("HTTP status {code}, expected {expected}")),
                        )
                    }
                }
                _ => (StepStatus::Succeeded, None),
            },
            Ending::TimedOut => (
                StepStatus::TimedOut,
                Some(format!("timed out after {}", crate::Duration::from_std(timeout))),
            ),
            Ending::Stopped(Stop::Cancel) => {
                (StepStatus::Cancelled, Some("the run was cancelled".to_owned()))
            }
            Ending::Stopped(_) => (
                StepStatus::Interrupted,
                Some("interrupted: the driver was stopped while the step ran".to_owned()),
            ),
            Ending::Error => {
                (StepStatus::Failed, output.error.as_deref().map(|e| self.secrets.mask(e)))
            }
        };
        let masked_trimmed = stdout.trim_end_matches(['\n', '\r']);
        // Parsed from the masked text, then masked again: a JSON escape (`\u002B`) can spell a
        // secret that the text form did not show.
        let json = serde_json::from_str(masked_trimmed)
            .ok()
            .filter(|_| !masked_trimmed.is_empty())
            .map(|mut json: Value| {
                self.secrets.mask_json(&mut json);
                json
            });
        let real_stderr = String::from_utf8_lossy(&output.stderr);
        let revealed = (stdout != real_stdout || stderr != real_stderr).then(|| Revealed {
            attempt: number,
            stdout: real_stdout.clone().into_owned(),
            stderr: real_stderr.into_owned(),
        });
        let attempt = Attempt {
            step_id: step.id.clone(),
            number,
            status: Some(status),
            started_at: Some(started_at),
            finished_at: Some(now()),
            exit_code: output.exit_code,
            http_status: output.http_status,
            final_url: output.final_url.as_deref().map(|url| self.secrets.mask(url)),
            json,
            stdout,
            stderr,
            stdout_truncated,
            stderr_truncated,
            error,
        };
        (attempt, revealed)
    }

    /// Records an attempt's result and the step's status after it; schedules a retry when
    /// the step has retries left.
    async fn finish_attempt(
        &mut self,
        step: &Step,
        rendered: Value,
        mut attempt: Attempt,
    ) -> Result<(), EngineError> {
        // Before the output is hashed for the audit log: what is stored is what is hashed.
        attempt.make_storable();
        let status = attempt.status.unwrap_or(StepStatus::Failed);
        let tries =
            attempt.number - self.snapshot.step(&step.id).map_or(0, |s| s.attempts_before_round);
        let retry = step.retries.filter(|retries| status.is_failure() && tries <= retries.count);
        let step_status = if retry.is_some() { StepStatus::Pending } else { status };
        let run_id = self.run_id;
        self.record(|fresh| {
            let mut transition = transition_from(fresh);
            let Some(state) = fresh.step(&step.id) else { return transition };
            // The step is still this attempt's (running it, or about to check it): anything
            // else means someone already took it over, and only the attempt is recorded.
            let ours = (state.status == StepStatus::Running && state.attempt == attempt.number)
                || (state.status == StepStatus::Pending && state.attempt + 1 == attempt.number);
            let mut new_state = state.clone();
            new_state.status = step_status;
            new_state.attempt = attempt.number;
            new_state.rendered = Some(rendered.clone());
            new_state.started_at = new_state.started_at.or(attempt.started_at);
            new_state.finished_at = attempt.finished_at;
            new_state.note = attempt.error.clone();
            if ours {
                transition.steps.push(new_state);
            }
            if ours && status == StepStatus::Interrupted && fresh.run.status.is_active() {
                let mut change = RunChange::from(&fresh.run);
                change.status = RunStatus::NeedsAttention;
                change.release_lease = true;
                transition.run = Some(change);
            }
            let duration_ms = match (attempt.started_at, attempt.finished_at) {
                (Some(start), Some(end)) => (end - start).num_milliseconds(),
                _ => 0,
            };
            transition.events.push(
                NewEvent::new(&Actor::steady(), AuditAction::StepFinished, Some(run_id))
                    .step(&step.id)
                    .data(json!({
                        "attempt": attempt.number,
                        "status": status.as_str(),
                        "exit_code": attempt.exit_code,
                        "http_status": attempt.http_status,
                        "duration_ms": duration_ms,
                        "error": attempt.error,
                        "retry": retry.is_some(),
                    })),
            );
            for (stream, text, truncated) in [
                ("stdout", &attempt.stdout, attempt.stdout_truncated),
                ("stderr", &attempt.stderr, attempt.stderr_truncated),
            ] {
                if !text.is_empty() {
                    transition.events.push(
                        NewEvent::new(&Actor::steady(), AuditAction::OutputStored, Some(run_id))
                            .step(&step.id)
                            .data(object([
                                ("attempt", json!(attempt.number)),
                                ("stream", json!(stream)),
                                ("sha256", json!(sha256_hex(text.as_bytes()))),
                                ("bytes", json!(text.len())),
                                ("truncated", json!(truncated)),
                            ])),
                    );
                }
            }
            transition.attempts.push(attempt.clone());
            transition
        })
        .await?;
        let detail = attempt.error.clone();
        self.observer.progress(
            self.run_record(),
            Progress::StepEnded { step, status, attempt: attempt.number, detail },
        );
        if let Some(retries) = retry {
            let delay = retries.delay.as_std();
            self.observer.progress(self.run_record(), Progress::RetryIn { step, delay });
            let mut stop = self.stop.clone();
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                _ = stop.wait_for(|stop| *stop != Stop::No) => {}
            }
        }
        Ok(())
    }
}

fn effect_of(action: Action) -> Option<Effect> {
    Some(match action {
        Action::Run { argv } => Effect::Argv(argv),
        Action::Shell { command } => Effect::Shell(command),
        Action::Http { method, url, headers, json, body } => Effect::Http {
            method,
            url,
            headers,
            body: json.map(HttpBody::Json).or(body.map(HttpBody::Text)),
        },
        Action::Sleep { duration } => {
            Effect::Sleep(duration.parse::<crate::Duration>().ok()?.as_std())
        }
        Action::Check { .. } | Action::Manual { .. } | Action::Approval { .. } => return None,
    })
}

fn join<T: ToString>(values: &[T]) -> String {
    values.iter().map(ToString::to_string).collect::<Vec<_>>().join(" or ")
}

fn transition_from(snapshot: &RunSnapshot) -> Transition {
    Transition { revision: snapshot.run.revision, ..Transition::default() }
}

fn finished_event(run_id: Uuid, status: RunStatus) -> NewEvent {
    NewEvent::new(&Actor::steady(), AuditAction::RunFinished, Some(run_id))
        .data(json!({ "status": status.as_str() }))
}

fn find_step<'r>(runbook: &'r Runbook, step_id: &str) -> Option<&'r Step> {
    runbook.steps.iter().chain(&runbook.rollback).find(|step| step.id == step_id)
}

/// By what right someone changes a run's commander.
#[derive(Debug, Clone, Copy)]
enum Authority {
    /// The commander (or the local operator) hands command over.
    Commander,
    /// An admin takes command of a run, whoever commands it.
    Admin,
}

/// The commander steers a run; a local operator at the terminal is trusted like anyone with
/// write access to the database.
fn may_command(run: &RunRecord, actor: &Actor) -> Result<(), EngineError> {
    if *actor == run.commander || actor.as_str().starts_with("local:") {
        Ok(())
    } else {
        Err(EngineError::NotCommander { commander: run.commander.clone() })
    }
}

fn waiting_step<'r, 's>(
    runbook: &'r Runbook,
    snapshot: &'s RunSnapshot,
    step_id: &str,
) -> Result<(&'r Step, &'s StepState), EngineError> {
    let step =
        find_step(runbook, step_id).ok_or_else(|| EngineError::NoSuchStep(step_id.to_owned()))?;
    let state =
        snapshot.step(step_id).ok_or_else(|| EngineError::NoSuchStep(step_id.to_owned()))?;
    if !snapshot.run.status.is_active() {
        return Err(EngineError::RunNotActive { status: snapshot.run.status });
    }
    if state.status == StepStatus::TimedOut {
        return Err(EngineError::GateTimedOut { step: step_id.to_owned() });
    }
    if state.status != StepStatus::Waiting {
        return Err(EngineError::NotWaiting { step: step_id.to_owned(), status: state.status });
    }
    Ok((step, state))
}

fn holder_names(snapshot: &RunSnapshot, role: &str) -> Vec<String> {
    snapshot.holders(role).into_iter().map(|actor| actor.as_str().to_owned()).collect()
}

/// Words for what a waiting step waits for, and who may answer it.
pub fn waiting_for(snapshot: &RunSnapshot, step: &Step) -> String {
    let state = snapshot.step(&step.id);
    let (role, what) = match &step.kind {
        StepKind::Approval(gate) => {
            let have = snapshot.live_votes(&step.id).filter(|v| v.approve).count();
            let role = state
                .and_then(|s| s.escalated_to.clone())
                .unwrap_or_else(|| gate.role.name.clone());
            let self_note =
                if gate.allow_self_approval { "" } else { ", not the person who started the run" };
            (
                role.clone(),
                format!(
                    "{have} of {} approvals from people holding `{role}`{self_note}",
                    gate.approvals
                ),
            )
        }
        StepKind::Manual(manual) => (
            manual.role.name.clone(),
            format!("a person holding `{}` to mark it done or failed", manual.role.name),
        ),
        _ => (String::new(), "people".to_owned()),
    };
    let holders = holder_names(snapshot, &role);
    let holders = if holders.is_empty() {
        "nobody holds it yet".to_owned()
    } else {
        format!("held by {}", holders.join(", "))
    };
    let deadline = state
        .and_then(|s| s.deadline)
        .map(|deadline| format!("; times out at {}", deadline.format("%H:%M:%S UTC")))
        .unwrap_or_default();
    format!("{what} ({holders}){deadline}")
}

/// Whether an expression reads a step that a dry run did not execute.
fn depends_on_dry_steps(snapshot: &RunSnapshot, source: &str) -> bool {
    snapshot
        .steps
        .iter()
        .filter(|state| state.status == StepStatus::WouldRun)
        .any(|state| source.contains(&format!("steps.{}", state.step_id)))
}

/// `steps.<id>` read from a run's snapshot, as templates ask for them; with `revealed`, the
/// real output of attempts whose stored output was masked.
#[derive(Debug)]
struct SnapshotResults {
    snapshot: Arc<RunSnapshot>,
    revealed: Option<Arc<HashMap<String, Arc<Revealed>>>>,
}

impl template::StepResults for SnapshotResults {
    fn result(&self, id: &str) -> Option<Value> {
        let snapshot = &self.snapshot;
        let state = snapshot.step(id).filter(|state| state.status != StepStatus::Pending)?;
        let attempt = snapshot.last_attempt(id);
        let approved_by: Vec<&str> = snapshot
            .live_votes(id)
            .filter(|vote| vote.approve)
            .map(|vote| vote.actor.as_str())
            .collect();
        let trim = |text: &str| text.trim_end_matches(['\n', '\r']).to_owned();
        let revealed = self
            .revealed
            .as_ref()
            .and_then(|revealed| revealed.get(id))
            .filter(|revealed| attempt.is_some_and(|a| a.number == revealed.attempt));
        let (stdout, stderr, json) = match (revealed, attempt) {
            (Some(revealed), _) => {
                let stdout = trim(&revealed.stdout);
                let json = serde_json::from_str(&stdout).ok().filter(|_| !stdout.is_empty());
                (stdout, trim(&revealed.stderr), json)
            }
            (None, Some(attempt)) => {
                (trim(&attempt.stdout), trim(&attempt.stderr), attempt.json.clone())
            }
            (None, None) => (String::new(), String::new(), None),
        };
        Some(json!({
            "status": state.status.as_str(),
            "stdout": stdout,
            "stderr": stderr,
            "exit_code": attempt.and_then(|a| a.exit_code),
            "json": json,
            "approved_by": approved_by,
            "note": state.note,
        }))
    }
}

/// The template context of a run as it stands, with outputs as stored.
fn run_context(
    runbook: &Runbook,
    snapshot: &Arc<RunSnapshot>,
    secrets: SecretValues<'_>,
    placeholders: bool,
) -> Context {
    let results = SnapshotResults { snapshot: snapshot.clone(), revealed: None };
    run_context_with(runbook, snapshot, secrets, Arc::new(results), placeholders)
}

fn run_context_with(
    runbook: &Runbook,
    snapshot: &RunSnapshot,
    secrets: SecretValues<'_>,
    steps: Arc<SnapshotResults>,
    placeholders: bool,
) -> Context {
    let mut roles: BTreeMap<String, String> = BTreeMap::new();
    for assignment in &snapshot.assignments {
        let holders = roles.entry(assignment.role.clone()).or_default();
        if !holders.is_empty() {
            holders.push_str(", ");
        }
        holders.push_str(assignment.person.as_str());
    }
    let run = &snapshot.run;
    Context::for_run(
        runbook,
        RunFacts {
            params: &run.params,
            secrets,
            steps,
            placeholders_for_unknown_steps: placeholders,
            run_id: run.id.to_string(),
            mode: run.mode.as_str(),
            commander: run.commander.as_str(),
            roles,
        },
    )
}
