//! A proposal an alert made: a responder takes command of it (it starts live, with them as
//! commander and the roles they give) or dismisses it with a reason.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use steady_engine::run::{Actor, Assignment, RunStatus};
use utoipa::ToSchema;

use super::command::RunStatusAnswer;
use super::start::AssignmentBody;
use crate::AppState;
use crate::auth::Caller;
use crate::error::AppError;
use crate::extract::{ApiJson, ApiJsonOrEmpty, RunId};

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
    state.engine.take_proposal(id, &caller.user.actor(), assignments).await?;
    Ok(Json(RunStatusAnswer::of(RunStatus::Running)))
}

/// `POST /api/v1/runs/{id}/dismiss`'s body.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct DismissBody {
    /// Why no run is needed: recorded in the audit log (secrets masked) and shown on the page.
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
