//! Run stories: the engine driving real runbooks, as an incident commander, approvers and
//! Steady itself live them. Every story runs twice, unchanged: on a real SQLite file and on a
//! real PostgreSQL server that the test kit starts.
//!
//! - `steps`: every step kind, expectations, retries, timeouts, `on_failure`, secrets.
//! - `gates`: approvals and manual steps: quorum, self-approval, rejection, timeout,
//!   escalation, and approvals voided when the guarded command changes.
//! - `modes`: dry runs touch nothing; drills run for real.
//! - `recovery`: a driver that dies mid-step; leases; cancellation; decisions.
//! - `secrets`: what a step sees, masking in every form, redirects, signals.
//! - `audit`: the chain verifies, and a tampered row is found.
//! - `fan_out`: parallel branches and fan-out: overlap, concurrency, failures, retries,
//!   gates, crashes, dry runs and cancellation, item by item.
//! - `integrity`: what real use did to runs (issue 12), and what Steady now does instead.

// The stories are tests called by `#[tokio::test]` functions: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

/// Runs each story once on every backend, each on a fresh database.
macro_rules! stories {
    ($($story:ident),* $(,)?) => {
        mod on_sqlite {
            $(
                #[tokio::test]
                async fn $story() {
                    super::$story(crate::Harness::new(stringify!($story), crate::Backend::Sqlite).await).await;
                }
            )*
        }
        mod on_postgres {
            $(
                #[tokio::test]
                async fn $story() {
                    super::$story(crate::Harness::new(stringify!($story), crate::Backend::Postgres).await).await;
                }
            )*
        }
    };
}

mod audit;
mod fan_out;
mod gates;
mod integrity;
mod modes;
mod recovery;
mod secrets;
mod steps;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use steady_engine::accounts::{Accounts, GlobalRole, User};
use steady_engine::clock::{Clock, TestClock};
use steady_engine::engine::{DriveEnd, Engine, EngineConfig, Quiet, StartRun};
use steady_engine::run::{Actor, Assignment, RunMode, RunSnapshot, RunStatus, StepStatus};
use steady_engine::runner::Stop;
use steady_engine::store::Store;
use steady_storage::{PostgresStore, SqliteStore};
use tokio::sync::watch;
use uuid::Uuid;

pub const SECRET: &str = "s3cr3t-t0ken-value";

#[derive(Debug, Clone, Copy)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The database under the store, for stories that play an attacker with database access.
#[derive(Debug)]
pub enum Raw {
    Sqlite(SqliteStore),
    Postgres(PostgresStore),
}

impl Raw {
    /// Runs one SQL statement as whoever holds the database, bypassing Steady.
    pub async fn execute(&self, sql: &str) -> Result<u64, sqlx::Error> {
        let done = match self {
            Raw::Sqlite(store) => sqlx::query(sql).execute(store.pool()).await?.rows_affected(),
            Raw::Postgres(store) => sqlx::query(sql).execute(store.pool()).await?.rows_affected(),
        };
        Ok(done)
    }

    /// Drops the triggers that keep the audit log append-only, as an attacker would.
    pub async fn drop_append_only_guard(&self) {
        let statements: &[&str] = match self {
            Raw::Sqlite(_) => {
                &["DROP TRIGGER audit_events_no_update", "DROP TRIGGER audit_events_no_delete"]
            }
            Raw::Postgres(_) => &["DROP TRIGGER audit_events_no_change ON audit_events"],
        };
        for statement in statements {
            self.execute(statement).await.expect("drop the guard");
        }
    }
}

/// One database, one engine: a Steady node in a scratch folder.
#[derive(Debug)]
pub struct Harness {
    pub dir: PathBuf,
    pub url: String,
    pub raw: Raw,
    pub store: Arc<dyn Store>,
    pub engine: Engine,
    /// The engine's clock: real time, moved forward when a story says half an hour passes.
    /// Shared by every node of the story.
    pub clock: Arc<TestClock>,
}

pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("steady-runs-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch folder");
    dir
}

impl Harness {
    pub async fn new(name: &str, backend: Backend) -> Harness {
        let (dir, url) = match backend {
            Backend::Sqlite => {
                let dir = scratch(&format!("{name}-sqlite"));
                let url = format!("sqlite://{}", dir.join("steady.db").display());
                (dir, url)
            }
            Backend::Postgres => {
                (scratch(&format!("{name}-postgres")), steady_testkit::postgres_database())
            }
        };
        let harness = Harness::on(dir, url, "node-a", Arc::default()).await;
        // Only existing, enabled users hold run roles and command runs.
        for person in ["carol", "alice", "bob"] {
            harness.add_user(person).await;
        }
        harness
    }

    /// Creates an account, as an admin would.
    pub async fn add_user(&self, name: &str) {
        let user = User {
            name: name.to_owned(),
            roles: vec![GlobalRole::Responder],
            password_hash: None,
            disabled: false,
            created_at: steady_engine::engine::now(),
        };
        self.accounts().create_user(&user, &Actor::local("test")).await.expect("create user");
    }

    /// The accounts of the database.
    pub fn accounts(&self) -> &dyn Accounts {
        match &self.raw {
            Raw::Sqlite(store) => store,
            Raw::Postgres(store) => store,
        }
    }

    /// Another node on the same database, as after a crash and restart.
    pub async fn another_node(&self, node: &str) -> Harness {
        Harness::on(self.dir.clone(), self.url.clone(), node, self.clock.clone()).await
    }

    /// The time by the story's clock.
    pub fn now(&self) -> steady_engine::run::Timestamp {
        self.clock.now()
    }

    async fn on(dir: PathBuf, url: String, node: &str, clock: Arc<TestClock>) -> Harness {
        let (raw, store): (Raw, Arc<dyn Store>) = if url.starts_with("sqlite:") {
            let sqlite = SqliteStore::open(&url).await.expect("open database");
            (Raw::Sqlite(sqlite.clone()), Arc::new(sqlite))
        } else {
            let postgres = PostgresStore::open(&url).await.expect("open database");
            (Raw::Postgres(postgres.clone()), Arc::new(postgres))
        };
        let secrets = BTreeMap::from([("TOKEN".to_owned(), SECRET.to_owned())]);
        let config = EngineConfig::new(node, Duration::from_secs(1), secrets);
        let engine = Engine::with_clock(store.clone(), config, clock.clone());
        Harness { dir, url, raw, store, engine, clock }
    }

    /// A path in the scratch folder, for steps to leave traces in.
    pub fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    pub async fn publish(&self, source: &str) {
        self.engine.publish(source, &commander()).await.expect("valid runbook");
    }

    /// Starts a live run of `runbook` as the commander, with `roles` as `(role, person)`.
    pub async fn start(
        &self,
        runbook: &str,
        params: &[(&str, &str)],
        roles: &[(&str, &Actor)],
    ) -> Uuid {
        self.start_in(RunMode::Live, runbook, params, roles).await
    }

    pub async fn start_in(
        &self,
        mode: RunMode,
        runbook: &str,
        params: &[(&str, &str)],
        roles: &[(&str, &Actor)],
    ) -> Uuid {
        self.engine
            .start_run(StartRun {
                origin: steady_engine::run::RunOrigin::Person,
                runbook: runbook.to_owned(),
                version: None,
                params: params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
                mode,
                actor: commander(),
                assignments: roles
                    .iter()
                    .map(|(role, person)| Assignment {
                        role: role.to_string(),
                        person: (*person).clone(),
                    })
                    .collect(),
            })
            .await
            .expect("run starts")
    }

    /// Drives the run until it settles.
    pub async fn drive(&self, run_id: Uuid) -> RunStatus {
        let (_keep, stop) = watch::channel(Stop::No);
        match self.engine.drive(run_id, &Quiet, stop).await.expect("drive") {
            DriveEnd::Settled(status) => status,
            DriveEnd::Stopped => panic!("the driver was not asked to stop"),
        }
    }

    pub async fn snapshot(&self, run_id: Uuid) -> RunSnapshot {
        self.store.run(run_id).await.expect("read run").expect("run exists")
    }

    pub async fn step_status(&self, run_id: Uuid, step: &str) -> StepStatus {
        self.snapshot(run_id).await.step(step).expect("step exists").status
    }

    /// Every step's status, in order, as `id=status`.
    pub async fn statuses(&self, run_id: Uuid) -> Vec<String> {
        self.snapshot(run_id)
            .await
            .steps
            .iter()
            .map(|s| format!("{}={}", s.step_id, s.status))
            .collect()
    }

    pub async fn verify_chain(&self) {
        let verification = self.store.verify_audit().await.expect("verify");
        assert_eq!(verification.first_broken, None, "the audit chain verifies");
    }

    pub async fn actions(&self, run_id: Uuid) -> Vec<String> {
        let filter =
            steady_engine::store::AuditFilter { run_id: Some(run_id), ..Default::default() };
        self.store
            .audit_events(&filter)
            .await
            .expect("events")
            .into_iter()
            .map(|e| e.action)
            .collect()
    }
}

/// The incident commander who starts runs.
pub fn commander() -> Actor {
    Actor::user("carol")
}

pub fn alice() -> Actor {
    Actor::user("alice")
}

pub fn bob() -> Actor {
    Actor::user("bob")
}

/// Counts the lines of a side-effect ledger file: how many times a step really ran.
pub fn count_lines(path: &str) -> usize {
    std::fs::read_to_string(path).map(|text| text.lines().count()).unwrap_or(0)
}

/// A one-request-at-a-time HTTP server on 127.0.0.1 that answers every request with
/// `status` and `body`, and records what it received.
pub async fn http_server(
    status: u16,
    body: &'static str,
) -> (String, Arc<std::sync::Mutex<Vec<String>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    let received = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = received.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut request = Vec::new();
            let mut buffer = [0u8; 4096];
            // Read the head and whatever body arrives with it.
            loop {
                let read = socket.read(&mut buffer).await.unwrap_or(0);
                request.extend_from_slice(&buffer[..read]);
                let text = String::from_utf8_lossy(&request);
                if read == 0 || head_and_body_complete(&text) {
                    break;
                }
            }
            log.lock().expect("log").push(String::from_utf8_lossy(&request).into_owned());
            let response = format!(
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = socket.write_all(response.as_bytes()).await;
        }
    });
    (url, received)
}

fn head_and_body_complete(text: &str) -> bool {
    let Some((head, body)) = text.split_once("\r\n\r\n") else { return false };
    let length = head
        .lines()
        .find_map(|line| {
            line.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse::<usize>().unwrap_or(0))
        })
        .unwrap_or(0);
    body.len() >= length
}
