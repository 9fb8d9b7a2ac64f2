//! Approval binding: what a gate's approval binds to, the preview approvers see, and the check
//! before a guarded step runs that it still renders as they saw it.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::audit::{ApprovalVoided, AuditData, Binding, NewEvent, VoidReason, canonical_json};
use crate::machine::{self, governing_gate, guarded_steps};
use crate::plan::{self, Action};
use crate::run::*;
use crate::runbook::{Runbook, Step, StepKind};
use crate::template::{self, Context, SecretValues};

use super::context::{NotYetRun, run_context};
use super::driver::Driver;
use super::{Engine, EngineError, Progress};

impl Engine {
    /// What an approver approves: the run's parameters and the steps the gate guards, rendered
    /// as far as they can be before those steps run.
    pub(super) fn binding(
        &self,
        runbook: &Runbook,
        snapshot: &RunSnapshot,
        gate: &Step,
    ) -> Binding {
        let context = run_context(
            runbook,
            &Arc::new(snapshot.clone()),
            SecretValues::Masked,
            NotYetRun::Placeholders,
        );
        let rendered: Vec<(String, Option<Action>)> =
            guarded_steps(runbook, snapshot.run.phase, &gate.id)
                .iter()
                .flat_map(|step| guarded_renderings(step, &context))
                .collect();
        Binding::new(
            &gate.id,
            &snapshot.run.params,
            rendered.iter().map(|(id, action)| (id.as_str(), action.as_ref())),
        )
    }

    /// What each gate of the run guards, rendered as its approvers see it (with placeholders
    /// for outputs not known yet): gate id → guarded step id → rendered action.
    pub fn approval_preview(
        &self,
        runbook: &Runbook,
        snapshot: &RunSnapshot,
    ) -> BTreeMap<String, BTreeMap<String, Action>> {
        let context = run_context(
            runbook,
            &Arc::new(snapshot.clone()),
            SecretValues::Masked,
            NotYetRun::Placeholders,
        );
        let mut preview = BTreeMap::new();
        for phase in [Phase::Main, Phase::Rollback] {
            for gate in machine::sequence(runbook, phase).iter().filter(|step| step.is_gate()) {
                let steps = guarded_steps(runbook, phase, &gate.id)
                    .iter()
                    .flat_map(|step| guarded_renderings(step, &context))
                    .filter_map(|(id, action)| Some((id, action?)))
                    .collect();
                preview.insert(gate.id.clone(), steps);
            }
        }
        preview
    }
}

/// What a gate binds of one guarded step: its rendering, or, for a group or fan-out, each
/// branch's and each item's, by their own ids. A fan-out whose items are not known yet binds
/// one rendering under its own id, its item a placeholder.
fn guarded_renderings(step: &Step, context: &Context) -> Vec<(String, Option<Action>)> {
    if !step.has_children() {
        return vec![(step.id.clone(), plan::render_action(step, context).ok())];
    }
    match plan::children(step, context) {
        Ok(children) => children
            .iter()
            .map(|(child, context)| (child.id.clone(), plan::render_action(child, context).ok()))
            .collect(),
        Err(_) => vec![(step.id.clone(), None)],
    }
}

impl Driver<'_> {
    /// Checks, before a step behind a gate runs, that it still renders as its approvers saw
    /// it. Approvals that no longer match are void; when too few remain, the gate waits again.
    /// Returns whether the step must not run now.
    pub(super) async fn approval_void(
        &mut self,
        runbook: &Runbook,
        step: &Step,
        rendered: &Action,
    ) -> Result<bool, EngineError> {
        let phase = self.run_record().phase;
        // A branch or an item runs behind the gate of its group, which bound it by its own id
        // (or, for items not known at the time, under the group's).
        let group = self.snapshot.step(&step.id).and_then(|state| state.parent.clone());
        let in_sequence = group.as_deref().unwrap_or(&step.id);
        let Some(gate) = governing_gate(runbook, phase, in_sequence) else { return Ok(false) };
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
        let actual = canonical_json(&rendered.to_value());
        let stale: Vec<&Vote> = self
            .snapshot
            .live_votes(&gate.id)
            .filter(|vote| vote.approve)
            .filter(|vote| {
                match vote.bound.step(&step.id).or_else(|| vote.bound.step(in_sequence)) {
                    Some(approved) => !template::matches_with_placeholders(approved, &actual),
                    None => false,
                }
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
                NewEvent::typed(
                    &Actor::steady(),
                    Some(self.run_id),
                    AuditData::ApprovalVoided(ApprovalVoided {
                        approver: vote.actor.clone(),
                        digest: vote.digest.clone(),
                        step: step.id.clone(),
                        reason: VoidReason::RendersDifferently,
                    }),
                )
                .step(&gate.id),
            );
        }
        if reopen {
            let mut reopened = gate_state.clone();
            reopened.reopen(approval.timeout.map(|timeout| self.engine.later(timeout.as_std())));
            transition.steps.push(reopened);
            // A group's siblings may still run: the machine makes the run wait once they
            // have ended, seeing the gate waiting again.
            if group.is_none() {
                let mut change = RunChange::from(self.run_record());
                change.status = RunStatus::Waiting;
                change.lease = LeaseChange::Release;
                transition.run = Some(change);
            }
        }
        if !self.commit(transition).await? {
            return Ok(true);
        }
        self.observer.progress(self.run_record(), Progress::ApprovalVoided { gate });
        Ok(reopen)
    }
}
