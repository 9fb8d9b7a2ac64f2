//! `AppError`: what every handler returns when it cannot answer. The caller's mistakes are
//! 4xx with a message that says what to fix; causes of 5xx are logged, never shown.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use steady_engine::accounts::AccountError;
use steady_engine::engine::EngineError;
use steady_engine::store::StoreError;

#[derive(Debug)]
pub struct AppError {
    pub status: StatusCode,
    /// A stable, machine-readable word: `unauthenticated`, `forbidden`, `not_found`, …
    pub code: &'static str,
    pub message: String,
    /// Extra detail for the caller, such as the diagnostics of an invalid runbook.
    pub details: Option<serde_json::Value>,
    /// The run this error is about, such as the one holding a lock: error pages link to it.
    pub run: Option<uuid::Uuid>,
}

impl AppError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> AppError {
        AppError { status, code, message: message.into(), details: None, run: None }
    }

    pub fn unauthenticated() -> AppError {
        AppError::new(StatusCode::UNAUTHORIZED, "unauthenticated", "sign in or send a bearer token")
    }

    pub fn forbidden(message: impl Into<String>) -> AppError {
        AppError::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn not_found(message: impl Into<String>) -> AppError {
        AppError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn invalid(message: impl Into<String>) -> AppError {
        AppError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", message)
    }

    /// A request whose values cannot mean anything (a filter naming an unknown action, a
    /// malformed date): 400, saying what is wrong, rather than a value quietly ignored.
    pub fn bad_request(message: impl Into<String>) -> AppError {
        AppError::new(StatusCode::BAD_REQUEST, "invalid", message)
    }

    pub fn conflict(message: impl Into<String>) -> AppError {
        AppError::new(StatusCode::CONFLICT, "conflict", message)
    }

    /// A 500 whose cause is logged for the operator and never shown to the caller.
    pub(crate) fn internal(cause: impl std::fmt::Display) -> AppError {
        tracing::error!(error = %cause, "internal error");
        AppError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "something went wrong on the server",
        )
    }
}

/// The one shape of every error answer of the API, whatever its status.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// A stable, machine-readable word: `unauthenticated`, `forbidden`, `not_found`,
    /// `conflict`, `invalid`, `unsupported`, `throttled`, `busy` or `internal`.
    pub code: String,
    /// What went wrong, for people: what to fix when it is the caller's mistake.
    pub message: String,
    /// More about it, such as the diagnostics of an invalid runbook, each with its line and
    /// column.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<crate::dto::DiagnosticView>>)]
    pub details: Option<serde_json::Value>,
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_owned(),
                message: self.message,
                details: self.details,
            },
        };
        (self.status, Json(body)).into_response()
    }
}

impl From<StoreError> for AppError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NoSuchRun(id) => AppError::not_found(format!("no run {id}")),
            StoreError::Exists(name) => AppError::conflict(format!("`{name}` already exists")),
            StoreError::LockHeld { key, run_id } => lock_held(&key, run_id),
            StoreError::LockOut(reason) => AppError::conflict(reason),
            StoreError::Conflict => AppError::conflict("the run changed meanwhile: try again"),
            StoreError::Unstorable(reason) => AppError::invalid(reason),
            other => AppError::internal(other),
        }
    }
}

impl From<EngineError> for AppError {
    fn from(error: EngineError) -> Self {
        use EngineError as E;
        let message = error.to_string();
        match error {
            E::NoSuchRunbook(_) | E::NoSuchRun(_) | E::NoSuchStep(_) => {
                AppError::not_found(message)
            }
            E::NotEligible { .. }
            | E::SelfApproval { .. }
            | E::NotCommander { .. }
            | E::NotParticipant { .. } => AppError::forbidden(message),
            E::Params(_)
            | E::Secrets(_)
            | E::NoSuchRole(_)
            | E::NoSuchPerson(_)
            | E::WrongKind { .. }
            | E::WholeRunDecision { .. }
            | E::LockKey(_)
            | E::ReasonRequired
            | E::Trigger(_) => AppError::invalid(message),
            E::LockHeld { key, run_id } => lock_held(&key, run_id),
            E::InvalidRunbook(diagnostics) => {
                let mut error = AppError::invalid("the runbook is invalid");
                error.details = Some(crate::dto::diagnostics(&diagnostics));
                error
            }
            E::InvalidTests(diagnostics) => {
                let mut error = AppError::invalid("the runbook's tests are invalid");
                error.details = Some(crate::dto::diagnostics(&diagnostics));
                error
            }
            E::TestsFailed(cases) => {
                let mut error = AppError::invalid(message);
                let failed: Vec<serde_json::Value> = cases
                    .iter()
                    .map(
                        |case| serde_json::json!({ "case": case.name, "difference": case.failure }),
                    )
                    .collect();
                error.details = Some(serde_json::Value::Array(failed));
                error
            }
            E::NotWaiting { .. }
            | E::AlreadyAnswered { .. }
            | E::GateTimedOut { .. }
            | E::GateCannotBeSkipped { .. }
            | E::NothingToDecide { .. }
            | E::NotDecidable { .. }
            | E::RunNotActive { .. }
            | E::NotProposed { .. }
            | E::LeaseHeld { .. } => AppError::conflict(message),
            E::Busy => AppError::new(StatusCode::SERVICE_UNAVAILABLE, "busy", message),
            E::Store(store) => store.into(),
            E::InvalidStoredRunbook { .. } | E::LeaseLost => AppError::internal(message),
        }
    }
}

impl From<AccountError> for AppError {
    fn from(error: AccountError) -> Self {
        use AccountError as A;
        let message = error.to_string();
        match error {
            A::InvalidName | A::UnknownRole(_) | A::RolesRefused(_) | A::WeakPassword(_) => {
                AppError::invalid(message)
            }
            A::WrongPassword => AppError::new(StatusCode::UNAUTHORIZED, "unauthenticated", message),
            A::Throttled => AppError::new(StatusCode::TOO_MANY_REQUESTS, "throttled", message),
            A::ServiceAccount => AppError::forbidden(message),
            A::NoSuchUser(_) => AppError::not_found(message),
            A::Hashing(_) => AppError::internal(message),
            A::Store(store) => store.into(),
        }
    }
}

/// A start refused because another active run holds the lock key: the message names that run
/// and error pages link to it.
fn lock_held(key: &str, run_id: uuid::Uuid) -> AppError {
    let mut error = AppError::conflict(format!(
        "lock `{key}` is held by active run {run_id}: finish or cancel it first"
    ));
    error.run = Some(run_id);
    error
}
