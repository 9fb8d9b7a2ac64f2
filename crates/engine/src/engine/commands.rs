//! People's commands: starting a run, answering gates and manual steps, the commander's
//! decisions, roles, command, notes and cancelling. Each is a transition computed from a fresh
//! snapshot and retried when the run moved on under it.

use uuid::Uuid;

use crate::audit::{
    ApprovalAnswer, AuditData, CancelReason, CommanderTransferred, DecisionTaken, ManualAnswer,
    NewEvent, NoteAdded, RoleHolder, RunStarted, StepAnswered, StepFinished, new_id,
};
use crate::machine::{attention_step, fails_its_group};
use crate::params::{self, ParamValues};
use crate::policy;
use crate::run::*;
use crate::runbook::{Runbook, Step, StepKind};
use crate::secrets::Secrets;
use crate::store::StoreError;
use crate::template::{self, Context, Target};

use super::{Engine, EngineError, finished_event, transition_from};

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
    pub(super) async fn start_run_as(
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

    /// Refuses anyone but an existing, enabled user as a role holder or commander, so that a
    /// typo can never be handed a run. The local operator at a terminal may name themselves.
    pub(super) async fn check_person(
        &self,
        actor: &Actor,
        person: &Actor,
    ) -> Result<(), EngineError> {
        match policy::account_needed(actor, person)? {
            Some(name) if !self.store.enabled_user(name).await? => {
                Err(EngineError::NoSuchPerson(name.to_owned()))
            }
            _ => Ok(()),
        }
    }

    /// Applies a change people asked for, computed from a fresh snapshot each time the run
    /// moved on under it. `change` returns the transition to commit (if any) and the answer.
    pub(super) async fn act<T>(
        &self,
        run_id: Uuid,
        change: impl Fn(
            &Runbook,
            &RunSnapshot,
            Timestamp,
        ) -> (Option<Transition>, Result<T, EngineError>),
    ) -> Result<T, EngineError> {
        self.act_then(run_id, Then::AnyDriver, change).await
    }

    /// [`Engine::act`], saying who drives the run on when the change lets it go on.
    async fn act_then<T>(
        &self,
        run_id: Uuid,
        then: Then,
        change: impl Fn(
            &Runbook,
            &RunSnapshot,
            Timestamp,
        ) -> (Option<Transition>, Result<T, EngineError>),
    ) -> Result<T, EngineError> {
        for _ in 0..20 {
            let (snapshot, runbook) = self.snapshot(run_id).await?;
            let (transition, answer) = change(&runbook, &snapshot, self.now());
            let Some(mut transition) = transition else { return answer };
            // Only a run that waited (and so held no lease) is taken: a run already running
            // is another driver's, whose lease stays its own.
            if then == Then::Here
                && snapshot.run.status != RunStatus::Running
                && let Some(change) = &mut transition.run
                && change.status == RunStatus::Running
            {
                change.lease = LeaseChange::Take(self.lease_here());
            }
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
        self.answer(run_id, step_id, actor, Answer::Approve, comment, Then::AnyDriver).await
    }

    /// Rejects a gate: one rejection ends it, and the step's `on_failure` decides what follows.
    pub async fn reject(
        &self,
        run_id: Uuid,
        step_id: &str,
        actor: &Actor,
        comment: Option<&str>,
    ) -> Result<StepStatus, EngineError> {
        self.answer(run_id, step_id, actor, Answer::Reject, comment, Then::AnyDriver).await
    }

    /// Answers a waiting gate for `actor`, with an optional comment (its secrets masked).
    /// Returns the gate's status after the answer: `waiting` below the quorum, `approved` at
    /// it, `rejected`.
    ///
    /// Errors: `NoSuchStep`, `RunNotActive`, `NotWaiting`, `WrongKind` (not a gate),
    /// `GateTimedOut` (its deadline passed: the timeout is committed), and the refusals of
    /// [`policy::may_approve`] / [`policy::may_answer`] (`NotEligible`, `SelfApproval`,
    /// `AlreadyAnswered`). `then` says who drives the run on once the gate opens or closes.
    pub async fn answer(
        &self,
        run_id: Uuid,
        step_id: &str,
        actor: &Actor,
        answer: Answer,
        comment: Option<&str>,
        then: Then,
    ) -> Result<StepStatus, EngineError> {
        let approve = answer == Answer::Approve;
        self.act_then(run_id, then, |runbook, snapshot, now| {
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
            let allowed = match answer {
                Answer::Approve => policy::may_approve(snapshot, step, actor),
                Answer::Reject => policy::may_answer(snapshot, step, actor),
            };
            if let Err(refusal) = allowed {
                return (None, Err(refusal.into()));
            }
            let bound = self.binding(runbook, snapshot, step);
            let vote = Vote {
                id: new_id(),
                step_id: step_id.to_owned(),
                actor: actor.clone(),
                approve,
                comment: comment.map(str::to_owned),
                digest: bound.digest(),
                bound,
                at: now,
                void: false,
            };
            let approvals = snapshot.live_votes(step_id).filter(|v| v.approve).count() as u32
                + u32::from(approve);
            let mut transition = transition_from(snapshot);
            let mut new_state = state.clone();
            let answered = ApprovalAnswer {
                comment: comment.map(str::to_owned),
                digest: vote.digest.clone(),
                approvals,
                quorum: gate.approvals,
            };
            let data = match answer {
                Answer::Approve => AuditData::ApprovalGranted(answered),
                Answer::Reject => AuditData::ApprovalRejected(answered),
            };
            transition
                .events
                .push(NewEvent::typed(actor, Some(snapshot.run.id), data).step(step_id));
            if !approve || approvals >= gate.approvals {
                let status = match answer {
                    Answer::Approve => StepStatus::Approved,
                    Answer::Reject => StepStatus::Rejected,
                };
                new_state.answer(status, actor, comment.map(str::to_owned), now);
                let mut run = RunChange::from(&snapshot.run);
                run.status = RunStatus::Running;
                transition.run = Some(run);
                let answered = StepFinished::Answered(StepAnswered { status: new_state.status });
                transition.events.push(
                    NewEvent::typed(
                        actor,
                        Some(snapshot.run.id),
                        AuditData::StepFinished(answered),
                    )
                    .step(step_id),
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
    /// Pages also show a run's parameters through it, so a credential typed into one is not
    /// shown back.
    pub fn people_text(&self, runbook: &Runbook, text: &str) -> String {
        Secrets::available_for(runbook, &self.config.secrets).mask(text)
    }

    /// Marks a waiting manual step done (`succeeded`) or failed, with a note (its secrets
    /// masked). Returns the step's status after it.
    ///
    /// Errors: `NoSuchStep`, `RunNotActive`, `NotWaiting`, `WrongKind` (not a manual step), and
    /// `NotEligible` from [`policy::may_answer`]. `then` says who drives the run on.
    pub async fn complete_manual(
        &self,
        run_id: Uuid,
        step_id: &str,
        actor: &Actor,
        completion: Completion,
        note: Option<&str>,
        then: Then,
    ) -> Result<StepStatus, EngineError> {
        self.act_then(run_id, then, |runbook, snapshot, now| {
            let note = note.map(|text| self.people_text(runbook, text));
            let note = note.as_deref();
            let (step, state) = match waiting_step(runbook, snapshot, step_id) {
                Ok(found) => found,
                Err(error) => return (None, Err(error)),
            };
            let StepKind::Manual(_) = &step.kind else {
                let error =
                    EngineError::WrongKind { step: step_id.to_owned(), expected: "a manual" };
                return (None, Err(error));
            };
            if let Err(refusal) = policy::may_answer(snapshot, step, actor) {
                return (None, Err(refusal.into()));
            }
            let mut new_state = state.clone();
            let status = match completion {
                Completion::Done => StepStatus::Succeeded,
                Completion::Failed => StepStatus::Failed,
            };
            new_state.answer(status, actor, note.map(str::to_owned), now);
            let mut transition = transition_from(snapshot);
            let answered = ManualAnswer { note: note.map(str::to_owned) };
            let data = match completion {
                Completion::Done => AuditData::ManualCompleted(answered),
                Completion::Failed => AuditData::ManualFailed(answered),
            };
            transition.events.push(NewEvent::typed(actor, Some(run_id), data).step(step_id));
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
        self.decide_because(run_id, actor, decision, None, None).await
    }

    /// [`Engine::decide`] with the commander's reason, recorded (secrets masked) in the
    /// `decision.taken` event on the step: the run page shows it in the step's history.
    ///
    /// With `child`, a retry or skip answers one failed or interrupted branch or item of the
    /// group that awaits the decision (`restart[3]`): the group then goes on with its other
    /// children and asks again about any still failed or interrupted.
    pub async fn decide_because(
        &self,
        run_id: Uuid,
        actor: &Actor,
        decision: Decision,
        child: Option<&str>,
        reason: Option<&str>,
    ) -> Result<RunStatus, EngineError> {
        self.act(run_id, |runbook, snapshot, now| {
            let reason = reason.map(|reason| self.people_text(runbook, reason));
            let run = &snapshot.run;
            if let Err(refusal) = policy::may_command(run, actor) {
                return (None, Err(refusal.into()));
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
            if let Some(child) = child {
                let decided = decide_child(runbook, snapshot, step, child, decision, actor);
                let (again, voided) = match decided {
                    Ok(decided) => decided,
                    Err(error) => return (None, Err(error)),
                };
                transition.voided_votes = voided;
                transition.steps.push(again);
                // While other children still await a decision, the run keeps waiting for the
                // commander, who decides them one by one; with the last, the group resumes
                // with the children it has.
                // A child awaits one while it is interrupted, or failed beyond what the group
                // allows (machine::group_next's rule).
                let others = || snapshot.children(&step.id).filter(|c| c.step_id != child);
                let interrupted = others().any(|c| c.status == StepStatus::Interrupted);
                let failed = others().filter(|c| fails_its_group(runbook, c)).count();
                let total = snapshot.children(&step.id).count();
                let allowed = step.fan_out.as_ref().map_or(0, |f| f.max_failures.allowed(total));
                if interrupted || failed > allowed {
                    change.status = RunStatus::NeedsAttention;
                } else {
                    new_state.retry();
                    transition.steps.push(new_state);
                }
                transition.events.push(
                    NewEvent::typed(
                        actor,
                        Some(run.id),
                        AuditData::DecisionTaken(DecisionTaken { decision, reason }),
                    )
                    .step(child),
                );
                let status = change.status;
                transition.run = Some(change);
                return (Some(transition), Ok(status));
            }
            match decision {
                Decision::Retry => {
                    new_state.retry();
                    // A gate asked again starts afresh: earlier answers and escalation are void.
                    if step.is_gate() {
                        new_state.forget_answers();
                        transition.voided_votes =
                            snapshot.live_votes(&step.id).map(|vote| vote.id).collect();
                    }
                    // A group runs again only its children that failed or were interrupted:
                    // what succeeded never runs again.
                    for child in snapshot.children(&step.id) {
                        if child.status.is_failure() || child.status == StepStatus::Interrupted {
                            let mut again = child.clone();
                            again.retry();
                            if runbook.find_step(&child.step_id).is_some_and(Step::is_gate) {
                                again.forget_answers();
                                transition
                                    .voided_votes
                                    .extend(snapshot.live_votes(&child.step_id).map(|v| v.id));
                            }
                            transition.steps.push(again);
                        }
                    }
                }
                Decision::Skip if step.is_gate() => {
                    return (None, Err(EngineError::GateCannotBeSkipped { step: step.id.clone() }));
                }
                Decision::Skip => {
                    new_state.skip_by(actor);
                    // A skipped group's children that never started will never start: they
                    // read skipped, not pending, in a run that went on without them.
                    for child in snapshot.children(&step.id) {
                        if child.status == StepStatus::Pending {
                            let mut skipped = child.clone();
                            skipped.skip_by(actor);
                            transition.steps.push(skipped);
                        }
                    }
                }
                Decision::Rollback if run.phase == Phase::Main => change.phase = Phase::Rollback,
                Decision::Rollback => {
                    return (None, Err(EngineError::NothingToDecide { status: run.status }));
                }
                Decision::Abort => {
                    change.status = RunStatus::Failed;
                    change.finished_at = Some(now);
                    change.lease = LeaseChange::Release;
                }
            }
            transition.events.push(
                NewEvent::typed(
                    actor,
                    Some(run.id),
                    AuditData::DecisionTaken(DecisionTaken { decision, reason: reason.clone() }),
                )
                .step(&step.id),
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
        change: RoleChange,
    ) -> Result<(), EngineError> {
        let assign = change == RoleChange::Assign;
        // Taking a role away from anyone is allowed: it cleans up after a departed person.
        if assign {
            self.check_person(actor, person).await?;
        }
        self.act(run_id, |runbook, snapshot, _| {
            if let Err(refusal) = policy::may_command(&snapshot.run, actor) {
                return (None, Err(refusal.into()));
            }
            if runbook.role(role).is_none() {
                return (None, Err(EngineError::NoSuchRole(role.to_owned())));
            }
            if snapshot.holds(person, role) == assign {
                return (None, Ok(()));
            }
            let mut transition = transition_from(snapshot);
            let assignment = Assignment { role: role.to_owned(), person: person.clone() };
            let holder = RoleHolder { role: role.to_owned(), person: person.clone() };
            let data = match change {
                RoleChange::Assign => AuditData::RoleAssigned(holder),
                RoleChange::Unassign => AuditData::RoleUnassigned(holder),
            };
            transition.events.push(NewEvent::typed(actor, Some(run_id), data));
            match change {
                RoleChange::Assign => transition.assign.push(assignment),
                RoleChange::Unassign => transition.unassign.push(assignment),
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
            if snapshot.run.status == RunStatus::Proposed {
                return (None, Err(EngineError::RunNotActive { status: snapshot.run.status }));
            }
            match authority {
                Authority::Commander => {
                    if let Err(refusal) = policy::may_command(&snapshot.run, actor) {
                        return (None, Err(refusal.into()));
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
            let transferred = CommanderTransferred {
                from: snapshot.run.commander.clone(),
                to: to.clone(),
                taken_by_admin: matches!(authority, Authority::Admin),
            };
            transition.events.push(NewEvent::typed(
                actor,
                Some(run_id),
                AuditData::CommanderTransferred(transferred),
            ));
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
            if let Err(refusal) = policy::may_note(snapshot, actor) {
                return (None, Err(refusal.into()));
            }
            if let Some(step_id) = step_id
                && runbook.find_step(step_id).is_none()
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
            let added = NoteAdded { text: text.to_owned() };
            let mut event = NewEvent::typed(actor, Some(run_id), AuditData::NoteAdded(added));
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
        self.cancel_because(run_id, actor, None).await
    }

    /// [`Engine::cancel`] with the commander's reason, recorded (secrets masked) in the
    /// `run.cancelled` event.
    pub async fn cancel_because(
        &self,
        run_id: Uuid,
        actor: &Actor,
        reason: Option<&str>,
    ) -> Result<(), EngineError> {
        self.act(run_id, |runbook, snapshot, now| {
            let reason =
                reason.map(|reason| CancelReason { reason: self.people_text(runbook, reason) });
            let run = &snapshot.run;
            if let Err(refusal) = policy::may_command(run, actor) {
                return (None, Err(refusal.into()));
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
                // A running group ends with the run; its running children are stopped by their
                // driver and recorded `cancelled` as they end.
                let running_group = state.status == StepStatus::Running
                    && runbook.find_step(&state.step_id).is_some_and(Step::has_children);
                if (matches!(state.status, StepStatus::Waiting | StepStatus::Pending)
                    || running_group)
                    && state.phase == run.phase
                {
                    let mut cancelled = state.clone();
                    cancelled.cancel(now);
                    transition.steps.push(cancelled);
                }
            }
            transition.events.push(NewEvent::typed(
                actor,
                Some(run.id),
                AuditData::RunCancelled(reason),
            ));
            (Some(transition), Ok(()))
        })
        .await
    }
}

/// The most bytes a rendered lock key has: a key is compared and indexed, and a parameter
/// from outside (an alert's label) must not make it unstorable.
pub const MAX_LOCK_KEY_BYTES: usize = 512;

/// The runbook's lock key rendered with `params`, or `None` when it has no `lock`.
///
/// Errors: `LockKey` when it cannot be rendered, or is longer than [`MAX_LOCK_KEY_BYTES`].
pub(super) fn lock_key(
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

/// A retry or skip of one child of `group`: the child's new state, and the votes a gate
/// asked again no longer counts.
fn decide_child(
    runbook: &Runbook,
    snapshot: &RunSnapshot,
    group: &Step,
    child: &str,
    decision: Decision,
    actor: &Actor,
) -> Result<(StepState, Vec<Uuid>), EngineError> {
    if matches!(decision, Decision::Rollback | Decision::Abort) {
        return Err(EngineError::WholeRunDecision { decision });
    }
    let Some(state) = snapshot
        .children(&group.id)
        .find(|state| state.step_id == child)
        .filter(|state| state.status.is_failure() || state.status == StepStatus::Interrupted)
    else {
        // What someone typed is echoed back, within reason.
        let mut shown: String = child.chars().take(100).collect();
        if shown.len() < child.len() {
            shown.push('…');
        }
        return Err(EngineError::NotDecidable { step: shown, group: group.id.clone() });
    };
    let is_gate = runbook.find_step(child).is_some_and(Step::is_gate);
    let mut again = state.clone();
    let mut voided = Vec::new();
    match decision {
        Decision::Skip if is_gate => {
            return Err(EngineError::GateCannotBeSkipped { step: child.to_owned() });
        }
        Decision::Skip => again.skip_by(actor),
        _ => {
            again.retry();
            if is_gate {
                again.forget_answers();
                voided = snapshot.live_votes(child).map(|vote| vote.id).collect();
            }
        }
    }
    Ok((again, voided))
}

/// By what right someone changes a run's commander.
#[derive(Debug, Clone, Copy)]
enum Authority {
    /// The commander (or the local operator) hands command over.
    Commander,
    /// An admin takes command of a run, whoever commands it.
    Admin,
}

/// The step `step_id` and its state, when it waits for people in an active run.
fn waiting_step<'r, 's>(
    runbook: &'r Runbook,
    snapshot: &'s RunSnapshot,
    step_id: &str,
) -> Result<(&'r Step, &'s StepState), EngineError> {
    let step =
        runbook.find_step(step_id).ok_or_else(|| EngineError::NoSuchStep(step_id.to_owned()))?;
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

/// Who drives a run on once a person's command lets it go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Then {
    /// Whichever node takes it: a `steady serve` polling for work, or `steady resume`.
    AnyDriver,
    /// This node, which drives it next (a terminal answering its own question, `steady take`):
    /// the command takes this node's lease in the same commit, so that no server polling the
    /// same database drives the run first, with the server's environment and secrets. Only a
    /// run that was not running is taken: a running one's lease stays its driver's.
    Here,
}
