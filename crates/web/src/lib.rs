//! Steady's server: the JSON API under `/api/v1`, accounts and sessions, and the executor
//! that drives runs inside the server.
//!
//! # Layout
//!
//! One folder per resource, each with its routes' JSON handlers and pages side by side, one
//! file per use case where the API and the pages share it:
//!
//! - `runs`: listing, showing, starting and answering runs, commanding them, their live
//!   events, *my work* and the postmortem timeline.
//! - `runbooks`: publishing, versions, source, diff and print.
//! - `accounts`: sign-in and sessions, users, API tokens (rules in the engine's
//!   `AccountService`).
//! - `audit`: the audit log, its verification and export.
//! - `ops`: `/healthz`, `/metrics` and the server nodes.
//!
//! Shared by all of them:
//!
//! - [`error`]: `AppError`, the one error every handler returns, shaped `{"error": {code, message}}`.
//! - [`auth`]: sessions, API tokens, CSRF, and the `Caller` extractor.
//! - [`extract`]: the request extractors: run ids, JSON bodies, queries, CSRF-checked forms.
//! - `page`: what every page needs: the signed-in person (`Me`), the error page, rendering.
//! - [`openapi`]: the OpenAPI document, generated from the routes.
//! - [`dto`]: JSON shapes shared by several resources and the CLI's `--json`.
//! - [`executor`]: drives runs that need a driver, and takes over runs whose driver died.
//! - [`notify`]: notifications to `--notify` URLs, read from the audit log as their outbox.
//! - [`verification`]: the scheduler that starts each runbook's `verify` dry runs, once per
//!   period across the cluster.
//! - `hooks`: `POST /api/v1/hooks/{source}`, where alerting systems deliver alerts that
//!   propose runbooks.
//! - `expiry`: ends proposals nobody took within `--proposal-expiry`.
//!
//! The server takes its listener and shutdown signal from the caller, so tests bind port 0.

mod accounts;
mod audit;
pub mod auth;
pub mod dto;
pub mod error;
pub mod executor;
mod expiry;
pub mod extract;
mod hooks;
pub mod notify;
pub mod openapi;
mod ops;
mod page;
mod runbooks;
mod runs;
pub mod verification;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use steady_engine::accounts::{AccountService, Accounts};
use steady_engine::engine::Engine;
use steady_engine::store::{NodeRecord, Store};
use tokio::net::TcpListener;
use tower_http::trace::{DefaultOnResponse, TraceLayer};

pub use ops::metrics::Metrics;

/// How often a server node tells the database it is alive.
pub const NODE_HEARTBEAT: Duration = Duration::from_secs(2);
/// A node silent for this long is shown as down: several heartbeats missed.
pub const NODE_SILENT_AFTER: Duration = Duration::from_secs(10);

/// Whether a node has said it is alive recently enough.
pub fn node_is_up(node: &NodeRecord, now: steady_engine::run::Timestamp) -> bool {
    let silent = chrono::Duration::from_std(NODE_SILENT_AFTER).unwrap_or(chrono::Duration::MAX);
    now - node.last_seen <= silent
}

/// How the server treats sessions.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Mark session cookies `Secure`: set when the server is reached over https.
    pub secure_cookies: bool,
    /// A session unused this long is over.
    pub session_idle: Duration,
    /// A session is over this long after sign-in, however busy.
    pub session_lifetime: Duration,
    /// Where notifications are posted.
    pub notify: Vec<String>,
    /// The address people open Steady at, without a trailing `/` (`--public-url`):
    /// notifications link to runs and gates there; without it they carry no links.
    pub public_url: Option<String>,
    /// The longest pause between attempts to reach a notification target that is down.
    pub notify_backoff_max: Duration,
    /// Runbooks whose file in the `--runbooks` folder was an older stored version than the
    /// latest at start-up: name → the version the file matches. The runbooks page says the
    /// folder is behind while that version is older than the latest.
    pub folder_versions: std::collections::BTreeMap<String, u32>,
    /// How often the verification scheduler looks for a period to start: at most this late
    /// after a period begins, a verification starts. Shorter in tests of 1 s schedules.
    pub verification_tick: Duration,
    /// A proposal nobody takes, and no alert comes for, ends after this long (`run.expired`).
    pub proposal_expiry: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            secure_cookies: false,
            session_idle: Duration::from_secs(30 * 60),
            session_lifetime: Duration::from_secs(12 * 3600),
            notify: Vec::new(),
            public_url: None,
            notify_backoff_max: Duration::from_secs(60),
            folder_versions: std::collections::BTreeMap::new(),
            verification_tick: Duration::from_secs(1),
            proposal_expiry: Duration::from_secs(3600),
        }
    }
}

/// Everything a request handler needs, cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    pub engine: Arc<Engine>,
    pub store: Arc<dyn Store>,
    pub accounts: Arc<dyn Accounts>,
    /// The one way to sign in, create accounts and issue tokens, over `accounts`.
    pub account_service: AccountService,
    pub config: Arc<ServerConfig>,
    /// This node's metrics, encoded by `/metrics`: fed by the request layer, the notifiers
    /// and the executor's observer.
    pub metrics: Arc<Metrics>,
    /// Turns true when the server begins to shut down. Responses that would otherwise last as
    /// long as their client (event streams) end at once, so that shutdown never waits on a
    /// browser left open.
    pub stopping: Arc<tokio::sync::watch::Sender<bool>>,
}

impl AppState {
    pub fn new(engine: Arc<Engine>, accounts: Arc<dyn Accounts>, config: ServerConfig) -> AppState {
        let store = engine.store().clone();
        AppState {
            account_service: AccountService::with_clock(accounts.clone(), engine.clock()),
            engine,
            store,
            accounts,
            config: Arc::new(config),
            metrics: Arc::default(),
            stopping: Arc::new(tokio::sync::watch::Sender::new(false)),
        }
    }
}

/// The whole HTTP surface, with the security headers every response carries.
pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(ops::routes())
        .merge(accounts::routes())
        .merge(runbooks::routes())
        .merge(runs::routes())
        .merge(hooks::routes())
        .merge(audit::routes())
        .merge(openapi::routes())
        .merge(page::routes())
        .fallback(|| async { error::AppError::not_found("no such route") })
        .layer(axum::middleware::from_fn_with_state(state.clone(), record_denials))
        // Outside `record_denials`, so that a denial is logged inside its request's span.
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(request_span)
                .on_response(DefaultOnResponse::new().level(tracing::Level::INFO)),
        )
        .with_state(state)
        .layer(axum::middleware::map_response(security_headers))
}

/// The span a request is served in: its method and the route it matched (a route's pattern,
/// such as `/api/v1/runs/{id}`, not the path: ids and query strings stay out of the log). The
/// trace layer logs its status and latency when the response is ready.
fn request_span(request: &axum::http::Request<axum::body::Body>) -> tracing::Span {
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or("(no route)", axum::extract::MatchedPath::as_str);
    tracing::info_span!("request", method = %request.method(), route)
}

/// Counts every refused request (401, 403) for `/metrics` and logs it as a warning with who
/// was refused and what they asked for: a security event, kept out of the audit chain so that
/// nobody can flood the chain by asking for what they may not have.
async fn record_denials(
    axum::extract::State(state): axum::extract::State<AppState>,
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let path = request.uri().path().to_owned();
    let caller = auth::CallerName::default();
    request.extensions_mut().insert(caller.clone());
    let response = next.run(request).await;
    let status = response.status();
    if status == axum::http::StatusCode::UNAUTHORIZED || status == axum::http::StatusCode::FORBIDDEN
    {
        state.metrics.request_denied(status);
        // Debug formatting escapes control characters: a crafted path cannot forge log lines.
        tracing::warn!(
            status = status.as_u16(),
            ?path,
            caller = caller.get().as_deref().unwrap_or("anonymous"),
            "request denied"
        );
    }
    response
}

/// No inline script or style anywhere, no framing, no sniffing: the browser enforces what the
/// templates promise.
async fn security_headers(mut response: axum::response::Response) -> axum::response::Response {
    use axum::http::HeaderValue;
    let headers = response.headers_mut();
    let set = |headers: &mut axum::http::HeaderMap, name: &'static str, value: &'static str| {
        headers.entry(name).or_insert(HeaderValue::from_static(value));
    };
    set(
        headers,
        "content-security-policy",
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; \
         frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'",
    );
    set(headers, "x-content-type-options", "nosniff");
    set(headers, "x-frame-options", "DENY");
    set(headers, "referrer-policy", "same-origin");
    if !headers.contains_key("cache-control") {
        headers.insert("cache-control", HeaderValue::from_static("no-store"));
    }
    response
}

/// Serves `router(state)` on `listener` until `shutdown` resolves, with the executor and the
/// verification scheduler running beside it. In-flight requests finish and event streams end;
/// runs being driven stop after their current step and stay durable for the next start.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let stop_tx = state.stopping.clone();
    let stop_rx = stop_tx.subscribe();
    let address = listener.local_addr()?.to_string();
    let heartbeat = tokio::spawn(heartbeat(state.clone(), address, stop_rx.clone()));
    let executor = tokio::spawn(executor::run(state.clone(), stop_rx.clone()));
    let verifier = tokio::spawn(verification::run(state.clone(), stop_rx.clone()));
    let expiry = tokio::spawn(expiry::run(state.clone(), stop_rx.clone()));
    let notifiers: Vec<_> = state
        .config
        .notify
        .iter()
        .map(|target| tokio::spawn(notify::deliver(state.clone(), target.clone(), stop_rx.clone())))
        .collect();
    let app = router(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        })
        .await;
    let _ = executor.await;
    let _ = verifier.await;
    let _ = expiry.await;
    let _ = heartbeat.await;
    for notifier in notifiers {
        let _ = notifier.await;
    }
    served
}

/// Tells the database every [`NODE_HEARTBEAT`] that this node is alive, so that the other
/// nodes and the admin page can see it, until shutdown.
async fn heartbeat(
    state: AppState,
    address: String,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let started_at = steady_engine::engine::now();
    let id = state.engine.config().node.clone();
    while !*shutdown.borrow() {
        let node = NodeRecord {
            id: id.clone(),
            address: address.clone(),
            started_at,
            last_seen: steady_engine::engine::now(),
        };
        if let Err(error) = state.store.heartbeat(&node).await {
            tracing::warn!(%error, "recording this node as alive failed; retrying");
        }
        tokio::select! {
            () = tokio::time::sleep(NODE_HEARTBEAT) => {}
            _ = shutdown.changed() => {}
        }
    }
}
