//! Continuous verification on three nodes: each period of a runbook's `verify` schedule is
//! verified exactly once, by whichever node claims it first — never by two — and the schedule
//! goes on when a node dies.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::Value;

use crate::*;

/// Verified every 2 s; each verification appends one line to the ledger (`LEDGER`).
const VERIFIED: &str = r#"
name: verified
params:
  ledger: { type: string, required: true }
verify: { every: 2s, params: { ledger: "LEDGER" } }
steps:
  - id: probe
    run: echo probed >> {{ params.ledger }}
    read_only: true
    timeout: 5s
"#;

/// The verification runs of `verified`, oldest first.
async fn verifications(cluster: &Cluster, token: &str) -> Vec<Value> {
    let path = "/api/v1/runs?origin=verification&runbook=verified&limit=500";
    let (status, runs) = cluster.call(cluster.any_node(), token, Method::GET, path, None).await;
    assert_eq!(status, 200, "{runs}");
    let mut runs = runs.as_array().unwrap().clone();
    runs.reverse();
    runs
}

fn created_at(run: &Value) -> chrono::DateTime<chrono::Utc> {
    run["created_at"].as_str().unwrap().parse().unwrap()
}

/// The claimed periods of `verified`, oldest first: (period start, node, run id).
async fn slots(cluster: &Cluster) -> Vec<(String, String, String)> {
    let pool = sqlx::PgPool::connect(&cluster.db).await.unwrap();
    let rows: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT slot_start, node, run_id FROM verification_slots WHERE runbook = 'verified'
         ORDER BY slot_start",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    pool.close().await;
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_verify_each_period_once() {
    let ledger =
        std::env::temp_dir().join(format!("steady-verified-ledger-{}", std::process::id()));
    let _ = std::fs::remove_file(&ledger);
    let source = VERIFIED.replace("LEDGER", &ledger.display().to_string());
    let tick = ["--verification-tick", "100ms"];
    let mut cluster = cluster_with("verified", 3, &[("verified.yaml", source.as_str())], &tick);
    let audrey = cluster.person("audrey", "auditor");

    // The first verification, then eight seconds (four periods) with all three nodes; then the
    // node that verified last dies, and six more seconds (three periods) go by.
    let deadline = Instant::now() + Duration::from_secs(30);
    while verifications(&cluster, &audrey).await.is_empty() {
        assert!(Instant::now() < deadline, "no verification started");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let began = chrono::Utc::now();
    tokio::time::sleep(Duration::from_secs(8)).await;
    let (last_start, last_node, _) = slots(&cluster).await.pop().unwrap();
    let dead = (0..3).find(|&index| cluster.node(index).owns(&last_node)).unwrap();
    // In the middle of a period, when no node is claiming or starting anything.
    let mut quiet =
        last_start.parse::<chrono::DateTime<chrono::Utc>>().unwrap() + chrono::Duration::seconds(1);
    while quiet < chrono::Utc::now() {
        quiet += chrono::Duration::seconds(2);
    }
    tokio::time::sleep((quiet - chrono::Utc::now()).to_std().unwrap_or_default()).await;
    cluster.kill(dead);
    let killed_at = chrono::Utc::now();
    tokio::time::sleep(Duration::from_secs(6)).await;
    let ended = chrono::Utc::now();

    // Every verification run is the run of one claimed period, and every claimed period has
    // its run: one run per period, whichever node claimed it.
    let runs = verifications(&cluster, &audrey).await;
    let slots = slots(&cluster).await;
    let run_ids: Vec<&str> = runs.iter().map(|run| run["id"].as_str().unwrap()).collect();
    let slot_runs: Vec<&str> = slots.iter().map(|(_, _, run)| run.as_str()).collect();
    assert_eq!(run_ids, slot_runs, "{slots:?}");
    // Periods after the death were claimed by the nodes still alive.
    let after: Vec<_> = slots
        .iter()
        .filter(|(start, _, _)| start.parse::<chrono::DateTime<chrono::Utc>>().unwrap() > killed_at)
        .collect();
    assert!(after.len() >= 2, "the schedule went on without the dead node: {slots:?}");
    assert!(after.iter().all(|(_, node, _)| *node != last_node), "{slots:?}");

    // Each run started in the period it was claimed for, and the periods follow each other.
    let starts: Vec<_> = runs.iter().map(created_at).collect();
    for ((start, _, _), created) in slots.iter().zip(&starts) {
        let start = start.parse::<chrono::DateTime<chrono::Utc>>().unwrap();
        assert!(start <= *created && *created < start + chrono::Duration::seconds(2), "{slots:?}");
    }
    // After the first (which came when the nodes did, in the middle of a period), each period
    // is taken at the first tick of some node in it, at most 100 ms late: two runs of one
    // period would start well within a second of each other, successive ones 2 s apart.
    for pair in starts[1..].windows(2) {
        let gap = pair[1] - pair[0];
        assert!(gap > chrono::Duration::milliseconds(1500), "two runs in one period: {starts:?}");
    }
    let periods = (ended - began).num_seconds() / 2;
    let counted = starts.iter().filter(|at| **at >= began).count() as i64;
    assert!(
        (periods - 2..=periods + 1).contains(&counted),
        "{counted} verifications in {periods} periods: {starts:?}"
    );
    // Each ran its probe once: no period was driven twice either.
    let finished: Vec<&Value> = runs.iter().filter(|run| run["status"] != "running").collect();
    assert!(finished.iter().all(|run| run["status"] == "succeeded"), "{runs:?}");
    let probes = std::fs::read_to_string(&ledger).unwrap_or_default().lines().count();
    assert!(
        (finished.len()..=runs.len()).contains(&probes),
        "{probes} probes, {} runs",
        runs.len()
    );
    cluster.verify_chain();
}
