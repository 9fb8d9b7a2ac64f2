//! What changes a run: a run created whole, and the `Transition` that changes one, committed
//! whole or not at all.

use uuid::Uuid;

use super::{
    Actor, Assignment, Attempt, Lease, Note, Phase, RunRecord, RunStatus, StepState, Timestamp,
    Vote, make_json_storable, make_storable,
};
use crate::audit::NewEvent;
use crate::plan::Rendered;

/// A run to create, with its steps pending.
#[derive(Debug, Clone)]
pub struct NewRun {
    pub run: RunRecord,
    pub steps: Vec<StepState>,
    pub assignments: Vec<Assignment>,
    pub event: NewEvent,
}

/// One atomic change to a run, with the audit events that record it. A store applies all of
/// it in one transaction, or none of it if the run's revision moved on or the lease is not held.
#[derive(Debug, Clone, Default)]
pub struct Transition {
    /// The revision the change was computed from.
    pub revision: i64,
    /// When set, the change is refused unless this owner holds the run's lease.
    pub lease_owner: Option<String>,
    pub run: Option<RunChange>,
    pub steps: Vec<StepState>,
    pub attempts: Vec<Attempt>,
    pub votes: Vec<Vote>,
    pub voided_votes: Vec<Uuid>,
    pub assign: Vec<Assignment>,
    pub unassign: Vec<Assignment>,
    pub notes: Vec<Note>,
    pub events: Vec<NewEvent>,
    /// Where the runbook's verification stands once this transition (the end of a
    /// verification run) is committed: written with it, so that the state and the
    /// `verification.*` event it called for are one change.
    pub verification: Option<crate::verification::VerificationState>,
}

impl Transition {
    /// Makes every text a step or a person put into the transition storable on every
    /// database (see [`make_storable`]).
    pub fn make_storable(&mut self) {
        for state in &mut self.steps {
            if let Some(note) = &mut state.note {
                make_storable(note);
            }
            match &mut state.rendered {
                Some(Rendered::Action(action)) => {
                    action.each_value_mut(
                        |text| {
                            make_storable(text);
                        },
                        make_json_storable,
                    );
                }
                Some(Rendered::Condition(condition)) => {
                    make_storable(&mut condition.when);
                }
                Some(Rendered::Stored(value)) => make_json_storable(value),
                None => {}
            }
        }
        self.attempts.iter_mut().for_each(Attempt::make_storable);
        for vote in &mut self.votes {
            if let Some(comment) = &mut vote.comment {
                make_storable(comment);
            }
            // `bound` needs nothing: ids, a hex digest, and canonical JSON, whose escapes
            // write a NUL as `\u0000`.
        }
        for note in &mut self.notes {
            make_storable(&mut note.text);
        }
        for event in &mut self.events {
            make_json_storable(&mut event.data);
        }
    }
}

/// New values for a run's own fields.
#[derive(Debug, Clone, PartialEq)]
pub struct RunChange {
    pub status: RunStatus,
    pub phase: Phase,
    /// Changes only when a person takes command of a proposal: they start it.
    pub started_by: Actor,
    pub commander: Actor,
    pub finished_at: Option<Timestamp>,
    pub lease: LeaseChange,
}

/// What a change does to its run's lease.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum LeaseChange {
    /// Left as it is.
    #[default]
    Keep,
    /// Given up: the run now waits for people, or is finished.
    Release,
    /// Taken by this holder: a proposal taken at a terminal is driven there, and no server
    /// polling the same database for work may drive it (with its own environment and secrets).
    Take(Lease),
}

impl RunChange {
    pub fn from(run: &RunRecord) -> RunChange {
        RunChange {
            status: run.status,
            phase: run.phase,
            started_by: run.started_by.clone(),
            commander: run.commander.clone(),
            finished_at: run.finished_at,
            lease: LeaseChange::Keep,
        }
    }
}
