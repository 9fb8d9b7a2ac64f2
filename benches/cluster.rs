//! Cluster benchmarks: real `steady serve` processes on one PostgreSQL database of a
//! throw-away server (the test kit's), reported as figures:
//!
//! - `transitions`: 400 runs of 20 `check` steps started round-robin through 1, 2 and 4
//!   nodes: durable transitions a second, each a committed `Store::commit` (counted from the
//!   runs' revisions), every acknowledgement after its commit.
//! - `takeover`: the node driving a run is SIGKILLed mid-step with the default 10 s lease;
//!   the time until the step starts again on the other node (target: under two leases).
//!
//! Run with `cargo bench --bench cluster` (both), or `cargo bench --bench cluster -- takeover`.

// A benchmark either measures or stops: a failed unwrap ends it.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::json;
use steady_testkit::cluster::Cluster;

const STEPS: usize = 20;
const RUNS: usize = 400;

fn main() {
    let wanted: Vec<String> =
        std::env::args().skip(1).filter(|arg| !arg.starts_with('-')).collect();
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    if wanted.is_empty() || wanted.iter().any(|w| w == "transitions") {
        for nodes in [1, 2, 4] {
            runtime.block_on(transitions(nodes));
        }
    }
    if wanted.is_empty() || wanted.iter().any(|w| w == "takeover") {
        runtime.block_on(takeover());
    }
}

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_steady"))
}

async fn transitions(nodes: usize) {
    let mut steps = String::new();
    for index in 0..STEPS {
        steps.push_str(&format!("  - id: c{index:02}\n    check: \"1 == 1\"\n"));
    }
    let runbook = format!("name: checks\nsteps:\n{steps}");
    let cluster = Cluster::start(
        binary(),
        &format!("bench-{nodes}"),
        nodes,
        Duration::from_secs(10),
        &[("checks.yaml", &runbook)],
    );
    let token = cluster.person("carol", "responder");
    let pool = sqlx::PgPool::connect(&cluster.db).await.unwrap();

    let started = Instant::now();
    let starts = (0..RUNS).map(|index| {
        cluster.start_run(cluster.node(index % nodes), &token, "checks", json!({}), json!([]))
    });
    futures_util::future::join_all(starts).await;
    loop {
        let settled: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM runs WHERE status NOT IN ('running', 'waiting')",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        if settled as usize == RUNS {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let (commits, succeeded): (i64, i64) = sqlx::query_as(
        "SELECT sum(revision)::bigint, count(*) FILTER (WHERE status = 'succeeded') FROM runs",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    let events: i64 =
        sqlx::query_scalar("SELECT count(*) FROM audit_events").fetch_one(&pool).await.unwrap();
    println!(
        "transitions, {nodes} node(s): {RUNS} runs × {STEPS} steps in {elapsed:.2} s: \
         {commits} commits = {:.0} transitions/s, {:.0} steps/s, {events} audit events; \
         {succeeded} runs succeeded",
        commits as f64 / elapsed,
        (RUNS * STEPS) as f64 / elapsed,
    );
    assert_eq!(succeeded as usize, RUNS);
}

async fn takeover() {
    let lease = Duration::from_secs(10);
    let runbook = r#"
name: longstep
params:
  ledger: { type: string, required: true }
steps:
  - id: sync
    run: date +%s.%N >> {{ params.ledger }}; sleep 120
    idempotent: true
    timeout: 300s
"#;
    let mut figures = Vec::new();
    for round in 0..3 {
        let mut cluster = Cluster::start(
            binary(),
            &format!("takeover-{round}"),
            2,
            lease,
            &[("longstep.yaml", runbook)],
        );
        let token = cluster.person("carol", "responder");
        let ledger = cluster.path("ledger");
        let run = cluster
            .start_run(cluster.node(0), &token, "longstep", json!({ "ledger": ledger }), json!([]))
            .await;
        while line_count(&ledger) == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Kill at a different moment of the lease each round.
        tokio::time::sleep(Duration::from_millis(1500 * round)).await;
        let state = cluster.run(&token, &run).await;
        let owner = state["lease"]["owner"].as_str().unwrap().to_owned();
        let driver = (0..2).find(|i| cluster.node(*i).owns(&owner)).unwrap();
        let killed_at = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64();
        cluster.kill(driver);
        while line_count(&ledger) < 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let restarted: f64 = std::fs::read_to_string(&ledger)
            .unwrap()
            .lines()
            .nth(1)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let seconds = restarted - killed_at;
        println!(
            "takeover, round {round}: the step started again on the other node {seconds:.2} s after SIGKILL (lease {} s)",
            lease.as_secs()
        );
        figures.push(seconds);
    }
    let worst = figures.iter().cloned().fold(0.0, f64::max);
    println!(
        "takeover: worst {worst:.2} s = {:.2} × the lease (target < 2 ×)",
        worst / lease.as_secs_f64()
    );
}

fn line_count(path: &str) -> usize {
    std::fs::read_to_string(path).map(|text| text.lines().count()).unwrap_or(0)
}
