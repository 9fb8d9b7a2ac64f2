//! Runbooks: the JSON API (list, versions, source, publish, rehearsal figures) and the pages
//! (catalogue, procedure, diff, print, and publishing a new version from the browser).
//! Starting a run from a runbook's page is a run's use case: see `runs::start`.

pub(crate) mod api;
mod authoring;
pub(crate) mod figures;
pub(crate) mod pages;

use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use steady_engine::run::RunbookVersion;
use steady_engine::runbook::Runbook;
use steady_engine::verification::VerificationState;
use uuid::Uuid;

use crate::AppState;
use crate::error::AppError;
use crate::page::{CodeSpans, Moment};

/// Where a runbook's verification stands, as its pages show it: "⚠ verification failing
/// since 02:10: `standby_in_recovery` exited 2", "✓ verified 3 min ago", or not run yet.
/// Shown for runbooks whose latest version declares `verify`.
pub(crate) struct VerificationBadge {
    /// `verified every 6h`.
    pub(crate) every: String,
    /// Failing: since when, and what failed first.
    pub(crate) failing: Option<(Moment, CodeSpans)>,
    /// When the latest verification ended, `None` before the first.
    pub(crate) last: Option<Moment>,
    /// The run to open: the first failing one while failing, else the latest.
    pub(crate) run_id: Option<Uuid>,
}

impl VerificationBadge {
    pub(crate) fn new(runbook: &Runbook, state: Option<&VerificationState>) -> Option<Self> {
        let verify = runbook.verify.as_ref()?;
        let failing = state.and_then(|state| state.failing.as_ref());
        Some(VerificationBadge {
            every: verify.every.to_string(),
            failing: failing.map(|failure| {
                let what = match &failure.step {
                    Some(step) => format!("`{step}` {}", failure.reason),
                    None => failure.reason.clone(),
                };
                (Moment::new(failure.since), CodeSpans(what))
            }),
            last: state.map(|state| Moment::new(state.at)),
            run_id: match failing {
                Some(failure) => failure.run_id,
                None => state.and_then(|state| state.run_id),
            },
        })
    }
}

/// The latest version of the runbook `name`, as stored and as parsed; a 404 naming it when
/// there is none.
pub(crate) async fn latest(
    state: &AppState,
    name: &str,
) -> Result<(RunbookVersion, Arc<Runbook>), AppError> {
    let latest = state
        .store
        .runbook_version(name, None)
        .await?
        .ok_or_else(|| AppError::not_found(format!("no runbook named `{name}`")))?;
    let runbook = state.engine.runbook(name, latest.version).await?;
    Ok((latest, runbook))
}

/// Whether the latest version of the runbook `name` asks to be verified (`verify:`): where a
/// runbook's verification stands is shown only while it does.
pub(crate) async fn verified(engine: &steady_engine::engine::Engine, name: &str) -> bool {
    let Ok(Some(latest)) = engine.store().runbook_version(name, None).await else {
        return false;
    };
    engine.runbook(name, latest.version).await.is_ok_and(|runbook| runbook.verify.is_some())
}

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/runbooks", get(api::list_runbooks).post(api::publish))
        .route("/api/v1/runbooks/{name}", get(api::runbook_versions))
        .route("/api/v1/runbooks/{name}/source", get(api::runbook_source))
        .route("/api/v1/runbooks/{name}/figures", get(figures::runbook_figures))
        .route("/runbooks", get(pages::runbooks))
        .route("/runbooks/{name}", get(pages::runbook_page))
        .route("/runbooks/{name}/diff", get(pages::diff))
        .route("/runbooks/{name}/print", get(pages::print))
        .route(
            "/runbooks/{name}/new-version",
            get(authoring::new_version_page).post(authoring::new_version_form),
        )
}
