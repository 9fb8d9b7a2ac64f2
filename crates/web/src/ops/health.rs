//! `/healthz`, which answers while the database does, and `/metrics`, Prometheus text: runs
//! by status, step durations, notifications, refused requests and the nodes' heartbeats.

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use steady_engine::run::{RunFilter, RunStatus};
use utoipa::ToSchema;

use crate::AppState;
use crate::error::AppError;

/// What `/healthz` answers while the database answers.
#[derive(Serialize, ToSchema)]
pub(crate) struct Health {
    #[schema(pattern = "^ok$")]
    status: &'static str,
}

#[utoipa::path(get, path = "/healthz", security(()), responses((status = 200, description = "The server and its database answer", body = Health)))]
pub(crate) async fn healthz(State(state): State<AppState>) -> Result<Json<Health>, AppError> {
    state.store.runs(&RunFilter { limit: Some(1), ..RunFilter::default() }).await?;
    Ok(Json(Health { status: "ok" }))
}

#[utoipa::path(get, path = "/metrics", security(()), responses((status = 200, description = "Prometheus text", body = String, content_type = "text/plain")))]
pub(crate) async fn metrics(State(state): State<AppState>) -> Result<Response, AppError> {
    let counts = state.store.count_runs_by_status().await?;
    let count_of =
        |status: RunStatus| counts.iter().find(|(s, _)| *s == status).map_or(0, |(_, n)| *n);
    let mut text = String::from("# HELP steady_runs Runs by status.\n# TYPE steady_runs gauge\n");
    for status in RunStatus::ALL {
        text.push_str(&format!("steady_runs{{status=\"{status}\"}} {}\n", count_of(*status)));
    }
    let histogram =
        state.store.step_durations(&[0.1, 0.5, 1.0, 5.0, 30.0, 60.0, 300.0, 1800.0]).await?;
    text.push_str("# HELP steady_step_duration_seconds How long step attempts took.\n# TYPE steady_step_duration_seconds histogram\n");
    for (bound, count) in &histogram.buckets {
        text.push_str(&format!("steady_step_duration_seconds_bucket{{le=\"{bound}\"}} {count}\n"));
    }
    text.push_str(&format!(
        "steady_step_duration_seconds_bucket{{le=\"+Inf\"}} {count}\nsteady_step_duration_seconds_sum {sum}\nsteady_step_duration_seconds_count {count}\n",
        count = histogram.count,
        sum = histogram.sum
    ));
    let waiting_gates = count_of(RunStatus::Waiting);
    let delivered = state.notify_metrics.delivered.load(std::sync::atomic::Ordering::Relaxed);
    let failed = state.notify_metrics.failed.load(std::sync::atomic::Ordering::Relaxed);
    text.push_str(&format!(
        "# HELP steady_runs_waiting Runs waiting for people at a gate or manual step.\n# TYPE steady_runs_waiting gauge\nsteady_runs_waiting {waiting_gates}\n\
         # HELP steady_notifications_delivered_total Notifications delivered.\n# TYPE steady_notifications_delivered_total counter\nsteady_notifications_delivered_total {delivered}\n\
         # HELP steady_notification_failures_total Notification attempts that failed (retried).\n# TYPE steady_notification_failures_total counter\nsteady_notification_failures_total {failed}\n"
    ));
    let denied =
        |counter: &std::sync::atomic::AtomicU64| counter.load(std::sync::atomic::Ordering::Relaxed);
    text.push_str(&format!(
        "# HELP steady_requests_denied_total Requests refused: not signed in (401) or not allowed (403).\n# TYPE steady_requests_denied_total counter\n\
         steady_requests_denied_total{{status=\"401\"}} {}\nsteady_requests_denied_total{{status=\"403\"}} {}\n",
        denied(&state.denials.unauthenticated),
        denied(&state.denials.forbidden)
    ));
    let now = steady_engine::engine::now();
    let this = &state.engine.config().node;
    // A node gone for over a day was retired, not lost: it leaves the metrics, so that series
    // of renamed or replaced nodes do not pile up (`/api/v1/nodes` still lists it).
    let nodes: Vec<_> = state
        .store
        .nodes()
        .await?
        .into_iter()
        .filter(|node| now - node.last_seen <= chrono::Duration::days(1))
        .collect();
    text.push_str(&format!(
        "# HELP steady_node_up Server nodes on this database: 1 when heard from in the last {silent} s.\n# TYPE steady_node_up gauge\n",
        silent = crate::NODE_SILENT_AFTER.as_secs()
    ));
    for node in &nodes {
        text.push_str(&format!(
            "steady_node_up{{node=\"{}\",address=\"{}\",this=\"{}\"}} {}\n",
            label(&node.id),
            label(&node.address),
            node.id == *this,
            u8::from(crate::node_is_up(node, now))
        ));
    }
    text.push_str("# HELP steady_node_last_seen_seconds Seconds since each node last said it was alive.\n# TYPE steady_node_last_seen_seconds gauge\n");
    for node in &nodes {
        let silent = (now - node.last_seen).num_milliseconds() as f64 / 1000.0;
        text.push_str(&format!(
            "steady_node_last_seen_seconds{{node=\"{}\"}} {silent}\n",
            label(&node.id)
        ));
    }
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response())
}

/// A Prometheus label value: backslash, quote and newline escaped.
fn label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}
