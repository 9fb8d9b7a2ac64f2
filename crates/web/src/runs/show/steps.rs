//! The run page's steps: each with its status in words that hold once the run has ended
//! ("not run", not "pending"), what it does, its gate or manual answer, the commander's
//! decisions on it, and its attempts — the latest open, earlier failures folded away. A
//! `parallel` group holds its branches as lanes, a fan-out its items as a grid.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use steady_engine::machine::guarded_steps;
use steady_engine::plan::Action;
use steady_engine::policy::{self, Refusal};
use steady_engine::run::{Actor, Attempt, Decision, RunSnapshot, StepState, StepStatus};
use steady_engine::runbook::{Runbook, Step, StepKind, item_text};

use super::situation::{Decided, History};
use crate::dto;
use crate::page::{Moment, absolute, duration};
use crate::runs::{status_class, step_badge};

pub(crate) struct GateView {
    pub(crate) role: String,
    pub(crate) quorum: u32,
    pub(crate) holders: String,
    pub(crate) deadline: Option<Moment>,
    pub(crate) guarded: Vec<(String, String)>,
    pub(crate) votes: Vec<VoteView>,
    /// What the engine would accept from the signed-in person now (see `policy`).
    pub(crate) can_approve: bool,
    pub(crate) can_reject: bool,
    pub(crate) why_not: Option<String>,
}

/// One answer at a gate: the verdict and who gave it, when, and what they said.
pub(crate) struct VoteView {
    pub(crate) by: String,
    pub(crate) at: Moment,
    pub(crate) rest: String,
}

pub(crate) struct ManualView {
    pub(crate) role: String,
    pub(crate) can_answer: bool,
}

pub(crate) struct AttemptView {
    pub(crate) number: u32,
    pub(crate) status: String,
    pub(crate) failed: bool,
    pub(crate) duration: String,
    pub(crate) exit_code: Option<i32>,
    /// An `http` step's answer: its status code and, when redirected, where it came from.
    pub(crate) http_status: Option<u16>,
    pub(crate) final_url: Option<String>,
    pub(crate) error: Option<String>,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
    pub(crate) truncated: bool,
}

pub(crate) struct StepView {
    pub(crate) id: String,
    pub(crate) title: String,
    pub(crate) kind: &'static str,
    pub(crate) rollback: bool,
    pub(crate) status: String,
    pub(crate) status_class: &'static str,
    pub(crate) does: String,
    /// For a check: the values of the steps it reads, as they were when it ran.
    pub(crate) compared: Vec<(String, String)>,
    pub(crate) note: Option<String>,
    pub(crate) completed_by: Option<String>,
    /// How long the step took (every attempt and any wait), once it started.
    pub(crate) took: Option<String>,
    /// "slower than any rehearsal (longest 2m 10s)", while it runs or waits past that.
    pub(crate) slower: Option<String>,
    pub(crate) gate: Option<GateView>,
    pub(crate) manual: Option<ManualView>,
    /// The commander's decisions on this step: who, what, when and why.
    pub(crate) decisions: Vec<String>,
    pub(crate) latest: Option<AttemptView>,
    pub(crate) earlier: Vec<AttemptView>,
    /// A fan-out item: the item as people read it.
    pub(crate) item: Option<String>,
    /// A group's branches or a fan-out's items, shown inside it.
    pub(crate) group: Option<GroupView>,
    /// A failed or interrupted branch or item of the group the run needs its commander at,
    /// seen by the commander: retried or skipped on its own from where it is shown.
    pub(crate) decide: Option<DecideOne>,
}

/// The buttons a failed or interrupted child offers its commander.
pub(crate) struct DecideOne {
    /// A gate is never skipped: skipping would run what it guards unapproved.
    pub(crate) can_skip: bool,
}

/// The children of a `parallel` group (lanes side by side) or of a fan-out (a grid of items).
pub(crate) struct GroupView {
    /// Branches are lanes, each a full step; items are a compact grid.
    pub(crate) lanes: bool,
    /// "17 of 40 hosts, 1 failed, limit 2" or "1 of 2 branches done".
    pub(crate) progress: String,
    pub(crate) children: Vec<StepView>,
}

/// What the page may offer `me`, decided by the caller from the global roles.
pub(crate) struct Viewer<'a> {
    pub(crate) actor: &'a Actor,
    pub(crate) responder: bool,
    /// The group step the run needs its commander at, when `me` may command the run
    /// (`policy::may_command`, as the decision panel): its failed children offer decisions.
    pub(crate) deciding: Option<&'a str>,
}

fn holders(snapshot: &RunSnapshot, role: &str) -> String {
    let names: Vec<String> = snapshot.holders(role).into_iter().map(Actor::to_string).collect();
    if names.is_empty() { "nobody holds it".to_owned() } else { names.join(", ") }
}

fn attempt_view(attempt: &Attempt) -> AttemptView {
    AttemptView {
        number: attempt.number,
        status: attempt.status.map(|s| s.as_str().replace('_', " ")).unwrap_or_default(),
        failed: attempt.status.is_some_and(|s| s.is_failure()),
        duration: match (attempt.started_at, attempt.finished_at) {
            (Some(start), Some(end)) => duration(end - start),
            _ => "running".to_owned(),
        },
        exit_code: attempt.exit_code,
        http_status: attempt.http_status,
        final_url: attempt.final_url.clone(),
        error: attempt.error.clone(),
        stdout: attempt.stdout.clone(),
        stderr: attempt.stderr.clone(),
        truncated: attempt.stdout_truncated || attempt.stderr_truncated,
    }
}

/// `steps.<id>.<field>` read by a check's expression, with the value the run holds: what the
/// check compared, shown beside it.
fn values_compared(snapshot: &RunSnapshot, expression: &str) -> Vec<(String, String)> {
    let mut seen = Vec::new();
    for (at, _) in expression.match_indices("steps.") {
        let reference: String = expression[at..]
            .chars()
            .take_while(|c| c.is_alphanumeric() || matches!(c, '_' | '.' | '-'))
            .collect();
        let mut parts = reference.split('.').skip(1);
        let (Some(step), Some(field)) = (parts.next(), parts.next()) else { continue };
        let Some(attempt) =
            snapshot.attempts.iter().filter(|a| a.step_id == step).max_by_key(|a| a.number)
        else {
            continue;
        };
        let value = match field {
            "stdout" => attempt.stdout.trim_end().to_owned(),
            "stderr" => attempt.stderr.trim_end().to_owned(),
            "exit_code" => attempt.exit_code.map(|c| c.to_string()).unwrap_or_default(),
            "status" => attempt.status.map(|s| s.to_string()).unwrap_or_default(),
            "http_status" => attempt.http_status.map(|c| c.to_string()).unwrap_or_default(),
            _ => continue,
        };
        let name = format!("steps.{step}.{field}");
        if !seen.iter().any(|(n, _)| *n == name) {
            seen.push((name, value));
        }
    }
    seen
}

/// What every step view of one page is built from: the run, the decisions taken in it, what
/// gates bind, who is looking, and the attempts grouped by step once, so that a fan-out of a
/// thousand items does not scan every attempt a thousand times.
struct Page<'a> {
    runbook: &'a Runbook,
    snapshot: &'a RunSnapshot,
    history: &'a History,
    binding: &'a BTreeMap<String, BTreeMap<String, Action>>,
    viewer: &'a Viewer<'a>,
    now: chrono::DateTime<chrono::Utc>,
    ended: bool,
    attempts: HashMap<&'a str, Vec<&'a Attempt>>,
}

/// The step views of a run, main sequence then rollback, as `viewer` sees them. A group's
/// branches and a fan-out's items are shown inside their step ([`StepView::group`]), never
/// as steps of their own.
pub(crate) fn steps(
    runbook: &Runbook,
    snapshot: &RunSnapshot,
    history: &History,
    binding: &BTreeMap<String, BTreeMap<String, Action>>,
    viewer: &Viewer<'_>,
    now: chrono::DateTime<chrono::Utc>,
) -> Vec<StepView> {
    let mut attempts: HashMap<&str, Vec<&Attempt>> = HashMap::new();
    for attempt in &snapshot.attempts {
        attempts.entry(attempt.step_id.as_str()).or_default().push(attempt);
    }
    let page = Page {
        runbook,
        snapshot,
        history,
        binding,
        viewer,
        now,
        ended: !snapshot.run.status.is_active(),
        attempts,
    };
    let mut views = Vec::new();
    for (rollback, list) in [(false, &runbook.steps), (true, &runbook.rollback)] {
        for step in list.iter() {
            let Some(state) = snapshot.step(&step.id) else { continue };
            let mut view = step_view(&page, step, state, rollback);
            if step.has_children() {
                view.group = Some(group_view(&page, step, state, rollback));
            }
            views.push(view);
        }
    }
    views
}

/// The branches or items of a group step, and its progress in words.
fn group_view(page: &Page<'_>, step: &Step, state: &StepState, rollback: bool) -> GroupView {
    let mut children = Vec::new();
    for child in page.snapshot.children(&step.id) {
        let Some(child_step) = step_of(page.runbook, child) else { continue };
        let mut view = step_view(page, &child_step, child, rollback);
        let undecided = child.status.is_failure() || child.status == StepStatus::Interrupted;
        if undecided && page.viewer.deciding == Some(step.id.as_str()) {
            view.decide = Some(DecideOne { can_skip: !child_step.is_gate() });
        }
        if let Some(item) = &child.item {
            // An item's title is the fan-out's; the grid names it by its item.
            view.item = Some(item_text(item));
            view.title = item_text(item);
        }
        children.push(view);
    }
    let siblings: Vec<&StepState> = page.snapshot.children(&step.id).collect();
    let progress = dto::group_progress(step, state, &siblings);
    GroupView { lanes: step.fan_out.is_none(), progress, children }
}

/// The step a step state runs as: a step or branch as written, or an item's step
/// ([`Step::for_item`]) made from its fan-out.
pub(crate) fn step_of<'r>(runbook: &'r Runbook, state: &StepState) -> Option<Cow<'r, Step>> {
    match (&state.parent, &state.item) {
        (Some(parent), Some(item)) => {
            let fan_out = runbook.find_step(parent)?;
            Some(Cow::Owned(fan_out.for_item(state.position as usize, item)))
        }
        _ => runbook.find_step(&state.step_id).map(Cow::Borrowed),
    }
}

/// One step's view, without its children.
fn step_view(page: &Page<'_>, step: &Step, state: &StepState, rollback: bool) -> StepView {
    let Page { runbook, snapshot, history, binding, viewer, now, ended, .. } = *page;
    let mut gate = None;
    let mut manual = None;
    match &step.kind {
        StepKind::Approval(approval) => {
            let role = state.escalated_to.clone().unwrap_or_else(|| approval.role.name.clone());
            let open =
                state.status == StepStatus::Waiting && state.deadline.is_none_or(|d| d > now);
            // The engine's own rules decide which buttons are shown, so that the page
            // never offers an answer the engine refuses.
            let approve = policy::may_approve(snapshot, step, viewer.actor);
            let reject = policy::may_answer(snapshot, step, viewer.actor);
            let why_not = match (&approve, viewer.responder) {
                _ if !open => None,
                (Ok(()), true) => None,
                (Err(Refusal::SelfApproval { .. }), true) => Some(
                    "You started this run, so you may not approve its gates. You may reject them."
                        .to_owned(),
                ),
                (Err(Refusal::AlreadyAnswered { .. }), true) => {
                    Some("You have answered; waiting for the others.".to_owned())
                }
                _ => Some(format!("Only people holding `{role}` in this run may answer.")),
            };
            let votes = snapshot
                .votes
                .iter()
                .filter(|v| v.step_id == step.id)
                .map(|v| {
                    let verdict = if v.approve { "✓ approved" } else { "✗ rejected" };
                    let comment =
                        v.comment.as_deref().map(|c| format!(": “{c}”")).unwrap_or_default();
                    let void = if v.void { " (void: the guarded step changed)" } else { "" };
                    VoteView {
                        by: format!("{verdict} by {}", v.actor),
                        at: Moment::new(v.at),
                        rest: format!("{comment}{void}"),
                    }
                })
                .collect();
            // What the gate lets run, as approvers see it: a group's branches and a fan-out's
            // items each rendered on their own (bound by their own ids), or one line for a step.
            let rendered = binding.get(&step.id);
            let guarded = guarded_steps(runbook, state.phase, &step.id)
                .iter()
                .flat_map(|guarded| {
                    let mut ids: Vec<String> = match &guarded.fan_out {
                        Some(_) => (0..)
                            .map(|index| steady_engine::run::item_id(&guarded.id, index))
                            .take_while(|id| rendered.is_some_and(|map| map.contains_key(id)))
                            .collect(),
                        None => guarded.branches().iter().map(|b| b.id.clone()).collect(),
                    };
                    if ids.is_empty() {
                        ids.push(guarded.id.clone());
                    }
                    ids
                })
                .map(|id| {
                    let text = rendered
                        .and_then(|map| map.get(&id))
                        .map(dto::describe_guarded)
                        .unwrap_or_else(|| "(rendered when it runs)".to_owned());
                    (id, text)
                })
                .collect();
            gate = Some(GateView {
                holders: holders(snapshot, &role),
                role,
                quorum: approval.approvals,
                deadline: state.deadline.map(Moment::new),
                guarded,
                votes,
                can_approve: open && viewer.responder && approve.is_ok(),
                can_reject: open && viewer.responder && reject.is_ok(),
                why_not,
            });
        }
        StepKind::Manual(manual_step) => {
            manual = (state.status == StepStatus::Waiting).then(|| ManualView {
                role: manual_step.role.name.clone(),
                can_answer: viewer.responder
                    && policy::may_answer(snapshot, step, viewer.actor).is_ok(),
            });
        }
        _ => {}
    }
    let mut attempts: Vec<AttemptView> = page
        .attempts
        .get(step.id.as_str())
        .map(|attempts| attempts.iter().map(|attempt| attempt_view(attempt)).collect())
        .unwrap_or_default();
    attempts.sort_by_key(|a| a.number);
    let latest = attempts.pop();
    let (status, class) = if ended && state.status == StepStatus::Pending {
        ("· not run".to_owned(), "notrun")
    } else {
        (step_badge(state.status), status_class(state.status.as_str()))
    };
    let mut note = state.note.clone();
    let mut decided: Vec<&Decided> =
        history.decisions.iter().filter(|decided| decided.step == step.id).collect();
    // A skipped step's note ("skipped by carol") and the skip decision say the same thing:
    // the note says it once, with when and why, and the decision is not listed again.
    if state.status == StepStatus::Skipped
        && let Some(last) = decided.last()
        && last.decision == Decision::Skip
        && note.as_deref() == Some(format!("skipped by {}", last.who).as_str())
    {
        note = Some(format!("skipped by {} at {}{}", last.who, absolute(last.at), quoted(last)));
        decided.pop();
    }
    let decisions = decided
        .iter()
        .map(|decided| {
            let at = absolute(decided.at);
            format!("{} decided by {} at {at}{}", decided.decision, decided.who, quoted(decided))
        })
        .collect();
    let does = state.rendered.as_ref().map(dto::describe_rendered).unwrap_or_default();
    let compared = match &step.kind {
        StepKind::Check(_) if state.status != StepStatus::Pending => {
            values_compared(snapshot, &does)
        }
        _ => Vec::new(),
    };
    StepView {
        id: step.id.clone(),
        title: step.title().to_owned(),
        kind: if step.fan_out.is_some() { "for each" } else { step.kind.name() },
        rollback,
        status,
        status_class: class,
        does,
        compared,
        note,
        completed_by: state.completed_by.as_ref().map(ToString::to_string),
        took: state.started_at.map(|start| duration(state.finished_at.unwrap_or(now) - start)),
        slower: None,
        gate,
        manual,
        decisions,
        latest,
        earlier: attempts,
        item: None,
        group: None,
        decide: None,
    }
}

/// A decision's reason as the page quotes it after the decision: `: “why”`, or nothing.
fn quoted(decided: &Decided) -> String {
    decided.reason.as_ref().map(|r| format!(": “{r}”")).unwrap_or_default()
}
