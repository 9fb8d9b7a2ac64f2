//! The JSON API under `/api/v1`, plus `/healthz` and `/metrics`. Every route that reads or
//! changes anything takes a `Caller`; what a caller may do is checked here (global roles) and
//! in the engine (run roles, self-approval, the commander).

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use steady_engine::accounts::{GlobalRole, Session};
use steady_engine::engine::{StartRun, now};
use steady_engine::run::{
    Actor, Assignment, Completion, Decision, RoleChange, RunFilter, RunMode, RunStatus,
};
use steady_engine::store::{AuditFilter, Published};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::AppState;
use crate::auth::{self, Caller, SESSION_COOKIE};
use crate::dto::{
    self, AuditEventView, NodeView, RunDetail, RunView, RunbookVersionView, TokenView, UserView,
};
use crate::error::{AppError, ErrorBody};

type ApiResult = Result<Response, AppError>;

/// A query string, whose mistakes are answered like every other: a 422 in the API's shape.
struct ApiQuery<T>(T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> axum::extract::FromRequestParts<S>
    for ApiQuery<T>
{
    type Rejection = AppError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(value)) => Ok(ApiQuery(value)),
            Err(rejection) => Err(AppError::invalid(rejection.body_text())),
        }
    }
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/api/v1/session", post(login).delete(logout).get(whoami))
        .route("/api/v1/runbooks", get(list_runbooks).post(publish))
        .route("/api/v1/runbooks/{name}", get(runbook_versions))
        .route("/api/v1/runbooks/{name}/source", get(runbook_source))
        .route("/api/v1/runs", get(list_runs).post(start_run))
        .route("/api/v1/runs/{id}", get(get_run))
        .route("/api/v1/runs/{id}/cancel", post(cancel_run))
        .route("/api/v1/runs/{id}/decisions", post(decide))
        .route("/api/v1/runs/{id}/assignments", post(assign))
        .route("/api/v1/runs/{id}/commander", post(transfer_command))
        .route("/api/v1/runs/{id}/notes", post(add_note))
        .route("/api/v1/runs/{id}/events", get(run_events))
        .route("/api/v1/events", get(all_events))
        .route("/api/v1/runs/{id}/steps/{step}/{action}", post(answer_step))
        .route("/api/v1/audit", get(audit))
        .route("/api/v1/audit/verify", get(verify_audit))
        .route("/api/v1/audit/export", get(export_audit))
        .route("/api/v1/users", get(list_users).post(create_user))
        .route("/api/v1/nodes", get(list_nodes))
        .route("/api/v1/users/{name}", axum::routing::put(update_user))
        .route("/api/v1/tokens", get(list_tokens).post(create_token))
        .route("/api/v1/tokens/{id}", axum::routing::delete(revoke_token))
        .route("/api/v1/openapi.json", get(openapi))
        .fallback(|| async { AppError::not_found("no such route") })
}

fn ok(value: impl Serialize) -> ApiResult {
    Ok(Json(value).into_response())
}

fn created(value: impl Serialize) -> ApiResult {
    Ok((StatusCode::CREATED, Json(value)).into_response())
}

/// JSON bodies: a body that is not the expected JSON is the caller's mistake, a 422 that
/// says what is wrong, never a 5xx.
fn body<T: serde::de::DeserializeOwned>(bytes: &axum::body::Bytes) -> Result<T, AppError> {
    serde_json::from_slice(bytes)
        .map_err(|error| AppError::invalid(format!("invalid JSON body: {error}")))
}

/// A page size asked for, or the default: one larger than the most a page holds is refused,
/// never silently cut, since a client that pages on would take the short page for the last.
fn page_limit(asked: Option<u32>, default: u32, most: u32) -> Result<u32, AppError> {
    match asked {
        Some(limit) if limit > most => {
            Err(AppError::invalid(format!("limit is at most {most}: ask for the next page")))
        }
        Some(limit) => Ok(limit),
        None => Ok(default),
    }
}

fn run_id(text: &str) -> Result<Uuid, AppError> {
    Uuid::parse_str(text).map_err(|_| AppError::not_found(format!("no run {text}")))
}

/// What `/healthz` answers while the database answers.
#[derive(Serialize, ToSchema)]
struct Health {
    #[schema(pattern = "^ok$")]
    status: &'static str,
}

#[utoipa::path(get, path = "/healthz", security(()), responses((status = 200, description = "The server and its database answer", body = Health)))]
async fn healthz(State(state): State<AppState>) -> ApiResult {
    state.store.runs(&RunFilter { limit: Some(1), ..RunFilter::default() }).await?;
    ok(Health { status: "ok" })
}

#[utoipa::path(get, path = "/metrics", security(()), responses((status = 200, description = "Prometheus text", body = String, content_type = "text/plain")))]
async fn metrics(State(state): State<AppState>) -> ApiResult {
    let counts = state.store.count_runs_by_status().await?;
    let count_of =
        |status: RunStatus| counts.iter().find(|(s, _)| *s == status).map_or(0, |(_, n)| *n);
    let mut text = String::from("# HELP steady_runs Runs by status.\n# TYPE steady_runs gauge\n");
    for status in RunStatus::ALL {
        text.push_str(&format!("steady_runs{{status=\"{status}\"}} {}\n", count_of(*status)));
    }
    let histogram =
        state.store.step_durations(&[0.1, 0.5, 1.0, 5.0, 30.0, 60.0, 300.0, 1800.0]).await?;
    text.push_str("# HELP steady_step_duration_seconds How long step attempts took.\n# TYPE steady_step_duration_seconds histogram\n");
    for (bound, count) in &histogram.buckets {
        text.push_str(&format!("steady_step_duration_seconds_bucket{{le=\"{bound}\"}} {count}\n"));
    }
    text.push_str(&format!(
        "steady_step_duration_seconds_bucket{{le=\"+Inf\"}} {count}\nsteady_step_duration_seconds_sum {sum}\nsteady_step_duration_seconds_count {count}\n",
        count = histogram.count,
        sum = histogram.sum
    ));
    let waiting_gates = count_of(RunStatus::Waiting);
    let delivered = state.notify_metrics.delivered.load(std::sync::atomic::Ordering::Relaxed);
    let failed = state.notify_metrics.failed.load(std::sync::atomic::Ordering::Relaxed);
    text.push_str(&format!(
        "# HELP steady_runs_waiting Runs waiting for people at a gate or manual step.\n# TYPE steady_runs_waiting gauge\nsteady_runs_waiting {waiting_gates}\n\
         # HELP steady_notifications_delivered_total Notifications delivered.\n# TYPE steady_notifications_delivered_total counter\nsteady_notifications_delivered_total {delivered}\n\
         # HELP steady_notification_failures_total Notification attempts that failed (retried).\n# TYPE steady_notification_failures_total counter\nsteady_notification_failures_total {failed}\n"
    ));
    let denied =
        |counter: &std::sync::atomic::AtomicU64| counter.load(std::sync::atomic::Ordering::Relaxed);
    text.push_str(&format!(
        "# HELP steady_requests_denied_total Requests refused: not signed in (401) or not allowed (403).\n# TYPE steady_requests_denied_total counter\n\
         steady_requests_denied_total{{status=\"401\"}} {}\nsteady_requests_denied_total{{status=\"403\"}} {}\n",
        denied(&state.denials.unauthenticated),
        denied(&state.denials.forbidden)
    ));
    let now = steady_engine::engine::now();
    let this = &state.engine.config().node;
    // A node gone for over a day was retired, not lost: it leaves the metrics, so that series
    // of renamed or replaced nodes do not pile up (`/api/v1/nodes` still lists it).
    let nodes: Vec<_> = state
        .store
        .nodes()
        .await?
        .into_iter()
        .filter(|node| now - node.last_seen <= chrono::Duration::days(1))
        .collect();
    text.push_str(&format!(
        "# HELP steady_node_up Server nodes on this database: 1 when heard from in the last {silent} s.\n# TYPE steady_node_up gauge\n",
        silent = crate::NODE_SILENT_AFTER.as_secs()
    ));
    for node in &nodes {
        text.push_str(&format!(
            "steady_node_up{{node=\"{}\",address=\"{}\",this=\"{}\"}} {}\n",
            label(&node.id),
            label(&node.address),
            node.id == *this,
            u8::from(crate::node_is_up(node, now))
        ));
    }
    text.push_str("# HELP steady_node_last_seen_seconds Seconds since each node last said it was alive.\n# TYPE steady_node_last_seen_seconds gauge\n");
    for node in &nodes {
        let silent = (now - node.last_seen).num_milliseconds() as f64 / 1000.0;
        text.push_str(&format!(
            "steady_node_last_seen_seconds{{node=\"{}\"}} {silent}\n",
            label(&node.id)
        ));
    }
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response())
}

/// A Prometheus label value: backslash, quote and newline escaped.
fn label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[derive(Deserialize, utoipa::ToSchema)]
struct Login {
    name: String,
    password: String,
}

/// Failed sign-ins tolerated in the throttle's window: for one account from one address (so
/// that nobody elsewhere can lock an account out), and from one address for any account.
const MAX_FAILURES_PER_ACCOUNT: u32 = 5;
const MAX_FAILURES_PER_ADDRESS: u32 = 20;
const FAILURE_WINDOW_MINUTES: i64 = 15;

/// A session: who is signed in, and the CSRF token that state-changing requests made with the
/// session cookie send in `X-CSRF-Token` (none for a bearer token).
#[derive(Serialize, ToSchema)]
struct SessionView {
    user: UserView,
    csrf_token: Option<String>,
}

/// Signs in: the session cookie comes in `Set-Cookie`. Only `application/json` is accepted, so
/// that a form on another site cannot sign anyone in.
#[utoipa::path(post, path = "/api/v1/session", security(()), request_body = Login, responses((status = 200, description = "Signed in; the session cookie is set", body = SessionView), (status = 401, description = "Wrong name or password"), (status = 415, description = "The body is not application/json"), (status = 422, description = "Invalid input"), (status = 429, description = "Too many failed sign-ins")))]
async fn login(State(state): State<AppState>, request: axum::extract::Request) -> ApiResult {
    let address = auth::client_address(request.extensions());
    // A form on another site can post `text/plain` that happens to be JSON; it cannot post
    // `application/json` without the browser asking first.
    let is_json = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/json"));
    if !is_json {
        return Err(AppError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported",
            "send the sign-in as application/json",
        ));
    }
    let bytes = axum::body::to_bytes(request.into_body(), 64 * 1024)
        .await
        .map_err(|_| AppError::invalid("the body is too large"))?;
    let Login { name, password } = body(&bytes)?;
    let (cookie, csrf_token) = sign_in(&state, &name, &password, &address).await?;
    let user = state.accounts.user(&name).await?.ok_or_else(AppError::unauthenticated)?;
    let body = SessionView { user: UserView::new(&user), csrf_token: Some(csrf_token) };
    Ok(([(header::SET_COOKIE, cookie)], Json(body)).into_response())
}

/// Checks a name and password under the throttle and opens a session: returns the
/// `Set-Cookie` value and the session's CSRF token. Shared by the API and the login page.
pub(crate) async fn sign_in(
    state: &AppState,
    name: &str,
    password: &str,
    address: &str,
) -> Result<(String, String), AppError> {
    let refused =
        || AppError::new(StatusCode::UNAUTHORIZED, "unauthenticated", "wrong name or password");
    // Only names an account could have are counted and audited: nothing else reaches the log.
    if !valid_user_name(name) {
        return Err(refused());
    }
    // Attempts for one name take turns, so that parallel guesses all see the same count.
    let _turn = state.login_turns.turn(name).await;
    let since = now() - chrono::Duration::minutes(FAILURE_WINDOW_MINUTES);
    let (by_account_here, by_address) = state.accounts.login_failures(name, address, since).await?;
    if by_account_here >= MAX_FAILURES_PER_ACCOUNT || by_address >= MAX_FAILURES_PER_ADDRESS {
        return Err(AppError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "throttled",
            "too many failed sign-ins: wait a few minutes",
        ));
    }
    let user = state.accounts.user(name).await?;
    // Spend the same time whether or not the name exists, so that timing does not tell.
    let hash = user
        .as_ref()
        .and_then(|user| user.password_hash.clone())
        .unwrap_or_else(|| auth::dummy_hash().to_owned());
    let exists = user.as_ref().is_some_and(|user| user.password_hash.is_some());
    let password = password.to_owned();
    let verified = tokio::task::spawn_blocking(move || auth::verify_password(&hash, &password))
        .await
        .unwrap_or(false);
    let Some(user) = user.filter(|user| exists && verified && !user.disabled) else {
        state.accounts.record_login_failure(name, address, now()).await?;
        return Err(refused());
    };
    // Always a new session id at sign-in, so that no id planted before it is worth anything.
    let id = auth::new_secret();
    let csrf_token = auth::csrf_token(&id);
    let session = Session {
        id_hash: auth::secret_hash(&id),
        user: user.name.clone(),
        csrf_hash: auth::secret_hash(&csrf_token),
        created_at: now(),
        last_seen: now(),
    };
    state.accounts.create_session(&session, address).await?;
    let mut cookie =
        cookie::Cookie::new(auth::session_cookie_name(state.config.secure_cookies), id);
    cookie.set_http_only(true);
    cookie.set_same_site(cookie::SameSite::Strict);
    cookie.set_path("/");
    cookie.set_secure(state.config.secure_cookies);
    Ok((cookie.to_string(), csrf_token))
}

/// Signs out: ends the session of the cookie sent, if any. A bearer token stays valid.
#[utoipa::path(delete, path = "/api/v1/session", responses((status = 204, description = "Signed out"), (status = 401, description = "Not signed in")))]
async fn logout(State(state): State<AppState>, headers: HeaderMap, caller: Caller) -> ApiResult {
    if let Some(id) = auth::session_cookie(&headers, state.config.secure_cookies) {
        state.accounts.delete_session(&auth::secret_hash(&id)).await?;
    }
    let _ = caller;
    let mut cookie =
        cookie::Cookie::new(auth::session_cookie_name(state.config.secure_cookies), "");
    cookie.set_path("/");
    cookie.set_secure(state.config.secure_cookies);
    cookie.make_removal();
    Ok(([(header::SET_COOKIE, cookie.to_string())], StatusCode::NO_CONTENT).into_response())
}

#[utoipa::path(get, path = "/api/v1/session", responses((status = 200, description = "Who is calling", body = SessionView), (status = 401, description = "Not signed in")))]
async fn whoami(caller: Caller) -> ApiResult {
    ok(SessionView { user: UserView::new(&caller.user), csrf_token: caller.csrf_token })
}

#[utoipa::path(get, path = "/api/v1/runbooks", responses((status = 200, description = "The latest version of every runbook", body = Vec<RunbookVersionView>), (status = 401, description = "Not signed in")))]
async fn list_runbooks(State(state): State<AppState>, _caller: Caller) -> ApiResult {
    let names = state.store.runbook_names().await?;
    let mut runbooks = Vec::new();
    for name in names {
        if let Some(latest) = state.store.runbook_version(&name, None).await? {
            runbooks.push(RunbookVersionView::new(&latest, false));
        }
    }
    ok(runbooks)
}

#[utoipa::path(get, path = "/api/v1/runbooks/{name}", params(("name" = String, Path, description = "Runbook name")), responses((status = 200, description = "Every version, oldest first", body = Vec<RunbookVersionView>), (status = 401, description = "Not signed in"), (status = 404, description = "No such runbook")))]
async fn runbook_versions(
    State(state): State<AppState>,
    Path(name): Path<String>,
    _caller: Caller,
) -> ApiResult {
    let versions = state.store.runbook_versions(&name).await?;
    if versions.is_empty() {
        return Err(AppError::not_found(format!("no runbook named `{name}`")));
    }
    ok(versions.iter().map(|version| RunbookVersionView::new(version, false)).collect::<Vec<_>>())
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct VersionQuery {
    /// A version; the latest when absent.
    version: Option<u32>,
}

#[utoipa::path(get, path = "/api/v1/runbooks/{name}/source", params(("name" = String, Path, description = "Runbook name"), VersionQuery), responses((status = 200, description = "The version with its YAML source", body = RunbookVersionView), (status = 401, description = "Not signed in"), (status = 404, description = "No such runbook or version"), (status = 422, description = "Invalid query")))]
async fn runbook_source(
    State(state): State<AppState>,
    Path(name): Path<String>,
    ApiQuery(query): ApiQuery<VersionQuery>,
    _caller: Caller,
) -> ApiResult {
    let version = state.store.runbook_version(&name, query.version).await?;
    let version =
        version.ok_or_else(|| AppError::not_found(format!("no such version of `{name}`")))?;
    ok(RunbookVersionView::new(&version, true))
}

#[derive(Deserialize, ToSchema)]
struct Publish {
    /// The runbook's YAML. An invalid runbook is refused with 422 and every diagnostic, each
    /// with its line and column, in `error.details`.
    source: String,
}

#[utoipa::path(post, path = "/api/v1/runbooks", request_body = Publish, responses((status = 200, description = "The same source is already the latest version", body = RunbookVersionView), (status = 201, description = "A new version", body = RunbookVersionView), (status = 401, description = "Not signed in"), (status = 403, description = "Needs the author role"), (status = 422, description = "Invalid JSON or an invalid runbook")))]
async fn publish(
    State(state): State<AppState>,
    caller: Caller,
    bytes: axum::body::Bytes,
) -> ApiResult {
    caller.require(GlobalRole::Author)?;
    let Publish { source } = body(&bytes)?;
    match state.engine.publish(&source, &caller.user.actor()).await? {
        Published::New(version) => created(RunbookVersionView::new(&version, false)),
        Published::Unchanged(version) => ok(RunbookVersionView::new(&version, false)),
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct RunsQuery {
    /// Only runs in this status.
    #[param(schema_with = dto::run_status_schema, required = false)]
    status: Option<String>,
    /// Only runs of this runbook.
    runbook: Option<String>,
    /// Only runs in this mode.
    #[param(schema_with = dto::run_mode_schema, required = false)]
    mode: Option<String>,
    /// Only runs created at or after this time (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime)]
    since: Option<chrono::DateTime<chrono::Utc>>,
    /// Keyset paging: the id of the last run of the previous page.
    #[param(value_type = Option<String>, format = "uuid")]
    before: Option<Uuid>,
    /// How many runs at most; 50 when absent. More than 500 is refused rather than cut short,
    /// so that a short page always means the last page.
    #[param(maximum = 500)]
    limit: Option<u32>,
}

#[utoipa::path(get, path = "/api/v1/runs", params(RunsQuery), responses((status = 200, description = "Runs, newest first", body = Vec<RunView>), (status = 401, description = "Not signed in"), (status = 422, description = "Invalid query")))]
async fn list_runs(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<RunsQuery>,
    _caller: Caller,
) -> ApiResult {
    let status = match query.status.as_deref() {
        Some(text) => {
            Some(text.parse::<RunStatus>().map_err(|error| AppError::invalid(error.to_string()))?)
        }
        None => None,
    };
    let mode = match query.mode.as_deref() {
        Some(text) => Some(
            text.parse::<RunMode>()
                .map_err(|_| AppError::invalid("mode must be live, drill or dry-run"))?,
        ),
        None => None,
    };
    let filter = RunFilter {
        status,
        runbook: query.runbook,
        mode,
        since: query.since,
        before: query.before,
        limit: Some(page_limit(query.limit, 50, 500)?),
    };
    let runs = state.store.runs(&filter).await?;
    ok(runs.iter().map(RunView::new).collect::<Vec<_>>())
}

#[derive(Deserialize, ToSchema)]
struct StartBody {
    /// The runbook's name.
    runbook: String,
    /// A published version; the latest when absent.
    version: Option<u32>,
    /// Parameter values by name: strings, numbers or booleans. Values the runbook's `params`
    /// refuse are answered with 422.
    #[serde(default)]
    #[schema(value_type = Object)]
    params: serde_json::Map<String, Value>,
    /// `live` when absent.
    #[serde(default)]
    #[schema(schema_with = nullable_run_mode_schema)]
    mode: Option<String>,
    /// Run roles given to people at the start: roles the runbook declares, people who are
    /// existing, enabled users (else 422).
    #[serde(default)]
    assignments: Vec<AssignmentBody>,
}

fn nullable_run_mode_schema() -> utoipa::openapi::schema::Object {
    dto::names_schema(RunMode::ALL.iter().map(|m| m.as_str()), true)
}

#[derive(Deserialize, ToSchema)]
struct AssignmentBody {
    role: String,
    person: String,
}

fn person(name: &str) -> Actor {
    Actor::person(name)
}

#[utoipa::path(post, path = "/api/v1/runs", request_body = StartBody, responses((status = 201, description = "The run, started", body = RunDetail), (status = 401, description = "Not signed in"), (status = 403, description = "Needs the responder role"), (status = 404, description = "No such runbook or version"), (status = 409, description = "The lock is held by another active run"), (status = 422, description = "Invalid input: parameters, secrets, roles or people")))]
async fn start_run(
    State(state): State<AppState>,
    caller: Caller,
    bytes: axum::body::Bytes,
) -> ApiResult {
    caller.require_responder()?;
    let start: StartBody = body(&bytes)?;
    let mode = match start.mode.as_deref() {
        None => RunMode::Live,
        Some(text) => text
            .parse::<RunMode>()
            .map_err(|_| AppError::invalid("mode must be live, drill or dry-run"))?,
    };
    let params = start
        .params
        .into_iter()
        .map(|(key, value)| {
            let text = match value {
                Value::String(text) => text,
                other => other.to_string(),
            };
            (key, text)
        })
        .collect();
    let assignments = start
        .assignments
        .iter()
        .map(|a| Assignment { role: a.role.clone(), person: person(&a.person) })
        .collect();
    let id = state
        .engine
        .start_run(StartRun {
            runbook: start.runbook,
            version: start.version,
            params,
            mode,
            actor: caller.user.actor(),
            assignments,
        })
        .await?;
    let snapshot =
        state.store.run(id).await?.ok_or_else(|| AppError::not_found("the run vanished"))?;
    created(RunDetail::new(&snapshot))
}

#[utoipa::path(get, path = "/api/v1/runs/{id}", params(("id" = String, Path, description = "Run id")), responses((status = 200, description = "The run with its steps, attempts, votes, role holders and notes", body = RunDetail), (status = 401, description = "Not signed in"), (status = 404, description = "No such run")))]
async fn get_run(
    State(state): State<AppState>,
    Path(id): Path<String>,
    _caller: Caller,
) -> ApiResult {
    let id = run_id(&id)?;
    let snapshot =
        state.store.run(id).await?.ok_or_else(|| AppError::not_found(format!("no run {id}")))?;
    ok(RunDetail::new(&snapshot))
}

/// A run's status after an answer.
#[derive(Serialize, ToSchema)]
struct RunStatusAnswer {
    #[schema(schema_with = dto::run_status_schema)]
    status: &'static str,
}

#[utoipa::path(post, path = "/api/v1/runs/{id}/cancel", params(("id" = String, Path, description = "Run id")), responses((status = 200, description = "Cancelled", body = RunStatusAnswer), (status = 401, description = "Not signed in"), (status = 403, description = "Not the commander, or no responder role"), (status = 404, description = "No such run"), (status = 409, description = "The run has finished")))]
async fn cancel_run(
    State(state): State<AppState>,
    Path(id): Path<String>,
    caller: Caller,
) -> ApiResult {
    caller.require_responder()?;
    let id = run_id(&id)?;
    state.engine.cancel(id, &caller.user.actor()).await?;
    ok(RunStatusAnswer { status: RunStatus::Cancelled.as_str() })
}

#[derive(Deserialize, ToSchema)]
struct DecisionBody {
    #[schema(schema_with = dto::decision_schema)]
    decision: String,
}

#[utoipa::path(post, path = "/api/v1/runs/{id}/decisions", request_body = DecisionBody, params(("id" = String, Path, description = "Run id")), responses((status = 200, description = "The run's status after the decision", body = RunStatusAnswer), (status = 401, description = "Not signed in"), (status = 403, description = "Not the commander, or no responder role"), (status = 404, description = "No such run"), (status = 409, description = "Nothing to decide"), (status = 422, description = "Invalid input")))]
async fn decide(
    State(state): State<AppState>,
    Path(id): Path<String>,
    caller: Caller,
    bytes: axum::body::Bytes,
) -> ApiResult {
    caller.require_responder()?;
    let id = run_id(&id)?;
    let DecisionBody { decision } = body(&bytes)?;
    let decision: Decision = decision
        .parse()
        .map_err(|_| AppError::invalid("decision must be retry, skip, rollback or abort"))?;
    let status = state.engine.decide(id, &caller.user.actor(), decision).await?;
    ok(RunStatusAnswer { status: status.as_str() })
}

#[derive(Deserialize, ToSchema)]
struct AssignBody {
    /// A role the runbook declares.
    role: String,
    /// An existing, enabled user.
    person: String,
    /// `false` takes the role away; `true` when absent.
    #[serde(default = "yes")]
    #[schema(default = true)]
    assign: bool,
}

#[derive(Serialize, ToSchema)]
struct AssignAnswer {
    role: String,
    /// `user:NAME`.
    person: String,
    assigned: bool,
}

fn yes() -> bool {
    true
}

#[utoipa::path(post, path = "/api/v1/runs/{id}/assignments", request_body = AssignBody, params(("id" = String, Path, description = "Run id")), responses((status = 200, description = "Assigned or unassigned", body = AssignAnswer), (status = 401, description = "Not signed in"), (status = 403, description = "Not the commander, or no responder role"), (status = 404, description = "No such run"), (status = 409, description = "The run has finished"), (status = 422, description = "Unknown role or person, or invalid input")))]
async fn assign(
    State(state): State<AppState>,
    Path(id): Path<String>,
    caller: Caller,
    bytes: axum::body::Bytes,
) -> ApiResult {
    caller.require_responder()?;
    let id = run_id(&id)?;
    let AssignBody { role, person: name, assign } = body(&bytes)?;
    let change = if assign { RoleChange::Assign } else { RoleChange::Unassign };
    state.engine.assign(id, &caller.user.actor(), &role, &person(&name), change).await?;
    ok(AssignAnswer { person: person(&name).as_str().to_owned(), role, assigned: assign })
}

#[derive(Serialize, ToSchema)]
struct CommanderAnswer {
    /// `user:NAME`.
    commander: String,
}

#[derive(Deserialize, ToSchema)]
struct CommanderBody {
    /// Who commands the run from now on: an existing, enabled user. An admin names
    /// themselves to take command of any active run.
    to: String,
}

#[utoipa::path(post, path = "/api/v1/runs/{id}/commander", request_body = CommanderBody, params(("id" = String, Path, description = "Run id")), responses((status = 200, description = "The new commander", body = CommanderAnswer), (status = 401, description = "Not signed in"), (status = 403, description = "Not the commander, or no responder role"), (status = 404, description = "No such run"), (status = 409, description = "The run has finished"), (status = 422, description = "No such enabled user, or invalid input")))]
async fn transfer_command(
    State(state): State<AppState>,
    Path(id): Path<String>,
    caller: Caller,
    bytes: axum::body::Bytes,
) -> ApiResult {
    let id = run_id(&id)?;
    let CommanderBody { to } = body(&bytes)?;
    let to = person(to.trim());
    // An admin takes command of any run by naming themselves, so no run is ever orphaned.
    if caller.user.has(GlobalRole::Admin) && to == caller.user.actor() {
        state.engine.take_command(id, &to).await?;
        return ok(CommanderAnswer { commander: to.as_str().to_owned() });
    }
    // An admin who took command may hand it on; the engine checks who commands the run.
    if !caller.user.has(GlobalRole::Admin) {
        caller.require_responder()?;
    }
    state.engine.transfer_command(id, &caller.user.actor(), &to).await?;
    ok(CommanderAnswer { commander: to.as_str().to_owned() })
}

#[derive(Deserialize, ToSchema)]
struct NoteBody {
    /// Something other than spaces.
    #[schema(pattern = "\\S")]
    text: String,
    /// The step the note is about, if any.
    step: Option<String>,
}

#[derive(Serialize, ToSchema)]
struct NoteAnswer {
    text: String,
}

#[utoipa::path(post, path = "/api/v1/runs/{id}/notes", request_body = NoteBody, params(("id" = String, Path, description = "Run id")), responses((status = 201, description = "Noted", body = NoteAnswer), (status = 401, description = "Not signed in"), (status = 403, description = "Needs the responder role"), (status = 404, description = "No such run or step"), (status = 422, description = "Invalid input")))]
async fn add_note(
    State(state): State<AppState>,
    Path(id): Path<String>,
    caller: Caller,
    bytes: axum::body::Bytes,
) -> ApiResult {
    caller.require_responder()?;
    let id = run_id(&id)?;
    let NoteBody { text, step } = body(&bytes)?;
    if text.trim().is_empty() {
        return Err(AppError::invalid("a note needs text"));
    }
    state.engine.add_note(id, &caller.user.actor(), step.as_deref(), &text).await?;
    created(NoteAnswer { text })
}

#[derive(Deserialize, Default, ToSchema)]
struct AnswerBody {
    /// Why: shown with the vote and in the timeline.
    comment: Option<String>,
}

#[derive(Serialize, ToSchema)]
struct StepAnswer {
    step: String,
    #[schema(schema_with = dto::step_status_schema)]
    status: &'static str,
}

/// Answers a gate (`approve`, `reject`) or a manual step (`complete`, `fail`). The body may be
/// left out.
#[utoipa::path(post, path = "/api/v1/runs/{id}/steps/{step}/{action}", request_body(content = AnswerBody, description = "An optional comment"), params(("id" = String, Path, description = "Run id"), ("step" = String, Path, description = "Step id"), ("action" = String, Path, pattern = "^(approve|reject|complete|fail)$", description = "approve or reject a gate; complete or fail a manual step")), responses((status = 200, description = "The step's status after the answer", body = StepAnswer), (status = 401, description = "Not signed in"), (status = 403, description = "Not eligible: the role, self-approval"), (status = 404, description = "No such run, step or action"), (status = 409, description = "The step is not waiting, or was already answered"), (status = 422, description = "The step is not of that kind, or invalid input")))]
async fn answer_step(
    State(state): State<AppState>,
    Path((id, step, action)): Path<(String, String, String)>,
    caller: Caller,
    bytes: axum::body::Bytes,
) -> ApiResult {
    caller.require_responder()?;
    let id = run_id(&id)?;
    let answer: AnswerBody = if bytes.is_empty() { AnswerBody::default() } else { body(&bytes)? };
    let comment = answer.comment.as_deref();
    let actor = caller.user.actor();
    let engine = &state.engine;
    let status = match action.as_str() {
        "approve" => engine.approve(id, &step, &actor, comment).await?,
        "reject" => engine.reject(id, &step, &actor, comment).await?,
        "complete" => engine.complete_manual(id, &step, &actor, Completion::Done, comment).await?,
        "fail" => engine.complete_manual(id, &step, &actor, Completion::Failed, comment).await?,
        _ => return Err(AppError::not_found("use approve, reject, complete or fail")),
    };
    ok(StepAnswer { step, status: status.as_str() })
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct AuditQuery {
    /// Only events of this run.
    #[param(value_type = Option<String>, format = "uuid")]
    run: Option<Uuid>,
    /// Only events by this person (a user name) or `steady`.
    actor: Option<String>,
    /// Only events of this action, such as `run.started`.
    action: Option<String>,
    /// Only events at or after this time (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime)]
    since: Option<chrono::DateTime<chrono::Utc>>,
    /// Only events before this time (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime)]
    until: Option<chrono::DateTime<chrono::Utc>>,
    /// Only events after this seq.
    after: Option<i64>,
    /// How many events at most; 500 when absent. More than 10000 is refused rather than cut
    /// short, so that a short page always means the last page.
    #[param(maximum = 10000)]
    limit: Option<u32>,
}

#[utoipa::path(get, path = "/api/v1/audit", params(AuditQuery), responses((status = 200, description = "Events in chain order", body = Vec<AuditEventView>), (status = 401, description = "Not signed in"), (status = 403, description = "For auditors and admins"), (status = 422, description = "Invalid query")))]
async fn audit(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<AuditQuery>,
    caller: Caller,
) -> ApiResult {
    caller.require_audit_reader()?;
    let filter = AuditFilter {
        run_id: query.run,
        actor: query
            .actor
            .as_deref()
            .map(|a| if a == "steady" { Actor::steady() } else { person(a) }),
        action: query.action,
        since: query.since,
        until: query.until,
        after_seq: query.after,
        limit: Some(page_limit(query.limit, 500, 10_000)?),
    };
    let events = state.store.audit_events(&filter).await?;
    ok(events.iter().map(AuditEventView::new).collect::<Vec<_>>())
}

/// The audit chain, recomputed.
#[derive(Serialize, ToSchema)]
struct VerifyAnswer {
    /// Events checked.
    events: u64,
    intact: bool,
    /// The first event whose hash, `prev_hash` or `seq` does not follow from the one before.
    first_broken: Option<i64>,
}

#[utoipa::path(get, path = "/api/v1/audit/verify", responses((status = 200, description = "Whether the chain is intact", body = VerifyAnswer), (status = 401, description = "Not signed in"), (status = 403, description = "For auditors and admins")))]
async fn verify_audit(State(state): State<AppState>, caller: Caller) -> ApiResult {
    caller.require_audit_reader()?;
    let verification = state.store.verify_audit().await?;
    ok(VerifyAnswer {
        events: verification.events,
        intact: verification.first_broken.is_none(),
        first_broken: verification.first_broken,
    })
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ExportQuery {
    /// `jsonl` (the default) or `csv`.
    #[param(schema_with = export_format_schema, required = false)]
    format: Option<String>,
    /// Only events of this run.
    #[param(value_type = Option<String>, format = "uuid")]
    run: Option<Uuid>,
    /// Only events by this person (a user name).
    actor: Option<String>,
    /// Only events of this action.
    action: Option<String>,
    /// Only events at or after this time (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime)]
    since: Option<chrono::DateTime<chrono::Utc>>,
}

fn export_format_schema() -> utoipa::openapi::schema::Object {
    dto::names_schema(["jsonl", "csv"], false)
}

#[utoipa::path(get, path = "/api/v1/audit/export", params(ExportQuery), responses((status = 200, description = "JSON Lines or CSV, streamed", content((String = "application/x-ndjson"), (String = "text/csv"))), (status = 401, description = "Not signed in"), (status = 403, description = "For auditors and admins"), (status = 422, description = "Invalid query")))]
async fn export_audit(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<ExportQuery>,
    caller: Caller,
) -> ApiResult {
    caller.require_audit_reader()?;
    let csv = match query.format.as_deref() {
        None | Some("jsonl") => false,
        Some("csv") => true,
        Some(other) => {
            return Err(AppError::invalid(format!("unknown format `{other}`: use jsonl or csv")));
        }
    };
    let actor = query.actor.as_deref().map(person);
    let head = if csv { dto::audit_csv_header() } else { String::new() };
    // Pages of events, streamed as they are read, so that a large log never sits in memory.
    let pages = futures_util::stream::unfold(Some(0i64), move |after| {
        let (state, actor, action) = (state.clone(), actor.clone(), query.action.clone());
        async move {
            let after = after?;
            let filter = AuditFilter {
                run_id: query.run,
                actor,
                action,
                since: query.since,
                after_seq: Some(after),
                limit: Some(5_000),
                ..AuditFilter::default()
            };
            match state.store.audit_events(&filter).await {
                Ok(events) if events.is_empty() => None,
                Ok(events) => {
                    let next = events.last().map(|event| event.seq);
                    Some((Ok::<_, std::io::Error>(dto::audit_export(&events, csv)), next))
                }
                Err(error) => Some((Err(std::io::Error::other(error.to_string())), None)),
            }
        }
    });
    let body =
        futures_util::StreamExt::chain(futures_util::stream::once(async move { Ok(head) }), pages);
    let content_type = if csv { "text/csv; charset=utf-8" } else { "application/x-ndjson" };
    Ok(([(header::CONTENT_TYPE, content_type)], axum::body::Body::from_stream(body))
        .into_response())
}

/// The `steady serve` nodes on this database and whether each is up.
#[utoipa::path(get, path = "/api/v1/nodes", responses((status = 200, description = "Every node", body = Vec<NodeView>), (status = 401, description = "Not signed in"), (status = 403, description = "For auditors and admins")))]
async fn list_nodes(State(state): State<AppState>, caller: Caller) -> ApiResult {
    caller.require_audit_reader()?;
    let now = steady_engine::engine::now();
    let this = &state.engine.config().node;
    let nodes = state.store.nodes().await?;
    ok(nodes
        .iter()
        .map(|node| NodeView::new(node, crate::node_is_up(node, now), node.id == *this))
        .collect::<Vec<_>>())
}

#[utoipa::path(get, path = "/api/v1/users", responses((status = 200, description = "Every account", body = Vec<UserView>), (status = 401, description = "Not signed in"), (status = 403, description = "For admins")))]
async fn list_users(State(state): State<AppState>, caller: Caller) -> ApiResult {
    caller.require(GlobalRole::Admin)?;
    ok(state.accounts.users().await?.iter().map(UserView::new).collect::<Vec<_>>())
}

#[derive(Deserialize, ToSchema)]
struct NewUser {
    /// Starts with a-z and uses a-z, 0-9, `.`, `_` and `-`.
    #[schema(pattern = "^[a-z][a-z0-9._-]*$", max_length = 64)]
    name: String,
    /// Global roles.
    #[schema(schema_with = global_roles_schema)]
    roles: Vec<String>,
    /// Without one the user signs in with tokens only. Something other than spaces.
    #[schema(min_length = 12, max_length = 128, pattern = "\\S")]
    password: Option<String>,
}

fn global_roles_schema() -> utoipa::openapi::schema::Array {
    utoipa::openapi::schema::Array::new(dto::global_role_schema())
}

/// `[a-z][a-z0-9._-]*`, at most 64 characters.
pub fn valid_user_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 64
        && chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'))
}

#[utoipa::path(post, path = "/api/v1/users", request_body = NewUser, responses((status = 201, description = "Created", body = UserView), (status = 401, description = "Not signed in"), (status = 403, description = "For admins"), (status = 409, description = "The name is taken"), (status = 422, description = "Invalid input")))]
async fn create_user(
    State(state): State<AppState>,
    caller: Caller,
    bytes: axum::body::Bytes,
) -> ApiResult {
    caller.require(GlobalRole::Admin)?;
    let new: NewUser = body(&bytes)?;
    let user = auth::create_account(
        state.accounts.as_ref(),
        &caller.user.actor(),
        &new.name,
        &new.roles,
        new.password.as_deref(),
    )
    .await?;
    created(UserView::new(&user))
}

#[derive(Deserialize, ToSchema)]
struct UserUpdate {
    /// A disabled user cannot sign in; their sessions end and their tokens are revoked at
    /// once, for good: enabling them again restores neither.
    disabled: bool,
}

#[utoipa::path(put, path = "/api/v1/users/{name}", request_body = UserUpdate, params(("name" = String, Path, description = "User name")), responses((status = 200, description = "The account", body = UserView), (status = 401, description = "Not signed in"), (status = 403, description = "For admins"), (status = 404, description = "No such user"), (status = 409, description = "Your own account, or the last enabled admin"), (status = 422, description = "Invalid input")))]
async fn update_user(
    State(state): State<AppState>,
    Path(name): Path<String>,
    caller: Caller,
    bytes: axum::body::Bytes,
) -> ApiResult {
    caller.require(GlobalRole::Admin)?;
    let UserUpdate { disabled } = body(&bytes)?;
    if !state.accounts.set_disabled(&name, disabled, &caller.user.actor()).await? {
        return Err(AppError::not_found(format!("no user `{name}`")));
    }
    let user = state
        .accounts
        .user(&name)
        .await?
        .ok_or_else(|| AppError::not_found(format!("no user `{name}`")))?;
    ok(UserView::new(&user))
}

#[utoipa::path(get, path = "/api/v1/tokens", responses((status = 200, description = "Your tokens; every token for an admin", body = Vec<TokenView>), (status = 401, description = "Not signed in")))]
async fn list_tokens(State(state): State<AppState>, caller: Caller) -> ApiResult {
    let mine = (!caller.user.has(GlobalRole::Admin)).then_some(caller.user.name.as_str());
    ok(state.accounts.tokens(mine).await?.iter().map(TokenView::new).collect::<Vec<_>>())
}

/// A new token with its secret, shown this once and never stored.
#[derive(Serialize, ToSchema)]
struct NewTokenView {
    #[serde(flatten)]
    token: TokenView,
    /// Send it as `Authorization: Bearer <secret>`.
    secret: String,
}

#[derive(Deserialize, ToSchema)]
struct NewToken {
    label: String,
    /// Another user's token: admins only.
    user: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/tokens", request_body = NewToken, responses((status = 201, description = "Created, with its secret", body = NewTokenView), (status = 401, description = "Not signed in"), (status = 403, description = "Another user's token: for admins"), (status = 404, description = "No such user"), (status = 422, description = "Invalid input")))]
async fn create_token(
    State(state): State<AppState>,
    caller: Caller,
    bytes: axum::body::Bytes,
) -> ApiResult {
    let NewToken { label, user } = body(&bytes)?;
    let owner = match user {
        Some(user) if user != caller.user.name => {
            caller.require(GlobalRole::Admin)?;
            state
                .accounts
                .user(&user)
                .await?
                .ok_or_else(|| AppError::not_found(format!("no user `{user}`")))?
                .name
        }
        _ => caller.user.name.clone(),
    };
    let (token, secret) =
        auth::issue_token(state.accounts.as_ref(), &caller.user.actor(), &owner, &label).await?;
    created(NewTokenView { token: TokenView::new(&token), secret })
}

#[utoipa::path(delete, path = "/api/v1/tokens/{id}", params(("id" = String, Path, description = "Token id")), responses((status = 204, description = "Revoked"), (status = 401, description = "Not signed in"), (status = 403, description = "Another user's token: for admins"), (status = 404, description = "No such token"), (status = 409, description = "Already revoked")))]
async fn revoke_token(
    State(state): State<AppState>,
    Path(id): Path<String>,
    caller: Caller,
) -> ApiResult {
    let id = Uuid::parse_str(&id).map_err(|_| AppError::not_found("no such token"))?;
    let tokens = state.accounts.tokens(None).await?;
    let token = tokens
        .iter()
        .find(|token| token.id == id)
        .ok_or_else(|| AppError::not_found("no such token"))?;
    if token.user != caller.user.name {
        caller.require(GlobalRole::Admin)?;
    }
    if !state.accounts.revoke_token(id, &caller.user.actor()).await? {
        return Err(AppError::conflict("the token is already revoked"));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct EventsQuery {
    /// Only events after this `seq`; the `Last-Event-ID` header says the same on reconnect.
    after: Option<i64>,
}

/// The run's audit events as Server-Sent Events, each with its `seq` as the event id, so that
/// a client that reconnects with `Last-Event-ID` misses nothing and sees nothing twice.
#[utoipa::path(get, path = "/api/v1/runs/{id}/events", params(("id" = String, Path, description = "Run id"), EventsQuery, ("Last-Event-ID" = Option<i64>, Header, description = "Resume after this seq")), responses((status = 200, description = "The run's audit events", content_type = "text/event-stream", body = String), (status = 204, description = "The run has finished and nothing is left to send"), (status = 401, description = "Not signed in"), (status = 404, description = "No such run"), (status = 422, description = "Invalid query")))]
async fn run_events(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<EventsQuery>,
    headers: HeaderMap,
    caller: Caller,
) -> ApiResult {
    let id = run_id(&id)?;
    let Some(status) = state.store.run_status(id).await? else {
        return Err(AppError::not_found(format!("no run {id}")));
    };
    let after = resume_after(&headers, query.after);
    // A finished run with nothing left to send: 204 tells an EventSource to stop reconnecting.
    if !status.is_active() {
        let filter = AuditFilter {
            run_id: Some(id),
            after_seq: Some(after),
            limit: Some(1),
            ..AuditFilter::default()
        };
        if state.store.audit_events(&filter).await?.is_empty() {
            return Ok(StatusCode::NO_CONTENT.into_response());
        }
    }
    Ok(event_stream(state, caller, Some(id), after))
}

/// Every run's events as Server-Sent Events: what *my work* and dashboards follow.
#[utoipa::path(get, path = "/api/v1/events", params(EventsQuery, ("Last-Event-ID" = Option<i64>, Header, description = "Resume after this seq")), responses((status = 200, description = "Every run's audit events, from the newest when neither says where", content_type = "text/event-stream", body = String), (status = 401, description = "Not signed in"), (status = 422, description = "Invalid query")))]
async fn all_events(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<EventsQuery>,
    headers: HeaderMap,
    caller: Caller,
) -> ApiResult {
    let after = match resume_after(&headers, query.after) {
        0 => state.store.latest_seq().await?,
        after => after,
    };
    Ok(event_stream(state, caller, None, after))
}

fn resume_after(headers: &HeaderMap, after: Option<i64>) -> i64 {
    let resumed =
        headers.get("last-event-id").and_then(|value| value.to_str().ok()?.parse::<i64>().ok());
    resumed.or(after).unwrap_or(0)
}

/// How often a live event stream looks for new events when no hint wakes it.
const EVENTS_POLL: std::time::Duration = std::time::Duration::from_secs(2);

/// Streams audit events after `after`: of one run (ending once the run has finished and all
/// its events are sent), or of every run (events about accounts are not sent). The stream ends
/// when the credentials it was opened with no longer hold, and when the server shuts down.
fn event_stream(state: AppState, caller: Caller, run: Option<Uuid>, after: i64) -> Response {
    use axum::response::sse::{Event, KeepAlive, Sse};
    use futures_util::StreamExt as _;
    let mut stopping = state.stopping.subscribe();
    let stopped = async move {
        let _ = stopping.wait_for(|stopping| *stopping).await;
    };
    // Each step of the stream: the events read but not yet sent, the last seq sent, and when
    // the caller's credentials were last checked.
    let mut events = state.store.changes().events;
    events.mark_unchanged();
    let start = (state, caller, after, Vec::new(), tokio::time::Instant::now(), events);
    let stream = futures_util::stream::unfold(
        start,
        move |(state, caller, after, mut pending, mut checked, mut events)| async move {
            loop {
                if let Some(event) = pending.pop() {
                    let event: steady_engine::audit::AuditEvent = event;
                    let after = event.seq;
                    if event.run_id.is_none() {
                        continue;
                    }
                    let sse = Event::default()
                        .id(event.seq.to_string())
                        .event(event.action.clone())
                        .data(dto::audit_event(&event).to_string());
                    return Some((
                        Ok::<_, std::convert::Infallible>(sse),
                        (state, caller, after, pending, checked, events),
                    ));
                }
                if checked.elapsed() > std::time::Duration::from_secs(5) {
                    if !caller.still_valid(&state).await {
                        return None;
                    }
                    checked = tokio::time::Instant::now();
                }
                let filter = AuditFilter {
                    run_id: run,
                    after_seq: Some(after),
                    limit: Some(200),
                    ..AuditFilter::default()
                };
                match state.store.audit_events(&filter).await {
                    Ok(events) if !events.is_empty() => {
                        pending = events;
                        pending.reverse();
                    }
                    _ => {
                        // Everything of a finished run has been sent: its stream is done.
                        let finished = match run {
                            Some(id) => {
                                matches!(state.store.run_status(id).await, Ok(Some(status)) if !status.is_active())
                            }
                            None => false,
                        };
                        if finished {
                            // Its last events may have landed between the read and the status.
                            let last = state.store.audit_events(&filter).await.unwrap_or_default();
                            if last.is_empty() {
                                return None;
                            }
                            pending = last;
                            pending.reverse();
                            continue;
                        }
                        // New events here or on another node wake the stream; the poll
                        // covers a missed hint.
                        let _ = tokio::time::timeout(EVENTS_POLL, events.changed()).await;
                    }
                }
            }
        },
    );
    Sse::new(stream.take_until(stopped)).keep_alive(KeepAlive::default()).into_response()
}

/// The OpenAPI document of this API, generated from the route annotations above.
#[derive(Debug, utoipa::OpenApi)]
#[openapi(
    info(title = "Steady", description = "Runbook execution with approval gates"),
    paths(
        healthz, metrics, login, logout, whoami, list_runbooks, runbook_versions, runbook_source, publish,
        list_runs, start_run, get_run, cancel_run, decide, assign, transfer_command, add_note, answer_step, run_events, all_events, audit,
        verify_audit, export_audit, list_nodes, list_users, create_user, update_user, list_tokens, create_token, revoke_token, openapi
    ),
    components(schemas(
        Login, Publish, StartBody, AssignmentBody, DecisionBody, AssignBody, CommanderBody, NoteBody, AnswerBody, NewUser, UserUpdate,
        NewToken, ErrorBody
    )),
    modifiers(&BearerAuth, &ErrorAnswers)
)]
pub struct ApiDoc;

/// Declares the two ways in: a bearer token, or the session cookie.
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{
            ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme,
        };
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(SESSION_COOKIE))),
        );
        // Either way in, everywhere but the routes that say `security(())` (`[{}]`: open).
        openapi.security = Some(vec![
            utoipa::openapi::security::SecurityRequirement::new::<_, _, &str>("token", []),
            utoipa::openapi::security::SecurityRequirement::new::<_, _, &str>("session", []),
        ]);
    }
}

/// Every error answer of every route is the one `ErrorBody` shape, in JSON: declared once
/// here rather than on each of the routes' statuses.
struct ErrorAnswers;

impl utoipa::Modify for ErrorAnswers {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, RefOr};
        let error = ContentBuilder::new()
            .schema(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name("ErrorBody"))))
            .build();
        for item in openapi.paths.paths.values_mut() {
            let operations =
                [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch];
            for operation in operations.into_iter().flatten() {
                for (status, response) in operation.responses.responses.iter_mut() {
                    let is_error = status.starts_with('4') || status.starts_with('5');
                    if let (true, RefOr::T(response)) = (is_error, response) {
                        response.content.insert("application/json".to_owned(), error.clone());
                    }
                }
            }
        }
    }
}

#[utoipa::path(get, path = "/api/v1/openapi.json", security(()), responses((status = 200, description = "This document", body = Object)))]
async fn openapi() -> ApiResult {
    use utoipa::OpenApi;
    ok(serde_json::to_value(ApiDoc::openapi()).unwrap_or_default())
}
