//! Runbooks over the API: the latest of each, every version, a version's source, and
//! publishing a new version (authors only).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use steady_engine::accounts::GlobalRole;
use steady_engine::audit::format_timestamp;
use steady_engine::engine::VersionTests;
use steady_engine::run::RunbookVersion;
use steady_engine::store::Published;
use steady_engine::verification::VerificationState;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::AppState;
use crate::auth::Caller;
use crate::error::AppError;
use crate::extract::{ApiJson, ApiQuery};

/// A runbook version, with its source when asked for.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunbookVersionView {
    pub name: String,
    pub version: u32,
    pub sha256: String,
    pub published_by: String,
    #[schema(format = DateTime)]
    pub published_at: String,
    /// What the author said changed; `null` for versions published without a message.
    pub message: Option<String>,
    /// The YAML source: only from `GET /api/v1/runbooks/{name}/source`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// How many test cases were published with the version, every one of which passed
    /// against it; 0 when it was published without tests.
    pub tests: usize,
    /// The test file published with the version: only from
    /// `GET /api/v1/runbooks/{name}/source`, and only when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tests_source: Option<String>,
    /// Where the runbook's verification stands: only in the list of runbooks, for a runbook
    /// verified at least once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verification: Option<VerificationView>,
}

/// Where a runbook's verification (its scheduled dry run) stands.
#[derive(Debug, Serialize, ToSchema)]
pub struct VerificationView {
    /// Whether the latest verification passed.
    pub passed: bool,
    /// When the latest verification ended, or found that it could not start.
    #[schema(format = DateTime)]
    pub at: String,
    /// The version it followed.
    pub version: u32,
    /// The latest verification's run; `null` when it could not start.
    #[schema(value_type = Option<String>, format = "uuid")]
    pub run_id: Option<Uuid>,
    /// While verifications fail: the first failure since the last pass; `null` otherwise.
    pub failing: Option<FailureView>,
}

/// The first of a spell of failed verifications.
#[derive(Debug, Serialize, ToSchema)]
pub struct FailureView {
    #[schema(format = DateTime)]
    pub since: String,
    #[schema(value_type = Option<String>, format = "uuid")]
    pub run_id: Option<Uuid>,
    /// The first step that failed; `null` when the run could not start.
    pub step: Option<String>,
    /// Why: `exited 2`, `stdout does not match …`, `could not start: …`.
    pub reason: String,
}

impl VerificationView {
    pub fn new(state: &VerificationState) -> VerificationView {
        VerificationView {
            passed: state.passed,
            at: format_timestamp(state.at),
            version: state.version,
            run_id: state.run_id,
            failing: state.failing.as_ref().map(|failure| FailureView {
                since: format_timestamp(failure.since),
                run_id: failure.run_id,
                step: failure.step.clone(),
                reason: failure.reason.clone(),
            }),
        }
    }
}

impl RunbookVersionView {
    pub fn new(version: &RunbookVersion, with_source: bool) -> RunbookVersionView {
        RunbookVersionView {
            name: version.name.clone(),
            version: version.version,
            sha256: version.sha256.clone(),
            published_by: version.published_by.to_string(),
            published_at: format_timestamp(version.published_at),
            message: version.message.clone(),
            source: with_source.then(|| version.source.clone()),
            tests: test_cases(version),
            tests_source: version.tests.clone().filter(|_| with_source),
            verification: None,
        }
    }
}

#[utoipa::path(get, tag = "runbooks", path = "/api/v1/runbooks", responses((status = 200, description = "The latest version of every runbook, with where its verification stands", body = Vec<RunbookVersionView>), (status = 401, description = "Not signed in")))]
pub(crate) async fn list_runbooks(
    State(state): State<AppState>,
    _caller: Caller,
) -> Result<Json<Vec<RunbookVersionView>>, AppError> {
    let names = state.store.runbook_names().await?;
    let verifications = state.store.verifications().await?;
    let mut runbooks = Vec::new();
    for name in names {
        if let Some(latest) = state.store.runbook_version(&name, None).await? {
            let verification = verifications.iter().find(|v| v.runbook == name);
            let verification = match verification {
                Some(verification) if super::verified(&state.engine, &name).await => {
                    Some(verification)
                }
                _ => None,
            };
            runbooks.push(RunbookVersionView {
                verification: verification.map(VerificationView::new),
                ..RunbookVersionView::new(&latest, false)
            });
        }
    }
    Ok(Json(runbooks))
}

#[utoipa::path(get, tag = "runbooks", path = "/api/v1/runbooks/{name}", params(("name" = String, Path, description = "Runbook name")), responses((status = 200, description = "Every version, oldest first", body = Vec<RunbookVersionView>), (status = 401, description = "Not signed in"), (status = 404, description = "No such runbook")))]
pub(crate) async fn runbook_versions(
    State(state): State<AppState>,
    Path(name): Path<String>,
    _caller: Caller,
) -> Result<Json<Vec<RunbookVersionView>>, AppError> {
    let versions = state.store.runbook_versions(&name).await?;
    if versions.is_empty() {
        return Err(AppError::not_found(format!("no runbook named `{name}`")));
    }
    Ok(Json(versions.iter().map(|version| RunbookVersionView::new(version, false)).collect()))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct VersionQuery {
    /// A version; the latest when absent.
    version: Option<u32>,
}

#[utoipa::path(get, tag = "runbooks", path = "/api/v1/runbooks/{name}/source", params(("name" = String, Path, description = "Runbook name"), VersionQuery), responses((status = 200, description = "The version with its YAML source", body = RunbookVersionView), (status = 401, description = "Not signed in"), (status = 404, description = "No such runbook or version"), (status = 422, description = "Invalid query")))]
pub(crate) async fn runbook_source(
    State(state): State<AppState>,
    Path(name): Path<String>,
    ApiQuery(query): ApiQuery<VersionQuery>,
    _caller: Caller,
) -> Result<Json<RunbookVersionView>, AppError> {
    let version = state.store.runbook_version(&name, query.version).await?;
    let version =
        version.ok_or_else(|| AppError::not_found(format!("no such version of `{name}`")))?;
    Ok(Json(RunbookVersionView::new(&version, true)))
}

#[derive(Deserialize, ToSchema)]
pub(crate) struct Publish {
    /// The runbook's YAML. An invalid runbook is refused with 422 and every diagnostic, each
    /// with its line and column, in `error.details`.
    source: String,
    /// What changed and why, kept with the new version (at most 1,000 characters).
    #[serde(default)]
    message: Option<String>,
    /// The runbook's test file (`NAME.test.yaml`): every case runs against `source` first,
    /// and a failing one refuses the version with 422 (each failing case and its first
    /// difference in `error.details`). Stored with the version. Left out, the latest
    /// version's tests are kept and run; `null` (or `""`) publishes without tests on purpose.
    #[serde(default, deserialize_with = "given")]
    #[schema(value_type = Option<String>)]
    tests: Option<Option<String>>,
}

/// A field that may be left out (`None`) or given, `null` included (`Some(None)`).
fn given<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(deserializer).map(Some)
}

#[utoipa::path(post, tag = "runbooks", path = "/api/v1/runbooks", request_body = Publish, responses((status = 200, description = "The same source is already the latest version", body = RunbookVersionView), (status = 201, description = "A new version", body = RunbookVersionView), (status = 401, description = "Not signed in"), (status = 403, description = "Needs the author role"), (status = 422, description = "Invalid JSON, an invalid runbook or test file, or a failing test")))]
pub(crate) async fn publish(
    State(state): State<AppState>,
    caller: Caller,
    body: ApiJson<Publish>,
) -> Result<Response, AppError> {
    caller.require(GlobalRole::Author)?;
    let Publish { source, message, tests } = body.read()?;
    let message = change_message(message.as_deref())?;
    let actor = caller.user.actor();
    let tests = match &tests {
        None => VersionTests::Kept,
        Some(Some(tests)) if !tests.trim().is_empty() => VersionTests::With(tests),
        Some(_) => VersionTests::Without,
    };
    Ok(match state.engine.publish_with_tests(&source, tests, &actor, message).await? {
        Published::New(version) => {
            (StatusCode::CREATED, Json(RunbookVersionView::new(&version, false))).into_response()
        }
        Published::Unchanged(version) => {
            Json(RunbookVersionView::new(&version, false)).into_response()
        }
    })
}

/// How many cases the test file published with a version holds.
pub fn test_cases(version: &RunbookVersion) -> usize {
    let Some(tests) = &version.tests else { return 0 };
    steady_engine::testing::parse(tests).file.map_or(0, |file| file.cases.len())
}

/// The most a change message may hold.
const MESSAGE_LIMIT: usize = 1000;

/// A change message as stored: trimmed, `None` when blank, refused when too long.
pub(crate) fn change_message(message: Option<&str>) -> Result<Option<&str>, AppError> {
    let message = message.map(str::trim).filter(|m| !m.is_empty());
    match message {
        Some(text) if text.chars().count() > MESSAGE_LIMIT => Err(AppError::invalid(format!(
            "the change message is longer than {MESSAGE_LIMIT} characters"
        ))),
        _ => Ok(message),
    }
}
