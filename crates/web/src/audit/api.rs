//! The audit log over the API: events filtered and paged, the chain verified, and the whole
//! log exported as JSON Lines or CSV, streamed. For auditors and admins.

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use steady_engine::audit::AuditAction;
use steady_engine::run::Actor;
use steady_engine::store::AuditFilter;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::{RunFilter, action_filter, time_filter};
use crate::AppState;
use crate::auth::Caller;
use crate::dto::{self, AuditEventView};
use crate::error::AppError;
use crate::extract::{ApiQuery, page_limit};

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct AuditQuery {
    /// Only events of this run. Read here rather than by serde, so that a malformed one is
    /// a 400 saying so, like every other filter.
    #[param(value_type = Option<String>, format = "uuid")]
    run: Option<String>,
    /// Only events by this person (a user name) or `steady`.
    actor: Option<String>,
    /// Only events of this action, such as `run.started`; an unknown action is a 400.
    #[param(schema_with = action_schema, required = false)]
    action: Option<String>,
    /// Only events at or after this time (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime)]
    since: Option<String>,
    /// Only events before this time (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime)]
    until: Option<String>,
    /// Only events after this seq.
    after: Option<i64>,
    /// How many events at most; 500 when absent. More than 10000 is refused rather than cut
    /// short, so that a short page always means the last page.
    #[param(maximum = 10000)]
    limit: Option<u32>,
}

#[utoipa::path(get, tag = "audit", path = "/api/v1/audit", params(AuditQuery), responses((status = 200, description = "Events in chain order", body = Vec<AuditEventView>), (status = 400, description = "A filter that cannot mean anything: a malformed run id or time, an unknown action"), (status = 401, description = "Not signed in"), (status = 403, description = "For auditors and admins"), (status = 422, description = "Invalid query")))]
pub(crate) async fn audit(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<AuditQuery>,
    caller: Caller,
) -> Result<Json<Vec<AuditEventView>>, AppError> {
    caller.require_audit_reader()?;
    let filter = AuditFilter {
        run_id: run_id(query.run.as_deref())?,
        actor: query.actor.as_deref().map(Actor::person),
        action: api_action(query.action.as_deref())?,
        since: time_filter("since", query.since.as_deref())?,
        until: time_filter("until", query.until.as_deref())?,
        after_seq: query.after,
        limit: Some(page_limit(query.limit, 500, 10_000)?),
        ..AuditFilter::default()
    };
    let events = state.store.audit_events(&filter).await?;
    Ok(Json(events.iter().map(AuditEventView::new).collect()))
}

/// The audit chain, recomputed.
#[derive(Serialize, ToSchema)]
pub(crate) struct VerifyAnswer {
    /// Events checked.
    events: u64,
    intact: bool,
    /// The first event whose hash, `prev_hash` or `seq` does not follow from the one before.
    first_broken: Option<i64>,
}

#[utoipa::path(get, tag = "audit", path = "/api/v1/audit/verify", responses((status = 200, description = "Whether the chain is intact", body = VerifyAnswer), (status = 401, description = "Not signed in"), (status = 403, description = "For auditors and admins")))]
pub(crate) async fn verify_audit(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<VerifyAnswer>, AppError> {
    caller.require_audit_reader()?;
    let verification = state.store.verify_audit().await?;
    Ok(Json(VerifyAnswer {
        events: verification.events,
        intact: verification.first_broken.is_none(),
        first_broken: verification.first_broken,
    }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ExportQuery {
    /// `jsonl` (the default) or `csv`.
    #[param(schema_with = export_format_schema, required = false)]
    format: Option<String>,
    /// Only events of this run.
    #[param(value_type = Option<String>, format = "uuid")]
    run: Option<String>,
    /// Only events by this person (a user name).
    actor: Option<String>,
    /// Only events of this action; an unknown action is a 400.
    #[param(schema_with = action_schema, required = false)]
    action: Option<String>,
    /// Only events at or after this time (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime)]
    since: Option<String>,
}

/// The audit actions, from the typed list: the document names every one.
fn action_schema() -> utoipa::openapi::schema::Object {
    dto::names_schema(AuditAction::ALL.iter().map(|a| a.as_str()), false)
}

fn export_format_schema() -> utoipa::openapi::schema::Object {
    dto::names_schema(["jsonl", "csv"], false)
}

#[utoipa::path(get, tag = "audit", path = "/api/v1/audit/export", params(ExportQuery), responses((status = 200, description = "JSON Lines or CSV, streamed", content((String = "application/x-ndjson"), (String = "text/csv"))), (status = 400, description = "A filter that cannot mean anything: a malformed run id or time, an unknown action"), (status = 401, description = "Not signed in"), (status = 403, description = "For auditors and admins"), (status = 422, description = "Invalid query")))]
pub(crate) async fn export_audit(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<ExportQuery>,
    caller: Caller,
) -> Result<Response, AppError> {
    caller.require_audit_reader()?;
    let csv = match query.format.as_deref() {
        None | Some("jsonl") => false,
        Some("csv") => true,
        Some(other) => {
            return Err(AppError::invalid(format!("unknown format `{other}`: use jsonl or csv")));
        }
    };
    let actor = query.actor.as_deref().map(Actor::person);
    let run = run_id(query.run.as_deref())?;
    let action = api_action(query.action.as_deref())?;
    let since = time_filter("since", query.since.as_deref())?;
    let head = if csv { dto::audit_csv_header() } else { String::new() };
    // Pages of events, streamed as they are read, so that a large log never sits in memory.
    let pages = futures_util::stream::unfold(Some(0i64), move |after| {
        let (state, actor, action) = (state.clone(), actor.clone(), action.clone());
        async move {
            let after = after?;
            let filter = AuditFilter {
                run_id: run,
                actor,
                action,
                since,
                after_seq: Some(after),
                limit: Some(5_000),
                ..AuditFilter::default()
            };
            match state.store.audit_events(&filter).await {
                Ok(events) if events.is_empty() => None,
                Ok(events) => {
                    let next = events.last().map(|event| event.seq);
                    Some((Ok::<_, std::io::Error>(dto::audit_export(&events, csv)), next))
                }
                Err(error) => Some((Err(std::io::Error::other(error.to_string())), None)),
            }
        }
    });
    let body =
        futures_util::StreamExt::chain(futures_util::stream::once(async move { Ok(head) }), pages);
    let content_type = if csv { "text/csv; charset=utf-8" } else { "application/x-ndjson" };
    Ok(([(header::CONTENT_TYPE, content_type)], axum::body::Body::from_stream(body))
        .into_response())
}

/// The API's action filter: absent means any; present, it must name an action (a page's empty
/// field means any, but a client that sends `action=` meant something and is told so).
fn api_action(text: Option<&str>) -> Result<Option<String>, AppError> {
    match text {
        None => Ok(None),
        Some(text) => action_filter(text)?.map(Some).ok_or_else(|| {
            AppError::bad_request(
                "action is empty: name an action such as run.started, or leave it out",
            )
        }),
    }
}

/// The API's run filter: a whole run id (the page also takes the start of one); present but
/// empty is refused rather than read as "any".
fn run_id(text: Option<&str>) -> Result<Option<Uuid>, AppError> {
    let Some(text) = text else { return Ok(None) };
    match RunFilter::parse(text)? {
        RunFilter::Any => {
            Err(AppError::bad_request("run is empty: give a whole run id, or leave it out"))
        }
        RunFilter::Id(id) => Ok(Some(id)),
        RunFilter::Prefix(prefix) => Err(AppError::bad_request(format!(
            "run `{prefix}` is not a whole run id: the API takes the full UUID"
        ))),
    }
}
