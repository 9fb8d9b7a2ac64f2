//! Answering a step that waits for people: approving or rejecting a gate, completing or
//! failing a manual step. `POST /api/v1/runs/{id}/steps/{step}/{action}` and the forms on the
//! run's page; the engine checks the run role, self-approval, duplicates and the deadline.

use axum::Json;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use steady_engine::engine::Then;
use steady_engine::run::{Actor, Completion, StepStatus};
use utoipa::ToSchema;
use uuid::Uuid;

use super::back_to;
use crate::AppState;
use crate::auth::Caller;
use crate::dto;
use crate::error::AppError;
use crate::extract::{ApiJsonOrEmpty, CsrfForm, PageRunId, RunId};
use crate::page::PageResult;

/// What a person says to a waiting step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Approve,
    Reject,
    Complete,
    Fail,
}

impl Answer {
    /// `approve`, `reject`, `complete` or `fail`; `None` for anything else, which each way in
    /// refuses in its own terms.
    fn parse(text: &str) -> Option<Answer> {
        match text {
            "approve" => Some(Answer::Approve),
            "reject" => Some(Answer::Reject),
            "complete" => Some(Answer::Complete),
            "fail" => Some(Answer::Fail),
            _ => None,
        }
    }
}

/// Gives `answer` to step `step` of run `id` as `actor`, with an optional comment; returns the
/// step's status after it. The caller's global role was checked by the route.
async fn answer(
    state: &AppState,
    id: Uuid,
    step: &str,
    actor: &Actor,
    answer: Answer,
    comment: Option<&str>,
) -> Result<StepStatus, AppError> {
    let engine = &state.engine;
    Ok(match answer {
        Answer::Approve => engine.approve(id, step, actor, comment).await?,
        Answer::Reject => engine.reject(id, step, actor, comment).await?,
        Answer::Complete => {
            engine
                .complete_manual(id, step, actor, Completion::Done, comment, Then::AnyDriver)
                .await?
        }
        Answer::Fail => {
            engine
                .complete_manual(id, step, actor, Completion::Failed, comment, Then::AnyDriver)
                .await?
        }
    })
}

#[derive(Deserialize, Default, ToSchema)]
pub(crate) struct AnswerBody {
    /// Why: shown with the vote and in the timeline.
    comment: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct StepAnswer {
    step: String,
    #[schema(schema_with = dto::step_status_schema)]
    status: &'static str,
}

/// The route's `{step}` and `{action}` segments.
#[derive(Deserialize)]
pub(crate) struct StepAction {
    step: String,
    action: String,
}

/// Answers a gate (`approve`, `reject`) or a manual step (`complete`, `fail`). The body may be
/// left out.
#[utoipa::path(post, tag = "runs", path = "/api/v1/runs/{id}/steps/{step}/{action}", request_body(content = AnswerBody, description = "An optional comment"), params(("id" = String, Path, description = "Run id"), ("step" = String, Path, description = "Step id"), ("action" = String, Path, pattern = "^(approve|reject|complete|fail)$", description = "approve or reject a gate; complete or fail a manual step")), responses((status = 200, description = "The step's status after the answer", body = StepAnswer), (status = 401, description = "Not signed in"), (status = 403, description = "Not eligible: the role, self-approval"), (status = 404, description = "No such run, step or action"), (status = 409, description = "The step is not waiting, or was already answered"), (status = 422, description = "The step is not of that kind, or invalid input")))]
pub(crate) async fn answer_step(
    State(state): State<AppState>,
    caller: Caller,
    RunId(id): RunId,
    Path(StepAction { step, action }): Path<StepAction>,
    body: ApiJsonOrEmpty<AnswerBody>,
) -> Result<Json<StepAnswer>, AppError> {
    caller.require_responder()?;
    let AnswerBody { comment } = body.read()?;
    let Some(kind) = Answer::parse(&action) else {
        return Err(AppError::not_found("use approve, reject, complete or fail"));
    };
    let status = answer(&state, id, &step, &caller.user.actor(), kind, comment.as_deref()).await?;
    Ok(Json(StepAnswer { step, status: status.as_str() }))
}

/// The page route's `{step}` segment.
#[derive(Deserialize)]
pub(crate) struct StepOnly {
    step: String,
}

#[derive(Deserialize)]
pub(crate) struct AnswerForm {
    action: String,
    #[serde(default)]
    comment: String,
}

/// The answer buttons of a waiting step on the run's page.
pub(crate) async fn answer_form(
    State(state): State<AppState>,
    PageRunId(id): PageRunId,
    Path(StepOnly { step }): Path<StepOnly>,
    CsrfForm { me, form }: CsrfForm<AnswerForm>,
) -> PageResult {
    me.caller.require_responder()?;
    let comment = Some(form.comment.trim()).filter(|c| !c.is_empty());
    let Some(kind) = Answer::parse(&form.action) else {
        return Err(AppError::invalid("unknown answer").into());
    };
    answer(&state, id, &step, &me.actor, kind, comment).await?;
    Ok(back_to(id, &format!("#step-{step}")))
}
