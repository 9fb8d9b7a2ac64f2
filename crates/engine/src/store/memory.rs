//! A store that keeps everything in this process's memory and forgets it when dropped: what
//! `steady test` runs each case of a runbook test on, so that a case costs microseconds and
//! leaves nothing behind. It keeps the same promises as the database stores where the engine
//! relies on them — a transition is refused when the run moved on or its lease is another's,
//! a lock key is held by one active run, the audit log is one hash chain — and none of their
//! durability.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use uuid::Uuid;

use crate::audit::{AuditEvent, ChainVerifier, NewEvent, Verification, new_id};
use crate::clock::Clock;
use crate::rehearsal::{Rehearsal, RehearsalQuery, RehearsedStep};
use crate::run::{
    Actor, Lease, NewRun, Phase, RunFilter, RunMode, RunRecord, RunSnapshot, RunStatus,
    RunbookVersion, StepStatus, Timestamp, Transition,
};
use crate::verification::{VerificationSlot, VerificationState};

use super::{
    Audit, AuditFilter, ChangeSignals, Changes, Cluster, Filed, Leases, NodeRecord, Notifications,
    People, Published, Runbooks, Runs, StoreError, Verifications, next_version, published_event,
};

/// Everything a [`MemoryStore`] holds, behind one lock: every operation is one short critical
/// section that never awaits.
#[derive(Debug, Default)]
struct Contents {
    runbooks: BTreeMap<String, Vec<RunbookVersion>>,
    /// Runs in the order they were created.
    runs: Vec<RunSnapshot>,
    /// The audit log as appended, chained when read: hashing every event of every case would
    /// cost more than running it.
    events: Vec<(Timestamp, NewEvent)>,
    /// Run → the ids of its steps in the order they first started (a branch's or item's
    /// included): what a runbook test's `ran` compares.
    started: BTreeMap<Uuid, Vec<String>>,
    /// Verification periods claimed, by runbook and period start.
    slots: std::collections::BTreeSet<(String, Timestamp)>,
    /// Where each runbook's verification stands.
    verifications: BTreeMap<String, VerificationState>,
    cursors: BTreeMap<String, i64>,
    targets: BTreeMap<String, Lease>,
    nodes: Vec<NodeRecord>,
}

/// Runs, runbooks and audit events in memory. Every person named is taken to be an enabled
/// user: a runbook test's cast is whoever its cases name.
#[derive(Debug)]
pub struct MemoryStore {
    contents: Mutex<Contents>,
    clock: Arc<dyn Clock>,
    signals: ChangeSignals,
}

impl MemoryStore {
    /// An empty store that stamps what it records with `clock`'s time.
    pub fn new(clock: Arc<dyn Clock>) -> MemoryStore {
        MemoryStore { contents: Mutex::default(), clock, signals: ChangeSignals::default() }
    }

    fn contents(&self) -> MutexGuard<'_, Contents> {
        self.contents.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The ids of a run's steps in the order they first started — became running or waiting,
    /// or ended without a process (a check): not those skipped, cancelled or recorded as a dry
    /// run's `would_run`.
    pub fn started(&self, run_id: Uuid) -> Vec<String> {
        self.contents().started.get(&run_id).cloned().unwrap_or_default()
    }

    /// The audit log as a database store would keep it: chained, `seq` from 1.
    fn chain(contents: &Contents) -> Vec<AuditEvent> {
        let mut chained: Vec<AuditEvent> = Vec::with_capacity(contents.events.len());
        for (number, (at, event)) in contents.events.iter().enumerate() {
            let prev_hash = chained.last().map_or_else(String::new, |last| last.hash.clone());
            let seq = i64::try_from(number).unwrap_or(i64::MAX) + 1;
            chained.push(AuditEvent::chain(seq, new_id(), *at, &prev_hash, event));
        }
        chained
    }
}

fn run_mut(contents: &mut Contents, id: Uuid) -> Result<&mut RunSnapshot, StoreError> {
    contents.runs.iter_mut().find(|run| run.run.id == id).ok_or(StoreError::NoSuchRun(id))
}

#[async_trait]
impl Runbooks for MemoryStore {
    async fn publish_with_message(
        &self,
        name: &str,
        source: &str,
        by: &Actor,
        at: Timestamp,
        message: Option<&str>,
        tests: Option<&str>,
    ) -> Result<Published, StoreError> {
        let mut contents = self.contents();
        let versions = contents.runbooks.entry(name.to_owned()).or_default();
        let version = match next_version(versions.last(), name, source, by, at, message, tests) {
            Published::New(version) => version,
            unchanged => return Ok(unchanged),
        };
        versions.push(version.clone());
        contents.events.push((at, published_event(&version)));
        Ok(Published::New(version))
    }

    async fn runbook_version(
        &self,
        name: &str,
        version: Option<u32>,
    ) -> Result<Option<RunbookVersion>, StoreError> {
        let contents = self.contents();
        let Some(versions) = contents.runbooks.get(name) else { return Ok(None) };
        Ok(match version {
            Some(number) => versions.iter().find(|v| v.version == number).cloned(),
            None => versions.last().cloned(),
        })
    }

    async fn runbook_names(&self) -> Result<Vec<String>, StoreError> {
        Ok(self.contents().runbooks.keys().cloned().collect())
    }

    async fn runbook_versions(&self, name: &str) -> Result<Vec<RunbookVersion>, StoreError> {
        Ok(self.contents().runbooks.get(name).cloned().unwrap_or_default())
    }
}

#[async_trait]
impl People for MemoryStore {
    async fn enabled_user(&self, _name: &str) -> Result<bool, StoreError> {
        Ok(true)
    }
}

#[async_trait]
impl Runs for MemoryStore {
    async fn create_run(&self, new: NewRun) -> Result<(), StoreError> {
        let mut contents = self.contents();
        if let Some(key) = &new.run.lock_key
            && let Some(holder) = contents
                .runs
                .iter()
                .find(|run| run.run.status.is_active() && run.run.lock_key.as_ref() == Some(key))
        {
            return Err(StoreError::LockHeld { key: key.clone(), run_id: holder.run.id });
        }
        let at = new.run.created_at;
        contents.events.push((at, new.event));
        contents.runs.push(RunSnapshot::begun(new.run, new.steps, new.assignments));
        drop(contents);
        self.signals.events_appended();
        self.signals.work_available();
        Ok(())
    }

    async fn run(&self, id: Uuid) -> Result<Option<RunSnapshot>, StoreError> {
        Ok(self.contents().runs.iter().find(|run| run.run.id == id).cloned())
    }

    async fn run_record(&self, id: Uuid) -> Result<Option<RunRecord>, StoreError> {
        Ok(self.contents().runs.iter().find(|run| run.run.id == id).map(|run| run.run.clone()))
    }

    async fn run_status(&self, id: Uuid) -> Result<Option<RunStatus>, StoreError> {
        Ok(self.contents().runs.iter().find(|run| run.run.id == id).map(|run| run.run.status))
    }

    async fn runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>, StoreError> {
        let contents = self.contents();
        let mut runs: Vec<&RunRecord> = contents.runs.iter().map(|run| &run.run).collect();
        runs.sort_by_key(|run| std::cmp::Reverse((run.created_at, run.id)));
        let before = filter.before.and_then(|id| {
            runs.iter().find(|run| run.id == id).map(|run| (run.created_at, run.id))
        });
        Ok(runs
            .into_iter()
            .filter(|run| filter.status.is_none_or(|status| run.status == status))
            .filter(|run| filter.runbook.as_ref().is_none_or(|name| &run.runbook == name))
            .filter(|run| filter.mode.is_none_or(|mode| run.mode == mode))
            .filter(|run| filter.origin.is_none_or(|origin| run.origin == origin))
            .filter(|run| filter.version.is_none_or(|version| run.version == version))
            .filter(|run| filter.since.is_none_or(|since| run.created_at >= since))
            .filter(|run| before.is_none_or(|before| (run.created_at, run.id) < before))
            .take(filter.limit.map_or(usize::MAX, |limit| limit as usize))
            .cloned()
            .collect())
    }

    async fn count_runs_by_status(&self) -> Result<Vec<(RunStatus, u64)>, StoreError> {
        let mut counts: BTreeMap<&str, (RunStatus, u64)> = BTreeMap::new();
        for run in &self.contents().runs {
            counts.entry(run.run.status.as_str()).or_insert((run.run.status, 0)).1 += 1;
        }
        Ok(counts.into_values().collect())
    }

    async fn find_run(&self, id_prefix: &str) -> Result<Vec<Uuid>, StoreError> {
        let contents = self.contents();
        Ok(contents
            .runs
            .iter()
            .rev()
            .filter(|run| run.run.id.to_string().starts_with(id_prefix))
            .take(10)
            .map(|run| run.run.id)
            .collect())
    }

    async fn rehearsals(&self, query: &RehearsalQuery) -> Result<Vec<Rehearsal>, StoreError> {
        let contents = self.contents();
        let mut runs: Vec<&RunSnapshot> = contents
            .runs
            .iter()
            .filter(|run| {
                let run = &run.run;
                run.runbook == query.runbook
                    && run.status == RunStatus::Succeeded
                    && matches!(run.mode, RunMode::Live | RunMode::Drill)
                    && run.finished_at.is_some()
                    && query.before.is_none_or(|before| run.created_at < before)
            })
            .collect();
        runs.sort_by_key(|run| std::cmp::Reverse((run.run.created_at, run.run.id)));
        runs.truncate(query.limit as usize);
        Ok(runs
            .into_iter()
            .map(|run| Rehearsal {
                run_id: run.run.id,
                mode: run.run.mode,
                version: run.run.version,
                started_at: run.run.created_at,
                finished_at: run.run.finished_at.unwrap_or(run.run.created_at),
                steps: if query.steps { rehearsed_steps(run) } else { Vec::new() },
            })
            .collect())
    }

    async fn commit(&self, run_id: Uuid, transition: Transition) -> Result<(), StoreError> {
        let at = self.clock.now();
        let mut contents = self.contents();
        let run = run_mut(&mut contents, run_id)?;
        if let Some(owner) = &transition.lease_owner
            && run.run.lease.as_ref().is_none_or(|lease| &lease.owner != owner)
        {
            return Err(StoreError::LeaseLost);
        }
        if run.run.revision != transition.revision {
            return Err(StoreError::Conflict);
        }
        let first_starts: Vec<String> = transition
            .steps
            .iter()
            .filter(|state| {
                !matches!(
                    state.status,
                    StepStatus::Pending
                        | StepStatus::Skipped
                        | StepStatus::WouldRun
                        | StepStatus::Cancelled
                ) && run
                    .step(&state.step_id)
                    .is_none_or(|before| before.status == StepStatus::Pending)
            })
            .map(|state| state.step_id.clone())
            .collect();
        run.apply(&transition, at);
        if let Some(state) = &transition.verification {
            contents.verifications.insert(state.runbook.clone(), state.clone());
        }
        let started = contents.started.entry(run_id).or_default();
        for id in first_starts {
            if !started.contains(&id) {
                started.push(id);
            }
        }
        let for_a_driver = transition.lease_owner.is_none();
        contents.events.extend(transition.events.into_iter().map(|event| (at, event)));
        drop(contents);
        self.signals.events_appended();
        if for_a_driver {
            self.signals.work_available();
        }
        Ok(())
    }

    async fn file_alert(
        &self,
        subject: &str,
        mut event: NewEvent,
        proposal: Option<NewRun>,
        at: Timestamp,
    ) -> Result<Filed, StoreError> {
        let added = {
            let mut contents = self.contents();
            let open = |run: &&mut RunSnapshot, proposed: bool| {
                (run.run.status == RunStatus::Proposed) == proposed
                    && (run.run.status.is_active() || proposed)
                    && run.run.subject().as_deref() == Some(subject)
            };
            let found = match contents.runs.iter_mut().find(|run| open(run, false)) {
                Some(run) => Some(run),
                None => contents.runs.iter_mut().find(|run| open(run, true)),
            };
            let added = found.map(|run| {
                if run.run.status == RunStatus::Proposed {
                    run.run.updated_at = at;
                    run.run.revision += 1;
                }
                run.run.id
            });
            if let Some(run_id) = added {
                event.run_id = Some(run_id);
                contents.events.push((at, event));
            }
            added
        };
        if let Some(run_id) = added {
            self.signals.events_appended();
            return Ok(Filed::Added(run_id));
        }
        match proposal {
            Some(new) => {
                let id = new.run.id;
                self.create_run(new).await?;
                Ok(Filed::Proposed(id))
            }
            None => Ok(Filed::Unmatched),
        }
    }

    async fn take_proposal(&self, run_id: Uuid, transition: Transition) -> Result<(), StoreError> {
        {
            let contents = self.contents();
            let run = contents.runs.iter().find(|run| run.run.id == run_id);
            let key = run.ok_or(StoreError::NoSuchRun(run_id))?.run.lock_key.clone();
            if let Some(key) = key
                && let Some(holder) = contents.runs.iter().find(|run| {
                    run.run.status.is_active() && run.run.lock_key.as_ref() == Some(&key)
                })
            {
                return Err(StoreError::LockHeld { key, run_id: holder.run.id });
            }
        }
        self.commit(run_id, transition).await
    }
}

/// How long each main step and branch of a run that passed took, measured as the database
/// stores measure it (see [`crate::rehearsal`]): from its first attempt, or from when it began,
/// to its end; a skipped step took no time.
fn rehearsed_steps(run: &RunSnapshot) -> Vec<RehearsedStep> {
    run.steps
        .iter()
        .filter(|state| state.phase == Phase::Main && state.item.is_none())
        .filter(|state| {
            matches!(
                state.status,
                StepStatus::Succeeded | StepStatus::Approved | StepStatus::Skipped
            )
        })
        .filter_map(|state| {
            if state.status == StepStatus::Skipped {
                return Some(RehearsedStep { step_id: state.step_id.clone(), took: None });
            }
            let first_attempt = run
                .attempts
                .iter()
                .filter(|attempt| attempt.step_id == state.step_id)
                .filter_map(|attempt| attempt.started_at)
                .min();
            let began = [first_attempt, state.started_at].into_iter().flatten().min()?;
            let took = (state.finished_at? - began).to_std().unwrap_or_default();
            Some(RehearsedStep { step_id: state.step_id.clone(), took: Some(took) })
        })
        .collect()
}

#[async_trait]
impl Leases for MemoryStore {
    async fn acquire_lease(
        &self,
        run_id: Uuid,
        lease: &Lease,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let mut contents = self.contents();
        let run = run_mut(&mut contents, run_id)?;
        let free = run
            .run
            .lease
            .as_ref()
            .is_none_or(|held| held.owner == lease.owner || held.expires_at < now);
        if free {
            run.run.lease = Some(lease.clone());
        }
        Ok(free)
    }

    async fn renew_lease(&self, run_id: Uuid, lease: &Lease) -> Result<bool, StoreError> {
        let mut contents = self.contents();
        let run = run_mut(&mut contents, run_id)?;
        match &mut run.run.lease {
            Some(held) if held.owner == lease.owner => {
                held.expires_at = lease.expires_at;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn release_lease(&self, run_id: Uuid, owner: &str) -> Result<(), StoreError> {
        let mut contents = self.contents();
        let run = run_mut(&mut contents, run_id)?;
        if run.run.lease.as_ref().is_some_and(|held| held.owner == owner) {
            run.run.lease = None;
            drop(contents);
            self.signals.work_available();
        }
        Ok(())
    }

    async fn runs_needing_a_driver(&self, now: Timestamp) -> Result<Vec<Uuid>, StoreError> {
        let contents = self.contents();
        Ok(contents
            .runs
            .iter()
            .filter(|run| matches!(run.run.status, RunStatus::Running | RunStatus::Waiting))
            .filter(|run| run.run.lease.as_ref().is_none_or(|lease| lease.expires_at < now))
            .filter(|run| {
                run.run.status == RunStatus::Running
                    || run.steps.iter().any(|step| {
                        step.status == StepStatus::Waiting
                            && step.deadline.is_some_and(|deadline| deadline < now)
                    })
            })
            .map(|run| run.run.id)
            .collect())
    }
}

#[async_trait]
impl Audit for MemoryStore {
    async fn append_events(&self, events: Vec<NewEvent>) -> Result<(), StoreError> {
        let at = self.clock.now();
        self.contents().events.extend(events.into_iter().map(|event| (at, event)));
        self.signals.events_appended();
        Ok(())
    }

    async fn audit_events(&self, filter: &AuditFilter) -> Result<Vec<AuditEvent>, StoreError> {
        let chained = MemoryStore::chain(&self.contents());
        let mut selected: Vec<AuditEvent> = chained
            .into_iter()
            .filter(|event| selected_by(filter, event))
            .filter(|event| filter.after_seq.is_none_or(|after| event.seq > after))
            .filter(|event| filter.before_seq.is_none_or(|before| event.seq < before))
            .collect();
        if filter.newest_first {
            selected.reverse();
        }
        selected.truncate(filter.limit.map_or(usize::MAX, |limit| limit as usize));
        Ok(selected)
    }

    async fn count_audit_events(&self, filter: &AuditFilter) -> Result<u64, StoreError> {
        let chained = MemoryStore::chain(&self.contents());
        Ok(chained.iter().filter(|event| selected_by(filter, event)).count() as u64)
    }

    async fn latest_seq(&self) -> Result<i64, StoreError> {
        Ok(i64::try_from(self.contents().events.len()).unwrap_or(i64::MAX))
    }

    async fn verify_audit(&self) -> Result<Verification, StoreError> {
        let mut verifier = ChainVerifier::default();
        for event in MemoryStore::chain(&self.contents()) {
            verifier.push(&event);
        }
        Ok(verifier.finish())
    }
}

/// Whether an event passes a filter's selection (not its paging).
fn selected_by(filter: &AuditFilter, event: &AuditEvent) -> bool {
    filter.run_id.is_none_or(|id| event.run_id == Some(id))
        && filter.run_prefix.as_ref().is_none_or(|prefix| {
            event.run_id.is_some_and(|id| id.to_string().starts_with(prefix.as_str()))
        })
        && filter.actor.as_ref().is_none_or(|actor| &event.actor == actor)
        && filter.action.as_ref().is_none_or(|action| &event.action == action)
        && filter.since.is_none_or(|since| event.at >= since)
        && filter.until.is_none_or(|until| event.at <= until)
}

#[async_trait]
impl Verifications for MemoryStore {
    async fn claim_verification_slot(&self, slot: &VerificationSlot) -> Result<bool, StoreError> {
        Ok(self.contents().slots.insert((slot.runbook.clone(), slot.start)))
    }

    async fn verification(&self, runbook: &str) -> Result<Option<VerificationState>, StoreError> {
        Ok(self.contents().verifications.get(runbook).cloned())
    }

    async fn verifications(&self) -> Result<Vec<VerificationState>, StoreError> {
        Ok(self.contents().verifications.values().cloned().collect())
    }

    async fn record_verification(
        &self,
        state: &VerificationState,
        events: Vec<NewEvent>,
    ) -> Result<(), StoreError> {
        let at = self.clock.now();
        let mut contents = self.contents();
        contents.verifications.insert(state.runbook.clone(), state.clone());
        contents.events.extend(events.into_iter().map(|event| (at, event)));
        drop(contents);
        self.signals.events_appended();
        Ok(())
    }
}

#[async_trait]
impl Notifications for MemoryStore {
    async fn notification_cursor(&self, target: &str) -> Result<Option<i64>, StoreError> {
        Ok(self.contents().cursors.get(target).copied())
    }

    async fn set_notification_cursor(
        &self,
        target: &str,
        after_seq: i64,
    ) -> Result<(), StoreError> {
        let mut contents = self.contents();
        let cursor = contents.cursors.entry(target.to_owned()).or_insert(after_seq);
        *cursor = (*cursor).max(after_seq);
        Ok(())
    }

    async fn claim_notification_target(
        &self,
        target: &str,
        lease: &Lease,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let mut contents = self.contents();
        let newest = i64::try_from(contents.events.len()).unwrap_or(i64::MAX);
        contents.cursors.entry(target.to_owned()).or_insert(newest);
        let free = contents
            .targets
            .get(target)
            .is_none_or(|held| held.owner == lease.owner || held.expires_at < now);
        if free {
            contents.targets.insert(target.to_owned(), lease.clone());
        }
        Ok(free)
    }
}

#[async_trait]
impl Cluster for MemoryStore {
    async fn heartbeat(&self, node: &NodeRecord) -> Result<(), StoreError> {
        let mut contents = self.contents();
        contents.nodes.retain(|known| known.id != node.id);
        contents.nodes.push(node.clone());
        Ok(())
    }

    async fn nodes(&self) -> Result<Vec<NodeRecord>, StoreError> {
        Ok(self.contents().nodes.clone())
    }

    fn changes(&self) -> Changes {
        self.signals.subscribe()
    }
}
