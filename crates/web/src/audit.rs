//! The audit log: the JSON API (events, verification, export) and the audit page.

pub(crate) mod api;
pub(crate) mod pages;

use axum::Router;
use axum::routing::get;
use steady_engine::audit::AuditAction;
use steady_engine::run::Timestamp;
use uuid::Uuid;

use crate::AppState;
use crate::error::AppError;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/audit", get(api::audit))
        .route("/api/v1/audit/verify", get(api::verify_audit))
        .route("/api/v1/audit/export", get(api::export_audit))
        .route("/audit", get(pages::audit))
}

/// An action to filter on, checked against the typed list: a misspelt action would otherwise
/// select nothing and read as "it never happened". Empty means any.
pub(crate) fn action_filter(text: &str) -> Result<Option<String>, AppError> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    match text.parse::<AuditAction>() {
        Ok(action) => Ok(Some(action.as_str().to_owned())),
        Err(_) => {
            let known: Vec<&str> = AuditAction::ALL.iter().map(|a| a.as_str()).collect();
            Err(AppError::bad_request(format!(
                "unknown audit action `{text}`: use one of {}",
                known.join(", ")
            )))
        }
    }
}

/// Which runs a filter names: a whole run id, or the start of one (as pages show ids cut
/// short). Empty means any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RunFilter {
    Any,
    Id(Uuid),
    Prefix(String),
}

impl RunFilter {
    /// Reads a run id or its start: hex digits and dashes, nothing else, so a prefix never
    /// carries a wildcard into the query.
    pub(crate) fn parse(text: &str) -> Result<RunFilter, AppError> {
        let text = text.trim().to_ascii_lowercase();
        if text.is_empty() {
            return Ok(RunFilter::Any);
        }
        if let Ok(id) = text.parse::<Uuid>() {
            return Ok(RunFilter::Id(id));
        }
        if text.len() <= 36 && text.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            return Ok(RunFilter::Prefix(text));
        }
        Err(AppError::bad_request(format!(
            "run `{text}` is not a run id nor the start of one: use hex digits and dashes, \
             as in 0193c2a4"
        )))
    }

    /// The filter's exact id and prefix, as `AuditFilter` takes them.
    pub(crate) fn parts(&self) -> (Option<Uuid>, Option<String>) {
        match self {
            RunFilter::Any => (None, None),
            RunFilter::Id(id) => (Some(*id), None),
            RunFilter::Prefix(prefix) => (None, Some(prefix.clone())),
        }
    }
}

/// A time to filter on over the API: RFC 3339, as the API's other times. Absent means none;
/// present but empty is refused like any other text that is not a time.
pub(crate) fn time_filter(name: &str, text: Option<&str>) -> Result<Option<Timestamp>, AppError> {
    match text.map(str::trim) {
        None => Ok(None),
        Some(text) => {
            chrono::DateTime::parse_from_rfc3339(text).map(|t| Some(t.to_utc())).map_err(|_| {
                AppError::bad_request(format!(
                    "{name} `{text}` is not a time like 2026-11-30T14:02:07Z"
                ))
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_filter_names_a_known_action_or_is_refused() {
        assert_eq!(action_filter(" run.started ").unwrap().as_deref(), Some("run.started"));
        assert_eq!(action_filter("").unwrap(), None);
        let refused = action_filter("run.startd").unwrap_err();
        assert_eq!(refused.status, axum::http::StatusCode::BAD_REQUEST);
        assert!(refused.message.starts_with("unknown audit action `run.startd`: use one of"));
    }

    #[test]
    fn a_run_is_named_by_its_id_or_the_start_of_it() {
        assert_eq!(RunFilter::parse(" ").unwrap(), RunFilter::Any);
        assert_eq!(RunFilter::parse("0193C2A4").unwrap(), RunFilter::Prefix("0193c2a4".into()));
        let id = Uuid::now_v7();
        assert_eq!(RunFilter::parse(&id.to_string()).unwrap(), RunFilter::Id(id));
        assert!(RunFilter::parse("01%").is_err());
        assert!(RunFilter::parse("zz").is_err());
    }
}
