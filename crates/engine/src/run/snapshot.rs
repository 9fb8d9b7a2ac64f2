//! A run as stored, read whole: its record, its steps' states, attempts, votes, role holders
//! and notes, and how a committed transition changes it.

use super::{
    Actor, Assignment, Attempt, LeaseChange, Note, RunRecord, StepState, Timestamp, Transition,
    Vote,
};

/// Everything stored about one run.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSnapshot {
    pub run: RunRecord,
    pub steps: Vec<StepState>,
    pub attempts: Vec<Attempt>,
    pub votes: Vec<Vote>,
    pub assignments: Vec<Assignment>,
    pub notes: Vec<Note>,
    /// Where each state sits in `steps`: built on first use, kept by [`RunSnapshot::apply`].
    pub index: StepIndex,
}

/// Where each step's state sits in a snapshot's `steps`, by id, and each group's children:
/// what keeps a fan-out of thousands of items from searching every state at each commit.
/// Built from `steps` on first use and kept by [`RunSnapshot::apply`], the only way states
/// are added: states may be edited in place, never added or moved by hand once the index is
/// built. A step found elsewhere than indexed is searched for. Never part of a snapshot's
/// equality.
#[derive(Debug, Clone, Default)]
pub struct StepIndex(std::sync::OnceLock<IndexMaps>);

#[derive(Debug, Clone, Default)]
struct IndexMaps {
    by_id: std::collections::HashMap<String, usize>,
    children: std::collections::HashMap<String, Vec<usize>>,
}

impl IndexMaps {
    fn add(&mut self, index: usize, state: &StepState) {
        self.by_id.insert(state.step_id.clone(), index);
        if let Some(parent) = &state.parent {
            self.children.entry(parent.clone()).or_default().push(index);
        }
    }
}

impl PartialEq for StepIndex {
    fn eq(&self, _: &StepIndex) -> bool {
        true
    }
}

impl RunSnapshot {
    /// A run as it is created: its record, its steps' states and its role holders, with
    /// nothing attempted, voted or noted yet.
    pub fn begun(run: RunRecord, steps: Vec<StepState>, assignments: Vec<Assignment>) -> Self {
        RunSnapshot {
            run,
            steps,
            attempts: Vec::new(),
            votes: Vec::new(),
            assignments,
            notes: Vec::new(),
            index: StepIndex::default(),
        }
    }

    fn maps(&self) -> &IndexMaps {
        self.index.0.get_or_init(|| {
            let mut maps = IndexMaps::default();
            for (index, state) in self.steps.iter().enumerate() {
                maps.add(index, state);
            }
            maps
        })
    }

    /// Where the state of step `id` sits in `steps`.
    fn index_of(&self, id: &str) -> Option<usize> {
        match self.maps().by_id.get(id) {
            Some(&index) if self.steps.get(index).is_some_and(|state| state.step_id == id) => {
                Some(index)
            }
            _ => self.steps.iter().position(|state| state.step_id == id),
        }
    }

    pub fn step(&self, id: &str) -> Option<&StepState> {
        self.index_of(id).map(|index| &self.steps[index])
    }

    /// The branches or items of a group or fan-out step, in their order.
    pub fn children<'s>(&'s self, parent: &'s str) -> impl Iterator<Item = &'s StepState> + 's {
        let indexes = self.maps().children.get(parent).map(Vec::as_slice).unwrap_or_default();
        // Children are added only by `apply` (or read whole from the store), which keeps the
        // index; comparing every child's parent again would cost a fan-out dearly.
        indexes.iter().filter_map(move |&index| {
            let state = self.steps.get(index)?;
            debug_assert_eq!(state.parent.as_deref(), Some(parent), "the step index is stale");
            Some(state)
        })
    }

    pub fn attempt(&self, id: &str, number: u32) -> Option<&Attempt> {
        self.attempts.iter().rev().find(|attempt| attempt.number == number && attempt.step_id == id)
    }

    /// The latest attempt of a step, whose output is what `steps.<id>` shows.
    pub fn last_attempt(&self, id: &str) -> Option<&Attempt> {
        self.attempts.iter().filter(|attempt| attempt.step_id == id).max_by_key(|a| a.number)
    }

    pub fn holders(&self, role: &str) -> Vec<&Actor> {
        self.assignments.iter().filter(|a| a.role == role).map(|a| &a.person).collect()
    }

    pub fn holds(&self, actor: &Actor, role: &str) -> bool {
        self.assignments.iter().any(|a| a.role == role && &a.person == actor)
    }

    pub fn live_votes(&self, step_id: &str) -> impl Iterator<Item = &Vote> {
        self.votes.iter().filter(move |vote| vote.step_id == step_id && !vote.void)
    }
}

impl RunSnapshot {
    /// The snapshot after `transition` was committed: what a driver keeps in memory instead
    /// of reading the whole run back after every step.
    pub fn apply(&mut self, transition: &Transition, at: Timestamp) {
        self.run.revision += 1;
        self.run.updated_at = at;
        if let Some(change) = &transition.run {
            self.run.status = change.status;
            self.run.phase = change.phase;
            self.run.started_by = change.started_by.clone();
            self.run.commander = change.commander.clone();
            self.run.finished_at = change.finished_at;
            match &change.lease {
                LeaseChange::Keep => {}
                LeaseChange::Release => self.run.lease = None,
                LeaseChange::Take(lease) => self.run.lease = Some(lease.clone()),
            }
        }
        // Looked up by the index, so that a long run's driver does not search every state at
        // each commit; the attempt being changed is among the newest. An attempt numbered past the count its
        // step's state held before this transition is new (a state's count is always the
        // number of its latest attempt), so it is appended without a search.
        let new_attempts: Vec<bool> = transition
            .attempts
            .iter()
            .map(|attempt| {
                self.index_of(&attempt.step_id)
                    .is_some_and(|index| attempt.number > self.steps[index].attempt)
            })
            .collect();
        // A fan-out's start adds thousands of states at once: room for exactly those.
        let added = transition.steps.iter().filter(|s| self.index_of(&s.step_id).is_none()).count();
        self.steps.reserve_exact(added);
        for step in &transition.steps {
            match self.index_of(&step.step_id) {
                Some(index) => self.steps[index] = step.clone(),
                None => {
                    self.steps.push(step.clone());
                    let index = self.steps.len() - 1;
                    if let Some(maps) = self.index.0.get_mut() {
                        maps.add(index, step);
                    }
                }
            }
        }
        for (attempt, new) in transition.attempts.iter().zip(new_attempts) {
            let existing = if new {
                None
            } else {
                self.attempts
                    .iter_mut()
                    .rev()
                    .find(|a| a.number == attempt.number && a.step_id == attempt.step_id)
            };
            match existing {
                Some(existing) => *existing = attempt.clone(),
                None => self.attempts.push(attempt.clone()),
            }
        }
        for vote in &mut self.votes {
            if transition.voided_votes.contains(&vote.id) {
                vote.void = true;
            }
        }
        self.votes.extend(transition.votes.iter().cloned());
        for assignment in &transition.assign {
            if !self.assignments.contains(assignment) {
                self.assignments.push(assignment.clone());
            }
        }
        self.assignments.retain(|assignment| !transition.unassign.contains(assignment));
        self.notes.extend(transition.notes.iter().cloned());
    }
}
