//! `/healthz`, which answers while the database does.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use steady_engine::run::RunFilter;
use utoipa::ToSchema;

use crate::AppState;
use crate::error::AppError;

/// What `/healthz` answers while the database answers.
#[derive(Serialize, ToSchema)]
pub(crate) struct Health {
    #[schema(pattern = "^ok$")]
    status: &'static str,
}

#[utoipa::path(get, tag = "ops", path = "/healthz", security(()), responses((status = 200, description = "The server and its database answer", body = Health)))]
pub(crate) async fn healthz(State(state): State<AppState>) -> Result<Json<Health>, AppError> {
    state.store.runs(&RunFilter { limit: Some(1), ..RunFilter::default() }).await?;
    Ok(Json(Health { status: "ok" }))
}
