//! Recovery: a step found `running` by a new driver, and a step whose result the store refused.

use crate::audit::{
    AfterInterruption, AuditData, NewEvent, RunTakenOver, StepFinished, StepInterrupted,
    StepUnrecorded,
};
use crate::engine::{EngineError, Progress, transition_from};
use crate::machine::safe_to_repeat;
use crate::run::*;
use crate::runbook::Step;

use super::Driver;

impl Driver<'_> {
    /// The store refused to record a step starting or ending: the step fails with the store's
    /// error, once, rather than being left `running` for the next driver to run again and again.
    pub(super) async fn fail_unrecorded(
        &mut self,
        step: &Step,
        error: &EngineError,
    ) -> Result<(), EngineError> {
        tracing::warn!(%error, "the database refused to record the step: recording it as failed");
        let message = format!("the database refused to record this step: {error}");
        let run_id = self.run_id;
        self.record(|fresh| {
            let mut transition = transition_from(fresh);
            let Some(state) = fresh.step(&step.id) else { return transition };
            let mut failed = state.clone();
            failed.end(StepStatus::Failed, Some(message.clone()), self.engine.now());
            transition.steps.push(failed);
            // The attempt recorded `running`, if it got that far, ends with the error.
            let attempt = fresh
                .attempt(&step.id, state.attempt)
                .filter(|_| state.status == StepStatus::Running)
                .map(|attempt| Attempt {
                    status: Some(StepStatus::Failed),
                    finished_at: Some(self.engine.now()),
                    error: Some(message.clone()),
                    ..attempt.clone()
                });
            transition.attempts.extend(attempt);
            transition.events.push(
                NewEvent::typed(
                    &Actor::steady(),
                    Some(run_id),
                    AuditData::StepFinished(StepFinished::Unrecorded(StepUnrecorded {
                        attempt: state.attempt,
                        status: StepStatus::Failed,
                        error: message.clone(),
                        retry: false,
                    })),
                )
                .step(&step.id),
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
                duration: None,
            },
        );
        Ok(())
    }

    /// A step found `running`: its driver died. Safe steps run again; others wait for a person.
    pub(super) async fn recover(&mut self, step: &Step) -> Result<(), EngineError> {
        let Some(state) = self.snapshot.step(&step.id).cloned() else { return Ok(()) };
        let rerun = safe_to_repeat(step);
        let mut transition = self.transition();
        let mut new_state = state.clone();
        new_state.interrupt(
            if rerun { StepStatus::Pending } else { StepStatus::Interrupted },
            self.engine.now(),
        );
        if let Some(attempt) = self.snapshot.attempt(&step.id, state.attempt) {
            let mut attempt = attempt.clone();
            attempt.status = Some(StepStatus::Interrupted);
            attempt.finished_at = Some(self.engine.now());
            attempt.error = Some("the process driving this step stopped while it ran".to_owned());
            transition.attempts.push(attempt);
        }
        transition.steps.push(new_state);
        let then =
            if rerun { AfterInterruption::RunAgain } else { AfterInterruption::WaitForDecision };
        let interrupted = StepInterrupted { attempt: state.attempt, then };
        transition.events.push(
            NewEvent::typed(
                &Actor::steady(),
                Some(self.run_id),
                AuditData::StepInterrupted(interrupted),
            )
            .step(&step.id),
        );
        let taken_over = RunTakenOver { by: self.owner().to_owned() };
        transition.events.push(NewEvent::typed(
            &Actor::steady(),
            Some(self.run_id),
            AuditData::RunTakenOver(taken_over),
        ));
        if self.commit(transition).await? {
            tracing::warn!(
                rerun,
                "found the step running: the process driving it stopped while it ran"
            );
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
                    duration: None,
                },
            );
        }
        Ok(())
    }
}
