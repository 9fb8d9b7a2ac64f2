//! Commanding a run: cancelling it, deciding after a failure, giving and taking run roles,
//! handing over or taking command, and notes. Each as a JSON route and as a form on the run's
//! page; the engine checks that the caller commands the run (or takes part, for notes).
//! Cancelling, rolling back and aborting ask for a reason first (`confirm`).

pub(crate) mod confirm;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use steady_engine::accounts::GlobalRole;
use steady_engine::run::{Actor, Decision, RoleChange, RunStatus};
use utoipa::ToSchema;
use uuid::Uuid;

use super::back_to;
use crate::AppState;
use crate::auth::Caller;
use crate::dto;
use crate::error::AppError;
use crate::extract::{ApiJson, ApiJsonOrEmpty, CsrfForm, PageRunId, RunId};
use crate::page::PageResult;

/// A run's status after an answer.
#[derive(Serialize, ToSchema)]
pub(crate) struct RunStatusAnswer {
    #[schema(schema_with = dto::run_status_schema)]
    status: &'static str,
}

impl RunStatusAnswer {
    pub(crate) fn of(status: RunStatus) -> RunStatusAnswer {
        RunStatusAnswer { status: status.as_str() }
    }
}

// ---------------------------------------------------------------------------------- cancel

#[utoipa::path(post, tag = "runs", path = "/api/v1/runs/{id}/cancel", request_body(content = Option<CancelBody>, description = "An optional reason; the body may be left out"), params(("id" = String, Path, description = "Run id")), responses((status = 200, description = "Cancelled", body = RunStatusAnswer), (status = 401, description = "Not signed in"), (status = 403, description = "Not the commander, or no responder role"), (status = 404, description = "No such run"), (status = 409, description = "The run has finished"), (status = 422, description = "Invalid input")))]
pub(crate) async fn cancel_run(
    State(state): State<AppState>,
    caller: Caller,
    RunId(id): RunId,
    body: ApiJsonOrEmpty<Option<CancelBody>>,
) -> Result<Json<RunStatusAnswer>, AppError> {
    caller.require_responder()?;
    let body = body.read()?.unwrap_or_default();
    let reason = body.reason.as_deref().map(str::trim).filter(|reason| !reason.is_empty());
    state.engine.cancel_because(id, &caller.user.actor(), reason).await?;
    Ok(Json(RunStatusAnswer { status: RunStatus::Cancelled.as_str() }))
}

/// `POST /api/v1/runs/{id}/cancel`'s body, which may be left out or `null`.
#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CancelBody {
    /// Why the run is cancelled: recorded in the audit log (secrets masked) and shown on the
    /// run page and in the notification.
    reason: Option<String>,
}

/// The fields of the forms that end or reverse work: a first POST without `confirm=yes` (or
/// without a reason) is answered with the confirmation page instead of acting.
#[derive(Deserialize)]
pub(crate) struct ReasonForm {
    #[serde(default)]
    decision: String,
    /// A branch or item of the group that awaits the decision, when the decision is about it.
    #[serde(default)]
    step: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    confirm: String,
}

impl ReasonForm {
    /// The reason, when the person confirmed and gave one.
    pub(crate) fn confirmed(&self) -> Option<&str> {
        Some(self.reason.trim()).filter(|r| self.confirm == "yes" && !r.is_empty())
    }
}

pub(crate) async fn cancel_form(
    State(state): State<AppState>,
    PageRunId(id): PageRunId,
    CsrfForm { me, form }: CsrfForm<ReasonForm>,
) -> PageResult {
    me.caller.require_responder()?;
    let Some(reason) = form.confirmed() else {
        return confirm::page(&state, id, me, &form, confirm::Asked::Cancel).await;
    };
    state.engine.cancel_because(id, &me.actor, Some(reason)).await?;
    Ok(back_to(id, ""))
}

// ---------------------------------------------------------------------------------- decide

/// A decision by name: `retry`, `skip`, `rollback` or `abort`.
fn parse_decision(text: &str) -> Result<Decision, AppError> {
    text.parse().map_err(|_| AppError::invalid("decision must be retry, skip, rollback or abort"))
}

#[derive(Deserialize, ToSchema)]
pub(crate) struct DecisionBody {
    #[schema(schema_with = dto::decision_schema)]
    decision: String,
    /// Retry or skip only this failed or interrupted branch or item (`restart[3]`) of the
    /// group that awaits the decision; the group goes on with its other children.
    step: Option<String>,
    /// Why: recorded in the `decision.taken` event and shown in the step's history.
    reason: Option<String>,
}

#[utoipa::path(post, tag = "runs", path = "/api/v1/runs/{id}/decisions", request_body = DecisionBody, params(("id" = String, Path, description = "Run id")), responses((status = 200, description = "The run's status after the decision", body = RunStatusAnswer), (status = 401, description = "Not signed in"), (status = 403, description = "Not the commander, or no responder role"), (status = 404, description = "No such run"), (status = 409, description = "Nothing to decide"), (status = 422, description = "Invalid input")))]
pub(crate) async fn decide(
    State(state): State<AppState>,
    caller: Caller,
    RunId(id): RunId,
    body: ApiJson<DecisionBody>,
) -> Result<Json<RunStatusAnswer>, AppError> {
    caller.require_responder()?;
    let DecisionBody { decision, step, reason } = body.read()?;
    let decision = parse_decision(&decision)?;
    let reason = reason.as_deref().map(str::trim).filter(|r| !r.is_empty());
    let status = state
        .engine
        .decide_because(id, &caller.user.actor(), decision, step.as_deref(), reason)
        .await?;
    Ok(Json(RunStatusAnswer { status: status.as_str() }))
}

/// The decision panel's forms. Retry and skip act at once; rollback and abort first ask for a
/// reason on the confirmation page (with JavaScript, in a dialog that posts `confirm=yes`).
pub(crate) async fn decide_form(
    State(state): State<AppState>,
    PageRunId(id): PageRunId,
    CsrfForm { me, form }: CsrfForm<ReasonForm>,
) -> PageResult {
    me.caller.require_responder()?;
    let decision = parse_decision(&form.decision)?;
    let reason = match decision {
        Decision::Retry | Decision::Skip => {
            Some(form.reason.trim()).filter(|reason| !reason.is_empty())
        }
        Decision::Rollback | Decision::Abort => match form.confirmed() {
            Some(reason) => Some(reason),
            None => {
                let asked = confirm::Asked::Decide(decision);
                return confirm::page(&state, id, me, &form, asked).await;
            }
        },
    };
    let step = Some(form.step.trim()).filter(|step| !step.is_empty());
    state.engine.decide_because(id, &me.actor, decision, step, reason).await?;
    Ok(back_to(id, ""))
}

// ---------------------------------------------------------------------------------- roles

#[derive(Deserialize, ToSchema)]
pub(crate) struct AssignBody {
    /// A role the runbook declares.
    role: String,
    /// An existing, enabled user.
    person: String,
    /// `false` takes the role away; `true` when absent.
    #[serde(default = "yes")]
    #[schema(default = true)]
    assign: bool,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct AssignAnswer {
    role: String,
    /// `user:NAME`.
    person: String,
    assigned: bool,
}

fn yes() -> bool {
    true
}

#[utoipa::path(post, tag = "runs", path = "/api/v1/runs/{id}/assignments", request_body = AssignBody, params(("id" = String, Path, description = "Run id")), responses((status = 200, description = "Assigned or unassigned", body = AssignAnswer), (status = 401, description = "Not signed in"), (status = 403, description = "Not the commander, or no responder role"), (status = 404, description = "No such run"), (status = 409, description = "The run has finished"), (status = 422, description = "Unknown role or person, or invalid input")))]
pub(crate) async fn assign(
    State(state): State<AppState>,
    caller: Caller,
    RunId(id): RunId,
    body: ApiJson<AssignBody>,
) -> Result<Json<AssignAnswer>, AppError> {
    caller.require_responder()?;
    let AssignBody { role, person, assign } = body.read()?;
    let person = Actor::person(&person);
    let change = if assign { RoleChange::Assign } else { RoleChange::Unassign };
    state.engine.assign(id, &caller.user.actor(), &role, &person, change).await?;
    Ok(Json(AssignAnswer { person: person.to_string(), role, assigned: assign }))
}

#[derive(Deserialize)]
pub(crate) struct AssignForm {
    role: String,
    person: String,
    /// `yes` to give the role, anything else to take it away.
    assign: String,
}

pub(crate) async fn assign_form(
    State(state): State<AppState>,
    PageRunId(id): PageRunId,
    CsrfForm { me, form }: CsrfForm<AssignForm>,
) -> PageResult {
    me.caller.require_responder()?;
    let person = Actor::person(form.person.trim());
    let change = if form.assign == "yes" { RoleChange::Assign } else { RoleChange::Unassign };
    state.engine.assign(id, &me.actor, &form.role, &person, change).await?;
    Ok(back_to(id, ""))
}

// ---------------------------------------------------------------------------------- command

/// A change of who commands a run.
enum CommandChange {
    /// An admin takes command for themselves, so that no run is ever orphaned.
    Take,
    /// The commander hands command to this person.
    HandTo(Actor),
}

/// Changes who commands run `id`; returns the new commander. Taking command is for admins;
/// handing it on for responders, and for an admin who took command; the engine checks who
/// commands the run.
async fn change_command(
    state: &AppState,
    caller: &Caller,
    id: Uuid,
    change: CommandChange,
) -> Result<Actor, AppError> {
    let me = caller.user.actor();
    match change {
        CommandChange::Take => {
            caller.require(GlobalRole::Admin)?;
            state.engine.take_command(id, &me).await?;
            Ok(me)
        }
        CommandChange::HandTo(to) => {
            if !caller.user.has(GlobalRole::Admin) {
                caller.require_responder()?;
            }
            state.engine.transfer_command(id, &me, &to).await?;
            Ok(to)
        }
    }
}

#[derive(Serialize, ToSchema)]
pub(crate) struct CommanderAnswer {
    /// `user:NAME`.
    commander: String,
}

#[derive(Deserialize, ToSchema)]
pub(crate) struct CommanderBody {
    /// Who commands the run from now on: an existing, enabled user. An admin names
    /// themselves to take command of any active run.
    to: String,
}

#[utoipa::path(post, tag = "runs", path = "/api/v1/runs/{id}/commander", request_body = CommanderBody, params(("id" = String, Path, description = "Run id")), responses((status = 200, description = "The new commander", body = CommanderAnswer), (status = 401, description = "Not signed in"), (status = 403, description = "Not the commander, or no responder role"), (status = 404, description = "No such run"), (status = 409, description = "The run has finished"), (status = 422, description = "No such enabled user, or invalid input")))]
pub(crate) async fn transfer_command(
    State(state): State<AppState>,
    caller: Caller,
    RunId(id): RunId,
    body: ApiJson<CommanderBody>,
) -> Result<Json<CommanderAnswer>, AppError> {
    let to = Actor::person(body.read()?.to.trim());
    let change = if caller.user.has(GlobalRole::Admin) && to == caller.user.actor() {
        CommandChange::Take
    } else {
        CommandChange::HandTo(to)
    };
    let commander = change_command(&state, &caller, id, change).await?;
    Ok(Json(CommanderAnswer { commander: commander.to_string() }))
}

#[derive(Deserialize)]
pub(crate) struct TransferForm {
    #[serde(default)]
    to: String,
    /// `yes` when an admin takes command for themselves.
    #[serde(default)]
    take: String,
}

pub(crate) async fn transfer_form(
    State(state): State<AppState>,
    PageRunId(id): PageRunId,
    CsrfForm { me, form }: CsrfForm<TransferForm>,
) -> PageResult {
    let change = if form.take == "yes" {
        CommandChange::Take
    } else {
        CommandChange::HandTo(Actor::person(form.to.trim()))
    };
    change_command(&state, &me.caller, id, change).await?;
    Ok(back_to(id, ""))
}

// ---------------------------------------------------------------------------------- notes

/// A note's text, refused when it is nothing but spaces.
fn note_text(text: &str) -> Result<&str, AppError> {
    if text.trim().is_empty() {
        return Err(AppError::invalid("a note needs text"));
    }
    Ok(text)
}

#[derive(Deserialize, ToSchema)]
pub(crate) struct NoteBody {
    /// Something other than spaces.
    #[schema(pattern = "\\S")]
    text: String,
    /// The step the note is about, if any.
    step: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct NoteAnswer {
    text: String,
}

#[utoipa::path(post, tag = "runs", path = "/api/v1/runs/{id}/notes", request_body = NoteBody, params(("id" = String, Path, description = "Run id")), responses((status = 201, description = "Noted", body = NoteAnswer), (status = 401, description = "Not signed in"), (status = 403, description = "Needs the responder role"), (status = 404, description = "No such run or step"), (status = 422, description = "Invalid input")))]
pub(crate) async fn add_note(
    State(state): State<AppState>,
    caller: Caller,
    RunId(id): RunId,
    body: ApiJson<NoteBody>,
) -> Result<Response, AppError> {
    caller.require_responder()?;
    let NoteBody { text, step } = body.read()?;
    let actor = caller.user.actor();
    state.engine.add_note(id, &actor, step.as_deref(), note_text(&text)?).await?;
    Ok((StatusCode::CREATED, Json(NoteAnswer { text })).into_response())
}

#[derive(Deserialize)]
pub(crate) struct NoteForm {
    text: String,
}

pub(crate) async fn note_form(
    State(state): State<AppState>,
    PageRunId(id): PageRunId,
    CsrfForm { me, form }: CsrfForm<NoteForm>,
) -> PageResult {
    me.caller.require_responder()?;
    state.engine.add_note(id, &me.actor, None, note_text(&form.text)?.trim()).await?;
    Ok(back_to(id, "#notes"))
}
