//! Runs: listing and showing them, starting them, answering their gates and manual steps,
//! commanding them (decisions, roles, command, notes, cancelling), their live events, *my
//! work* and the postmortem timeline. Each use case is one file holding its JSON handler and
//! its page side by side; people's actions go to the engine, which checks run roles,
//! self-approval and the commander.

pub(crate) mod answer;
pub(crate) mod command;
pub(crate) mod events;
pub(crate) mod list;
pub(crate) mod proposal;
pub(crate) mod show;
pub(crate) mod start;
mod timeline;
mod work;

use axum::Router;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use steady_engine::run::{RunStatus, StepStatus};
use uuid::Uuid;

use crate::AppState;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/runs", get(list::list_runs).post(start::start_run))
        .route("/api/v1/runs/{id}", get(show::get_run))
        .route("/api/v1/runs/{id}/cancel", post(command::cancel_run))
        .route("/api/v1/runs/{id}/take", post(proposal::take))
        .route("/api/v1/runs/{id}/dismiss", post(proposal::dismiss))
        .route("/api/v1/runs/{id}/decisions", post(command::decide))
        .route("/api/v1/runs/{id}/assignments", post(command::assign))
        .route("/api/v1/runs/{id}/commander", post(command::transfer_command))
        .route("/api/v1/runs/{id}/notes", post(command::add_note))
        .route("/api/v1/runs/{id}/events", get(events::run_events))
        .route("/api/v1/events", get(events::all_events))
        .route("/api/v1/runs/{id}/steps/{step}/{action}", post(answer::answer_step))
        .route("/work", get(work::work))
        .route("/runs", get(list::runs))
        .route("/runs/{id}", get(show::run_page))
        .route("/runs/{id}/steps/{step}/answer", post(answer::answer_form))
        .route("/runs/{id}/decide", post(command::decide_form))
        .route("/runs/{id}/cancel", post(command::cancel_form))
        .route("/runs/{id}/notes", post(command::note_form))
        .route("/runs/{id}/assign", post(command::assign_form))
        .route("/runs/{id}/commander", post(command::transfer_form))
        .route("/runs/{id}/take", get(proposal::take_page).post(proposal::take_form))
        .route("/runs/{id}/dismiss", post(proposal::dismiss_form))
        .route("/runs/{id}/timeline.md", get(timeline::timeline))
        .route("/runbooks/{name}/start", post(start::start_form))
}

/// After a page action: back to the run's page, at `anchor` (`#…`, or empty for the top).
fn back_to(run: Uuid, anchor: &str) -> Response {
    Redirect::to(&format!("/runs/{run}{anchor}")).into_response()
}

/// The first 13 characters of a run id (two groups), enough to tell runs apart on a page.
pub(crate) fn short_id(id: Uuid) -> String {
    id.to_string()[..13].to_owned()
}

/// The class that colours a status; the text and symbol always say it too.
pub(crate) fn status_class(status: &str) -> &'static str {
    match status {
        "succeeded" | "approved" | "rolled_back" | "would_run" | "skipped" => "ok",
        "failed" | "rejected" | "timed_out" | "interrupted" | "cancelled" | "needs_attention" => {
            "bad"
        }
        "waiting" => "waiting",
        "running" => "running",
        // A run an alert proposed waits for a responder; a dismissed one never ran.
        "proposed" => "proposed",
        "dismissed" => "dismissed",
        _ => "neutral",
    }
}

pub(crate) fn run_badge(status: RunStatus) -> String {
    let symbol = match status {
        RunStatus::Running => "▶",
        RunStatus::Waiting => "‖",
        RunStatus::NeedsAttention => "⚠",
        RunStatus::Succeeded => "✓",
        RunStatus::Failed => "✗",
        RunStatus::RolledBack => "↺",
        RunStatus::Cancelled => "■",
        RunStatus::Proposed => "◆",
        RunStatus::Dismissed => "⊘",
    };
    format!("{symbol} {}", status.as_str().replace('_', " "))
}

pub(crate) fn step_badge(status: StepStatus) -> String {
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
