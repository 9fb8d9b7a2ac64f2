//! Runbooks: the JSON API (list, versions, source, publish) and the pages (catalogue,
//! procedure, diff, print). Starting a run from a runbook's page is a run's use case: see
//! `runs::start`.

pub(crate) mod api;
pub(crate) mod pages;

use axum::Router;
use axum::routing::get;

use crate::AppState;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/runbooks", get(api::list_runbooks).post(api::publish))
        .route("/api/v1/runbooks/{name}", get(api::runbook_versions))
        .route("/api/v1/runbooks/{name}/source", get(api::runbook_source))
        .route("/runbooks", get(pages::runbooks))
        .route("/runbooks/{name}", get(pages::runbook_page))
        .route("/runbooks/{name}/diff", get(pages::diff))
        .route("/runbooks/{name}/print", get(pages::print))
}
