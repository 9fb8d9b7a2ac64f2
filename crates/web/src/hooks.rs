//! `POST /api/v1/hooks/{source}`: an alerting system delivers its own webhook payload, and each
//! alert a runbook's trigger accepts proposes that runbook or is added to the proposal or
//! active run already about it (the engine's `receive_alerts`). Only a `trigger` account's
//! token is accepted, and that account may do nothing else.

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::routing::post;
use serde::Serialize;
use steady_engine::engine::Filing;
use steady_engine::runbook::AlertSource;
use steady_engine::trigger::{self, MAX_PAYLOAD_BYTES};
use utoipa::ToSchema;

use crate::AppState;
use crate::auth::TriggerCaller;
use crate::error::AppError;

/// Every outcome an alert can come to for a runbook, as the answer and `/metrics` name them.
pub(crate) const OUTCOMES: [&str; 4] = ["proposed", "added", "unmatched", "failed"];

/// The most of a trigger's error an answer repeats: an alert's value can be long.
const MAX_ERROR_CHARS: usize = 300;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/hooks/{source}", post(receive))
        // A bigger body is refused (413) before it is read whole.
        .layer(DefaultBodyLimit::max(MAX_PAYLOAD_BYTES))
}

/// What a delivery came to: one outcome per alert and runbook whose trigger accepted it.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Delivery {
    /// How many alerts the payload held, firing and resolved.
    alerts: usize,
    outcomes: Vec<Outcome>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Outcome {
    /// What tells this alert again: the sender's fingerprint, or a hash of its labels.
    alert: String,
    /// `firing` or `resolved`.
    status: &'static str,
    runbook: String,
    /// `proposed` (a new proposal), `added` (to the proposal or active run about the same
    /// thing), `unmatched` (a resolved alert no open run was about) or `failed` (the trigger
    /// could not be applied to this alert: `error` says why).
    outcome: &'static str,
    /// The proposal or run the alert went to.
    run_id: Option<String>,
    /// The dry run gathering a new proposal's facts, when its trigger said `then: dry-run`.
    dry_run_id: Option<String>,
    error: Option<String>,
}

#[utoipa::path(post, tag = "hooks", path = "/api/v1/hooks/{source}",
    params(("source" = String, Path, description = "`alertmanager`, `grafana` or `json`")),
    request_body(content = Object, description = "The alerting system's own webhook payload: Alertmanager webhook version 4, Grafana unified alerting, or any JSON object (`json`); at most 1 MiB"),
    responses((status = 200, description = "Every alert filed", body = Delivery),
        (status = 401, description = "No valid bearer token"),
        (status = 403, description = "The token's account does not hold the `trigger` role"),
        (status = 404, description = "No such source"),
        (status = 413, description = "The payload is over 1 MiB"),
        (status = 422, description = "The payload is not the source's format")),
    security(("token" = [])))]
pub(crate) async fn receive(
    State(state): State<AppState>,
    TriggerCaller(user): TriggerCaller,
    Path(source): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Delivery>, AppError> {
    let body = body.map_err(|rejection| {
        let status = rejection.status();
        let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
            format!(
                "the payload is over {MAX_PAYLOAD_BYTES} bytes (1 MiB): send fewer alerts at once"
            )
        } else {
            rejection.body_text()
        };
        AppError::new(status, "payload", message)
    })?;
    let source =
        AlertSource::ALL.into_iter().find(|known| known.as_str() == source).ok_or_else(|| {
            AppError::not_found("no such alert source: use alertmanager, grafana or json")
        })?;
    let alerts = trigger::parse_payload(source, &body)
        .map_err(|error| AppError::invalid(error.to_string()))?;
    let outcomes = state.engine.receive_alerts(source, &alerts, &user.actor()).await?;
    let outcomes = outcomes
        .into_iter()
        .map(|outcome| {
            let (name, run_id, dry_run_id, error) = match outcome.result {
                Ok(Filing::Proposed { run, dry_run }) => ("proposed", Some(run), dry_run, None),
                Ok(Filing::Added { run }) => ("added", Some(run), None, None),
                Ok(Filing::Unmatched) => ("unmatched", None, None, None),
                Err(error) => {
                    tracing::warn!(runbook = %outcome.runbook, alert = %outcome.alert, %error, "a trigger could not be applied to an alert");
                    ("failed", None, None, Some(shortened(&error)))
                }
            };
            state.metrics.alert_filed(name);
            Outcome {
                alert: outcome.alert,
                status: outcome.status.as_str(),
                runbook: outcome.runbook,
                outcome: name,
                run_id: run_id.map(|id| id.to_string()),
                dry_run_id: dry_run_id.map(|id| id.to_string()),
                error,
            }
        })
        .collect();
    Ok(Json(Delivery { alerts: alerts.len(), outcomes }))
}

/// `error` cut to [`MAX_ERROR_CHARS`] characters, marked when cut.
fn shortened(error: &str) -> String {
    match error.char_indices().nth(MAX_ERROR_CHARS) {
        Some((end, _)) => format!("{}…", &error[..end]),
        None => error.to_owned(),
    }
}
