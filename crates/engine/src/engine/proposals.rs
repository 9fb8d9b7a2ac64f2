//! Alerts becoming proposals (SPEC §8): each firing alert a runbook's trigger accepts is filed
//! on the proposal or active run with the same subject, or proposes a run that holds no lock
//! and runs nothing; a person takes command of it (it starts live) or dismisses it; nobody
//! doing either lets it expire.

use std::time::Duration;

use uuid::Uuid;

use crate::audit::{
    AlertSeen, AuditData, NewEvent, RoleHolder, RunDismissed, RunExpired, RunProposed, RunTaken,
};
use crate::params;
use crate::run::*;
use crate::runbook::{AlertSource, Runbook, Trigger, TriggerAction};
use crate::secrets::Secrets;
use crate::store::{Filed, StoreError};
use crate::trigger::{self, Alert, AlertStatus};

use super::{Engine, EngineError, StartRun, Then, transition_from};

/// The most runs one delivery proposes: a payload of thousands of distinct alerts must not
/// make thousands of proposals, notifications and dry runs. Alerts past it are still added to
/// proposals and runs that exist.
pub const MAX_PROPOSALS_PER_DELIVERY: usize = 100;

/// What one alert came to for one runbook whose trigger accepted it.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertOutcome {
    /// [`trigger::alert_key`] of the alert.
    pub alert: String,
    pub status: AlertStatus,
    pub runbook: String,
    pub result: Result<Filing, String>,
}

/// Where an accepted alert went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filing {
    /// A new proposal, with the dry run gathering its facts when its trigger said `dry-run`.
    Proposed { run: Uuid, dry_run: Option<Uuid> },
    /// Added to the proposal or active run already about the same thing.
    Added { run: Uuid },
    /// A resolved alert no open run was about: nothing was recorded.
    Unmatched,
}

impl Engine {
    /// Files alerts delivered by `by` (a `trigger` account) from `source`: for each alert and
    /// each published runbook, the first of the latest version's triggers that accepts it
    /// ([`trigger::resolve`]) decides the parameters. A firing alert is added to the proposal
    /// or active run with the same subject ([`RunRecord::subject`]), or proposes the runbook;
    /// a resolved one is noted on such a run and never proposes. A trigger that cannot be
    /// applied (a label missing, a parameter refused) is that outcome's error; the others go on.
    ///
    /// Errors: only the store's, reading the runbooks.
    pub async fn receive_alerts(
        &self,
        source: AlertSource,
        alerts: &[Alert],
        by: &Actor,
    ) -> Result<Vec<AlertOutcome>, EngineError> {
        let mut runbooks = Vec::new();
        for name in self.store.runbook_names().await? {
            let Some(latest) = self.store.runbook_version(&name, None).await? else { continue };
            let Ok(runbook) = self.runbook(&name, latest.version).await else { continue };
            if runbook.triggers.iter().any(|trigger| trigger.source == source) {
                runbooks.push((latest, runbook));
            }
        }
        let mut outcomes = Vec::new();
        let mut proposed = 0;
        for alert in alerts {
            for (stored, runbook) in &runbooks {
                let mut failure = None;
                for trigger in &runbook.triggers {
                    let given = match trigger::evaluate(runbook, trigger, alert) {
                        Ok(None) => continue,
                        Ok(Some(given)) => given,
                        // A later trigger of the runbook may still accept the alert.
                        Err(error) => {
                            failure.get_or_insert(error.to_string());
                            continue;
                        }
                    };
                    if proposed >= MAX_PROPOSALS_PER_DELIVERY && alert.status == AlertStatus::Firing
                    {
                        failure = None;
                        let refused = format!(
                            "this delivery already proposed {MAX_PROPOSALS_PER_DELIVERY} runs: \
                             send fewer alerts at once (group them by fewer labels)"
                        );
                        // Filed on a proposal that exists, never proposing another.
                        let result =
                            self.file(stored, runbook, trigger, alert, &given, by, false).await;
                        let result = match result {
                            Err(EngineError::Store(error)) => {
                                return Err(EngineError::Store(error));
                            }
                            Ok(Filing::Unmatched) => Err(refused),
                            other => other.map_err(|error| error.to_string()),
                        };
                        outcomes.push(outcome(alert, runbook, result));
                        break;
                    }
                    failure = None;
                    let result = self
                        .file(stored, runbook, trigger, alert, &given, by, true)
                        .await
                        .map_err(|error| located(runbook, trigger, error));
                    if let Ok(Filing::Proposed { .. }) = result {
                        proposed += 1;
                    }
                    let result = match result {
                        Err(EngineError::Store(error)) => return Err(EngineError::Store(error)),
                        other => other.map_err(|error| error.to_string()),
                    };
                    outcomes.push(outcome(alert, runbook, result));
                    break;
                }
                if let Some(error) = failure {
                    outcomes.push(outcome(alert, runbook, Err(error)));
                }
            }
        }
        Ok(outcomes)
    }

    /// Files one accepted alert with the parameters its trigger rendered (`given`); a firing
    /// alert proposes the runbook only when `may_propose`.
    #[allow(clippy::too_many_arguments)]
    async fn file(
        &self,
        stored: &RunbookVersion,
        runbook: &Runbook,
        trigger: &Trigger,
        alert: &Alert,
        given: &[(String, String)],
        by: &Actor,
        may_propose: bool,
    ) -> Result<Filing, EngineError> {
        let given: Vec<(String, String)> = given
            .iter()
            .map(|(name, value)| {
                let mut value = value.clone();
                make_storable(&mut value);
                (name.clone(), value)
            })
            .collect();
        let params = params::resolve(runbook, &given).map_err(EngineError::Params)?;
        Secrets::available_for(runbook, &self.config.secrets)
            .check_params(params.iter().map(|(name, value)| (name.as_str(), value.to_string())))
            .map_err(EngineError::Secrets)?;
        let lock_key = super::commands::lock_key(runbook, &params)?;
        let at = self.now();
        // Facts are gathered only where the dry run can start: with every secret it declares.
        let can_gather = Secrets::for_runbook(runbook, &self.config.secrets).is_ok();
        if trigger.then == TriggerAction::DryRun && !can_gather {
            tracing::warn!(runbook = %runbook.name, "a proposal's facts cannot be gathered here: the runbook's secrets are not all configured on this node");
        }
        let dry_run = (trigger.then == TriggerAction::DryRun && can_gather).then(Uuid::now_v7);
        let run = RunRecord {
            id: Uuid::now_v7(),
            runbook: stored.name.clone(),
            version: stored.version,
            sha256: stored.sha256.clone(),
            mode: RunMode::Live,
            origin: RunOrigin::Trigger,
            status: RunStatus::Proposed,
            phase: Phase::Main,
            started_by: by.clone(),
            commander: by.clone(),
            params: params.clone(),
            lock_key: lock_key.clone(),
            created_at: at,
            updated_at: at,
            finished_at: None,
            lease: None,
            revision: 0,
            dry_run,
        };
        let subject = run.subject().unwrap_or_default();
        let seen = self.seen(runbook, alert);
        let added = NewEvent::typed(by, None, AuditData::AlertAdded(seen.clone()));
        let proposal = (alert.status == AlertStatus::Firing && may_propose).then(|| {
            let proposed = RunProposed {
                runbook: stored.name.clone(),
                version: stored.version,
                sha256: stored.sha256.clone(),
                params: params.clone(),
                lock: lock_key,
                alert: seen,
                dry_run,
            };
            let event = NewEvent::typed(by, Some(run.id), AuditData::RunProposed(proposed));
            NewRun { steps: StepState::all_pending(runbook), run, assignments: Vec::new(), event }
        });
        match self.store.file_alert(&subject, added, proposal, at).await? {
            Filed::Added(run) => Ok(Filing::Added { run }),
            Filed::Unmatched => Ok(Filing::Unmatched),
            Filed::Proposed(run) => {
                if let Some(dry_run) = dry_run {
                    self.gather_facts(stored, given, by, dry_run).await;
                }
                Ok(Filing::Proposed { run, dry_run })
            }
        }
    }

    /// Starts the dry run of a proposal whose trigger said `then: dry-run`, as its id was
    /// promised. It cannot fail on what the proposal was just made with; if the store fails,
    /// the proposal stands without its facts and says so on its page.
    async fn gather_facts(
        &self,
        stored: &RunbookVersion,
        given: Vec<(String, String)>,
        by: &Actor,
        id: Uuid,
    ) {
        let start = StartRun {
            runbook: stored.name.clone(),
            version: Some(stored.version),
            params: given,
            mode: RunMode::DryRun,
            origin: RunOrigin::Trigger,
            actor: by.clone(),
            assignments: Vec::new(),
        };
        if let Err(error) = self.start_run_as(start, id, None).await {
            tracing::warn!(runbook = %stored.name, %error, "the dry run of a proposal did not start");
        }
    }

    /// The alert as the audit log keeps it: labels masked like everything from outside, and
    /// storable (NUL shown as U+2400).
    fn seen(&self, runbook: &Runbook, alert: &Alert) -> AlertSeen {
        let storable = |mut text: String| {
            make_storable(&mut text);
            text
        };
        AlertSeen {
            source: alert.source,
            status: alert.status,
            key: storable(trigger::alert_key(alert)),
            labels: alert
                .labels
                .iter()
                .map(|(name, value)| {
                    (storable(name.clone()), storable(self.people_text(runbook, value)))
                })
                .collect(),
        }
    }

    /// A person takes command of a proposal: it starts live now, with them as its starter
    /// (so never the approver of its gates, unless a gate says so) and its commander, these
    /// roles given, and the lock key taken.
    ///
    /// Errors: `NotProposed` when it is not (or no longer) a proposal; `LockHeld` when an
    /// active run holds its lock key; `NoSuchRole`/`NoSuchPerson` for an assignment;
    /// `Secrets` when the runbook's secrets are not all configured here. `then` says who drives
    /// it: [`Then::Here`] for `steady take`, which drives it in its terminal.
    pub async fn take_proposal(
        &self,
        run_id: Uuid,
        actor: &Actor,
        assignments: Vec<Assignment>,
        then: Then,
    ) -> Result<(), EngineError> {
        let lease = match then {
            Then::Here => LeaseChange::Take(self.lease_here()),
            Then::AnyDriver => LeaseChange::Keep,
        };
        self.check_person(actor, actor).await?;
        for _ in 0..20 {
            let (snapshot, runbook) = self.snapshot(run_id).await?;
            let run = &snapshot.run;
            if run.status != RunStatus::Proposed {
                return Err(EngineError::NotProposed { status: run.status });
            }
            Secrets::for_runbook(&runbook, &self.config.secrets).map_err(EngineError::Secrets)?;
            for assignment in &assignments {
                if runbook.role(&assignment.role).is_none() {
                    return Err(EngineError::NoSuchRole(assignment.role.clone()));
                }
                self.check_person(actor, &assignment.person).await?;
            }
            let mut transition = transition_from(&snapshot);
            let mut change = RunChange::from(run);
            change.status = RunStatus::Running;
            change.started_by = actor.clone();
            change.commander = actor.clone();
            change.lease = lease.clone();
            transition.run = Some(change);
            transition.assign = assignments.clone();
            let taken = RunTaken {
                assignments: assignments
                    .iter()
                    .map(|a| RoleHolder { role: a.role.clone(), person: a.person.clone() })
                    .collect(),
            };
            transition.events.push(NewEvent::typed(
                actor,
                Some(run_id),
                AuditData::RunTaken(taken),
            ));
            match self.store.take_proposal(run_id, transition).await {
                Ok(()) => return Ok(()),
                Err(StoreError::Conflict) => continue,
                Err(error) => return Err(error.into()),
            }
        }
        Err(EngineError::Busy)
    }

    /// A person decides a proposal needs no run, saying why (secrets masked): it ends as
    /// `dismissed`.
    ///
    /// Errors: `NotProposed`; `ReasonRequired` for a blank reason.
    pub async fn dismiss(
        &self,
        run_id: Uuid,
        actor: &Actor,
        reason: &str,
    ) -> Result<(), EngineError> {
        let reason = reason.trim();
        if reason.is_empty() {
            return Err(EngineError::ReasonRequired);
        }
        self.check_person(actor, actor).await?;
        self.act(run_id, |runbook, snapshot, now| {
            let ending = end_proposal(snapshot, now);
            let Ok(mut transition) = ending else { return (None, ending.map(|_| ())) };
            let dismissed = RunDismissed { reason: self.people_text(runbook, reason) };
            transition.events.push(NewEvent::typed(
                actor,
                Some(run_id),
                AuditData::RunDismissed(dismissed),
            ));
            (Some(transition), Ok(()))
        })
        .await
    }

    /// Ends every proposal nobody took and no alert came for in the last `idle`, as Steady:
    /// `run.expired`. Returns the proposals it ended; one another node ended first is left.
    pub async fn expire_proposals(&self, idle: Duration) -> Result<Vec<Uuid>, EngineError> {
        let idle_for = chrono::Duration::from_std(idle).unwrap_or(chrono::Duration::MAX);
        let now = self.now();
        // Every proposal, page after page: the newest ones being kept alive must not hide
        // older idle ones.
        let mut proposals = Vec::new();
        let mut filter = RunFilter {
            status: Some(RunStatus::Proposed),
            limit: Some(500),
            ..RunFilter::default()
        };
        loop {
            let page = self.store.runs(&filter).await?;
            let last = page.last().map(|run| run.id);
            let full = page.len() == 500;
            proposals.extend(page);
            match last {
                Some(last) if full => filter.before = Some(last),
                _ => break,
            }
        }
        let mut expired = Vec::new();
        for proposal in proposals {
            if now - proposal.updated_at < idle_for {
                continue;
            }
            let ended = self
                .act(proposal.id, |_, snapshot, now| {
                    if now - snapshot.run.updated_at < idle_for {
                        return (None, Ok(false));
                    }
                    match end_proposal(snapshot, now) {
                        Ok(mut transition) => {
                            let data = RunExpired { idle_seconds: idle.as_secs() };
                            transition.events.push(NewEvent::typed(
                                &Actor::Steady,
                                Some(proposal.id),
                                AuditData::RunExpired(data),
                            ));
                            (Some(transition), Ok(true))
                        }
                        Err(_) => (None, Ok(false)),
                    }
                })
                .await?;
            if ended {
                expired.push(proposal.id);
            }
        }
        Ok(expired)
    }
}

/// The transition that ends a proposal as `dismissed`, its steps never run.
fn end_proposal(snapshot: &RunSnapshot, now: Timestamp) -> Result<Transition, EngineError> {
    if snapshot.run.status != RunStatus::Proposed {
        return Err(EngineError::NotProposed { status: snapshot.run.status });
    }
    let mut transition = transition_from(snapshot);
    let mut change = RunChange::from(&snapshot.run);
    change.status = RunStatus::Dismissed;
    change.finished_at = Some(now);
    transition.run = Some(change);
    Ok(transition)
}

/// An error filing an alert, said where its trigger is written (a store error is left as it
/// is: it fails the whole delivery).
fn located(runbook: &Runbook, trigger: &Trigger, error: EngineError) -> EngineError {
    match error {
        EngineError::Store(_) => error,
        other => EngineError::Trigger(format!(
            "runbook `{}`, trigger on line {}: {other}",
            runbook.name, trigger.at.line
        )),
    }
}

fn outcome(alert: &Alert, runbook: &Runbook, result: Result<Filing, String>) -> AlertOutcome {
    AlertOutcome {
        alert: trigger::alert_key(alert),
        status: alert.status,
        runbook: runbook.name.clone(),
        result,
    }
}
