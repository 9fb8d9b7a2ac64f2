//! The people of a case: who answers its gates, manual steps and decisions, as the case says.

use std::collections::HashMap;
use std::time::Duration;

use uuid::Uuid;

use crate::engine::{Engine, Then};
use crate::machine;
use crate::run::{Actor, RunSnapshot, StepState, StepStatus, Timestamp};
use crate::runbook::Runbook;

use super::{Case, Given, Stub};

/// The case's people: who answers gates, manual steps and decisions, and what was refused.
pub(super) struct People<'c> {
    pub(super) engine: &'c Engine,
    pub(super) run_id: Uuid,
    pub(super) case: &'c Case,
    pub(super) commander: Actor,
    /// Step or item id → how many times it was answered (waits, decisions), for answers given
    /// as a list.
    pub(super) answered: HashMap<String, u32>,
    /// What the engine refused, in words: shown with a difference, which it often explains.
    pub(super) refusals: Vec<String>,
}

impl People<'_> {
    /// Answers every waiting step the case gives an answer for; false when none of the
    /// answers changed anything (nothing more can happen).
    pub(super) async fn answer_waiting(
        &mut self,
        runbook: &Runbook,
        snapshot: &RunSnapshot,
        now: Timestamp,
    ) -> Result<bool, String> {
        let mut acted = false;
        let waiting: Vec<&StepState> =
            snapshot.steps.iter().filter(|state| state.status == StepStatus::Waiting).collect();
        for state in waiting {
            let id = &state.step_id;
            let Some((key, given)) = given_for(self.case, id) else { continue };
            let count = self.answered.entry(id.clone()).or_default();
            *count += 1;
            let n = *count;
            if key != id.as_str() {
                // An item answered by its fan-out's answer: the fan-out's answer was used.
                let used = self.answered.entry(key.to_owned()).or_default();
                *used = (*used).max(n);
            }
            let Some(stub) = given.nth(n) else { continue };
            match stub {
                Stub::Timeout => {
                    let Some(deadline) = state.deadline else {
                        return Err(format!(
                            "`{id}` is given `timeout`, but it has no timeout: it waits for ever"
                        ));
                    };
                    let wait = (deadline - now).to_std().unwrap_or_default();
                    tokio::time::advance(wait + Duration::from_secs(1)).await;
                    acted = true;
                }
                Stub::Approve(people) => {
                    for person in people {
                        let actor = Actor::person(person);
                        // An answer given once for every wait: who already approved this wait
                        // of the gate does not approve again.
                        if snapshot.live_votes(id).any(|vote| vote.actor == actor) {
                            continue;
                        }
                        match self.engine.approve(self.run_id, id, &actor, None).await {
                            Ok(_) => acted = true,
                            Err(error) => {
                                self.refusals.push(format!("{person} approving `{id}`: {error}"))
                            }
                        }
                    }
                }
                Stub::Reject(person) => {
                    let actor = Actor::person(person);
                    match self.engine.reject(self.run_id, id, &actor, None).await {
                        Ok(_) => acted = true,
                        Err(error) => {
                            self.refusals.push(format!("{person} rejecting `{id}`: {error}"))
                        }
                    }
                }
                Stub::Manual { completion, by, note } => {
                    let person = match by {
                        Some(person) => Actor::person(person),
                        None => first_holder(runbook, snapshot, id)
                            .unwrap_or_else(|| self.commander.clone()),
                    };
                    let answer = self
                        .engine
                        .complete_manual(
                            self.run_id,
                            id,
                            &person,
                            *completion,
                            note.as_deref(),
                            Then::AnyDriver,
                        )
                        .await;
                    match answer {
                        Ok(_) => acted = true,
                        Err(error) => {
                            self.refusals.push(format!("{person} answering `{id}`: {error}"))
                        }
                    }
                }
                Stub::Effect(_) => {}
            }
        }
        Ok(acted)
    }

    /// Takes the commander's next decision for the step (or the first of its failed items)
    /// that needs attention; false when the case gives none.
    pub(super) async fn decide(&mut self, runbook: &Runbook, snapshot: &RunSnapshot) -> bool {
        let Some(step) = machine::attention_step(runbook, snapshot) else { return false };
        let mut candidates: Vec<(String, Option<String>)> = snapshot
            .children(&step.id)
            .filter(|child| {
                matches!(child.status, StepStatus::Failed | StepStatus::Interrupted)
                    || child.status.is_failure()
            })
            .map(|child| (child.step_id.clone(), Some(child.step_id.clone())))
            .collect();
        candidates.push((step.id.clone(), None));
        for (key, child) in candidates {
            let Some(decisions) = self.case.decisions.iter().find(|placed| placed.value.0 == key)
            else {
                continue;
            };
            let count = self.answered.entry(format!("decision {key}")).or_default();
            *count += 1;
            let Some(decision) = decisions.value.1.get(*count as usize - 1).copied() else {
                continue;
            };
            let result = self
                .engine
                .decide_because(self.run_id, &self.commander, decision, child.as_deref(), None)
                .await;
            match result {
                Ok(_) => return true,
                Err(error) => {
                    self.refusals.push(format!("deciding `{decision}` at `{key}`: {error}"));
                    return false;
                }
            }
        }
        false
    }
}

/// The first person holding the role of manual step `id` in the run.
fn first_holder(runbook: &Runbook, snapshot: &RunSnapshot, id: &str) -> Option<Actor> {
    let own = id.split_once('[').map_or(id, |(own, _)| own);
    let role = match &runbook.find_step(own)?.kind {
        crate::runbook::StepKind::Manual(manual) => manual.role.name.clone(),
        _ => return None,
    };
    snapshot.assignments.iter().find(|a| a.role == role).map(|a| a.person.clone())
}

/// What the case gives a step, and under which id: its own answers, or, for an item of a
/// fan-out, the fan-out's.
fn given_for<'c>(case: &'c Case, id: &str) -> Option<(&'c str, &'c Given)> {
    let find = |key: &str| case.given.iter().find(|placed| placed.value.0 == key);
    find(id)
        .or_else(|| id.split_once('[').and_then(|(own, _)| find(own)))
        .map(|placed| (placed.value.0.as_str(), &placed.value.1))
}
