//! Groups and fan-outs: a `parallel` step's branches and a `for_each` step's items run at once,
//! each a step of its own, committed `running` before its effect starts and recorded after it
//! ends, exactly as a step of the sequence is.

use std::collections::{HashMap, HashSet};

use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::audit::{AuditData, NewEvent, StepFinished, StepSettled, StepStarted};
use crate::engine::{DriveEnd, EngineError, Progress, waiting_for};
use crate::machine::{self, Next};
use crate::plan::Action;
use crate::run::*;
use crate::runbook::{Runbook, Step};
use crate::runner::{self, Stop};

use tracing::Instrument as _;

use super::start::Started;
use super::{Driver, Flight, step_span};

impl Driver<'_> {
    /// Starts a group or fan-out: it becomes `running`, and its children are created
    /// `pending` (a fan-out's `items`, listed by [`Driver::prepare`]). A group started again
    /// after the commander's retry keeps its children.
    pub(super) async fn start_group(
        &mut self,
        step: &Step,
        items: Result<Vec<serde_json::Value>, String>,
    ) -> Result<(), EngineError> {
        let Some(state) = self.snapshot.step(&step.id).cloned() else { return Ok(()) };
        let resumed = self.snapshot.children(&step.id).next().is_some();
        let mut children = Vec::new();
        let rendered = match &step.fan_out {
            Some(fan_out) => {
                let items = if resumed {
                    self.snapshot.children(&step.id).filter_map(|c| c.item.clone()).collect()
                } else {
                    match items {
                        Ok(items) => items,
                        Err(note) => {
                            return self.settle(step, StepStatus::Failed, Some(note)).await;
                        }
                    }
                };
                if !resumed {
                    for (index, item) in items.iter().enumerate() {
                        let id = item_id(&step.id, index);
                        let mut child = StepState::child(&id, &step.id, state.phase, index);
                        child.item = Some(item.clone());
                        children.push(child);
                    }
                }
                Action::ForEach {
                    items,
                    concurrency: fan_out.concurrency,
                    max_failures: fan_out.max_failures.to_string(),
                }
            }
            None => {
                if !resumed {
                    for (index, branch) in step.branches().iter().enumerate() {
                        children.push(StepState::child(&branch.id, &step.id, state.phase, index));
                    }
                }
                Action::Parallel {
                    branches: step.branches().iter().map(|b| b.id.clone()).collect(),
                }
            }
        };
        let mut action = rendered;
        self.secrets.mask_action(&mut action);
        let mut transition = self.transition();
        let mut running = state.clone();
        running.start(state.attempt, action.clone(), self.engine.now());
        transition.steps.push(running);
        transition.steps.extend(children);
        transition.events.push(
            NewEvent::typed(
                &Actor::steady(),
                Some(self.run_id),
                AuditData::StepStarted(StepStarted {
                    attempt: state.attempt,
                    rendered: action.into(),
                }),
            )
            .step(&step.id),
        );
        self.commit(transition).await.map(|_| ())
    }

    /// Drives a running group or fan-out: starts its children within its limits, runs their
    /// effects at once, records each as it ends, recovers children a dead driver left
    /// `running`, and ends the group when nothing more can happen in it. Returns how the
    /// drive ends when it must (the run waits for people at a branch, or the driver is asked
    /// to stop), or `None` when the machine should decide again.
    pub(super) async fn drive_group(
        &mut self,
        runbook: &Runbook,
        step: &Step,
    ) -> Result<Option<DriveEnd>, EngineError> {
        let mut flights: JoinSet<(Flight, runner::Output)> = JoinSet::new();
        let mut flying: HashSet<String> = HashSet::new();
        // A child whose attempt failed and is retried waits out its delay here, in memory: a
        // new driver starts it at once, which only shortens one delay.
        let mut retry_at: HashMap<String, Instant> = HashMap::new();
        loop {
            let stopping = matches!(*self.stop.borrow(), Stop::AfterStep | Stop::Interrupt);
            let now = self.engine.now();
            // The group goes on only while it is what the run needs: a cancellation, a
            // commander's decision or a gate that must be asked again ends it here.
            let current = matches!(
                machine::next(runbook, &self.snapshot, now),
                Next::Group(group) if group.id == step.id
            );
            if stopping || !current {
                let Some(landed) = flights.join_next().await else {
                    if !stopping {
                        return Ok(None);
                    }
                    // Interrupted, as a step alone would be: the group's interrupted children
                    // wait for the commander's decision, and nothing more of it starts.
                    if *self.stop.borrow() == Stop::Interrupt && current {
                        self.interrupt_group(step).await?;
                    }
                    return Ok(Some(DriveEnd::Stopped));
                };
                let (flight, output) = joined(landed);
                flying.remove(&flight.launch.step.id);
                let span = step_span(&flight.launch.step, Some(flight.number));
                self.land(flight, output).instrument(span).await?;
                continue;
            }
            let plan =
                machine::group_next(runbook, step, &self.snapshot, |id| flying.contains(id), now);
            let recover: Vec<String> = plan.recover.iter().map(|s| s.step_id.clone()).collect();
            let expire: Vec<String> = plan.expire.iter().map(|s| s.step_id.clone()).collect();
            let start: Vec<String> = plan.start.iter().map(|s| s.step_id.clone()).collect();
            let waiting = plan.waiting.map(|state| state.step_id.clone());
            let outcome = plan.outcome;

            let mut acted = false;
            for id in recover {
                let (child, _) = self.child(runbook, step, &id);
                self.recover(&child).await?;
                acted = true;
            }
            for id in expire {
                let (child, _) = self.child(runbook, step, &id);
                let transition = self.engine.expiry(&self.snapshot, &child, Some(self.owner()));
                self.commit(transition).await?;
                acted = true;
            }
            let wake = Instant::now();
            for id in start {
                if retry_at.get(&id).is_some_and(|at| *at > wake) {
                    continue;
                }
                retry_at.remove(&id);
                let (child, item) = self.child(runbook, step, &id);
                let item = item.as_ref().map(|(name, value)| (name.as_str(), value));
                acted = true;
                // Each child logs in a span of its own, beside its siblings.
                let span = step_span(&child, None);
                match self.start(runbook, &child, item).instrument(span.clone()).await {
                    Ok(Started::Launch(launch)) => {
                        let flight = self.take_off(*launch).instrument(span.clone()).await?;
                        if let Some(flight) = flight {
                            flying.insert(id);
                            let effects = self.engine.effects.clone();
                            let capture = self.capture();
                            let mut stop = self.stop.clone();
                            let fly = async move {
                                let output = flight.fly(effects.as_ref(), capture, &mut stop).await;
                                (flight, output)
                            };
                            flights.spawn(fly.instrument(span));
                        }
                    }
                    Ok(Started::RetryIn(delay)) => {
                        retry_at.insert(id, Instant::now() + delay);
                    }
                    Ok(Started::Done) => {}
                    Err(error @ EngineError::Store(_)) => {
                        self.fail_unrecorded(&child, &error).await?;
                    }
                    Err(error) => return Err(error),
                }
                // A child that changed the run (a gate asked again) ends the starting here.
                if self.run_record().status != RunStatus::Running {
                    break;
                }
            }
            if acted {
                continue;
            }
            if !flights.is_empty() {
                let next_retry = retry_at.values().min().copied();
                tokio::select! {
                    Some(landed) = flights.join_next() => {
                        let (flight, output) = joined(landed);
                        let id = flight.launch.step.id.clone();
                        flying.remove(&id);
                        let span = step_span(&flight.launch.step, Some(flight.number));
                        if let Some(delay) = self.land(flight, output).instrument(span).await? {
                            retry_at.insert(id, Instant::now() + delay);
                        }
                    }
                    () = sleep_until(next_retry) => {}
                }
                continue;
            }
            if let Some(status) = outcome {
                let note = self.group_note(step, status);
                self.settle(step, status, note).await?;
                return Ok(None);
            }
            if let Some(waiting) = waiting {
                let (child, _) = self.child(runbook, step, &waiting);
                self.change_run(
                    |change| {
                        change.status = RunStatus::Waiting;
                        change.lease = LeaseChange::Release;
                    },
                    AuditData::RunWaiting,
                    Some(&child.id),
                )
                .await?;
                let what = waiting_for(&self.snapshot, &child);
                self.observer.progress(self.run_record(), Progress::Waiting { step: &child, what });
                return Ok(Some(DriveEnd::Settled(RunStatus::Waiting)));
            }
            let next_retry = retry_at.values().min().copied();
            if next_retry.is_none() {
                // Nothing runs, waits or may start, and the machine found no outcome: decide
                // again from the top rather than spin.
                return Ok(None);
            }
            let mut stop = self.stop.clone();
            tokio::select! {
                () = sleep_until(next_retry) => {}
                _ = stop.wait_for(|stop| *stop != Stop::No) => {}
            }
        }
    }

    /// The driver was interrupted while children ran: the group is `interrupted` and the run
    /// needs attention, when a child was.
    async fn interrupt_group(&mut self, step: &Step) -> Result<(), EngineError> {
        let interrupted =
            self.snapshot.children(&step.id).any(|c| c.status == StepStatus::Interrupted);
        let Some(state) = self.snapshot.step(&step.id).cloned() else { return Ok(()) };
        if !interrupted || state.status != StepStatus::Running {
            return Ok(());
        }
        let note = self.group_note(step, StepStatus::Interrupted);
        let mut transition = self.transition();
        let mut ended = state;
        ended.end(StepStatus::Interrupted, note.clone(), self.engine.now());
        transition.steps.push(ended);
        let mut change = RunChange::from(self.run_record());
        change.status = RunStatus::NeedsAttention;
        change.lease = LeaseChange::Release;
        transition.run = Some(change);
        let settled = StepSettled { status: StepStatus::Interrupted, note };
        for data in
            [AuditData::StepFinished(StepFinished::Settled(settled)), AuditData::RunNeedsAttention]
        {
            transition
                .events
                .push(NewEvent::typed(&Actor::steady(), Some(self.run_id), data).step(&step.id));
        }
        self.commit(transition).await.map(|_| ())
    }

    /// A child of `group` as the steps it runs as: a branch as written, or the fan-out's step
    /// made for the item, with the item as its templates name it.
    fn child(
        &self,
        runbook: &Runbook,
        group: &Step,
        id: &str,
    ) -> (Step, Option<(String, serde_json::Value)>) {
        let state = self.snapshot.step(id);
        match (&group.fan_out, state) {
            (Some(fan_out), Some(state)) => {
                let item = state.item.clone().unwrap_or_default();
                let step = group.for_item(state.position as usize, &item);
                (step, Some((fan_out.name.clone(), item)))
            }
            _ => (runbook.find_step(id).cloned().unwrap_or_else(|| group.clone()), None),
        }
    }

    /// Why a group ended as it did, in words: how many children failed or were interrupted.
    fn group_note(&self, step: &Step, status: StepStatus) -> Option<String> {
        let children: Vec<&StepState> = self.snapshot.children(&step.id).collect();
        let count = |wanted: fn(StepStatus) -> bool| {
            children.iter().filter(|state| wanted(state.status)).count()
        };
        let failed = count(StepStatus::is_failure);
        let interrupted = count(|status| status == StepStatus::Interrupted);
        let not_run = count(|status| status == StepStatus::Pending);
        let noun = if step.fan_out.is_some() { "items" } else { "branches" };
        match status {
            StepStatus::Failed => {
                let limit = match &step.fan_out {
                    Some(fan_out) => format!(" (limit {})", fan_out.max_failures),
                    None => String::new(),
                };
                let mut note = format!("{failed} of {} {noun} failed{limit}", children.len());
                if not_run > 0 {
                    note.push_str(&format!("; {not_run} not run"));
                }
                Some(note)
            }
            StepStatus::Interrupted => Some(format!(
                "{interrupted} of {} {noun} were interrupted and wait for a decision",
                children.len()
            )),
            _ if failed > 0 => {
                Some(format!("{failed} of {} {noun} failed, within the limit", children.len()))
            }
            _ => None,
        }
    }
}

/// A child's effect as its task ended. The tasks are never aborted while the set is kept, so
/// an error is a panic, carried on as a panic of the driver, as it would be in a sequence.
fn joined(
    result: Result<(Flight, runner::Output), tokio::task::JoinError>,
) -> (Flight, runner::Output) {
    match result {
        Ok(landed) => landed,
        Err(error) => std::panic::resume_unwind(error.into_panic()),
    }
}

/// Sleeps until `at`, or forever when there is nothing to wait for.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
