//! The crash campaign on PostgreSQL with several nodes: twenty runs across three nodes while
//! nodes are SIGKILLed at seeded moments and started again: every run ends legally, no side
//! effect happens twice, and the chain verifies. Longer: `STEADY_CLUSTER_RUNS=60
//! STEADY_CLUSTER_KILLS=200 STEADY_CLUSTER_SEED=1 cargo test --release --test cluster kills --
//! --nocapture`.

use reqwest::Method;
use serde_json::json;

use std::time::Instant;

use steady_testkit::campaign::{Seeded, ledger, setting};

use crate::*;

/// Seven steps: two side effects that must never repeat, one idempotent, a read-only one, a
/// gate and two checks. Each effect is written first thing, then the step lingers so that kills land
/// inside steps.
const BUSY: &str = r#"
name: busy
roles:
  operator: { description: Signs off }
params:
  ledger: { type: string, required: true }
  tag: { type: string, required: true }
steps:
  - id: drain
    run: echo {{ params.tag }}-drain >> {{ params.ledger }}; sleep 0.8
    timeout: 30s
  - id: sync
    run: echo {{ params.tag }}-sync >> {{ params.ledger }}; sleep 0.6
    idempotent: true
    timeout: 30s
  - id: look
    run: sleep 0.4
    read_only: true
    timeout: 30s
  - id: sane
    check: "params.tag != ''"
  - id: go
    approval: { role: operator, allow_self_approval: true }
  - id: promote
    run: ["sh", "-c", "echo {{ params.tag }}-promote >> {{ params.ledger }}; sleep 0.8"]
    timeout: 30s
  - id: done
    check: "1 == 1"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_runs_on_three_nodes_survive_random_kills() {
    let seed = setting("STEADY_CLUSTER_SEED", 7);
    let run_count = setting("STEADY_CLUSTER_RUNS", 20) as usize;
    let kills_wanted = setting("STEADY_CLUSTER_KILLS", 8);
    let mut random = Seeded(seed);
    let mut cluster = cluster("kills", 3, &[("busy.yaml", BUSY)]);
    let carol = cluster.person("carol", "responder");
    let ledger_file = cluster.path("ledger");
    let mut runs: Vec<String> = Vec::new();
    let mut kills = 0;
    let mut decisions = 0;
    let mut events_seen = 0u64;
    let deadline = Instant::now() + Duration::from_secs(240 + 5 * kills_wanted);
    loop {
        assert!(Instant::now() < deadline, "runs did not settle; seed {seed}");
        // Runs start throughout the campaign, so that kills keep landing on busy nodes.
        let due = (run_count * (kills as usize + 1)).div_ceil(kills_wanted.max(1) as usize);
        while runs.len() < due.min(run_count) {
            let index = runs.len();
            let params = json!({ "ledger": ledger_file, "tag": format!("r{index:02}") });
            let roles = json!([{ "role": "operator", "person": "carol" }]);
            let node = cluster.any_node();
            runs.push(cluster.start_run(node, &carol, "busy", params, roles).await);
        }
        // Kill a node at a seeded moment, and start a new process in its place.
        if kills < kills_wanted {
            tokio::time::sleep(Duration::from_millis(300 + random.below(900))).await;
            let victim = random.below(3) as usize;
            cluster.kill(victim);
            kills += 1;
            tokio::time::sleep(Duration::from_millis(random.below(400))).await;
            cluster.restart(victim);
            // After every restart: the chain verifies and nothing committed is gone.
            let (code, text) = cluster.cli(&["audit", "verify"]);
            assert_eq!(code, 0, "chain after kill {kills}: {text}; seed {seed}");
            let events: u64 = text
                .split_whitespace()
                .find_map(|word| word.parse().ok())
                .expect("verify says how many events");
            assert!(events >= events_seen, "events went from {events_seen} to {events}");
            events_seen = events;
        } else {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }

        let mut settled = 0;
        for run in &runs {
            let state = cluster.run(&carol, run).await;
            match state["status"].as_str().unwrap_or_default() {
                "succeeded" => settled += 1,
                "running" => {}
                "waiting" => {
                    // Answered through whichever node is up.
                    let path = format!("/api/v1/runs/{run}/steps/go/approve");
                    let node = cluster.any_node();
                    let (status, body) =
                        cluster.call(node, &carol, Method::POST, &path, Some(json!({}))).await;
                    // A kill between reading and answering can make the answer come late.
                    assert!(matches!(status, 200 | 409), "approve: {status} {body}");
                }
                "needs_attention" => {
                    // The operator checks whether the interrupted step did its work.
                    let stuck = state["steps"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .find(|s| s["status"] == "interrupted")
                        .expect("an interrupted step");
                    let line = format!(
                        "{}-{}",
                        state["params"]["tag"].as_str().unwrap(),
                        stuck["id"].as_str().unwrap()
                    );
                    let done = ledger(Path::new(&ledger_file)).contains_key(&line);
                    let (code, text) =
                        cluster.cli(&["decide", run, if done { "skip" } else { "retry" }]);
                    assert_eq!(code, 0, "decide: {text}");
                    decisions += 1;
                }
                other => panic!("run {run} ended {other}: {state}; seed {seed}"),
            }
        }
        if settled == run_count && kills >= kills_wanted {
            break;
        }
    }

    let counts = ledger(Path::new(&ledger_file));
    for index in 0..run_count {
        for step in ["drain", "promote"] {
            let line = format!("r{index:02}-{step}");
            assert_eq!(counts.get(&line), Some(&1), "{line} ran exactly once; seed {seed}");
        }
        let line = format!("r{index:02}-sync");
        assert!(counts.get(&line).is_some_and(|n| *n >= 1), "{line} ran; seed {seed}");
    }
    cluster.verify_chain();
    println!(
        "cluster crash campaign (seed {seed}): {kills} kills of 3 nodes over {run_count} runs, {decisions} interrupted steps decided, chain verified"
    );
}
