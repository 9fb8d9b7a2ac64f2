//! Operations: `/healthz` for load balancers, `/metrics` for Prometheus, and the server nodes
//! on this database (`/api/v1/nodes` and the nodes page).

pub(crate) mod health;
pub(crate) mod metrics;
pub(crate) mod nodes;

use axum::Router;
use axum::routing::get;

use crate::AppState;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/metrics", get(metrics::metrics))
        .route("/api/v1/nodes", get(nodes::list_nodes))
        .route("/nodes", get(nodes::nodes))
}
