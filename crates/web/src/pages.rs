//! The HTML pages, server-rendered with askama from `templates/`. Every action is a plain form
//! that works without JavaScript; forms carry the session's CSRF token; all text is escaped by
//! the templates. View models here are built explicitly from engine types.

use std::collections::BTreeMap;

use askama::Template;
use axum::Router;
use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use steady_engine::accounts::GlobalRole;
use steady_engine::audit::format_timestamp;
use steady_engine::engine::{StartRun, now, waiting_for};
use steady_engine::machine::{attention_step, guarded_steps};
use steady_engine::plan::Plan;
use steady_engine::run::{
    Actor, Assignment, Completion, Decision, RoleChange, RunFilter, RunMode, RunRecord,
    RunSnapshot, RunStatus, StepStatus,
};
use steady_engine::runbook::{Runbook, StepKind};
use uuid::Uuid;

use crate::AppState;
use crate::auth::{self, Caller};
use crate::dto;
use crate::error::AppError;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/work") }))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/work", get(work))
        .route("/runs", get(runs))
        .route("/runs/{id}", get(run_page))
        .route("/runs/{id}/steps/{step}/answer", post(answer))
        .route("/runs/{id}/decide", post(decide))
        .route("/runs/{id}/cancel", post(cancel))
        .route("/runs/{id}/notes", post(note))
        .route("/runs/{id}/assign", post(assign))
        .route("/runs/{id}/commander", post(transfer))
        .route("/runbooks", get(runbooks))
        .route("/runbooks/{name}", get(runbook_page))
        .route("/runbooks/{name}/start", post(start))
        .route("/runbooks/{name}/diff", get(diff))
        .route("/runbooks/{name}/print", get(print))
        .route("/runs/{id}/timeline.md", get(timeline))
        .route("/audit", get(audit))
        .route("/users", get(users).post(add_user))
        .route("/nodes", get(nodes))
        .route("/users/{name}/disabled", post(set_disabled))
        .route("/tokens", post(add_token))
        .route("/tokens/{id}/revoke", post(revoke))
        .route(
            "/static/steady.css",
            get(|| async {
                asset("text/css", include_str!("../../../templates/static/steady.css"))
            }),
        )
        .route(
            "/static/steady.js",
            get(|| async {
                asset("text/javascript", include_str!("../../../templates/static/steady.js"))
            }),
        )
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "public, max-age=3600")], body)
        .into_response()
}

/// The signed-in person as pages show them.
#[derive(Debug, Clone)]
pub struct Me {
    pub name: String,
    pub roles: String,
    pub csrf: String,
    pub auditor: bool,
    pub admin: bool,
    actor: Actor,
    caller: Caller,
}

impl Me {
    fn from(caller: Caller) -> Me {
        let roles = caller.user.roles.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(", ");
        let csrf = caller.csrf_token.clone().unwrap_or_default();
        Me {
            name: caller.user.name.clone(),
            roles,
            csrf,
            auditor: caller.user.has(GlobalRole::Auditor) || caller.user.has(GlobalRole::Admin),
            admin: caller.user.has(GlobalRole::Admin),
            actor: caller.user.actor(),
            caller,
        }
    }
}

/// A page error: sends people who are not signed in to the login page, shows the rest.
#[derive(Debug)]
pub struct PageError(AppError);

impl From<AppError> for PageError {
    fn from(error: AppError) -> Self {
        PageError(error)
    }
}

impl From<steady_engine::engine::EngineError> for PageError {
    fn from(error: steady_engine::engine::EngineError) -> Self {
        PageError(error.into())
    }
}

impl From<steady_engine::store::StoreError> for PageError {
    fn from(error: steady_engine::store::StoreError) -> Self {
        PageError(error.into())
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    me: Option<Me>,
    title: String,
    message: String,
    /// The run the error is about, linked.
    run: Option<String>,
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        if self.0.status == StatusCode::UNAUTHORIZED {
            return Redirect::to("/login").into_response();
        }
        let title = self.0.status.canonical_reason().unwrap_or("Error").to_owned();
        let run = self.0.run.map(|id| id.to_string());
        let page = ErrorPage { me: None, title, message: self.0.message, run };
        (self.0.status, render(&page)).into_response()
    }
}

type PageResult = Result<Response, PageError>;

/// A link to `path` with the given query, every value encoded, empty ones left out.
fn link(path: &str, pairs: &[(&str, &str)]) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (key, value) in pairs.iter().filter(|(_, value)| !value.is_empty()) {
        query.append_pair(key, value);
    }
    format!("{path}?{}", query.finish())
}

fn render(template: &impl Template) -> Response {
    match template.render() {
        Ok(html) => Html(html).into_response(),
        Err(error) => {
            eprintln!("steady: rendering a page: {error}");
            (StatusCode::INTERNAL_SERVER_ERROR, "the page could not be rendered").into_response()
        }
    }
}

/// Form posts carry the session's CSRF token in a field.
fn check_csrf(me: &Me, sent: &str) -> Result<(), PageError> {
    if !auth::csrf_matches(&me.caller, sent) {
        return Err(AppError::forbidden(
            "this form has expired or did not come from Steady: reload the page",
        )
        .into());
    }
    Ok(())
}

/// Pages find the signed-in person like the API does, but send strangers to the login page,
/// and check CSRF tokens from form fields rather than headers.
impl axum::extract::FromRequestParts<AppState> for Me {
    type Rejection = PageError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(Me::from(auth::authenticate(parts, state, false).await?))
    }
}

// ---------------------------------------------------------------------------------- login

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    me: Option<Me>,
    error: Option<String>,
}

async fn login_page() -> Response {
    render(&LoginPage { me: None, error: None })
}

#[derive(Deserialize)]
struct LoginForm {
    name: String,
    password: String,
}

async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    auth::ClientAddress(address): auth::ClientAddress,
    Form(form): Form<LoginForm>,
) -> Response {
    // A sign-in form posted from another site is refused: browsers say where a form came from.
    // Behind a reverse proxy the public host arrives as X-Forwarded-Host.
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) {
        let origin_host = origin.split("://").nth(1).unwrap_or_default();
        let ours = [header::HOST.as_str(), "x-forwarded-host"]
            .iter()
            .filter_map(|name| headers.get(*name).and_then(|h| h.to_str().ok()))
            .any(|host| host.split(',').any(|host| host.trim() == origin_host));
        if !ours {
            let page = LoginPage { me: None, error: Some("sign in from Steady's own page".into()) };
            return (StatusCode::FORBIDDEN, render(&page)).into_response();
        }
    }
    match crate::api::sign_in(&state, &form.name, &form.password, &address).await {
        Ok((cookie, _csrf)) => {
            ([(header::SET_COOKIE, cookie)], Redirect::to("/work")).into_response()
        }
        Err(error) => (error.status, render(&LoginPage { me: None, error: Some(error.message) }))
            .into_response(),
    }
}

#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

async fn logout(State(state): State<AppState>, me: Me, Form(form): Form<CsrfForm>) -> PageResult {
    check_csrf(&me, &form.csrf)?;
    if let Some(session) = &me.caller.session {
        state.accounts.delete_session(&session.id_hash).await?;
    }
    let mut cookie =
        cookie::Cookie::new(auth::session_cookie_name(state.config.secure_cookies), "");
    cookie.set_path("/");
    cookie.set_secure(state.config.secure_cookies);
    cookie.make_removal();
    Ok(([(header::SET_COOKIE, cookie.to_string())], Redirect::to("/login")).into_response())
}

// ---------------------------------------------------------------------------------- my work

struct WorkItem {
    run_id: Uuid,
    runbook: String,
    mode: String,
    step_id: String,
    step_title: String,
    kind: &'static str,
    role: String,
    waited: String,
    deadline: Option<String>,
    prompt: Option<String>,
    since: chrono::DateTime<chrono::Utc>,
}

#[derive(Template)]
#[template(path = "work.html")]
struct WorkPage {
    me: Option<Me>,
    items: Vec<WorkItem>,
    /// The newest audit event when the page was rendered: the live script follows from here,
    /// so that nothing happening between rendering and listening is missed.
    last_seq: i64,
}

fn waited(since: chrono::DateTime<chrono::Utc>) -> String {
    let minutes = (now() - since).num_minutes();
    match minutes {
        0 => "under a minute".to_owned(),
        1..=59 => format!("{minutes} min"),
        _ => format!("{} h {} min", minutes / 60, minutes % 60),
    }
}

async fn work(State(state): State<AppState>, me: Me) -> PageResult {
    let last_seq = state.store.latest_seq().await?;
    let waiting = state
        .store
        .runs(&RunFilter {
            status: Some(RunStatus::Waiting),
            limit: Some(500),
            ..RunFilter::default()
        })
        .await?;
    let mut items = Vec::new();
    for record in waiting {
        let Some(snapshot) = state.store.run(record.id).await? else { continue };
        let runbook = state.engine.runbook(&record.runbook, record.version).await?;
        for state_of in snapshot.steps.iter().filter(|s| s.status == StepStatus::Waiting) {
            let Some(step) =
                runbook.steps.iter().chain(&runbook.rollback).find(|s| s.id == state_of.step_id)
            else {
                continue;
            };
            let (kind, role) = match &step.kind {
                StepKind::Approval(gate) => (
                    "approval",
                    state_of.escalated_to.clone().unwrap_or_else(|| gate.role.name.clone()),
                ),
                StepKind::Manual(manual) => ("manual step", manual.role.name.clone()),
                _ => continue,
            };
            let original = match &step.kind {
                StepKind::Approval(gate) => gate.role.name.as_str(),
                _ => role.as_str(),
            };
            let responder = me.caller.user.has(GlobalRole::Responder);
            if !responder
                || !(snapshot.holds(&me.actor, &role) || snapshot.holds(&me.actor, original))
            {
                continue;
            }
            let since = state_of.started_at.unwrap_or(record.created_at);
            items.push(WorkItem {
                run_id: record.id,
                runbook: record.runbook.clone(),
                mode: record.mode.to_string(),
                step_id: step.id.clone(),
                step_title: step.title().to_owned(),
                kind,
                role,
                waited: waited(since),
                deadline: state_of.deadline.map(|d| d.format("%H:%M UTC").to_string()),
                prompt: state_of.rendered.as_ref().and_then(|r| {
                    r["prompt"].as_str().or(r["instructions"].as_str()).map(str::to_owned)
                }),
                since,
            });
        }
    }
    items.sort_by_key(|item| item.since);
    Ok(render(&WorkPage { me: Some(me), items, last_seq }))
}

// ---------------------------------------------------------------------------------- runs

struct RunRow {
    id: Uuid,
    short_id: String,
    status: String,
    status_class: &'static str,
    runbook: String,
    version: u32,
    mode: String,
    started: String,
    commander: String,
}

/// The class that colours a status; the text and symbol always say it too.
fn status_class(status: &str) -> &'static str {
    match status {
        "succeeded" | "approved" | "rolled_back" | "would_run" | "skipped" => "ok",
        "failed" | "rejected" | "timed_out" | "interrupted" | "cancelled" | "needs_attention" => {
            "bad"
        }
        "waiting" => "waiting",
        "running" => "running",
        _ => "neutral",
    }
}

fn run_badge(status: RunStatus) -> String {
    let symbol = match status {
        RunStatus::Running => "▶",
        RunStatus::Waiting => "‖",
        RunStatus::NeedsAttention => "⚠",
        RunStatus::Succeeded => "✓",
        RunStatus::Failed => "✗",
        RunStatus::RolledBack => "↺",
        RunStatus::Cancelled => "■",
    };
    format!("{symbol} {}", status.as_str().replace('_', " "))
}

fn step_badge(status: StepStatus) -> String {
    let symbol = match status {
        StepStatus::Pending => "·",
        StepStatus::Running => "▶",
        StepStatus::Waiting => "‖",
        StepStatus::Succeeded | StepStatus::Approved => "✓",
        StepStatus::Failed | StepStatus::Rejected => "✗",
        StepStatus::Skipped => "↷",
        StepStatus::TimedOut => "⌛",
        StepStatus::Interrupted => "⚡",
        StepStatus::WouldRun => "○",
        StepStatus::Cancelled => "■",
    };
    format!("{symbol} {}", status.as_str().replace('_', " "))
}

fn row(run: &RunRecord) -> RunRow {
    RunRow {
        id: run.id,
        short_id: run.id.to_string()[..13].to_owned(),
        status: run_badge(run.status),
        status_class: status_class(run.status.as_str()),
        runbook: run.runbook.clone(),
        version: run.version,
        mode: run.mode.to_string(),
        started: run.created_at.format("%Y-%m-%d %H:%M:%S").to_string(),
        commander: run.commander.to_string(),
    }
}

#[derive(Template)]
#[template(path = "runs.html")]
struct RunsPage {
    me: Option<Me>,
    runs: Vec<RunRow>,
    statuses: Vec<String>,
    modes: Vec<String>,
    filter_status: String,
    filter_runbook: String,
    filter_mode: String,
    filter_since: String,
    next_page: Option<String>,
}

#[derive(Deserialize, Default)]
struct RunsForm {
    #[serde(default)]
    status: String,
    #[serde(default)]
    runbook: String,
    #[serde(default)]
    mode: String,
    #[serde(default)]
    since: String,
    #[serde(default)]
    before: String,
}

async fn runs(
    State(state): State<AppState>,
    me: Me,
    axum::extract::Query(form): axum::extract::Query<RunsForm>,
) -> PageResult {
    const PAGE: u32 = 50;
    let filter = RunFilter {
        status: form.status.parse().ok(),
        runbook: Some(form.runbook.clone()).filter(|r| !r.is_empty()),
        mode: form.mode.parse().ok(),
        since: chrono::NaiveDate::parse_from_str(&form.since, "%Y-%m-%d")
            .ok()
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|d| d.and_utc()),
        before: form.before.parse().ok(),
        limit: Some(PAGE),
    };
    let records = state.store.runs(&filter).await?;
    let next_page = (records.len() == PAGE as usize).then(|| {
        let last = records.last().map(|r| r.id.to_string()).unwrap_or_default();
        link(
            "/runs",
            &[
                ("status", &form.status),
                ("runbook", &form.runbook),
                ("mode", &form.mode),
                ("since", &form.since),
                ("before", &last),
            ],
        )
    });
    let page = RunsPage {
        me: Some(me),
        runs: records.iter().map(row).collect(),
        statuses: RunStatus::ALL.iter().map(|s| s.as_str().to_owned()).collect(),
        modes: RunMode::ALL.iter().map(|m| m.as_str().to_owned()).collect(),
        filter_status: form.status,
        filter_runbook: form.runbook,
        filter_mode: form.mode,
        filter_since: form.since,
        next_page,
    };
    Ok(render(&page))
}

// ---------------------------------------------------------------------------------- one run

struct RunView {
    id: Uuid,
    short_id: String,
    title: String,
    runbook: String,
    version: u32,
    mode: String,
    status: String,
    status_class: &'static str,
    started: String,
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
    deadline: Option<String>,
    guarded: Vec<(String, String)>,
    votes: Vec<String>,
    can_answer: bool,
    why_not: Option<String>,
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
    run: RunView,
    roles: Vec<RoleView>,
    contacts: Vec<(String, String)>,
    steps: Vec<StepView>,
    notes: Vec<(String, String, String)>,
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
    let names: Vec<&str> = snapshot.holders(role).into_iter().map(Actor::as_str).collect();
    if names.is_empty() { "nobody holds it".to_owned() } else { names.join(", ") }
}

fn run_view(runbook: &Runbook, record: &RunRecord) -> RunView {
    RunView {
        id: record.id,
        short_id: record.id.to_string()[..13].to_owned(),
        title: runbook.title.clone().unwrap_or_else(|| record.runbook.clone()),
        runbook: record.runbook.clone(),
        version: record.version,
        mode: record.mode.to_string(),
        status: run_badge(record.status),
        status_class: status_class(record.status.as_str()),
        started: record.created_at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
        commander: record.commander.to_string(),
        started_by: record.started_by.to_string(),
        active: record.status.is_active(),
    }
}

async fn run_page(State(state): State<AppState>, Path(id): Path<String>, me: Me) -> PageResult {
    let id: Uuid = id.parse().map_err(|_| AppError::not_found(format!("no run {id}")))?;
    let snapshot =
        state.store.run(id).await?.ok_or_else(|| AppError::not_found(format!("no run {id}")))?;
    let runbook = state.engine.runbook(&snapshot.run.runbook, snapshot.run.version).await?;
    let record = &snapshot.run;
    let responder = me.caller.user.has(GlobalRole::Responder);
    let can_command = responder && me.actor == record.commander && record.status.is_active();
    let can_take_command = me.admin && me.actor != record.commander && record.status.is_active();
    let can_hand_over =
        (responder || me.admin) && me.actor == record.commander && record.status.is_active();
    let participant = me.actor == record.commander
        || me.actor == record.started_by
        || snapshot.assignments.iter().any(|a| a.person == me.actor);
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
                    let holds = snapshot.holds(&me.actor, &approval.role.name)
                        || state_of
                            .escalated_to
                            .as_deref()
                            .is_some_and(|r| snapshot.holds(&me.actor, r));
                    let answered = snapshot.live_votes(&step.id).any(|v| v.actor == me.actor);
                    let own_run = me.actor == record.started_by && !approval.allow_self_approval;
                    let open = state_of.status == StepStatus::Waiting
                        && state_of.deadline.is_none_or(|d| d > now());
                    let why_not = if !open {
                        None
                    } else if !responder || !holds {
                        Some(format!("Only people holding `{role}` in this run may answer."))
                    } else if own_run {
                        Some("You started this run, so you may not approve its gates.".to_owned())
                    } else if answered {
                        Some("You have answered; waiting for the others.".to_owned())
                    } else {
                        None
                    };
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
                            format!(
                                "{verdict} by {} at {}{comment}{void}",
                                v.actor,
                                v.at.format("%H:%M:%S")
                            )
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
                        deadline: state_of.deadline.map(|d| d.format("%H:%M:%S UTC").to_string()),
                        guarded,
                        votes,
                        can_answer: open && why_not.is_none(),
                        why_not,
                    });
                }
                StepKind::Manual(manual_step) => {
                    let open = state_of.status == StepStatus::Waiting;
                    manual = open.then(|| ManualView {
                        role: manual_step.role.name.clone(),
                        can_answer: responder && snapshot.holds(&me.actor, &manual_step.role.name),
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
                        (Some(start), Some(end)) => {
                            format!("{:.2} s", (end - start).num_milliseconds() as f64 / 1000.0)
                        }
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
                does: state_of.rendered.as_ref().map(dto::describe_action).unwrap_or_default(),
                note: state_of.note.clone(),
                completed_by: state_of.completed_by.as_ref().map(ToString::to_string),
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
                .map(Actor::as_str)
                .collect::<Vec<_>>()
                .join(", "),
        })
        .collect();
    let notes = snapshot
        .notes
        .iter()
        .map(|n| {
            (n.author.to_string(), n.at.format("%Y-%m-%d %H:%M:%S").to_string(), n.text.clone())
        })
        .collect();
    let last_seq = state.store.latest_seq().await.unwrap_or(0);
    let page = RunPage {
        csrf: me.csrf.clone(),
        run: run_view(&runbook, record),
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

#[derive(Deserialize)]
struct AnswerForm {
    #[serde(default)]
    csrf: String,
    action: String,
    #[serde(default)]
    comment: String,
}

fn run_id(id: &str) -> Result<Uuid, PageError> {
    id.parse().map_err(|_| AppError::not_found(format!("no run {id}")).into())
}

fn back_to(run: Uuid, anchor: &str) -> Response {
    Redirect::to(&format!("/runs/{run}{anchor}")).into_response()
}

async fn answer(
    State(state): State<AppState>,
    Path((id, step)): Path<(String, String)>,
    me: Me,
    Form(form): Form<AnswerForm>,
) -> PageResult {
    check_csrf(&me, &form.csrf)?;
    me.caller.require_responder()?;
    let id = run_id(&id)?;
    let comment = Some(form.comment.trim()).filter(|c| !c.is_empty());
    let engine = &state.engine;
    match form.action.as_str() {
        "approve" => engine.approve(id, &step, &me.actor, comment).await?,
        "reject" => engine.reject(id, &step, &me.actor, comment).await?,
        "complete" => {
            engine.complete_manual(id, &step, &me.actor, Completion::Done, comment).await?
        }
        "fail" => engine.complete_manual(id, &step, &me.actor, Completion::Failed, comment).await?,
        _ => return Err(AppError::invalid("unknown answer").into()),
    };
    Ok(back_to(id, &format!("#step-{step}")))
}

#[derive(Deserialize)]
struct DecideForm {
    #[serde(default)]
    csrf: String,
    decision: String,
}

async fn decide(
    State(state): State<AppState>,
    Path(id): Path<String>,
    me: Me,
    Form(form): Form<DecideForm>,
) -> PageResult {
    check_csrf(&me, &form.csrf)?;
    me.caller.require_responder()?;
    let id = run_id(&id)?;
    let decision: Decision =
        form.decision.parse().map_err(|_| AppError::invalid("unknown decision"))?;
    state.engine.decide(id, &me.actor, decision).await?;
    Ok(back_to(id, ""))
}

async fn cancel(
    State(state): State<AppState>,
    Path(id): Path<String>,
    me: Me,
    Form(form): Form<CsrfForm>,
) -> PageResult {
    check_csrf(&me, &form.csrf)?;
    me.caller.require_responder()?;
    let id = run_id(&id)?;
    state.engine.cancel(id, &me.actor).await?;
    Ok(back_to(id, ""))
}

#[derive(Deserialize)]
struct NoteForm {
    #[serde(default)]
    csrf: String,
    text: String,
}

async fn note(
    State(state): State<AppState>,
    Path(id): Path<String>,
    me: Me,
    Form(form): Form<NoteForm>,
) -> PageResult {
    check_csrf(&me, &form.csrf)?;
    me.caller.require_responder()?;
    let id = run_id(&id)?;
    if form.text.trim().is_empty() {
        return Err(AppError::invalid("a note needs text").into());
    }
    state.engine.add_note(id, &me.actor, None, form.text.trim()).await?;
    Ok(back_to(id, "#notes"))
}

#[derive(Deserialize)]
struct AssignForm {
    #[serde(default)]
    csrf: String,
    role: String,
    person: String,
    assign: String,
}

async fn assign(
    State(state): State<AppState>,
    Path(id): Path<String>,
    me: Me,
    Form(form): Form<AssignForm>,
) -> PageResult {
    check_csrf(&me, &form.csrf)?;
    me.caller.require_responder()?;
    let id = run_id(&id)?;
    let person = Actor::person(form.person.trim());
    let change = if form.assign == "yes" { RoleChange::Assign } else { RoleChange::Unassign };
    state.engine.assign(id, &me.actor, &form.role, &person, change).await?;
    Ok(back_to(id, ""))
}

// ---------------------------------------------------------------------------------- runbooks

struct RunbookRow {
    /// Set when the server's runbooks folder holds an older version than the latest.
    behind: Option<String>,
    /// Lint warnings of the current version, as `line: message`.
    warnings: Vec<String>,
    name: String,
    title: Option<String>,
    version: u32,
    owner: Option<String>,
    last_live: Option<String>,
    last_drill: Option<String>,
    last_dry_run: Option<String>,
    rehearsal_badge: Option<String>,
    rehearsal_class: &'static str,
}

#[derive(Template)]
#[template(path = "runbooks.html")]
struct RunbooksPage {
    me: Option<Me>,
    runbooks: Vec<RunbookRow>,
}

async fn runbooks(State(state): State<AppState>, me: Me) -> PageResult {
    let mut rows = Vec::new();
    for name in state.store.runbook_names().await? {
        let Some(latest) = state.store.runbook_version(&name, None).await? else { continue };
        let runbook = state.engine.runbook(&name, latest.version).await?;
        let runs = state
            .store
            .runs(&RunFilter {
                runbook: Some(name.clone()),
                limit: Some(200),
                ..RunFilter::default()
            })
            .await?;
        let last = |mode: RunMode, current_only: bool| {
            runs.iter()
                .filter(|r| {
                    r.mode == mode
                        && r.status == RunStatus::Succeeded
                        && (!current_only || r.version == latest.version)
                })
                .map(|r| r.created_at)
                .max()
        };
        let live = runs.iter().filter(|r| r.mode == RunMode::Live).map(|r| r.created_at).max();
        let drill = last(RunMode::Drill, true);
        let dry = last(RunMode::DryRun, true);
        let rehearsed =
            [last(RunMode::Drill, false), last(RunMode::Live, false)].into_iter().flatten().max();
        let (rehearsal_badge, rehearsal_class) = match (rehearsed, runbook.review_every) {
            (None, _) => (Some("⚠ never rehearsed".to_owned()), "bad"),
            (Some(at), Some(every))
                if chrono::Duration::from_std(every.as_std())
                    .is_ok_and(|every| at + every < now()) =>
            {
                (Some("⚠ review overdue".to_owned()), "waiting")
            }
            (Some(_), _) => (Some("✓ rehearsed".to_owned()), "ok"),
        };
        let date = |at: Option<chrono::DateTime<chrono::Utc>>| {
            at.map(|at| at.format("%Y-%m-%d").to_string())
        };
        let warnings = steady_engine::parse(&latest.source)
            .diagnostics
            .iter()
            .filter(|d| !d.is_error())
            .map(|d| format!("line {}: {}", d.at.line, d.message))
            .collect();
        let behind =
            state.config.folder_versions.get(&name).filter(|file| **file < latest.version).map(
                |file| {
                    format!(
                        "the folder is behind the database: file matches v{file}, latest is v{}",
                        latest.version
                    )
                },
            );
        rows.push(RunbookRow {
            behind,
            warnings,
            name,
            title: runbook.title.clone(),
            version: latest.version,
            owner: runbook.owner.clone(),
            last_live: date(live),
            last_drill: date(drill),
            last_dry_run: date(dry),
            rehearsal_badge,
            rehearsal_class,
        });
    }
    Ok(render(&RunbooksPage { me: Some(me), runbooks: rows }))
}

struct ProcedureStep {
    id: String,
    title: String,
    kind: &'static str,
    tags: Vec<String>,
    does: String,
}

struct ParamField {
    name: String,
    kind: &'static str,
    required: bool,
    default: String,
    choices: Vec<String>,
    description: Option<String>,
}

#[derive(Template)]
#[template(path = "runbook.html")]
struct RunbookPage {
    me: Option<Me>,
    csrf: String,
    name: String,
    version: u32,
    title: Option<String>,
    description: Option<String>,
    steps: Vec<ProcedureStep>,
    params: Vec<ParamField>,
    roles: Vec<(String, String)>,
    versions: Vec<(u32, String, String)>,
    can_start: bool,
}

/// The procedure as text a person reads: each step's rendered action, with placeholders.
fn procedure(runbook: &Runbook) -> Vec<ProcedureStep> {
    let defaults: BTreeMap<String, steady_engine::runbook::ParamValue> = runbook
        .params
        .iter()
        .map(|p| {
            (
                p.name.clone(),
                p.default
                    .clone()
                    .unwrap_or(steady_engine::runbook::ParamValue::String(format!("⟨{}⟩", p.name))),
            )
        })
        .collect();
    let plan = Plan::new(runbook, &defaults);
    plan.steps
        .iter()
        .chain(&plan.rollback)
        .map(|step| {
            let mut tags = Vec::new();
            if step.read_only {
                tags.push("read-only".to_owned());
            }
            if step.number.starts_with('R') {
                tags.push("rollback".to_owned());
            }
            let rendered = serde_json::to_value(&step.action).unwrap_or_default();
            ProcedureStep {
                id: step.id.clone(),
                title: step.name.clone().unwrap_or_else(|| step.id.clone()),
                kind: match &step.action {
                    steady_engine::plan::Action::Run { .. }
                    | steady_engine::plan::Action::Shell { .. } => "run",
                    steady_engine::plan::Action::Http { .. } => "http",
                    steady_engine::plan::Action::Check { .. } => "check",
                    steady_engine::plan::Action::Manual { .. } => "manual",
                    steady_engine::plan::Action::Approval { .. } => "gate",
                    steady_engine::plan::Action::Sleep { .. } => "sleep",
                },
                tags,
                does: dto::describe_action(&rendered),
            }
        })
        .collect()
}

async fn runbook_page(
    State(state): State<AppState>,
    Path(name): Path<String>,
    me: Me,
) -> PageResult {
    let latest = state
        .store
        .runbook_version(&name, None)
        .await?
        .ok_or_else(|| AppError::not_found(format!("no runbook named `{name}`")))?;
    let runbook = state.engine.runbook(&name, latest.version).await?;
    let versions = state
        .store
        .runbook_versions(&name)
        .await?
        .iter()
        .rev()
        .map(|v| {
            (
                v.version,
                v.published_at.format("%Y-%m-%d %H:%M").to_string(),
                v.published_by.to_string(),
            )
        })
        .collect();
    let params = runbook
        .params
        .iter()
        .map(|p| ParamField {
            name: p.name.clone(),
            kind: p.kind.as_str(),
            required: p.required,
            default: p.default.as_ref().map(ToString::to_string).unwrap_or_default(),
            choices: p.choices.iter().map(ToString::to_string).collect(),
            description: p.description.clone(),
        })
        .collect();
    let page = RunbookPage {
        csrf: me.csrf.clone(),
        can_start: me.caller.user.has(GlobalRole::Responder),
        name: name.clone(),
        version: latest.version,
        title: runbook.title.clone(),
        description: runbook.description.clone(),
        steps: procedure(&runbook),
        params,
        roles: runbook
            .roles
            .iter()
            .map(|r| (r.name.clone(), r.description.clone().unwrap_or_default()))
            .collect(),
        versions,
        me: Some(me),
    };
    Ok(render(&page))
}

#[derive(Template)]
#[template(path = "confirm.html")]
struct ConfirmPage {
    me: Option<Me>,
    csrf: String,
    name: String,
    version: u32,
    mode: String,
    plan: String,
    fields: Vec<(String, String)>,
}

async fn start(
    State(state): State<AppState>,
    Path(name): Path<String>,
    me: Me,
    Form(fields): Form<Vec<(String, String)>>,
) -> PageResult {
    let field = |key: &str| {
        fields.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone()).unwrap_or_default()
    };
    check_csrf(&me, &field("csrf"))?;
    me.caller.require_responder()?;
    let latest = state
        .store
        .runbook_version(&name, None)
        .await?
        .ok_or_else(|| AppError::not_found(format!("no runbook named `{name}`")))?;
    let runbook = state.engine.runbook(&name, latest.version).await?;
    let mode: RunMode = field("mode").parse().map_err(|_| AppError::invalid("choose a mode"))?;
    let params: Vec<(String, String)> = fields
        .iter()
        .filter_map(|(key, value)| Some((key.strip_prefix("param.")?.to_owned(), value.clone())))
        .filter(|(key, value)| {
            !value.is_empty()
                || runbook.param(key).is_some_and(|p| {
                    p.kind == steady_engine::runbook::ParamType::String && p.required
                })
        })
        .collect();
    let mut assignments = Vec::new();
    for (key, value) in &fields {
        if let Some(role) = key.strip_prefix("role.") {
            for person in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                assignments
                    .push(Assignment { role: role.to_owned(), person: Actor::person(person) });
            }
        }
    }
    let resolved = steady_engine::params::resolve(&runbook, &params)
        .map_err(steady_engine::engine::EngineError::Params)?;
    if field("confirmed") != "yes" {
        let plan = Plan::new(&runbook, &resolved).to_string();
        let kept = fields
            .iter()
            .filter(|(k, _)| k != "csrf" && k != "confirmed" && k != "version")
            .cloned()
            .collect();
        return Ok(render(&ConfirmPage {
            csrf: me.csrf.clone(),
            name,
            version: latest.version,
            mode: mode.to_string(),
            plan,
            fields: kept,
            me: Some(me),
        }));
    }
    // What was confirmed is what runs: a version published since must be reviewed first.
    if field("version") != latest.version.to_string() {
        return Err(AppError::conflict(format!(
            "{name} changed since you confirmed it: version {} is the latest now; review its plan again",
            latest.version
        ))
        .into());
    }
    let id = state
        .engine
        .start_run(StartRun {
            runbook: name,
            version: Some(latest.version),
            params,
            mode,
            actor: me.actor.clone(),
            assignments,
        })
        .await?;
    Ok(back_to(id, ""))
}

// ---------------------------------------------------------------------------------- diff and print

#[derive(Template)]
#[template(path = "diff.html")]
struct DiffPage {
    me: Option<Me>,
    name: String,
    version: u32,
    previous: u32,
    lines: Vec<(&'static str, String)>,
}

#[derive(Deserialize)]
struct VersionForm {
    version: u32,
}

async fn diff(
    State(state): State<AppState>,
    Path(name): Path<String>,
    me: Me,
    axum::extract::Query(form): axum::extract::Query<VersionForm>,
) -> PageResult {
    let missing = || {
        AppError::not_found(format!("`{name}` has no version {} with one before it", form.version))
    };
    let current =
        state.store.runbook_version(&name, Some(form.version)).await?.ok_or_else(missing)?;
    let previous = match form.version.checked_sub(1).filter(|v| *v > 0) {
        Some(version) => {
            state.store.runbook_version(&name, Some(version)).await?.ok_or_else(missing)?
        }
        None => return Err(missing().into()),
    };
    let text = similar::TextDiff::from_lines(&previous.source, &current.source);
    let unified = text
        .unified_diff()
        .context_radius(3)
        .header(&format!("v{}", previous.version), &format!("v{}", current.version))
        .to_string();
    let lines = unified
        .lines()
        .map(|line| {
            let class = match line.chars().next() {
                Some('+') => "add",
                Some('-') => "del",
                Some('@') => "hunk",
                _ => "same",
            };
            (class, line.to_owned())
        })
        .collect();
    Ok(render(&DiffPage {
        me: Some(me),
        name,
        version: current.version,
        previous: previous.version,
        lines,
    }))
}

#[derive(Template)]
#[template(path = "print.html")]
struct PrintPage {
    name: String,
    version: u32,
    printed: String,
    plan: String,
}

async fn print(State(state): State<AppState>, Path(name): Path<String>, _me: Me) -> PageResult {
    let latest = state
        .store
        .runbook_version(&name, None)
        .await?
        .ok_or_else(|| AppError::not_found(format!("no runbook named `{name}`")))?;
    let runbook = state.engine.runbook(&name, latest.version).await?;
    let params: BTreeMap<String, steady_engine::runbook::ParamValue> = runbook
        .params
        .iter()
        .map(|p| {
            (
                p.name.clone(),
                p.default
                    .clone()
                    .unwrap_or(steady_engine::runbook::ParamValue::String(format!("⟨{}⟩", p.name))),
            )
        })
        .collect();
    let plan = Plan::new(&runbook, &params).to_string();
    let printed = now().format("%Y-%m-%d %H:%M UTC").to_string();
    Ok(render(&PrintPage { name, version: latest.version, printed, plan }))
}

// ---------------------------------------------------------------------------------- postmortem

/// The run as a Markdown timeline for the postmortem: who did what, when, with the
/// approvals' comments.
async fn timeline(State(state): State<AppState>, Path(id): Path<String>, _me: Me) -> PageResult {
    let id = run_id(&id)?;
    let snapshot =
        state.store.run(id).await?.ok_or_else(|| AppError::not_found(format!("no run {id}")))?;
    let run = &snapshot.run;
    let filter = steady_engine::store::AuditFilter { run_id: Some(id), ..Default::default() };
    let events = state.store.audit_events(&filter).await?;
    // Markdown passes HTML through: what people wrote (notes, comments, names, errors) is
    // escaped, so that it shows as text wherever the postmortem is rendered.
    let html = |text: &str| text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    let mut text = format!(
        "# {} — run {}\n\n- Mode: {}\n- Status: {}\n- Commander: {} (started by {})\n- Runbook version: {} ({})\n- Started: {}\n",
        run.runbook,
        run.id,
        run.mode,
        run.status,
        html(run.commander.as_str()),
        html(run.started_by.as_str()),
        run.version,
        run.sha256,
        format_timestamp(run.created_at),
    );
    if let Some(finished) = run.finished_at {
        text.push_str(&format!("- Finished: {}\n", format_timestamp(finished)));
    }
    text.push_str(
        "\n## Timeline\n\n| When (UTC) | Who | What | Step | Details |\n|---|---|---|---|---|\n",
    );
    let cell = |text: &str| html(text).replace('|', "\\|").replace('\n', " ");
    for event in &events {
        let details = match event.action.as_str() {
            "approval.granted" | "approval.rejected" => {
                event.data["comment"].as_str().map(|c| format!("“{c}”")).unwrap_or_default()
            }
            "manual.completed" | "manual.failed" => {
                event.data["note"].as_str().unwrap_or_default().to_owned()
            }
            "step.finished" => {
                let status = event.data["status"].as_str().unwrap_or_default();
                match event.data["error"].as_str() {
                    Some(error) => format!("{status}: {error}"),
                    None => status.to_owned(),
                }
            }
            "decision.taken" => event.data["decision"].as_str().unwrap_or_default().to_owned(),
            "note.added" => event.data["text"].as_str().unwrap_or_default().to_owned(),
            "role.assigned" | "role.unassigned" => format!(
                "{} → {}",
                event.data["role"].as_str().unwrap_or_default(),
                event.data["person"].as_str().unwrap_or_default()
            ),
            "run.finished" => event.data["status"].as_str().unwrap_or_default().to_owned(),
            _ => String::new(),
        };
        text.push_str(&format!(
            "| {} | {} | {} | {} | {} |\n",
            event.at.format("%Y-%m-%d %H:%M:%S"),
            cell(event.actor.as_str()),
            event.action,
            event.step_id.as_deref().unwrap_or(""),
            cell(&details)
        ));
    }
    Ok(([(header::CONTENT_TYPE, "text/markdown; charset=utf-8")], text).into_response())
}

// ---------------------------------------------------------------------------------- audit

struct AuditRow {
    seq: i64,
    at: String,
    actor: String,
    action: String,
    run: Option<Uuid>,
    run_short: String,
    step: Option<String>,
    data: String,
}

/// A node as the nodes page shows it.
struct NodeRow {
    id: String,
    address: String,
    up: bool,
    this: bool,
    /// How long since it last said it was alive, rounded for reading.
    silent: String,
    started: String,
}

#[derive(Template)]
#[template(path = "nodes.html")]
struct NodesPage {
    me: Option<Me>,
    nodes: Vec<NodeRow>,
}

async fn nodes(State(state): State<AppState>, me: Me) -> PageResult {
    me.caller.require_audit_reader()?;
    let now = now();
    let this = &state.engine.config().node;
    let nodes = state
        .store
        .nodes()
        .await?
        .into_iter()
        .map(|node| NodeRow {
            up: crate::node_is_up(&node, now),
            this: node.id == *this,
            silent: format!("{} s", (now - node.last_seen).num_seconds().max(0)),
            started: node.started_at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
            id: node.id,
            address: node.address,
        })
        .collect();
    Ok(render(&NodesPage { me: Some(me), nodes }))
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    me: Option<Me>,
    intact: bool,
    events: u64,
    broken: i64,
    rows: Vec<AuditRow>,
    filter_run: String,
    filter_actor: String,
    filter_action: String,
    filter_since: String,
    export_csv: String,
    export_jsonl: String,
    next_page: Option<String>,
}

#[derive(Deserialize, Default)]
struct AuditForm {
    #[serde(default)]
    run: String,
    #[serde(default)]
    actor: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    since: String,
    #[serde(default)]
    after: i64,
}

async fn audit(
    State(state): State<AppState>,
    me: Me,
    axum::extract::Query(form): axum::extract::Query<AuditForm>,
) -> PageResult {
    me.caller.require_audit_reader()?;
    let verification = state.store.verify_audit().await?;
    let since = chrono::NaiveDate::parse_from_str(&form.since, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|d| d.and_utc());
    let run: Option<Uuid> = form.run.trim().parse().ok();
    let filter = steady_engine::store::AuditFilter {
        run_id: run,
        actor: Some(form.actor.trim()).filter(|a| !a.is_empty()).map(Actor::person),
        action: Some(form.action.trim().to_owned()).filter(|a| !a.is_empty()),
        since,
        after_seq: Some(form.after),
        limit: Some(200),
        ..Default::default()
    };
    let events = state.store.audit_events(&filter).await?;
    let run_text = run.map(|id| id.to_string()).unwrap_or_default();
    let since_text = since.map(format_timestamp).unwrap_or_default();
    let export = |format: &str| {
        link(
            "/api/v1/audit/export",
            &[
                ("format", format),
                ("run", &run_text),
                ("actor", form.actor.trim()),
                ("action", form.action.trim()),
                ("since", &since_text),
            ],
        )
    };
    let next_page = (events.len() == 200).then(|| {
        let last = events.last().map_or(0, |e| e.seq).to_string();
        link(
            "/audit",
            &[
                ("run", &form.run),
                ("actor", &form.actor),
                ("action", &form.action),
                ("since", &form.since),
                ("after", &last),
            ],
        )
    });
    let rows = events
        .iter()
        .map(|e| AuditRow {
            seq: e.seq,
            at: e.at.format("%Y-%m-%d %H:%M:%S").to_string(),
            actor: e.actor.to_string(),
            action: e.action.clone(),
            run: e.run_id,
            run_short: e.run_id.map(|id| id.to_string()[..13].to_owned()).unwrap_or_default(),
            step: e.step_id.clone(),
            data: {
                let data = e.data.to_string();
                if data.chars().count() > 160 {
                    format!("{}…", data.chars().take(160).collect::<String>())
                } else {
                    data
                }
            },
        })
        .collect();
    let (export_csv, export_jsonl) = (export("csv"), export("jsonl"));
    let page = AuditPage {
        export_csv,
        export_jsonl,
        me: Some(me),
        intact: verification.first_broken.is_none(),
        events: verification.events,
        broken: verification.first_broken.unwrap_or(0),
        rows,
        filter_run: form.run,
        filter_actor: form.actor,
        filter_action: form.action,
        filter_since: form.since,

        next_page,
    };
    Ok(render(&page))
}

// ---------------------------------------------------------------------------------- users

#[derive(Template)]
#[template(path = "users.html")]
struct UsersPage {
    me: Option<Me>,
    csrf: String,
    users: Vec<(String, String, bool)>,
    tokens: Vec<(Uuid, String, String, String, bool)>,
    all_roles: Vec<&'static str>,
    new_secret: Option<String>,
}

async fn users_page(state: &AppState, me: Me, new_secret: Option<String>) -> PageResult {
    me.caller.require(GlobalRole::Admin)?;
    let users = state
        .accounts
        .users()
        .await?
        .iter()
        .map(|u| {
            (
                u.name.clone(),
                u.roles.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(", "),
                u.disabled,
            )
        })
        .collect();
    let tokens = state
        .accounts
        .tokens(None)
        .await?
        .iter()
        .map(|t| {
            (
                t.id,
                t.label.clone(),
                t.user.clone(),
                t.created_at.format("%Y-%m-%d").to_string(),
                t.revoked_at.is_some(),
            )
        })
        .collect();
    let page = UsersPage {
        csrf: me.csrf.clone(),
        me: Some(me),
        users,
        tokens,
        all_roles: GlobalRole::ALL.iter().map(|r| r.as_str()).collect(),
        new_secret,
    };
    Ok(render(&page))
}

async fn users(State(state): State<AppState>, me: Me) -> PageResult {
    users_page(&state, me, None).await
}

async fn add_user(
    State(state): State<AppState>,
    me: Me,
    Form(fields): Form<Vec<(String, String)>>,
) -> PageResult {
    let field = |key: &str| {
        fields.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone()).unwrap_or_default()
    };
    check_csrf(&me, &field("csrf"))?;
    me.caller.require(GlobalRole::Admin)?;
    let name = field("name");
    if !crate::api::valid_user_name(&name) {
        return Err(AppError::invalid(
            "a user name starts with a-z and uses a-z, 0-9, `.`, `_` and `-`",
        )
        .into());
    }
    let roles = fields
        .iter()
        .filter(|(k, _)| k == "role")
        .map(|(_, v)| {
            v.parse::<GlobalRole>().map_err(|_| AppError::invalid(format!("unknown role `{v}`")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let password = field("password");
    if let Some(problem) = auth::password_problem(&password) {
        return Err(AppError::invalid(problem).into());
    }
    let hash = auth::hash_password(&password)?;
    let user = steady_engine::accounts::User {
        name,
        roles,
        password_hash: Some(hash),
        disabled: false,
        created_at: now(),
    };
    state.accounts.create_user(&user, &me.actor).await?;
    Ok(Redirect::to("/users").into_response())
}

#[derive(Deserialize)]
struct DisableForm {
    #[serde(default)]
    csrf: String,
    disabled: String,
}

async fn set_disabled(
    State(state): State<AppState>,
    Path(name): Path<String>,
    me: Me,
    Form(form): Form<DisableForm>,
) -> PageResult {
    check_csrf(&me, &form.csrf)?;
    me.caller.require(GlobalRole::Admin)?;
    if !state.accounts.set_disabled(&name, form.disabled == "yes", &me.actor).await? {
        return Err(AppError::not_found(format!("no user `{name}`")).into());
    }
    Ok(Redirect::to("/users").into_response())
}

#[derive(Deserialize)]
struct TokenForm {
    #[serde(default)]
    csrf: String,
    user: String,
    label: String,
}

async fn add_token(
    State(state): State<AppState>,
    me: Me,
    Form(form): Form<TokenForm>,
) -> PageResult {
    check_csrf(&me, &form.csrf)?;
    me.caller.require(GlobalRole::Admin)?;
    let user = state
        .accounts
        .user(form.user.trim())
        .await?
        .ok_or_else(|| AppError::not_found(format!("no user `{}`", form.user)))?;
    let secret = format!("stdy_{}", auth::new_secret());
    let token = steady_engine::accounts::ApiToken {
        id: Uuid::now_v7(),
        label: form.label,
        user: user.name,
        hash: auth::secret_hash(&secret),
        created_at: now(),
        revoked_at: None,
    };
    state.accounts.create_token(&token, &me.actor).await?;
    users_page(&state, me, Some(secret)).await
}

async fn revoke(
    State(state): State<AppState>,
    Path(id): Path<String>,
    me: Me,
    Form(form): Form<CsrfForm>,
) -> PageResult {
    check_csrf(&me, &form.csrf)?;
    me.caller.require(GlobalRole::Admin)?;
    let id: Uuid = id.parse().map_err(|_| AppError::not_found("no such token"))?;
    state.accounts.revoke_token(id, &me.actor).await?;
    Ok(Redirect::to("/users").into_response())
}

#[derive(Deserialize)]
struct TransferForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    to: String,
    /// `yes` when an admin takes command for themselves.
    #[serde(default)]
    take: String,
}

async fn transfer(
    State(state): State<AppState>,
    Path(id): Path<String>,
    me: Me,
    Form(form): Form<TransferForm>,
) -> PageResult {
    check_csrf(&me, &form.csrf)?;
    let id = run_id(&id)?;
    if form.take == "yes" {
        me.caller.require(GlobalRole::Admin)?;
        state.engine.take_command(id, &me.actor).await?;
        return Ok(back_to(id, ""));
    }
    // An admin who took command may hand it on; the engine checks who commands the run.
    if !me.admin {
        me.caller.require_responder()?;
    }
    let to = Actor::person(form.to.trim());
    state.engine.transfer_command(id, &me.actor, &to).await?;
    Ok(back_to(id, ""))
}
