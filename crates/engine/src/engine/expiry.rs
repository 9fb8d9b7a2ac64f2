//! A gate past its deadline: it escalates once if the runbook says so, otherwise it times out.

use crate::audit::{AuditData, GateEscalated, NewEvent};
use crate::machine::{self, Next};
use crate::policy::holders_of;
use crate::run::*;
use crate::runbook::{OnTimeout, Runbook, Step, StepKind};

use super::{Engine, finished_event, transition_from};

impl Engine {
    /// A gate found past its deadline by a late answer rather than by a driver. The timeout is
    /// committed together with what follows it when that needs no driver (the run needs
    /// attention, or ends), so that the run never reads `running` with nobody driving it. What
    /// does need a driver (a rollback) is left `running` without a lease, where the server's
    /// executor and `steady resume` find it.
    pub(super) fn late_expiry(
        &self,
        runbook: &Runbook,
        snapshot: &RunSnapshot,
        step: &Step,
    ) -> Transition {
        let mut transition = self.expiry(snapshot, step, None);
        let mut after = snapshot.clone();
        after.apply(&transition, self.now());
        let run_id = snapshot.run.id;
        let Some(change) = transition.run.as_mut() else { return transition };
        match machine::next(runbook, &after, self.now()) {
            Next::Attention(attention) => {
                change.status = RunStatus::NeedsAttention;
                transition.events.push(
                    NewEvent::typed(&Actor::steady(), Some(run_id), AuditData::RunNeedsAttention)
                        .step(&attention.id),
                );
            }
            Next::Finish(status) => {
                change.status = status;
                change.finished_at = Some(self.now());
                transition.events.push(finished_event(run_id, status));
            }
            _ => {}
        }
        transition
    }

    /// Transitions a waiting gate past its deadline: it escalates once if the runbook says so,
    /// otherwise it times out.
    pub(super) fn expiry(
        &self,
        snapshot: &RunSnapshot,
        step: &Step,
        lease_owner: Option<&str>,
    ) -> Transition {
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
                new_state.escalate(&role.name, self.later(timeout.as_std()));
                transition.events.push(
                    NewEvent::typed(
                        &Actor::steady(),
                        Some(run_id),
                        AuditData::GateEscalated(GateEscalated {
                            to: role.name.clone(),
                            holders: holders_of(snapshot, &role.name),
                        }),
                    )
                    .step(&step.id),
                );
            }
            None => {
                new_state.time_out(self.now());
                let mut run = RunChange::from(&snapshot.run);
                run.status = RunStatus::Running;
                transition.run = Some(run);
                transition.events.push(
                    NewEvent::typed(&Actor::steady(), Some(run_id), AuditData::GateTimedOut)
                        .step(&step.id),
                );
            }
        }
        transition.steps.push(new_state);
        transition
    }
}
