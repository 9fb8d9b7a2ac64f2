//! A proposal an alert made: a responder takes command of it (it starts live, with them as
//! commander and the roles they give) or dismisses it with a reason. Over the API, and from
//! the run page and *my work*: taking command goes through a confirmation page like starting
//! a run does (the plan, the roles and who would hold them, the gates nobody could approve);
//! dismissing asks for the reason (a dialog, or the confirmation page without JavaScript).

use askama::Template;
use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use steady_engine::engine::{EngineError, Then};
use steady_engine::plan::Plan;
use steady_engine::run::{Actor, Assignment, RunStatus};
use utoipa::ToSchema;
use uuid::Uuid;

use super::command::confirm::{self, Asked};
use super::command::{ReasonForm, RunStatusAnswer};
use super::show::alerts::{self, FactsView};
use super::show::{params_shown, snapshot};
use super::start::{AssignmentBody, form_assignments, holders_in_words, unreachable_gates};
use super::{back_to, short_id};
use crate::AppState;
use crate::auth::Caller;
use crate::error::AppError;
use crate::extract::{ApiJson, ApiJsonOrEmpty, CsrfForm, PageRunId, RunId};
use crate::page::{Me, PageResult, render};

/// `POST /api/v1/runs/{id}/take`'s body, which may be left out.
#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TakeBody {
    /// Run roles given as the run starts: roles the runbook declares, people who are
    /// existing, enabled users (else 422).
    #[serde(default)]
    assignments: Vec<AssignmentBody>,
}

#[utoipa::path(post, tag = "runs", path = "/api/v1/runs/{id}/take", request_body(content = Option<TakeBody>, description = "Roles to give; the body may be left out"), params(("id" = String, Path, description = "Run id")), responses((status = 200, description = "Taken: the run starts live with the caller as its commander", body = RunStatusAnswer), (status = 401, description = "Not signed in"), (status = 403, description = "Needs the responder role"), (status = 404, description = "No such run"), (status = 409, description = "Not a proposal, or its lock is held by another active run"), (status = 422, description = "Invalid roles or people, or the runbook's secrets are missing")))]
pub(crate) async fn take(
    State(state): State<AppState>,
    caller: Caller,
    RunId(id): RunId,
    body: ApiJsonOrEmpty<Option<TakeBody>>,
) -> Result<Json<RunStatusAnswer>, AppError> {
    caller.require_responder()?;
    let body = body.read()?.unwrap_or_default();
    let assignments = body
        .assignments
        .iter()
        .map(|a| Assignment { role: a.role().to_owned(), person: Actor::person(a.person()) })
        .collect();
    state.engine.take_proposal(id, &caller.user.actor(), assignments, Then::AnyDriver).await?;
    Ok(Json(RunStatusAnswer::of(RunStatus::Running)))
}

/// `POST /api/v1/runs/{id}/dismiss`'s body.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct DismissBody {
    /// Why no run is needed: recorded in the audit log (secrets masked) and shown on the page.
    /// Something other than spaces.
    #[schema(pattern = "\\S")]
    reason: String,
}

#[utoipa::path(post, tag = "runs", path = "/api/v1/runs/{id}/dismiss", request_body = DismissBody, params(("id" = String, Path, description = "Run id")), responses((status = 200, description = "Dismissed", body = RunStatusAnswer), (status = 401, description = "Not signed in"), (status = 403, description = "Needs the responder role"), (status = 404, description = "No such run"), (status = 409, description = "Not a proposal"), (status = 422, description = "No reason given")))]
pub(crate) async fn dismiss(
    State(state): State<AppState>,
    caller: Caller,
    RunId(id): RunId,
    body: ApiJson<DismissBody>,
) -> Result<Json<RunStatusAnswer>, AppError> {
    caller.require_responder()?;
    let body = body.read()?;
    state.engine.dismiss(id, &caller.user.actor(), &body.reason).await?;
    Ok(Json(RunStatusAnswer::of(RunStatus::Dismissed)))
}

// ---------------------------------------------------------------------------------- pages

/// A run role on the take page, with the people typed for it.
struct RolePick {
    name: String,
    description: Option<String>,
    /// Comma-separated names, as typed.
    value: String,
}

#[derive(Template)]
#[template(path = "take.html")]
struct TakePage {
    me: Option<Me>,
    csrf: String,
    run_id: Uuid,
    short_id: String,
    runbook: String,
    title: String,
    version: u32,
    /// The alert that proposed it, by name.
    alert: String,
    lock: Option<String>,
    params: Vec<(String, String)>,
    roles: Vec<RolePick>,
    /// Who can hold a run role, for the fields' suggestions.
    people: Vec<String>,
    /// Each run role with who would hold it, as the form stands.
    holders: Vec<(String, String)>,
    /// The gates nobody could approve with these roles, the taker being the run's starter.
    unreachable: Vec<String>,
    plan: String,
    facts: Option<FactsView>,
}

/// `GET /runs/{id}/take`: what taking command would start, with a field for each run role.
pub(crate) async fn take_page(
    State(state): State<AppState>,
    me: Me,
    PageRunId(id): PageRunId,
) -> PageResult {
    me.caller.require_responder()?;
    confirmation(&state, id, me, &[]).await
}

/// The take page's form: with `confirmed=yes`, takes command with the roles given and opens
/// the run; otherwise shows the page again for the roles as typed (who would hold each, and
/// which gates nobody could approve).
pub(crate) async fn take_form(
    State(state): State<AppState>,
    PageRunId(id): PageRunId,
    CsrfForm { me, form: fields }: CsrfForm<Vec<(String, String)>>,
) -> PageResult {
    me.caller.require_responder()?;
    if !fields.iter().any(|(key, value)| key == "confirmed" && value == "yes") {
        return confirmation(&state, id, me, &fields).await;
    }
    let taken =
        state.engine.take_proposal(id, &me.actor, form_assignments(&fields), Then::AnyDriver).await;
    taken.map_err(|error| settled(id, error))?;
    Ok(back_to(id, ""))
}

/// The take page of proposal `id` for the role fields given. A run that is no longer a
/// proposal is a conflict page that links to it.
async fn confirmation(
    state: &AppState,
    id: Uuid,
    me: Me,
    fields: &[(String, String)],
) -> PageResult {
    let snapshot = snapshot(state, id).await?;
    let record = &snapshot.run;
    if record.status != RunStatus::Proposed {
        return Err(settled(id, EngineError::NotProposed { status: record.status }).into());
    }
    let runbook = state.engine.runbook(&record.runbook, record.version).await?;
    let proposed = alerts::proposed(state, record).await?;
    let facts = match record.dry_run {
        Some(dry_run) => alerts::facts(state, dry_run, &me.actor).await?,
        None => None,
    };
    let assignments: Vec<Assignment> = form_assignments(fields);
    let value = |role: &str| {
        let key = format!("role.{role}");
        fields.iter().find(|(k, _)| *k == key).map(|(_, v)| v.trim().to_owned()).unwrap_or_default()
    };
    let page = TakePage {
        csrf: me.csrf.clone(),
        run_id: id,
        short_id: short_id(id),
        runbook: record.runbook.clone(),
        title: runbook.title.clone().unwrap_or_else(|| record.runbook.clone()),
        version: record.version,
        alert: proposed
            .as_ref()
            .map(|(_, proposed)| alerts::alert_name(&proposed.alert))
            .unwrap_or_else(|| "an alert".to_owned()),
        lock: record.lock_key.clone(),
        params: params_shown(state, &runbook, record),
        roles: runbook
            .roles
            .iter()
            .map(|role| RolePick {
                name: role.name.clone(),
                description: role.description.clone(),
                value: value(&role.name),
            })
            .collect(),
        people: crate::runbooks::pages::responders(state).await?,
        holders: holders_in_words(&runbook, &assignments),
        unreachable: unreachable_gates(&runbook, &me.actor, &assignments),
        plan: Plan::new(&runbook, &record.params).to_string(),
        facts,
        me: Some(me),
    };
    Ok(render(&page))
}

/// The dismiss form of the run page and *my work*: with a reason and `confirm=yes` (the
/// dialog's, or the confirmation page's), dismisses the proposal; otherwise asks for the
/// reason on the confirmation page.
pub(crate) async fn dismiss_form(
    State(state): State<AppState>,
    PageRunId(id): PageRunId,
    CsrfForm { me, form }: CsrfForm<ReasonForm>,
) -> PageResult {
    me.caller.require_responder()?;
    let Some(reason) = form.confirmed() else {
        return confirm::page(&state, id, me, &form, Asked::Dismiss).await;
    };
    state.engine.dismiss(id, &me.actor, reason).await.map_err(|error| settled(id, error))?;
    Ok(back_to(id, ""))
}

/// An error of the engine's about proposal `id`. When someone else took or dismissed it first,
/// the error page says what it is now and links to it.
fn settled(id: Uuid, error: EngineError) -> AppError {
    let EngineError::NotProposed { status } = error else { return error.into() };
    let mut error = AppError::from(EngineError::NotProposed { status });
    error.message =
        format!("this run is no longer a proposal: it is {}", status.as_str().replace('_', " "));
    error.run = Some(id);
    error
}
