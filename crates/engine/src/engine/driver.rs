//! The driver: one drive of one run under a lease. It takes the machine's decisions one by one,
//! commits each transition before the effect it announces, starts effects and records results.

mod group;
mod recover;
mod start;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use tokio::sync::watch;
use tracing::Instrument as _;
use uuid::Uuid;

use crate::audit::{
    AttemptFinished, AuditData, NewEvent, OutputStored, OutputStream, StepFinished, StepStarted,
    sha256_hex,
};
use crate::machine::{self, Next};
use crate::plan::Action;
use crate::run::*;
use crate::runbook::{Runbook, Step};
use crate::runner::{self, Effect, Stop};
use crate::secrets::Secrets;
use crate::store::StoreError;

use super::context::Revealed;
use super::lease::{AbortOnDrop, keep_lease};
use super::verdict::{Verdict, judge, verdict};
use super::{
    DriveEnd, Engine, EngineError, Observer, Progress, finished_event, transition_from, waiting_for,
};

impl Engine {
    /// Drives a run until it needs people, finishes, or `stop` asks the driver to go. Takes
    /// the run's lease first; fails with `LeaseHeld` when another live driver has it.
    ///
    /// Everything it logs, and what its observer logs, is inside a `run` span (`run_id`,
    /// `runbook`) and, while a step is being dealt with, a `step` span (`step`, `attempt`).
    pub async fn drive(
        &self,
        run_id: Uuid,
        observer: &dyn Observer,
        stop: watch::Receiver<Stop>,
    ) -> Result<DriveEnd, EngineError> {
        let span = tracing::info_span!("run", %run_id, runbook = tracing::field::Empty);
        self.drive_under_lease(run_id, observer, stop).instrument(span).await
    }

    async fn drive_under_lease(
        &self,
        run_id: Uuid,
        observer: &dyn Observer,
        stop: watch::Receiver<Stop>,
    ) -> Result<DriveEnd, EngineError> {
        let lease = self.lease_here();
        // Refused, then found free: its holder let go in between (a run it left waiting, say),
        // so it is asked for once more rather than reported lost.
        let mut tries = 0;
        while !self.store.acquire_lease(run_id, &lease, self.now()).await? {
            tries += 1;
            let (snapshot, _) = self.snapshot(run_id).await?;
            match snapshot.run.lease {
                Some(held) => {
                    return Err(EngineError::LeaseHeld {
                        owner: held.owner,
                        until: held.expires_at,
                    });
                }
                None if tries < 2 => continue,
                None => return Err(EngineError::LeaseLost),
            }
        }
        let (steps_stop, steps_stop_rx) = watch::channel(Stop::No);
        let keeper = AbortOnDrop(tokio::spawn(
            keep_lease(
                self.store.clone(),
                self.clock.clone(),
                run_id,
                self.config.clone(),
                stop,
                steps_stop,
            )
            .instrument(tracing::Span::current()),
        ));
        let result = match self.snapshot(run_id).await {
            Ok((snapshot, runbook)) => {
                tracing::Span::current().record("runbook", snapshot.run.runbook.as_str());
                tracing::info!(status = %snapshot.run.status, "driving the run");
                let params = crate::template::params_value(&snapshot.run.params);
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
                    params,
                    cursor: machine::Cursor::default(),
                };
                driver.run().await
            }
            Err(error) => Err(error),
        };
        // Stop renewing first, so that the keeper cannot take the lease back after it is given up.
        drop(keeper);
        let _ = self.store.release_lease(run_id, &self.config.node).await;
        match &result {
            Ok(DriveEnd::Settled(status)) => tracing::info!(%status, "run settled"),
            Ok(DriveEnd::Stopped) => {
                tracing::info!("stopped driving; the run goes on at its next drive")
            }
            // The caller knows what to make of an error (another driver, a retry later).
            Err(_) => {}
        }
        result
    }
}

/// One drive of one run. It keeps the run's snapshot in memory and applies each transition it
/// commits, reloading only when someone else changed the run meanwhile.
pub(super) struct Driver<'e> {
    pub(super) engine: &'e Engine,
    pub(super) run_id: Uuid,
    pub(super) observer: &'e dyn Observer,
    pub(super) stop: watch::Receiver<Stop>,
    pub(super) snapshot: Arc<RunSnapshot>,
    pub(super) runbook: Arc<Runbook>,
    /// The run's declared secrets: real values for effects, and the masker for everything kept.
    pub(super) secrets: Secrets,
    /// Step id → the real output of its last attempt in this drive, where masking changed it:
    /// what `expect`, `check`, `when` and later templates read, never stored.
    pub(super) revealed: Arc<HashMap<String, Arc<Revealed>>>,
    /// The run's parameters as templates see them, made once: they never change.
    pub(super) params: minijinja::Value,
    /// How far the decisions have read the sequence in `snapshot`: kept in step with it by
    /// [`Driver::commit`] and [`Driver::reload`], the only places that change it.
    pub(super) cursor: machine::Cursor,
}

impl Driver<'_> {
    pub(super) fn owner(&self) -> &str {
        &self.engine.config.node
    }

    pub(super) fn run_record(&self) -> &RunRecord {
        &self.snapshot.run
    }

    pub(super) async fn reload(&mut self) -> Result<(), EngineError> {
        let (snapshot, runbook) = self.engine.snapshot(self.run_id).await?;
        self.snapshot = Arc::new(snapshot);
        self.runbook = runbook;
        self.cursor = machine::Cursor::default();
        Ok(())
    }

    pub(super) async fn run(&mut self) -> Result<DriveEnd, EngineError> {
        loop {
            if matches!(*self.stop.borrow(), Stop::AfterStep | Stop::Interrupt) {
                return Ok(DriveEnd::Stopped);
            }
            let runbook = self.runbook.clone();
            match machine::next_from(&runbook, &self.snapshot, self.engine.now(), &mut self.cursor)
            {
                Next::Idle => return Ok(DriveEnd::Settled(self.run_record().status)),
                Next::Start(step) => {
                    async {
                        let started = match self.start(&runbook, step, None).await {
                            Ok(started) => started,
                            Err(error @ EngineError::Store(_)) => {
                                return self.fail_unrecorded(step, &error).await;
                            }
                            Err(error) => return Err(error),
                        };
                        match started {
                            start::Started::Launch(launch) => match self.execute(*launch).await {
                                Err(error @ EngineError::Store(_)) => {
                                    self.fail_unrecorded(step, &error).await
                                }
                                other => other,
                            },
                            start::Started::RetryIn(delay) => {
                                self.pause_before_retry(delay).await;
                                Ok(())
                            }
                            start::Started::Done => Ok(()),
                        }
                    }
                    .instrument(step_span(step, None))
                    .await?
                }
                Next::Group(step) => {
                    let drive = self.drive_group(&runbook, step).instrument(step_span(step, None));
                    if let Some(end) = drive.await? {
                        return Ok(end);
                    }
                }
                Next::Recover(step) => {
                    let attempt = self.snapshot.step(&step.id).map(|state| state.attempt);
                    self.recover(step).instrument(step_span(step, attempt)).await?
                }
                Next::Expire(step) => {
                    let transition = self.engine.expiry(&self.snapshot, step, Some(self.owner()));
                    self.commit(transition).await?;
                }
                Next::Wait(step) => {
                    if self.run_record().status != RunStatus::Waiting {
                        self.change_run(
                            |change| {
                                change.status = RunStatus::Waiting;
                                change.lease = LeaseChange::Release;
                            },
                            AuditData::RunWaiting,
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
                            change.lease = LeaseChange::Release;
                        },
                        AuditData::RunNeedsAttention,
                        Some(&step.id),
                    )
                    .await?;
                    self.observer.progress(self.run_record(), Progress::NeedsAttention { step });
                    return Ok(DriveEnd::Settled(RunStatus::NeedsAttention));
                }
                Next::EnterRollback => {
                    self.change_run(
                        |change| change.phase = Phase::Rollback,
                        AuditData::RunRollbackStarted,
                        None,
                    )
                    .await?;
                    self.observer.progress(self.run_record(), Progress::RolledBack);
                }
                Next::Finish(status) => {
                    let mut transition = self.transition();
                    let mut change = RunChange::from(self.run_record());
                    change.status = status;
                    change.finished_at = Some(self.engine.now());
                    change.lease = LeaseChange::Release;
                    transition.run = Some(change);
                    transition.events.push(finished_event(self.run_id, status));
                    self.engine.verification_end(&self.snapshot, status, &mut transition).await?;
                    if self.commit(transition).await? {
                        self.observer.progress(self.run_record(), Progress::Finished { status });
                        return Ok(DriveEnd::Settled(status));
                    }
                }
            }
        }
    }

    pub(super) fn transition(&self) -> Transition {
        let mut transition = transition_from(&self.snapshot);
        transition.lease_owner = Some(self.owner().to_owned());
        transition
    }

    /// Changes the run's own fields, with one audit event.
    pub(super) async fn change_run(
        &mut self,
        edit: impl FnOnce(&mut RunChange),
        data: AuditData,
        step_id: Option<&str>,
    ) -> Result<bool, EngineError> {
        let mut transition = self.transition();
        let mut change = RunChange::from(self.run_record());
        edit(&mut change);
        transition.run = Some(change);
        let mut event = NewEvent::typed(&Actor::steady(), Some(self.run_id), data);
        event.step_id = step_id.map(str::to_owned);
        transition.events.push(event);
        self.commit(transition).await
    }

    /// Commits a transition computed from the snapshot. Returns false when the run changed
    /// meanwhile (a note, a cancellation): the snapshot is reloaded and the driver decides again.
    pub(super) async fn commit(&mut self, mut transition: Transition) -> Result<bool, EngineError> {
        transition.make_storable();
        match self.engine.store.commit(self.run_id, transition.clone()).await {
            Ok(()) => {
                let at = self.engine.now();
                Arc::make_mut(&mut self.snapshot).apply(&transition, at);
                self.cursor.after(&self.runbook, &transition);
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
    pub(super) async fn record(
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

    /// Runs one attempt of a `run`, `http` or `sleep` step: `running` is committed before the
    /// effect starts, the result after it ends; a retry waits for its delay.
    pub(super) async fn execute(&mut self, launch: Launch) -> Result<(), EngineError> {
        let Some(flight) = self.take_off(launch).await? else { return Ok(()) };
        let mut stop = self.stop.clone();
        let output = flight.fly(self.engine.effects.as_ref(), self.capture(), &mut stop).await;
        if let Some(delay) = self.land(flight, output).await? {
            self.pause_before_retry(delay).await;
        }
        Ok(())
    }

    /// How much output an attempt captures: a little more than is stored, so that a secret
    /// straddling the limit is masked whole before the output is cut.
    pub(super) fn capture(&self) -> usize {
        MAX_OUTPUT + self.secrets.capture_margin()
    }

    /// Commits the attempt `running`, before its effect starts. `None` when the run changed
    /// meanwhile: nothing may start on stale state, and the driver decides again.
    pub(super) async fn take_off(&mut self, launch: Launch) -> Result<Option<Flight>, EngineError> {
        let step = &launch.step;
        let Some(state) = self.snapshot.step(&step.id) else { return Ok(None) };
        let number = state.attempt + 1;
        let started_at = self.engine.now();
        let mut transition = self.transition();
        let mut running = state.clone();
        running.start(number, launch.rendered.clone(), started_at);
        transition.steps.push(running);
        transition.attempts.push(Attempt {
            step_id: step.id.clone(),
            number,
            status: Some(StepStatus::Running),
            started_at: Some(started_at),
            ..Attempt::default()
        });
        transition.events.push(
            NewEvent::typed(
                &Actor::steady(),
                Some(self.run_id),
                AuditData::StepStarted(StepStarted {
                    attempt: number,
                    rendered: launch.rendered.clone().into(),
                }),
            )
            .step(&step.id),
        );
        if !self.commit(transition).await? {
            return Ok(None);
        }
        tracing::Span::current().record("attempt", number);
        self.observer.progress(
            self.run_record(),
            Progress::StepStarted { step, attempt: number, rendered: &launch.rendered },
        );
        let timeout = match (&launch.effect, step.timeout) {
            (Effect::Sleep(duration), _) => duration.saturating_add(StdDuration::from_secs(60)),
            (_, Some(timeout)) => timeout.as_std(),
            (_, None) => Step::DEFAULT_TIMEOUT,
        };
        Ok(Some(Flight { launch, number, started_at, timeout }))
    }

    /// Judges an attempt's output and records it; returns the delay before the step's next
    /// try when it is retried.
    pub(super) async fn land(
        &mut self,
        flight: Flight,
        output: runner::Output,
    ) -> Result<Option<StdDuration>, EngineError> {
        let Flight { launch, number, started_at, timeout } = flight;
        let (attempt, revealed) = judge(
            &self.secrets,
            &launch.step,
            number,
            (started_at, self.engine.now()),
            output,
            timeout,
        );
        if let Some(revealed) = revealed {
            Arc::make_mut(&mut self.revealed).insert(launch.step.id.clone(), Arc::new(revealed));
        }
        self.finish_attempt(&launch.step, launch.rendered, attempt).await
    }

    /// Waits out a retry's delay, or until the driver is asked to stop.
    pub(super) async fn pause_before_retry(&self, delay: StdDuration) {
        let mut stop = self.stop.clone();
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            _ = stop.wait_for(|stop| *stop != Stop::No) => {}
        }
    }

    /// Records an attempt's result and the step's status after it; returns the delay before
    /// the next try when the step has retries left.
    pub(super) async fn finish_attempt(
        &mut self,
        step: &Step,
        rendered: Action,
        mut attempt: Attempt,
    ) -> Result<Option<StdDuration>, EngineError> {
        // Before the output is hashed for the audit log: what is stored is what is hashed.
        attempt.make_storable();
        let before = self.snapshot.step(&step.id).map_or(0, |s| s.attempts_before_round);
        let Verdict { status, step_status, retry } = verdict(step, before, &attempt);
        let run_id = self.run_id;
        self.record(|fresh| {
            let mut transition = transition_from(fresh);
            let Some(state) = fresh.step(&step.id) else { return transition };
            // The step is still this attempt's (running it, or about to check it): anything
            // else means someone already took it over, and only the attempt is recorded.
            let ours = (state.status == StepStatus::Running && state.attempt == attempt.number)
                || (state.status == StepStatus::Pending && state.attempt + 1 == attempt.number);
            let mut new_state = state.clone();
            new_state.finish_attempt(step_status, &attempt, rendered.clone());
            if ours {
                transition.steps.push(new_state);
            }
            // A child's interruption is its group's to weigh, once its siblings have ended.
            if ours
                && status == StepStatus::Interrupted
                && state.parent.is_none()
                && fresh.run.status.is_active()
            {
                let mut change = RunChange::from(&fresh.run);
                change.status = RunStatus::NeedsAttention;
                change.lease = LeaseChange::Release;
                transition.run = Some(change);
            }
            let duration_ms = match (attempt.started_at, attempt.finished_at) {
                (Some(start), Some(end)) => (end - start).num_milliseconds(),
                _ => 0,
            };
            transition.events.push(
                NewEvent::typed(
                    &Actor::steady(),
                    Some(run_id),
                    AuditData::StepFinished(StepFinished::Attempted(AttemptFinished {
                        attempt: attempt.number,
                        status,
                        exit_code: attempt.exit_code,
                        http_status: attempt.http_status,
                        duration_ms,
                        error: attempt.error.clone(),
                        retry: retry.is_some(),
                    })),
                )
                .step(&step.id),
            );
            for (stream, text, truncated) in [
                (OutputStream::Stdout, &attempt.stdout, attempt.stdout_truncated),
                (OutputStream::Stderr, &attempt.stderr, attempt.stderr_truncated),
            ] {
                if !text.is_empty() {
                    let stored = OutputStored {
                        attempt: attempt.number,
                        stream,
                        sha256: sha256_hex(text.as_bytes()),
                        bytes: text.len() as u64,
                        truncated,
                    };
                    transition.events.push(
                        NewEvent::typed(
                            &Actor::steady(),
                            Some(run_id),
                            AuditData::OutputStored(stored),
                        )
                        .step(&step.id),
                    );
                }
            }
            transition.attempts.push(attempt.clone());
            transition
        })
        .await?;
        let detail = attempt.error.clone();
        let duration = match (attempt.started_at, attempt.finished_at) {
            (Some(start), Some(end)) => (end - start).to_std().ok(),
            _ => None,
        };
        self.observer.progress(
            self.run_record(),
            Progress::StepEnded { step, status, attempt: attempt.number, detail, duration },
        );
        Ok(retry.map(|retries| {
            let delay = retries.delay.as_std();
            self.observer.progress(self.run_record(), Progress::RetryIn { step, delay });
            delay
        }))
    }
}

/// An effect about to run for one attempt of a step, as [`Driver::start`] prepared it.
pub(super) struct Launch {
    /// The step, owned: an item of a fan-out runs as a step made for it.
    pub(super) step: Step,
    /// What it does, secrets masked: what is stored and shown.
    pub(super) rendered: Action,
    /// What it does, secrets revealed: what is executed.
    pub(super) effect: Effect,
    pub(super) env: Vec<(String, String)>,
}

/// An attempt committed `running`, whose effect is to run now.
pub(super) struct Flight {
    pub(super) launch: Launch,
    pub(super) number: u32,
    pub(super) started_at: Timestamp,
    pub(super) timeout: StdDuration,
}

impl Flight {
    /// Runs the effect. Owns nothing of the driver, so that a group's children run at once.
    pub(super) async fn fly(
        &self,
        effects: &dyn runner::Effects,
        capture: usize,
        stop: &mut watch::Receiver<Stop>,
    ) -> runner::Output {
        let call = runner::Call {
            step_id: &self.launch.step.id,
            attempt: self.number,
            effect: &self.launch.effect,
            env: &self.launch.env,
            timeout: self.timeout,
            capture,
        };
        effects.execute(call, stop).await
    }
}

/// The span a step is dealt with in: its id, and the attempt once one starts (or the attempt
/// found running, when recovering).
pub(super) fn step_span(step: &Step, attempt: Option<u32>) -> tracing::Span {
    let span = tracing::info_span!("step", step = %step.id, attempt = tracing::field::Empty);
    if let Some(attempt) = attempt {
        span.record("attempt", attempt);
    }
    span
}
