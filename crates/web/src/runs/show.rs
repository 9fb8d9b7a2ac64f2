//! Showing one run: `GET /api/v1/runs/{id}` (the whole snapshot) and the run's page, which
//! says for each gate what it guards, who may answer and why not, and offers the commander's
//! decisions and actions.

use askama::Template;
use axum::Json;
use axum::extract::State;
use steady_engine::accounts::GlobalRole;
use steady_engine::engine::{now, waiting_for};
use steady_engine::machine::{attention_step, guarded_steps};
use steady_engine::policy::{self, Refusal};
use steady_engine::run::{Actor, Decision, RunRecord, RunSnapshot, RunStatus, StepStatus};
use steady_engine::runbook::{Runbook, StepKind};
use uuid::Uuid;

use super::{run_badge, short_id, status_class, step_badge};
use crate::AppState;
use crate::auth::Caller;
use crate::dto::{self, RunDetail};
use crate::error::AppError;
use crate::extract::{PageRunId, RunId};
use crate::page::{Me, Moment, PageResult, duration, render};

#[utoipa::path(get, tag = "runs", path = "/api/v1/runs/{id}", params(("id" = String, Path, description = "Run id")), responses((status = 200, description = "The run with its steps, attempts, votes, role holders and notes", body = RunDetail), (status = 401, description = "Not signed in"), (status = 404, description = "No such run")))]
pub(crate) async fn get_run(
    State(state): State<AppState>,
    _caller: Caller,
    RunId(id): RunId,
) -> Result<Json<RunDetail>, AppError> {
    Ok(Json(RunDetail::new(&snapshot(&state, id).await?)))
}

/// The run's snapshot, or 404 `no run <id>`.
async fn snapshot(state: &AppState, id: Uuid) -> Result<RunSnapshot, AppError> {
    state.store.run(id).await?.ok_or_else(|| AppError::not_found(format!("no run {id}")))
}

// ---------------------------------------------------------------------------------- the page

struct RunSummary {
    id: Uuid,
    short_id: String,
    title: String,
    runbook: String,
    version: u32,
    mode: String,
    status: String,
    status_class: &'static str,
    started: Moment,
    /// How long the run took, or has taken so far.
    took: String,
    commander: String,
    started_by: String,
    active: bool,
}

struct RoleView {
    name: String,
    description: Option<String>,
    holders: String,
}

struct GateView {
    role: String,
    quorum: u32,
    holders: String,
    deadline: Option<Moment>,
    guarded: Vec<(String, String)>,
    votes: Vec<VoteView>,
    /// What the engine would accept from the signed-in person now (see `policy`).
    can_approve: bool,
    can_reject: bool,
    why_not: Option<String>,
}

/// One answer at a gate: the verdict and who gave it, when, and what they said.
struct VoteView {
    by: String,
    at: Moment,
    rest: String,
}

struct ManualView {
    role: String,
    can_answer: bool,
}

struct AttemptView {
    number: u32,
    status: String,
    duration: String,
    exit_code: Option<i32>,
    error: Option<String>,
    stdout: String,
    stderr: String,
    truncated: bool,
    open: bool,
}

struct StepView {
    id: String,
    title: String,
    kind: &'static str,
    rollback: bool,
    status: String,
    status_class: &'static str,
    does: String,
    note: Option<String>,
    completed_by: Option<String>,
    /// How long the step took (every attempt and any wait), once it started.
    took: Option<String>,
    gate: Option<GateView>,
    manual: Option<ManualView>,
    attempts: Vec<AttemptView>,
}

struct DecisionView {
    step: String,
    why: String,
    options: Vec<&'static str>,
}

#[derive(Template)]
#[template(path = "run.html")]
struct RunPage {
    me: Option<Me>,
    csrf: String,
    run: RunSummary,
    roles: Vec<RoleView>,
    contacts: Vec<(String, String)>,
    steps: Vec<StepView>,
    notes: Vec<(String, Moment, String)>,
    attention: Option<String>,
    decision: Option<DecisionView>,
    can_command: bool,
    /// An admin may take command of any active run they do not command.
    can_take_command: bool,
    /// The commander (a responder, or an admin who took command) may hand command on.
    can_hand_over: bool,
    can_note: bool,
    last_seq: i64,
}

fn holders(snapshot: &RunSnapshot, role: &str) -> String {
    let names: Vec<String> = snapshot.holders(role).into_iter().map(Actor::to_string).collect();
    if names.is_empty() { "nobody holds it".to_owned() } else { names.join(", ") }
}

fn summary(runbook: &Runbook, record: &RunRecord) -> RunSummary {
    RunSummary {
        id: record.id,
        short_id: short_id(record.id),
        title: runbook.title.clone().unwrap_or_else(|| record.runbook.clone()),
        runbook: record.runbook.clone(),
        version: record.version,
        mode: record.mode.to_string(),
        status: run_badge(record.status),
        status_class: status_class(record.status.as_str()),
        started: Moment::new(record.created_at),
        took: duration(record.finished_at.unwrap_or_else(now) - record.created_at),
        commander: record.commander.to_string(),
        started_by: record.started_by.to_string(),
        active: record.status.is_active(),
    }
}

pub(crate) async fn run_page(
    State(state): State<AppState>,
    me: Me,
    PageRunId(id): PageRunId,
) -> PageResult {
    let snapshot = snapshot(&state, id).await?;
    let runbook = state.engine.runbook(&snapshot.run.runbook, snapshot.run.version).await?;
    let record = &snapshot.run;
    let responder = me.caller.user.has(GlobalRole::Responder);
    let can_command = responder && me.actor == record.commander && record.status.is_active();
    let can_take_command = me.admin && me.actor != record.commander && record.status.is_active();
    let can_hand_over =
        (responder || me.admin) && me.actor == record.commander && record.status.is_active();
    let participant = policy::is_participant(&snapshot, &me.actor);
    let binding = state.engine.approval_preview(&runbook, &snapshot);

    let mut steps = Vec::new();
    for (phase_rollback, list) in [(false, &runbook.steps), (true, &runbook.rollback)] {
        for step in list.iter() {
            let Some(state_of) = snapshot.step(&step.id) else { continue };
            let mut gate = None;
            let mut manual = None;
            match &step.kind {
                StepKind::Approval(approval) => {
                    let role =
                        state_of.escalated_to.clone().unwrap_or_else(|| approval.role.name.clone());
                    let open = state_of.status == StepStatus::Waiting
                        && state_of.deadline.is_none_or(|d| d > now());
                    // The engine's own rules decide which buttons are shown, so that the page
                    // never offers an answer the engine refuses.
                    let approve = policy::may_approve(&snapshot, step, &me.actor);
                    let reject = policy::may_answer(&snapshot, step, &me.actor);
                    let why_not = match (&approve, responder) {
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
                    let can_approve = open && responder && approve.is_ok();
                    let can_reject = open && responder && reject.is_ok();
                    let votes = snapshot
                        .votes
                        .iter()
                        .filter(|v| v.step_id == step.id)
                        .map(|v| {
                            let verdict = if v.approve { "✓ approved" } else { "✗ rejected" };
                            let comment = v
                                .comment
                                .as_deref()
                                .map(|c| format!(": “{c}”"))
                                .unwrap_or_default();
                            let void =
                                if v.void { " (void: the guarded step changed)" } else { "" };
                            VoteView {
                                by: format!("{verdict} by {}", v.actor),
                                at: Moment::new(v.at),
                                rest: format!("{comment}{void}"),
                            }
                        })
                        .collect();
                    let guarded = guarded_steps(&runbook, state_of.phase, &step.id)
                        .iter()
                        .map(|guarded| {
                            let text = binding
                                .get(&step.id)
                                .and_then(|map| map.get(&guarded.id))
                                .map(dto::describe_action)
                                .unwrap_or_else(|| "(rendered when it runs)".to_owned());
                            (guarded.id.clone(), text)
                        })
                        .collect();
                    gate = Some(GateView {
                        holders: holders(&snapshot, &role),
                        role,
                        quorum: approval.approvals,
                        deadline: state_of.deadline.map(Moment::new),
                        guarded,
                        votes,
                        can_approve,
                        can_reject,
                        why_not,
                    });
                }
                StepKind::Manual(manual_step) => {
                    let open = state_of.status == StepStatus::Waiting;
                    manual = open.then(|| ManualView {
                        role: manual_step.role.name.clone(),
                        can_answer: responder
                            && policy::may_answer(&snapshot, step, &me.actor).is_ok(),
                    });
                }
                _ => {}
            }
            let attempts: Vec<AttemptView> = snapshot
                .attempts
                .iter()
                .filter(|a| a.step_id == step.id)
                .map(|a| AttemptView {
                    number: a.number,
                    status: a.status.map(|s| s.as_str().replace('_', " ")).unwrap_or_default(),
                    duration: match (a.started_at, a.finished_at) {
                        (Some(start), Some(end)) => duration(end - start),
                        _ => "running".to_owned(),
                    },
                    exit_code: a.exit_code,
                    error: a.error.clone(),
                    stdout: a.stdout.clone(),
                    stderr: a.stderr.clone(),
                    truncated: a.stdout_truncated || a.stderr_truncated,
                    open: a.status.is_some_and(|s| s.is_failure()),
                })
                .collect();
            steps.push(StepView {
                id: step.id.clone(),
                title: step.title().to_owned(),
                kind: step.kind.name(),
                rollback: phase_rollback,
                status: step_badge(state_of.status),
                status_class: status_class(state_of.status.as_str()),
                does: state_of.rendered.as_ref().map(dto::describe_rendered).unwrap_or_default(),
                note: state_of.note.clone(),
                completed_by: state_of.completed_by.as_ref().map(ToString::to_string),
                took: state_of
                    .started_at
                    .map(|start| duration(state_of.finished_at.unwrap_or_else(now) - start)),
                gate,
                manual,
                attempts,
            });
        }
    }

    let (attention, decision) = match (record.status, attention_step(&runbook, &snapshot)) {
        (RunStatus::NeedsAttention, Some(step)) => {
            let gate = step.is_gate();
            let options: Vec<&'static str> = Decision::ALL
                .iter()
                .filter(|d| !(gate && **d == Decision::Skip))
                .filter(|d| !(record.phase.as_str() == "rollback" && **d == Decision::Rollback))
                .map(|d| d.as_str())
                .collect();
            let why = snapshot
                .step(&step.id)
                .and_then(|s| s.note.clone())
                .unwrap_or_else(|| "the step failed".to_owned());
            (
                Some(format!("Step `{}` needs the commander's decision.", step.id)),
                Some(DecisionView { step: step.id.clone(), why, options }),
            )
        }
        (RunStatus::Waiting, _) => {
            let waiting =
                snapshot.steps.iter().find(|s| s.status == StepStatus::Waiting).and_then(|s| {
                    runbook.steps.iter().chain(&runbook.rollback).find(|r| r.id == s.step_id)
                });
            (
                waiting.map(|step| {
                    format!("Waiting at `{}` for {}.", step.id, waiting_for(&snapshot, step))
                }),
                None,
            )
        }
        _ => (None, None),
    };
    let roles = runbook
        .roles
        .iter()
        .map(|role| RoleView {
            name: role.name.clone(),
            description: role.description.clone(),
            holders: snapshot
                .holders(&role.name)
                .into_iter()
                .map(Actor::to_string)
                .collect::<Vec<_>>()
                .join(", "),
        })
        .collect();
    let notes = snapshot
        .notes
        .iter()
        .map(|n| (n.author.to_string(), Moment::new(n.at), n.text.clone()))
        .collect();
    let last_seq = state.store.latest_seq().await.unwrap_or(0);
    let page = RunPage {
        csrf: me.csrf.clone(),
        run: summary(&runbook, record),
        roles,
        contacts: runbook.contacts.iter().map(|c| (c.name.clone(), c.how.clone())).collect(),
        steps,
        notes,
        attention,
        decision,
        can_command,
        can_take_command,
        can_hand_over,
        can_note: responder && participant,
        last_seq,
        me: Some(me),
    };
    Ok(render(&page))
}
