//! Engine benchmarks on the embedded SQLite store (`synchronous=FULL`), reported as figures:
//!
//! - `steps`: a 1,000-step runbook of `run: ["true"]`, live: steps a second, and the engine's
//!   overhead per step beyond the bare process spawn.
//! - `windmill`: the 40-step workload of the public Windmill orchestration benchmark, each
//!   step about 10 ms of work (`sleep 0.01`): total time.
//! - `parked`: 1,000 runs parked at approval gates: resident memory, and the time to resume
//!   them all after they are approved.
//! - `verify`: `audit verify` over 1,000,000 events.
//! - `page`: the server-rendered page of a finished 100-step run: time to answer, over HTTP.
//! - `fanout`: a fan-out of 1,000 items of `run: ["true"]`, eight at a time: items a second,
//!   beside the same 1,000 as sequential steps and the bare spawn.
//! - `pending`: a fan-out of 10,000 items started eight at a time: resident memory while its
//!   items are pending.
//!
//! Run with `cargo bench --bench engine` (all), or name scenarios: `cargo bench --bench engine
//! -- steps verify`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use steady_engine::audit::{AttemptFinished, AuditData, NewEvent, StepFinished};
use steady_engine::engine::{DriveEnd, Engine, EngineConfig, Quiet, StartRun};
use steady_engine::run::{Actor, Assignment, RunMode, StepStatus};
use steady_engine::runner::Stop;
use steady_engine::store::Store;
use tokio::sync::watch;

fn main() {
    let wanted: Vec<String> =
        std::env::args().skip(1).filter(|arg| !arg.starts_with('-')).collect();
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let scenarios: [(&str, fn() -> _); 7] = [
        ("steps", || Box::pin(steps()) as std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>),
        ("windmill", || Box::pin(windmill())),
        ("parked", || Box::pin(parked())),
        ("verify", || Box::pin(verify())),
        ("page", || Box::pin(page())),
        ("fanout", || Box::pin(fanout())),
        ("pending", || Box::pin(pending())),
    ];
    for (name, scenario) in scenarios {
        if wanted.is_empty() || wanted.iter().any(|w| w == name) {
            runtime.block_on(scenario());
        }
    }
}

async fn node(name: &str) -> (Engine, Arc<dyn Store>) {
    let dir = std::env::temp_dir().join(format!("steady-bench-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("bench folder");
    let url = format!("sqlite://{}", dir.join("steady.db").display());
    let database = steady_storage::open_database(&url).await.expect("open");
    // Only existing users hold run roles: the gated runbook's approver is one.
    let approver = steady_engine::accounts::User {
        name: "approver".into(),
        roles: vec![steady_engine::accounts::GlobalRole::Responder],
        password_hash: None,
        disabled: false,
        created_at: steady_engine::engine::now(),
    };
    database.accounts.create_user(&approver, &Actor::local("bench")).await.expect("user");
    let config = EngineConfig::new("bench", Duration::from_secs(10), BTreeMap::new());
    let store = database.store;
    (Engine::new(store.clone(), config), store)
}

fn start(runbook: &str) -> StartRun {
    StartRun {
        origin: steady_engine::run::RunOrigin::Person,
        runbook: runbook.into(),
        version: None,
        params: vec![],
        mode: RunMode::Live,
        actor: Actor::user("commander"),
        assignments: if runbook == "gated" {
            vec![Assignment { role: "approver".into(), person: Actor::user("approver") }]
        } else {
            vec![]
        },
    }
}

async fn drive(engine: &Engine, run: uuid::Uuid) {
    let (_keep, stop) = watch::channel(Stop::No);
    let end = engine.drive(run, &Quiet, stop).await.expect("drive");
    assert!(matches!(end, DriveEnd::Settled(_)));
}

fn steps_runbook(name: &str, count: usize, command: &str) -> String {
    let mut source = format!("name: {name}\nsteps:\n");
    for index in 0..count {
        source.push_str(&format!(
            "  - id: s{index}\n    run: {command}\n    idempotent: true\n    timeout: 30s\n"
        ));
    }
    source
}

/// The time to spawn and reap one `true`, without Steady: the floor of a step's cost.
async fn spawn_floor() -> Duration {
    let started = Instant::now();
    for _ in 0..200 {
        tokio::process::Command::new("true").status().await.expect("true runs");
    }
    started.elapsed() / 200
}

async fn steps() {
    let (engine, _store) = node("steps").await;
    engine
        .publish(&steps_runbook("thousand", 1000, "[\"true\"]"), &Actor::user("author"))
        .await
        .expect("publish");

    let spawn = spawn_floor().await;

    let run = engine.start_run(start("thousand")).await.expect("start");
    let started = Instant::now();
    drive(&engine, run).await;
    let elapsed = started.elapsed();
    let per_step = elapsed / 1000;
    println!(
        "steps: 1,000 steps of `true` in {:.2} s: {:.0} steps/s; {:.3} ms a step, of which the bare spawn is {:.3} ms and the engine {:.3} ms",
        elapsed.as_secs_f64(),
        1000.0 / elapsed.as_secs_f64(),
        per_step.as_secs_f64() * 1e3,
        spawn.as_secs_f64() * 1e3,
        per_step.saturating_sub(spawn).as_secs_f64() * 1e3,
    );
}

/// A fan-out runbook over `hosts`, `concurrency` at a time, each item running `command`.
fn fan_out_runbook(name: &str, concurrency: u32, command: &str) -> String {
    format!(
        "name: {name}\nparams:\n  hosts: {{ type: list }}\nsteps:\n  - id: each\n    for_each: params.hosts\n    concurrency: {concurrency}\n    run: {command}\n    idempotent: true\n    timeout: 60s\n"
    )
}

fn fan_out_start(runbook: &str, items: usize) -> StartRun {
    let hosts: Vec<String> = (0..items).map(|index| format!("h{index}")).collect();
    StartRun { params: vec![("hosts".into(), hosts.join(","))], ..start(runbook) }
}

async fn fanout() {
    let (engine, _store) = node("fanout").await;
    let author = Actor::user("author");
    engine.publish(&fan_out_runbook("fan", 8, "[\"true\"]"), &author).await.expect("publish");
    engine.publish(&steps_runbook("thousand", 1000, "[\"true\"]"), &author).await.expect("publish");

    let spawn = spawn_floor().await;

    let run = engine.start_run(start("thousand")).await.expect("start");
    let started = Instant::now();
    drive(&engine, run).await;
    let sequential = started.elapsed();

    let run = engine.start_run(fan_out_start("fan", 1000)).await.expect("start");
    let started = Instant::now();
    drive(&engine, run).await;
    let fanned = started.elapsed();
    println!(
        "fanout: 1,000 items of `true`, 8 at a time, in {:.2} s: {:.0} items/s; the same 1,000 as sequential steps {:.0} steps/s; the bare spawn alone {:.0}/s",
        fanned.as_secs_f64(),
        1000.0 / fanned.as_secs_f64(),
        1000.0 / sequential.as_secs_f64(),
        1.0 / spawn.as_secs_f64(),
    );
}

async fn pending() {
    let (engine, _store) = node("pending").await;
    let author = Actor::user("author");
    engine
        .publish(&fan_out_runbook("wide", 8, "[\"sleep\", \"30\"]"), &author)
        .await
        .expect("publish");
    let before = resident_mib();
    let run = engine.start_run(fan_out_start("wide", 10_000)).await.expect("start");
    let (stop_tx, stop) = watch::channel(Stop::No);
    let driving = engine.drive(run, &Quiet, stop);
    let measuring = async {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let resident = resident_mib();
        stop_tx.send(Stop::Interrupt).expect("stop");
        resident
    };
    let (end, resident) = tokio::join!(driving, measuring);
    end.expect("drive");
    println!(
        "pending: a fan-out of 10,000 items, 8 running and the rest pending: {resident:.1} MiB resident ({before:.1} MiB before the run)"
    );
}

async fn windmill() {
    let (engine, _store) = node("windmill").await;
    engine
        .publish(&steps_runbook("forty", 40, "[\"sleep\", \"0.01\"]"), &Actor::user("author"))
        .await
        .expect("publish");
    let mut best = Duration::MAX;
    for _ in 0..5 {
        let run = engine.start_run(start("forty")).await.expect("start");
        let started = Instant::now();
        drive(&engine, run).await;
        best = best.min(started.elapsed());
    }
    println!("windmill: 40 steps of 10 ms work in {:.3} s (best of 5)", best.as_secs_f64());
}

fn resident_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

async fn parked() {
    let (engine, store) = node("parked").await;
    let source = "name: gated\nroles:\n  approver: { description: Signs off }\nsteps:\n  - id: check\n    run: [\"true\"]\n    read_only: true\n    timeout: 5s\n  - id: go\n    approval: { role: approver }\n  - id: act\n    run: [\"true\"]\n    timeout: 5s\n";
    engine.publish(source, &Actor::user("author")).await.expect("publish");
    let before = resident_mib();
    let started = Instant::now();
    let mut runs = Vec::new();
    for _ in 0..1000 {
        let run = engine.start_run(start("gated")).await.expect("start");
        drive(&engine, run).await;
        runs.push(run);
    }
    let parking = started.elapsed();
    let parked = store
        .runs(&Default::default())
        .await
        .expect("runs")
        .iter()
        .filter(|r| r.status.as_str() == "waiting")
        .count();
    let resident = resident_mib();
    let started = Instant::now();
    for run in &runs {
        engine.approve(*run, "go", &Actor::user("approver"), None).await.expect("approve");
        drive(&engine, *run).await;
    }
    let resuming = started.elapsed();
    println!(
        "parked: {parked} runs parked at gates in {:.1} s; resident memory {resident:.1} MiB (was {before:.1} MiB before); approving and finishing all of them took {:.1} s ({:.1} ms a run)",
        parking.as_secs_f64(),
        resuming.as_secs_f64(),
        resuming.as_secs_f64() * 1e3 / runs.len() as f64,
    );
}

async fn verify() {
    let (_engine, store) = node("verify").await;
    // What the node wrote as it started (its own events) is verified with the rest.
    let before = store.latest_seq().await.expect("latest seq") as u64;
    let started = Instant::now();
    let actor = Actor::steady();
    for batch in 0..100 {
        let events = (0..10_000)
            .map(|index| {
                // `duration_ms` varies, so that no two events hash alike.
                let finished = AttemptFinished {
                    attempt: 1,
                    status: StepStatus::Succeeded,
                    exit_code: Some(0),
                    http_status: None,
                    duration_ms: batch * 10_000 + index,
                    error: None,
                    retry: false,
                };
                let data = AuditData::StepFinished(StepFinished::Attempted(finished));
                NewEvent::typed(&actor, Some(uuid::Uuid::now_v7()), data).step("promote")
            })
            .collect();
        store.append_events(events).await.expect("append");
    }
    let writing = started.elapsed();
    let started = Instant::now();
    let verification = store.verify_audit().await.expect("verify");
    let verifying = started.elapsed();
    assert_eq!((verification.events, verification.first_broken), (before + 1_000_000, None));
    println!(
        "verify: {} events written in {:.1} s; `audit verify` recomputed the chain in {:.2} s",
        verification.events,
        writing.as_secs_f64(),
        verifying.as_secs_f64()
    );
}

async fn page() {
    use steady_engine::accounts::{GlobalRole, User};
    let dir = std::env::temp_dir().join(format!("steady-bench-page-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("bench folder");
    let database =
        steady_storage::open_database(&format!("sqlite://{}", dir.join("steady.db").display()))
            .await
            .expect("open");
    let config = EngineConfig::new("bench", Duration::from_secs(10), BTreeMap::new());
    let engine = Arc::new(Engine::new(database.store.clone(), config));
    let mut source = String::from("name: hundred\nsteps:\n");
    for index in 0..100 {
        source.push_str(&format!("  - id: s{index}\n    run: [\"echo\", \"step {index} says hello\"]\n    read_only: true\n    timeout: 5s\n"));
    }
    engine.publish(&source, &Actor::user("author")).await.expect("publish");
    let run = engine.start_run(start("hundred")).await.expect("start");
    drive(&engine, run).await;
    let password = "bench-password-long";
    let user = User {
        name: "bench".into(),
        roles: vec![GlobalRole::Responder],
        password_hash: Some(steady_web::auth::hash_password(password).expect("hash")),
        disabled: false,
        created_at: steady_engine::engine::now(),
    };
    database.accounts.create_user(&user, &Actor::local("bench")).await.expect("user");
    let state =
        steady_web::AppState::new(engine, database.accounts, steady_web::ServerConfig::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    tokio::spawn(steady_web::serve(listener, state, std::future::pending()));
    let client = reqwest::Client::new();
    let login = client
        .post(format!("{base}/api/v1/session"))
        .json(&serde_json::json!({ "name": "bench", "password": password }))
        .send()
        .await
        .expect("sign in");
    let cookie = login.headers()["set-cookie"]
        .to_str()
        .expect("cookie")
        .split(';')
        .next()
        .expect("pair")
        .to_owned();
    let mut times = Vec::new();
    for _ in 0..60 {
        let started = Instant::now();
        let page = client
            .get(format!("{base}/runs/{run}"))
            .header("cookie", &cookie)
            .send()
            .await
            .expect("page");
        assert!(page.status().is_success());
        let _ = page.text().await.expect("html");
        times.push(started.elapsed());
    }
    times.sort();
    println!(
        "page: the page of a finished 100-step run answered in {:.1} ms (median), {:.1} ms (95th percentile), over HTTP",
        times[times.len() / 2].as_secs_f64() * 1e3,
        times[times.len() * 95 / 100].as_secs_f64() * 1e3,
    );
}
