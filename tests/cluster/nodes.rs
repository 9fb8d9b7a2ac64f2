//! Two and three nodes: answers through any node, takeover of a dead node's run, and one
//! gate answered through two nodes at the same moment.

use reqwest::Method;
use serde_json::json;

use std::time::Instant;

use crate::*;

const GATED: &str = r#"
name: gated
params:
  ledger: { type: string, required: true }
roles:
  approver: { description: Signs the promotion off }
steps:
  - id: lag
    check: "1 == 1"
  - id: go
    approval: { role: approver, approvals: 2 }
  - id: promote
    run: echo promoted >> {{ params.ledger }}
    timeout: 10s
"#;

const SLOW: &str = r#"
name: slow
params:
  ledger: { type: string, required: true }
steps:
  - id: promote
    run: echo ran >> {{ params.ledger }}; test $(wc -l < {{ params.ledger }}) -ge 2 || sleep 30
    timeout: 60s
    idempotent: true
  - id: after
    check: "1 == 1"
"#;

const RISKY: &str = r#"
name: risky
params:
  ledger: { type: string, required: true }
steps:
  - id: promote
    run: echo ran >> {{ params.ledger }}; sleep 30
    timeout: 60s
  - id: after
    check: "1 == 1"
"#;

/// The people of a gated run: Carol commands it, Alice and Bob hold `approver`.
struct Team {
    carol: String,
    alice: String,
    bob: String,
}

impl Team {
    fn of(cluster: &Cluster) -> Team {
        Team {
            carol: cluster.person("carol", "responder"),
            alice: cluster.person("alice", "responder"),
            bob: cluster.person("bob", "responder"),
        }
    }

    /// Carol starts `gated` through `node`, Alice and Bob as approvers; returns once the run
    /// waits at its gate.
    async fn start_gated(&self, cluster: &Cluster, node: usize, ledger: &str) -> String {
        let roles = json!([{ "role": "approver", "person": "alice" }, { "role": "approver", "person": "bob" }]);
        let params = json!({ "ledger": ledger });
        let run = cluster.start_run(cluster.node(node), &self.carol, "gated", params, roles).await;
        let waiting = cluster.wait_for(&self.carol, &run, &["waiting"]).await;
        assert_eq!(step_status(&waiting, "go"), "waiting");
        run
    }
}

/// Approves the gate `go` of `run` through `node` as the person `token` stands for.
async fn approve(cluster: &Cluster, node: usize, token: &str, run: &str) -> (u16, Value) {
    let path = format!("/api/v1/runs/{run}/steps/go/approve");
    cluster.call(cluster.node(node), token, Method::POST, &path, Some(json!({}))).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_started_on_one_node_is_approved_through_others_and_continues() {
    let cluster = cluster("answered", 3, &[("gated.yaml", GATED)]);
    let team = Team::of(&cluster);
    let carol = &team.carol;
    let audrey = cluster.person("audrey", "auditor");
    let ledger = cluster.path("ledger");
    let run = team.start_gated(&cluster, 0, &ledger).await;

    // Node C sees all three nodes up.
    let (status, nodes) =
        cluster.call(cluster.node(2), &audrey, Method::GET, "/api/v1/nodes", None).await;
    assert_eq!(status, 200, "{nodes}");
    let up: Vec<_> = nodes.as_array().unwrap().iter().filter(|n| n["up"] == true).collect();
    assert_eq!(up.len(), 3, "{nodes}");

    // Someone follows the run's live events on node C while others act on A and B.
    let follower = tokio::spawn(follow(
        cluster.node(2).url(&format!("/api/v1/runs/{run}/events")),
        carol.clone(),
    ));

    // Alice answers on node B, Bob on node C: the gate opens and some node carries on.
    let (status, body) = approve(&cluster, 1, &team.alice, &run).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = approve(&cluster, 2, &team.bob, &run).await;
    assert_eq!(status, 200, "{body}");
    let done = cluster.wait_for(carol, &run, &["succeeded", "failed", "needs_attention"]).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(ledger_of(&ledger), [("promoted".to_owned(), 1)]);
    let followed = tokio::time::timeout(Duration::from_secs(30), follower).await.unwrap().unwrap();
    assert_eq!(followed.last().map(String::as_str), Some("run.finished"), "{followed:?}");
    assert!(followed.contains(&"approval.granted".to_owned()), "{followed:?}");
    cluster.verify_chain();
}

/// Reads a run's live event stream to its end: the actions, in order.
async fn follow(url: String, token: String) -> Vec<String> {
    let mut response = reqwest::Client::new().get(url).bearer_auth(token).send().await.unwrap();
    let mut text = String::new();
    while let Some(chunk) = response.chunk().await.unwrap() {
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    text.lines().filter_map(|line| line.strip_prefix("event: ")).map(str::to_owned).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_key_is_held_across_nodes() {
    let cluster = cluster("locks", 2, &[("locked.yaml", LOCKED)]);
    let carol = cluster.person("carol", "responder");
    let start = |node: usize| {
        let body = json!({ "runbook": "locked", "params": { "cluster": "main" } });
        cluster.call(cluster.node(node), &carol, Method::POST, "/api/v1/runs", Some(body))
    };
    let (a, b) = tokio::join!(start(0), start(1));
    let mut statuses = [a.0, b.0];
    statuses.sort();
    assert_eq!(statuses, [201, 409], "{a:?} {b:?}");
}

const LOCKED: &str = r#"
name: locked
params:
  cluster: { type: string, required: true }
lock: "failover-{{ params.cluster }}"
steps:
  - id: go
    approval: { role: approver }
roles:
  approver: { description: Signs off }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_gate_answered_through_two_nodes_at_once_counts_each_person_once() {
    let cluster = cluster("quorum", 2, &[("gated.yaml", GATED)]);
    let team = Team::of(&cluster);
    let carol = &team.carol;
    let ledger = cluster.path("ledger");
    let run = team.start_gated(&cluster, 0, &ledger).await;

    // Alice approves through both nodes at the same moment: one vote.
    let (a, b) = tokio::join!(
        approve(&cluster, 0, &team.alice, &run),
        approve(&cluster, 1, &team.alice, &run),
    );
    assert_eq!([a.0, b.0].iter().filter(|status| **status == 200).count(), 1, "{a:?} {b:?}");
    let run_now = cluster.run(carol, &run).await;
    assert_eq!(run_now["status"], "waiting", "one person is not a quorum of two");
    let votes = run_now["steps"][1]["votes"].as_array().unwrap();
    assert_eq!(votes.iter().filter(|v| v["void"] == false).count(), 1, "{votes:?}");

    // Bob approves through node B while Alice's vote stands: the gate passes, once.
    let (status, body) = approve(&cluster, 1, &team.bob, &run).await;
    assert_eq!(status, 200, "{body}");
    let done = cluster.wait_for(carol, &run, &["succeeded", "failed", "needs_attention"]).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(ledger_of(&ledger), [("promoted".to_owned(), 1)]);

    // Two people answering a fresh gate at the same moment through two nodes: it passes once.
    let ledger = cluster.path("ledger-two");
    let run = team.start_gated(&cluster, 1, &ledger).await;
    let (a, b) = tokio::join!(
        approve(&cluster, 0, &team.alice, &run),
        approve(&cluster, 1, &team.bob, &run),
    );
    assert_eq!((a.0, b.0), (200, 200), "{a:?} {b:?}");
    let done = cluster.wait_for(carol, &run, &["succeeded", "failed", "needs_attention"]).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(ledger_of(&ledger), [("promoted".to_owned(), 1)]);
    cluster.verify_chain();
}

/// Starts `runbook` on node A, waits until its step has started on whichever node drives it,
/// and SIGKILLs that node. Returns the run, the surviving node's index, and when the kill was.
async fn kill_the_driver(
    cluster: &mut Cluster,
    token: &str,
    runbook: &str,
    ledger: &str,
) -> (String, usize) {
    let run = cluster
        .start_run(cluster.node(0), token, runbook, json!({ "ledger": ledger }), json!([]))
        .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while ledger_of(ledger).is_empty() {
        assert!(Instant::now() < deadline, "the step never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let running = cluster.run(token, &run).await;
    let owner = running["lease"]["owner"].as_str().unwrap().to_owned();
    let driver = (0..2).find(|i| cluster.node(*i).owns(&owner)).expect("a node drives the run");
    cluster.kill(driver);
    (run, 1 - driver)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_nodes_non_idempotent_step_is_interrupted_on_another_node_never_rerun() {
    let mut cluster = cluster("takeover-risky", 2, &[("risky.yaml", RISKY)]);
    let carol = cluster.person("carol", "responder");
    let ledger = cluster.path("ledger");
    let audrey = cluster.person("audrey", "auditor");
    let (run, survivor) = kill_the_driver(&mut cluster, &carol, "risky", &ledger).await;
    let taken = cluster.wait_for(&carol, &run, &["needs_attention"]).await;
    assert_eq!(step_status(&taken, "promote"), "interrupted");
    assert_eq!(ledger_of(&ledger), [("ran".to_owned(), 1)], "the step ran once, on the dead node");
    let events = cluster
        .call(
            cluster.node(survivor),
            &audrey,
            Method::GET,
            &format!("/api/v1/audit?run={run}&action=step.interrupted"),
            None,
        )
        .await;
    assert_eq!(events.1.as_array().map(Vec::len), Some(1), "{:?}", events.1);
    cluster.verify_chain();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_nodes_idempotent_step_is_run_again_on_another_node() {
    let mut cluster = cluster("takeover-idempotent", 2, &[("slow.yaml", SLOW)]);
    let carol = cluster.person("carol", "responder");
    let ledger = cluster.path("ledger");
    let (run, _) = kill_the_driver(&mut cluster, &carol, "slow", &ledger).await;
    let done = cluster.wait_for(&carol, &run, &["succeeded", "failed", "needs_attention"]).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(ledger_of(&ledger), [("ran".to_owned(), 2)], "run again by the survivor");
    cluster.verify_chain();
}

fn ledger_of(path: &str) -> Vec<(String, usize)> {
    steady_testkit::campaign::ledger(Path::new(path)).into_iter().collect()
}

/// A webhook receiver on 127.0.0.1: every body it was sent.
async fn receiver() -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let bodies = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let received = bodies.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let received = received.clone();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buffer = [0u8; 8192];
                loop {
                    let read = socket.read(&mut buffer).await.unwrap_or(0);
                    request.extend_from_slice(&buffer[..read]);
                    let text = String::from_utf8_lossy(&request).into_owned();
                    let complete = text.split_once("\r\n\r\n").is_some_and(|(head, body)| {
                        let length = head
                            .lines()
                            .find_map(|line| {
                                line.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        body.len() >= length
                    });
                    if read == 0 || complete {
                        if let Some((_, body)) = text.split_once("\r\n\r\n") {
                            received.lock().unwrap().push(body.to_owned());
                        }
                        break;
                    }
                }
                let _ = socket
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .await;
            });
        }
    });
    (url, bodies)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_send_each_notification_once() {
    let (hook, bodies) = receiver().await;
    let cluster = cluster_with("notify", 3, &[("gated.yaml", GATED)], &["--notify", &hook]);
    let team = Team::of(&cluster);
    let ledger = cluster.path("ledger");
    // Nodes take their targets when they start; give them a moment to settle who holds it.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let run = team.start_gated(&cluster, 0, &ledger).await;
    assert_eq!(approve(&cluster, 1, &team.alice, &run).await.0, 200);
    assert_eq!(approve(&cluster, 2, &team.bob, &run).await.0, 200);
    cluster.wait_for(&team.carol, &run, &["succeeded"]).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while !bodies.lock().unwrap().iter().any(|body| body.contains("run.finished")) {
        assert!(
            Instant::now() < deadline,
            "the finish was announced: {:?}",
            bodies.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Every other node had time to send it again, were it going to.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let bodies = bodies.lock().unwrap().clone();
    let of = |action: &str| {
        bodies.iter().filter(|body| body.contains(&format!("\"event\":\"{action}\""))).count()
    };
    assert_eq!((of("step.waiting"), of("run.finished")), (1, 1), "{bodies:#?}");
}
