//! Showing one run: `GET /api/v1/runs/{id}` (the whole snapshot) and the run's page, the
//! incident commander's cockpit: the situation header (`situation`), the decision panel that
//! explains each choice (`decision`), what rehearsals say about the rest of a live run or
//! drill (`outlook`), and the steps with their gates, answers and attempts (`steps`). A run an
//! alert proposed adds the alerts, its lock and the facts its dry run gathered (`alerts`).

pub(crate) mod alerts;
mod decision;
mod outlook;
mod situation;
mod steps;

pub(crate) use decision::{DecisionView, decision};

use askama::Template;
use axum::Json;
use axum::extract::State;
use steady_engine::accounts::GlobalRole;
use steady_engine::engine::now;
use steady_engine::plan::Plan;
use steady_engine::policy;
use steady_engine::rehearsal::RehearsalQuery;
use steady_engine::run::{Actor, RunMode, RunRecord, RunSnapshot, RunStatus};
use steady_engine::runbook::Runbook;
use steady_engine::store::AuditFilter;
use uuid::Uuid;

use super::{run_badge, short_id, status_class};
use crate::AppState;
use crate::auth::Caller;
use crate::dto::RunDetail;
use crate::error::AppError;
use crate::extract::{PageRunId, RunId};
use crate::page::{Me, Moment, PageResult, render};
use crate::runbooks::figures::figures;
use alerts::ProposalView;
use outlook::OutlookView;
use situation::{History, Situation};
use steps::{StepView, Viewer};

#[utoipa::path(get, tag = "runs", path = "/api/v1/runs/{id}", params(("id" = String, Path, description = "Run id")), responses((status = 200, description = "The run with its steps, attempts, votes, role holders and notes", body = RunDetail), (status = 401, description = "Not signed in"), (status = 404, description = "No such run")))]
pub(crate) async fn get_run(
    State(state): State<AppState>,
    _caller: Caller,
    RunId(id): RunId,
) -> Result<Json<RunDetail>, AppError> {
    Ok(Json(RunDetail::new(&snapshot(&state, id).await?)))
}

/// The run's snapshot, or 404 `no run <id>`.
pub(crate) async fn snapshot(state: &AppState, id: Uuid) -> Result<RunSnapshot, AppError> {
    state.store.run(id).await?.ok_or_else(|| AppError::not_found(format!("no run {id}")))
}

// ---------------------------------------------------------------------------------- the page

struct RunSummary {
    id: Uuid,
    short_id: String,
    title: String,
    runbook: String,
    version: u32,
    status: String,
    /// The status alone, for the tab's title.
    status_word: String,
    status_class: &'static str,
    started: Moment,
    commander: String,
    started_by: String,
    active: bool,
    /// Still changing, so the page follows its events: active, or a proposal nobody took yet.
    live: bool,
}

struct RoleView {
    name: String,
    description: Option<String>,
    holders: String,
    /// A role nobody holds: its gates and manual steps would wait for nobody.
    unassigned: bool,
}

/// The phone's bottom bar: the gate that waits for the viewer, and what they may answer.
struct GateBar {
    step: String,
    can_approve: bool,
    can_reject: bool,
}

#[derive(Template)]
#[template(path = "run.html")]
struct RunPage {
    me: Option<Me>,
    csrf: String,
    run: RunSummary,
    situation: Situation,
    /// What rehearsals say about a live run or drill under way.
    outlook: Option<OutlookView>,
    roles: Vec<RoleView>,
    contacts: Vec<(String, String)>,
    steps: Vec<StepView>,
    notes: Vec<(String, Moment, String)>,
    decision: Option<DecisionView>,
    gate_bar: Option<GateBar>,
    can_command: bool,
    /// An admin may take command of any active run they do not command.
    can_take_command: bool,
    /// The commander (a responder, or an admin who took command) may hand command on.
    can_hand_over: bool,
    can_note: bool,
    last_seq: i64,
    /// For the assignment form: the people who can hold a run role (ui-work).
    people: Vec<String>,
    /// A run an alert proposed: its alerts, lock and facts.
    proposal: Option<ProposalView>,
    /// A proposal nobody took: still open, or dismissed or expired. Its steps never ran and
    /// nobody commands it.
    never_taken: bool,
    /// The viewer may take command of this proposal or dismiss it (a responder).
    can_take: bool,
}

fn summary(runbook: &Runbook, record: &RunRecord) -> RunSummary {
    RunSummary {
        id: record.id,
        short_id: short_id(record.id),
        title: runbook.title.clone().unwrap_or_else(|| record.runbook.clone()),
        runbook: record.runbook.clone(),
        version: record.version,
        status: run_badge(record.status),
        status_word: record.status.as_str().replace('_', " "),
        status_class: status_class(record.status.as_str()),
        started: Moment::new(record.created_at),
        commander: record.commander.to_string(),
        started_by: record.started_by.to_string(),
        active: record.status.is_active(),
        live: !record.status.is_finished(),
    }
}

/// What people decided in run `id`: its `decision.taken`, `run.cancelled`, `run.dismissed`
/// and `run.expired` events.
async fn history(state: &AppState, id: Uuid) -> Result<History, AppError> {
    let mut events = Vec::new();
    for action in ["decision.taken", "run.cancelled", "run.dismissed", "run.expired"] {
        let filter = AuditFilter {
            run_id: Some(id),
            action: Some(action.to_owned()),
            limit: Some(500),
            ..AuditFilter::default()
        };
        events.extend(state.store.audit_events(&filter).await?);
    }
    events.sort_by_key(|event| event.seq);
    Ok(History::from_events(&events))
}

pub(crate) async fn run_page(
    State(state): State<AppState>,
    me: Me,
    PageRunId(id): PageRunId,
) -> PageResult {
    // Read before the run: the live refresh follows events after this seq, so an event
    // committed between the two reads is seen twice rather than missed.
    let last_seq = state.store.latest_seq().await.unwrap_or(0);
    let snapshot = snapshot(&state, id).await?;
    let runbook = state.engine.runbook(&snapshot.run.runbook, snapshot.run.version).await?;
    let history = history(&state, id).await?;
    let record = &snapshot.run;
    let now = now();
    let responder = me.caller.user.has(GlobalRole::Responder);
    let commands = policy::may_command(record, &me.actor).is_ok() && record.status.is_active();
    let can_command = responder && commands;
    let can_take_command = me.admin && !commands && record.status.is_active();
    let can_hand_over = (responder || me.admin) && commands;
    let participant = policy::is_participant(&snapshot, &me.actor);
    let binding = state.engine.approval_preview(&runbook, &snapshot);
    let decision = decision(&runbook, &snapshot);
    let deciding = decision.as_ref().filter(|_| can_command).map(|d| d.step.as_str());
    let viewer = Viewer { actor: &me.actor, responder, deciding };
    let mut steps = steps::steps(&runbook, &snapshot, &history, &binding, &viewer, now);
    let outlook = if record.status.is_active() && record.mode != RunMode::DryRun {
        let figures = figures(&state, &RehearsalQuery::of(&record.runbook)).await?;
        // Steps are timed by the engine's clock, which a story may have moved on.
        figures.outlook(&runbook, &snapshot, state.engine.now())
    } else {
        None
    };
    if let Some(outlook) = &outlook {
        outlook::mark_slower(&mut steps, outlook);
    }
    // A gate may be a branch of a group: look among the children too.
    let children = steps.iter().flat_map(|step| step.group.iter().flat_map(|g| &g.children));
    let gate_bar = steps.iter().chain(children).find_map(|step| {
        let gate = step.gate.as_ref()?;
        (gate.can_approve || gate.can_reject).then(|| GateBar {
            step: step.id.clone(),
            can_approve: gate.can_approve,
            can_reject: gate.can_reject,
        })
    });
    let params = params_shown(&state, &runbook, record);
    let never_taken = matches!(record.status, RunStatus::Proposed | RunStatus::Dismissed);
    if never_taken {
        planned(&runbook, record, &mut steps);
    }
    // A proposal shows its parameters as read from the alert, in its panel.
    let proposal = alerts::proposal(&state, record, params.clone(), &me.actor).await?;
    let params = if never_taken && proposal.is_some() { Vec::new() } else { params };
    let situation = situation::situation(&runbook, &snapshot, &history, params, now);
    let roles = runbook
        .roles
        .iter()
        .map(|role| {
            let holders: Vec<String> =
                snapshot.holders(&role.name).into_iter().map(Actor::to_string).collect();
            RoleView {
                name: role.name.clone(),
                description: role.description.clone(),
                unassigned: holders.is_empty(),
                holders: holders.join(", "),
            }
        })
        .collect();
    let notes = snapshot
        .notes
        .iter()
        .map(|n| (n.author.to_string(), Moment::new(n.at), n.text.clone()))
        .collect();
    let page = RunPage {
        csrf: me.csrf.clone(),
        run: summary(&runbook, record),
        situation,
        outlook: outlook.as_ref().map(OutlookView::new),
        roles,
        contacts: runbook.contacts.iter().map(|c| (c.name.clone(), c.how.clone())).collect(),
        steps,
        notes,
        decision,
        gate_bar,
        can_command,
        can_take_command,
        can_hand_over,
        can_note: responder && participant && record.status.is_active(),
        last_seq,
        people: if can_command {
            crate::runbooks::pages::responders(&state).await?
        } else {
            Vec::new()
        },
        proposal,
        never_taken,
        can_take: responder && record.status == RunStatus::Proposed,
        me: Some(me),
    };
    Ok(render(&page))
}

/// The run's parameters as pages show them: text, secrets masked.
pub(crate) fn params_shown(
    state: &AppState,
    runbook: &Runbook,
    record: &RunRecord,
) -> Vec<(String, String)> {
    record
        .params
        .iter()
        .map(|(name, value)| {
            let value = serde_json::to_value(value).unwrap_or_default();
            let text = match value {
                serde_json::Value::String(text) => text,
                other => other.to_string(),
            };
            (name.clone(), state.engine.people_text(runbook, &text))
        })
        .collect()
}

/// What each step of a proposal would do, rendered with its parameters as a plan is (secrets
/// never rendered): its steps have not run, so nothing else says it.
fn planned(runbook: &Runbook, record: &RunRecord, steps: &mut [StepView]) {
    let plan = Plan::new(runbook, &record.params);
    for step in steps.iter_mut().filter(|step| step.does.is_empty()) {
        let found = plan.steps.iter().chain(&plan.rollback).find(|planned| planned.id == step.id);
        if let Some(planned) = found {
            step.does = crate::dto::describe_action(&planned.action);
        }
    }
}
