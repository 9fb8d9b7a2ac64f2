//! Continuous verification's side of the engine: a period of a runbook's `verify` schedule
//! claimed and its dry run started — or, when it cannot start, recorded as a failed
//! verification — and the end of a verification run recorded in the transition that
//! finishes it. When periods come is the server's scheduler's business; what a verification
//! run does is any dry run's.

use uuid::Uuid;

use crate::audit::{AuditData, NewEvent};
use crate::run::*;
use crate::verification::{self, Outcome, VerificationSlot};

use super::{Engine, EngineError, StartRun};

/// What [`Engine::verify`] did about one period.
#[derive(Debug)]
pub enum Verifying {
    /// This node claimed the period and started the verification's run.
    Started(Uuid),
    /// Another node (or an earlier call) claimed the period first.
    Taken,
    /// This node claimed the period, but the run could not start (a declared secret has no
    /// value here, say): recorded as a failed verification.
    Unstarted(EngineError),
    /// The version declares no `verify`.
    NotScheduled,
}

impl Engine {
    /// Starts the verification of version `version` of runbook `name` for the period that
    /// begins at `period` — unless any node already did: the store's claim lets exactly one
    /// through. The run is a dry run of origin `verification`, started and commanded by
    /// Steady with the runbook's `verify.params`; it holds no lock and, like any run, is
    /// driven by whichever executor takes it. A run that cannot start is recorded as a failed
    /// verification (and announced if verifications passed until then); errors of the store
    /// itself are returned, since they say nothing about the systems verified.
    pub async fn verify(
        &self,
        name: &str,
        version: u32,
        period: Timestamp,
    ) -> Result<Verifying, EngineError> {
        let runbook = self.runbook(name, version).await?;
        let Some(verify) = &runbook.verify else { return Ok(Verifying::NotScheduled) };
        let id = Uuid::now_v7();
        let slot = VerificationSlot {
            runbook: name.to_owned(),
            start: period,
            node: self.config.node.clone(),
            run_id: id,
            claimed_at: self.now(),
        };
        if !self.store.claim_verification_slot(&slot).await? {
            return Ok(Verifying::Taken);
        }
        let start = StartRun {
            runbook: name.to_owned(),
            version: Some(version),
            params: verify.param_texts(),
            mode: RunMode::DryRun,
            origin: RunOrigin::Verification,
            actor: Actor::steady(),
            assignments: Vec::new(),
        };
        match self.start_run_as(start, id, None).await {
            Ok(id) => Ok(Verifying::Started(id)),
            Err(EngineError::Store(error)) => Err(EngineError::Store(error)),
            Err(error) => {
                let reason = format!("could not start: {error}");
                let outcome = Outcome {
                    runbook: name.to_owned(),
                    version,
                    at: self.now(),
                    run_id: None,
                    failure: Some((None, reason)),
                };
                let previous = self.store.verification(name).await?;
                let (state, event) = verification::record(previous.as_ref(), outcome);
                let events = event
                    .map(|data| NewEvent::typed(&Actor::steady(), None, data))
                    .into_iter()
                    .collect();
                self.store.record_verification(&state, events).await?;
                Ok(Verifying::Unstarted(error))
            }
        }
    }

    /// The end of a verification run, added to the transition that finishes it with
    /// `status`: where the runbook's verification then stands, and the event a change from
    /// passing to failing (or back) calls for. Nothing for another run, or for an end that
    /// says nothing about the systems (cancelled).
    pub(super) async fn verification_end(
        &self,
        snapshot: &RunSnapshot,
        status: RunStatus,
        transition: &mut Transition,
    ) -> Result<(), EngineError> {
        if snapshot.run.origin != RunOrigin::Verification {
            return Ok(());
        }
        let Some(outcome) = Outcome::of_run(snapshot, status, self.now()) else { return Ok(()) };
        let previous = self.store.verification(&snapshot.run.runbook).await?;
        let (state, event) = verification::record(previous.as_ref(), outcome);
        if let Some(data) = event {
            // The failing step is the event's step too, so that a notification names it where
            // a relay looks for it (`step_id`), not only in its text.
            let step = match &data {
                AuditData::VerificationFailed(failed) => failed.step.clone(),
                _ => None,
            };
            let mut event = NewEvent::typed(&Actor::steady(), Some(snapshot.run.id), data);
            event.step_id = step;
            transition.events.push(event);
        }
        transition.verification = Some(state);
        Ok(())
    }
}
