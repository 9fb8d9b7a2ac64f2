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

use crate::AppState;
use crate::error::AppError;

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
