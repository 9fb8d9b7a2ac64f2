//! Who may act on a run: the one place that says so.

use crate::run::RunSnapshot;
use crate::runbook::{Step, StepKind};

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

/// The names of the people holding `role` in the run, for audit data and messages.
pub(crate) fn holder_names(snapshot: &RunSnapshot, role: &str) -> Vec<String> {
    snapshot.holders(role).into_iter().map(|actor| actor.as_str().to_owned()).collect()
}
