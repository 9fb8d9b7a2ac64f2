//! Rehearsal figures: how long each step and the whole procedure took in the succeeded live
//! runs and drills of a runbook, and what that says about a run under way — when it should
//! finish, and which step is taking longer than it ever did. Pure arithmetic on the durations
//! a store measured ([`Runs::rehearsals`](crate::store::Runs::rehearsals)).
//!
//! What counts as a rehearsal: a run of the runbook, of any version, in mode `live` or
//! `drill`, that `succeeded`. Dry runs execute almost nothing and failed, rolled-back or
//! cancelled runs did not carry the procedure through, so neither says how long it takes.
//! Step ids are stable names across versions, so every version counts: a step that was
//! renamed starts again without figures, and one whose command changed keeps its history.
//!
//! What is measured:
//! - a step, from the start of its first attempt (or, for a gate or manual step, from when
//!   it began to wait for people) to its end: retries and the people's time count, as they do
//!   on the day. A group or fan-out is measured as a whole (its own start to end); branches of
//!   a `parallel` group are measured too, under their own ids; fan-out items are not (their
//!   ids name an index, not a host). Rollback steps never run in a succeeded run.
//! - the whole procedure, from the run's start to its end.
//!
//! Percentiles are nearest-rank: the p-th percentile of n sorted samples is the sample at
//! rank ⌈p·n/100⌉ (from 1). Every figure is therefore a duration that really happened; the
//! median of two samples is the shorter one.

use std::collections::BTreeMap;
use std::time::Duration;

use uuid::Uuid;

use crate::run::{Phase, RunMode, RunSnapshot, RunStatus, StepState, StepStatus, Timestamp};
use crate::runbook::{OnFailure, Runbook};

/// How many of a runbook's latest rehearsals the figures are made from: enough to be steady,
/// few enough that a page reads them quickly. Older rehearsals describe older systems anyway.
pub const REHEARSALS_KEPT: u32 = 200;

/// Which rehearsals a store reads: the succeeded live runs and drills of one runbook (every
/// version), newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RehearsalQuery {
    pub runbook: String,
    /// Only runs started before this instant: a postmortem compares a run with the rehearsals
    /// that came before it, not with itself or later ones.
    pub before: Option<Timestamp>,
    /// At most this many runs, the newest.
    pub limit: u32,
    /// Whether to read each run's steps too; the catalogue needs only the whole runs.
    pub steps: bool,
}

impl RehearsalQuery {
    /// The latest [`REHEARSALS_KEPT`] rehearsals of `runbook`, with their steps.
    pub fn of(runbook: &str) -> RehearsalQuery {
        RehearsalQuery {
            runbook: runbook.to_owned(),
            before: None,
            limit: REHEARSALS_KEPT,
            steps: true,
        }
    }
}

/// One succeeded live run or drill, as a store measured it.
#[derive(Debug, Clone, PartialEq)]
pub struct Rehearsal {
    pub run_id: Uuid,
    pub mode: RunMode,
    pub version: u32,
    pub started_at: Timestamp,
    pub finished_at: Timestamp,
    /// Its main steps and branches that passed (succeeded, approved or skipped); empty when
    /// the query did not ask for steps.
    pub steps: Vec<RehearsedStep>,
}

/// How long one step took in a rehearsal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RehearsedStep {
    pub step_id: String,
    /// `None` when the step was skipped (by its `when`, or by the commander): it took no time
    /// and says nothing about how long it takes when it runs.
    pub took: Option<Duration>,
}

/// The spread of a set of durations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spread {
    pub samples: usize,
    pub median: Duration,
    pub p90: Duration,
    pub max: Duration,
}

impl Spread {
    /// The spread of `samples`; `None` when there are none.
    pub fn of(mut samples: Vec<Duration>) -> Option<Spread> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_unstable();
        Some(Spread {
            samples: samples.len(),
            median: percentile(&samples, 50),
            p90: percentile(&samples, 90),
            max: samples[samples.len() - 1],
        })
    }
}

/// The nearest-rank `p`-th percentile (0 < p ≤ 100) of samples sorted in ascending order: the
/// sample at rank ⌈p·n/100⌉, counted from 1. Zero for no samples.
pub fn percentile(sorted: &[Duration], p: u32) -> Duration {
    let n = sorted.len();
    if n == 0 {
        return Duration::ZERO;
    }
    let rank = (p.clamp(1, 100) as usize * n).div_ceil(100);
    sorted[rank.clamp(1, n) - 1]
}

/// What the rehearsals of one step measured.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StepFigures {
    /// How long the step took when it ran; `None` when it was only ever skipped.
    pub ran: Option<Spread>,
    /// How many rehearsals skipped it.
    pub skipped: usize,
}

/// What the rehearsals of a runbook measured.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Figures {
    /// How many rehearsals the figures come from.
    pub rehearsals: usize,
    /// How many of them were drills (the rest were live runs).
    pub drills: usize,
    /// The whole procedure, from the run's start to its end.
    pub whole: Option<Spread>,
    /// Each step and branch, by id.
    pub steps: BTreeMap<String, StepFigures>,
}

impl Figures {
    pub fn new(rehearsals: &[Rehearsal]) -> Figures {
        let whole = rehearsals
            .iter()
            .map(|r| (r.finished_at - r.started_at).to_std().unwrap_or_default())
            .collect();
        let mut ran: BTreeMap<&str, Vec<Duration>> = BTreeMap::new();
        let mut skipped: BTreeMap<&str, usize> = BTreeMap::new();
        for step in rehearsals.iter().flat_map(|r| &r.steps) {
            match step.took {
                Some(took) => ran.entry(&step.step_id).or_default().push(took),
                None => *skipped.entry(&step.step_id).or_default() += 1,
            }
        }
        let ids: std::collections::BTreeSet<&str> =
            ran.keys().chain(skipped.keys()).copied().collect();
        let steps = ids
            .into_iter()
            .map(|id| {
                let figures = StepFigures {
                    ran: ran.remove(id).and_then(Spread::of),
                    skipped: skipped.get(id).copied().unwrap_or(0),
                };
                (id.to_owned(), figures)
            })
            .collect();
        Figures {
            rehearsals: rehearsals.len(),
            drills: rehearsals.iter().filter(|r| r.mode == RunMode::Drill).count(),
            whole: Spread::of(whole),
            steps,
        }
    }

    /// How long step `id` took when it ran in rehearsals.
    pub fn step(&self, id: &str) -> Option<&Spread> {
        self.steps.get(id)?.ran.as_ref()
    }

    /// What the rehearsals say about `snapshot` at `now`: when a live run or drill should
    /// finish, and which of its steps takes longer than it ever did. `None` for a run that
    /// has ended, a dry run, or a runbook never rehearsed.
    pub fn outlook(
        &self,
        runbook: &Runbook,
        snapshot: &RunSnapshot,
        now: Timestamp,
    ) -> Option<Outlook> {
        let run = &snapshot.run;
        if self.rehearsals == 0 || !run.status.is_active() || run.mode == RunMode::DryRun {
            return None;
        }
        let mut slower = Vec::new();
        let mut slower_from: Option<Timestamp> = None;
        let under_way = snapshot
            .steps
            .iter()
            .filter(|s| matches!(s.status, StepStatus::Running | StepStatus::Waiting));
        for state in under_way {
            let Some(longest) = self.step(&state.step_id).map(|spread| spread.max) else {
                continue;
            };
            let Some(began) = began(snapshot, state) else { continue };
            let running_for = (now - began).to_std().unwrap_or_default();
            if running_for > longest {
                slower.push(Slower { step_id: state.step_id.clone(), running_for, longest });
            } else if let Ok(longest) = chrono::Duration::from_std(longest) {
                // Just past the longest, it becomes slower than any rehearsal.
                let from = began + longest + chrono::Duration::milliseconds(1);
                slower_from = Some(slower_from.map_or(from, |earliest| earliest.min(from)));
            }
        }
        Some(Outlook { expected: self.expected(runbook, snapshot, now), slower, slower_from })
    }

    /// The sum, over the main steps not yet ended, of what rehearsals say each takes: its
    /// median, less what a running or waiting step has already spent. A step already past its
    /// median adds nothing and is named, since how much longer it takes nobody knows; so is
    /// a step no rehearsal ever saw; the rest then takes at least the sum. A step awaiting
    /// the commander's decision counts whole, as if retried. A step that rehearsals only ever
    /// skipped counts nothing. Nothing is expected during a rollback, which no succeeded run
    /// rehearsed.
    fn expected(
        &self,
        runbook: &Runbook,
        snapshot: &RunSnapshot,
        now: Timestamp,
    ) -> Option<Expected> {
        if snapshot.run.phase == Phase::Rollback {
            return None;
        }
        let mut expected = Expected {
            remaining: Duration::ZERO,
            past_median: Vec::new(),
            never_rehearsed: Vec::new(),
            rehearsals: self.rehearsals,
        };
        let deciding = snapshot.run.status == RunStatus::NeedsAttention;
        for step in &runbook.steps {
            let state = snapshot.step(&step.id);
            let spent = match state.map(|s| s.status) {
                None | Some(StepStatus::Pending) => Duration::ZERO,
                Some(StepStatus::Running | StepStatus::Waiting) => state
                    .and_then(|s| began(snapshot, s))
                    .and_then(|began| (now - began).to_std().ok())
                    .unwrap_or_default(),
                // What the commander is asked about runs again if they retry it.
                Some(StepStatus::Interrupted) if deciding => Duration::ZERO,
                Some(status)
                    if status.is_failure()
                        && deciding
                        && step.on_failure != OnFailure::Continue =>
                {
                    Duration::ZERO
                }
                Some(_) => continue,
            };
            match self.steps.get(&step.id) {
                Some(StepFigures { ran: Some(spread), .. }) if spent > spread.median => {
                    expected.past_median.push(step.id.clone());
                }
                Some(StepFigures { ran: Some(spread), .. }) => {
                    expected.remaining += spread.median - spent;
                }
                Some(StepFigures { ran: None, .. }) => {}
                None => expected.never_rehearsed.push(step.id.clone()),
            }
        }
        Some(expected)
    }
}

/// When a step began, as rehearsals measure it: its first attempt's start, or when it
/// started (a group) or began to wait for people (a gate, a manual step).
fn began(snapshot: &RunSnapshot, state: &StepState) -> Option<Timestamp> {
    let first_attempt = snapshot
        .attempts
        .iter()
        .filter(|a| a.step_id == state.step_id)
        .filter_map(|a| a.started_at)
        .min();
    match (first_attempt, state.started_at) {
        (Some(attempt), Some(step)) => Some(attempt.min(step)),
        (attempt, step) => attempt.or(step),
    }
}

/// What the rehearsals say about a run under way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outlook {
    /// How long the rest should take; `None` during a rollback.
    pub expected: Option<Expected>,
    /// Steps running or waiting for longer than any rehearsal took them, in the run's order.
    pub slower: Vec<Slower>,
    /// When the first step now running or waiting within its longest rehearsal will have
    /// outlasted it, if it is still at it: when a page showing the outlook should look again.
    pub slower_from: Option<Timestamp>,
}

/// How long the rest of a run should take, by the rehearsals' medians.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    pub remaining: Duration,
    /// Steps under way for longer than their rehearsed median, which add nothing to
    /// `remaining`: when there are any, the rest takes at least `remaining`.
    pub past_median: Vec<String>,
    /// Steps still to come that no rehearsal ran or skipped: when there are any, the rest
    /// takes at least `remaining`, and nobody knows how much more.
    pub never_rehearsed: Vec<String>,
    /// How many rehearsals the figures come from.
    pub rehearsals: usize,
}

/// A step taking longer than it ever did in rehearsal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slower {
    pub step_id: String,
    pub running_for: Duration,
    /// The longest any rehearsal took it.
    pub longest: Duration,
}

#[cfg(test)]
mod tests;
