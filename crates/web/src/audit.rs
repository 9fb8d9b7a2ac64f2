//! The audit log: the JSON API (events, verification, export) and the audit page.

pub(crate) mod api;
pub(crate) mod pages;

use axum::Router;
use axum::routing::get;

use crate::AppState;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/audit", get(api::audit))
        .route("/api/v1/audit/verify", get(api::verify_audit))
        .route("/api/v1/audit/export", get(api::export_audit))
        .route("/audit", get(pages::audit))
}
