//! The API over real HTTP: a server on port 0, people with tokens or sessions, and the stories
//! incident commanders and approvers live. Every test runs twice, unchanged: on a real SQLite
//! file and on a real PostgreSQL server that the test kit starts.
//!
//! - `stories`: the failover story, quorum, rejection and rollback, locks, bad input, a gate's
//!   timeout, live events and notifications.
//! - `operations`: nodes alive and gone, a run nobody drives taken over, people who do not
//!   exist or were disabled, publishing only when a version's tests pass.
//! - `access`: authentication, sessions, CSRF, tokens, and who may do what.
//! - `cockpit_work`: *my work* as the commander's cockpit, signing in back to a link, role
//!   picks and the nobody-can-approve warning, publishing from the browser, notifications.
//! - `cockpit`: the run page as the commander's cockpit: header, decisions, reasons, outcomes.
//! - `proposal_pages`: proposals from alerts in the browser: the proposal's page with its
//!   alerts and facts, taking command through the confirmation page, dismissing with a reason,
//!   expiry, who is refused, and *my work* listing proposals first.
//! - `admin`: the audit and users pages without JavaScript: filters, roles, passwords, tokens.
//! - `figures`: rehearsal figures against `rto`, a run's expected finish, a step slower than
//!   any rehearsal, the postmortem's time to recover.
//! - `contract`: Schemathesis against the OpenAPI document: every answer is one it declares.
//! - `proposals`: alerts delivered to the hooks propose a runbook once, however often and
//!   wherever they arrive; a responder takes command or dismisses; proposals expire.
//! - `verification`: a runbook dry-run on its `verify` schedule passes, fails (announced
//!   once) and recovers.

// Helpers here are only called from tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

/// Runs each test once on every backend.
macro_rules! on_every_backend {
    ($($test:ident),* $(,)?) => {
        mod on_sqlite {
            $(
                #[tokio::test]
                async fn $test() {
                    super::$test(crate::Backend::Sqlite).await;
                }
            )*
        }
        mod on_postgres {
            $(
                #[tokio::test]
                async fn $test() {
                    super::$test(crate::Backend::Postgres).await;
                }
            )*
        }
    };
}

mod access;
mod admin;
mod cockpit;
mod cockpit_work;
mod contract;
mod figures;
mod matrix;
mod operations;
mod pages;
mod proposal_pages;
mod proposals;
mod stories;
mod verification;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use steady_engine::accounts::{ApiToken, GlobalRole, User};
use steady_engine::clock::TestClock;
use steady_engine::engine::{Engine, EngineConfig, now};
use steady_engine::run::Actor;
use steady_web::{AppState, ServerConfig, auth};

/// A running server and what its tests need to reach it.
#[derive(Debug)]
pub struct Server {
    pub url: String,
    pub state: AppState,
    /// The server's clock: real time, moved forward when a story says time passes.
    pub clock: Arc<TestClock>,
    pub client: reqwest::Client,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

#[derive(Debug)]
pub struct Response {
    pub status: StatusCode,
    pub body: Value,
}

#[derive(Debug, Clone, Copy)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Server {
    pub async fn start(name: &str, backend: Backend) -> Server {
        Server::start_with(name, backend, ServerConfig::default()).await
    }

    pub async fn start_with(name: &str, backend: Backend, config: ServerConfig) -> Server {
        Server::start_with_secrets(name, backend, config, BTreeMap::new()).await
    }

    /// A server whose runbooks may use `secrets` as `{{ secrets.NAME }}`.
    pub async fn start_with_secrets(
        name: &str,
        backend: Backend,
        config: ServerConfig,
        secrets: BTreeMap<String, String>,
    ) -> Server {
        Server::start_on(&database_url(name, backend), name, config, secrets).await
    }

    /// A server on the database at `url`: a second node of a cluster when another server
    /// already serves it.
    pub async fn start_on(
        url: &str,
        name: &str,
        config: ServerConfig,
        secrets: BTreeMap<String, String>,
    ) -> Server {
        let database = steady_storage::open_database(url).await.expect("database");
        let clock = Arc::new(TestClock::default());
        let engine = Engine::with_clock(
            database.store.clone(),
            EngineConfig::new(format!("test-{name}"), Duration::from_secs(2), secrets),
            clock.clone(),
        );
        let state = AppState::new(Arc::new(engine), database.accounts, config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(steady_web::serve(listener, state.clone(), async {
            let _ = stopped.await;
        }));
        let client = reqwest::Client::new();
        Server { url, state, clock, client, _shutdown: shutdown }
    }

    /// Creates a user with these roles and a password, and returns a bearer token for them.
    pub async fn person(&self, name: &str, roles: &[GlobalRole]) -> String {
        let user = User {
            name: name.to_owned(),
            roles: roles.to_vec(),
            password_hash: Some(
                auth::hash_password(&format!("{name}-password-long")).expect("hash"),
            ),
            disabled: false,
            created_at: now(),
        };
        self.state.accounts.create_user(&user, &Actor::local("test")).await.expect("user");
        let secret = format!("stdy_{}", auth::new_secret());
        let token = ApiToken {
            id: uuid::Uuid::now_v7(),
            label: "tests".into(),
            user: name.to_owned(),
            hash: auth::secret_hash(&secret),
            created_at: now(),
            revoked_at: None,
        };
        self.state.accounts.create_token(&token, &Actor::local("test")).await.expect("token");
        secret
    }

    pub async fn call(
        &self,
        token: Option<&str>,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Response {
        let mut request = self.client.request(method, format!("{}{path}", self.url));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request");
        let status = response.status();
        let text = response.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Response { status, body }
    }

    pub async fn get(&self, token: &str, path: &str) -> Response {
        self.call(Some(token), Method::GET, path, None).await
    }

    pub async fn post(&self, token: &str, path: &str, body: Value) -> Response {
        self.call(Some(token), Method::POST, path, Some(body)).await
    }

    /// Polls a run until it reaches `status`, as the executor drives it.
    pub async fn wait_for(&self, token: &str, run: &str, status: &str) -> Value {
        for _ in 0..200 {
            let response = self.get(token, &format!("/api/v1/runs/{run}")).await;
            if response.body["status"] == status {
                return response.body;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let last = self.get(token, &format!("/api/v1/runs/{run}")).await;
        panic!("run {run} never became {status}: {}", last.body);
    }
}

/// A new, empty database for a test named `name`: a SQLite file in a scratch folder, or a
/// database on the test kit's PostgreSQL server.
pub fn database_url(name: &str, backend: Backend) -> String {
    match backend {
        Backend::Sqlite => {
            let dir =
                std::env::temp_dir().join(format!("steady-api-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).expect("scratch folder");
            format!("sqlite://{}", dir.join("steady.db").display())
        }
        Backend::Postgres => steady_testkit::postgres_database(),
    }
}

/// Publishes a runbook as a fresh author.
pub async fn publish(server: &Server, source: &str) -> Response {
    let author = server.person(&format!("author{}", rand_suffix()), &[GlobalRole::Author]).await;
    server.post(&author, "/api/v1/runbooks", json!({ "source": source })).await
}

fn rand_suffix() -> String {
    auth::new_secret()[..6].to_owned()
}
