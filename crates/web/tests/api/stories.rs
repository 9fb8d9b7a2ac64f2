//! What people do with the API on a bad night.

use reqwest::StatusCode;
use serde_json::json;
use steady_engine::accounts::GlobalRole::{Auditor, Responder};

use crate::*;

on_every_backend!(
    the_failover_story_over_http,
    a_quorum_of_two_and_a_rejection_that_rolls_back,
    a_held_lock_is_a_conflict_naming_the_run,
    bad_input_is_a_4xx_that_says_where,
    a_list_parameter_is_a_json_array_checked_item_by_item,
    a_gate_past_its_timeout_refuses_a_late_approval,
    a_run_streams_its_events_and_a_reconnect_resumes_where_it_left,
    notifications_arrive_and_keep_arriving_after_the_receiver_was_down,
);

pub(crate) const FAILOVER: &str = r#"
name: failover
lock: "pg/{{ params.cluster }}"
roles:
  approver: { description: Senior DBA }
params:
  cluster: { type: string, required: true, pattern: "^[a-z0-9-]+$" }
steps:
  - id: standby_ok
    run: ["echo", "t"]
    read_only: true
    timeout: 5s
  - id: go
    approval: { role: approver, prompt: "Promote {{ params.cluster }}?" }
  - id: promote
    run: ["echo", "promoted"]
    timeout: 5s
"#;

async fn the_failover_story_over_http(backend: Backend) {
    let server = Server::start("story", backend).await;
    assert_eq!(publish(&server, FAILOVER).await.status, StatusCode::CREATED);
    let carol = server.person("carol", &[Responder]).await;
    let alice = server.person("alice", &[Responder]).await;
    let bob = server.person("bob", &[Responder]).await;

    let started = server
        .post(&carol, "/api/v1/runs", json!({
            "runbook": "failover",
            "params": { "cluster": "main" },
            "assignments": [{ "role": "approver", "person": "alice" }, { "role": "approver", "person": "carol" }],
        }))
        .await;
    assert_eq!(started.status, StatusCode::CREATED, "{}", started.body);
    let run = started.body["id"].as_str().unwrap().to_owned();
    let waiting = server.wait_for(&carol, &run, "waiting").await;
    assert_eq!(waiting["steps"][0]["status"], "succeeded");

    let approve = format!("/api/v1/runs/{run}/steps/go/approve");
    let outsider = server.post(&bob, &approve, json!({})).await;
    assert_eq!(outsider.status, StatusCode::FORBIDDEN, "{}", outsider.body);
    let own = server.post(&carol, &approve, json!({})).await;
    assert_eq!(own.status, StatusCode::FORBIDDEN);
    assert!(
        own.body["error"]["message"].as_str().unwrap().contains("may not approve"),
        "{}",
        own.body
    );
    let approved = server.post(&alice, &approve, json!({ "comment": "lag is zero" })).await;
    assert_eq!(
        (approved.status, approved.body["status"].as_str()),
        (StatusCode::OK, Some("approved"))
    );

    let finished = server.wait_for(&carol, &run, "succeeded").await;
    assert_eq!(finished["steps"][2]["attempts"][0]["stdout"], "promoted\n");
    assert_eq!(finished["steps"][1]["votes"][0]["comment"], "lag is zero");

    let metrics = server.call(None, reqwest::Method::GET, "/metrics", None).await.body;
    let metrics = metrics.as_str().unwrap();
    assert!(metrics.contains("steady_runs{status=\"succeeded\"} 1\n"), "{metrics}");
    assert!(metrics.contains("steady_step_duration_seconds_count 2\n"), "{metrics}");
}

async fn a_quorum_of_two_and_a_rejection_that_rolls_back(backend: Backend) {
    let server = Server::start("quorum", backend).await;
    publish(
        &server,
        r#"
name: two
roles:
  approver: { description: Signs off }
steps:
  - id: go
    approval: { role: approver, approvals: 2 }
    on_failure: rollback
  - id: act
    run: ["true"]
    timeout: 5s
rollback:
  - id: undo
    run: ["true"]
    idempotent: true
    timeout: 5s
"#,
    )
    .await;
    let carol = server.person("carol", &[Responder]).await;
    let alice = server.person("alice", &[Responder]).await;
    let bob = server.person("bob", &[Responder]).await;
    let assignments =
        json!([{ "role": "approver", "person": "alice" }, { "role": "approver", "person": "bob" }]);

    let first = server
        .post(&carol, "/api/v1/runs", json!({ "runbook": "two", "assignments": assignments }))
        .await;
    let run = first.body["id"].as_str().unwrap().to_owned();
    server.wait_for(&carol, &run, "waiting").await;
    let approve = format!("/api/v1/runs/{run}/steps/go/approve");
    assert_eq!(server.post(&alice, &approve, json!({})).await.body["status"], "waiting");
    assert_eq!(
        server.post(&alice, &approve, json!({})).await.status,
        StatusCode::CONFLICT,
        "counts once"
    );
    assert_eq!(server.post(&bob, &approve, json!({})).await.body["status"], "approved");
    server.wait_for(&carol, &run, "succeeded").await;

    let second = server
        .post(&carol, "/api/v1/runs", json!({ "runbook": "two", "assignments": assignments }))
        .await;
    let run = second.body["id"].as_str().unwrap().to_owned();
    server.wait_for(&carol, &run, "waiting").await;
    let rejected = server
        .post(&bob, &format!("/api/v1/runs/{run}/steps/go/reject"), json!({ "comment": "no" }))
        .await;
    assert_eq!(rejected.body["status"], "rejected");
    let rolled = server.wait_for(&carol, &run, "rolled_back").await;
    assert_eq!(rolled["steps"][2]["status"], "succeeded");
}

async fn a_held_lock_is_a_conflict_naming_the_run(backend: Backend) {
    let server = Server::start("lock", backend).await;
    publish(&server, FAILOVER).await;
    let carol = server.person("carol", &[Responder]).await;
    let start = json!({ "runbook": "failover", "params": { "cluster": "main" } });
    let first = server.post(&carol, "/api/v1/runs", start.clone()).await;
    let run = first.body["id"].as_str().unwrap().to_owned();
    let second = server.post(&carol, "/api/v1/runs", start).await;
    assert_eq!(second.status, StatusCode::CONFLICT);
    assert!(second.body["error"]["message"].as_str().unwrap().contains(&run), "{}", second.body);
}

async fn bad_input_is_a_4xx_that_says_where(backend: Backend) {
    let server = Server::start("bad-input", backend).await;
    let broken = publish(&server, "name: broken\nsteps:\n  - id: nap\n    sleep: soon\n").await;
    assert_eq!(broken.status, StatusCode::UNPROCESSABLE_ENTITY);
    let diagnostic = &broken.body["error"]["details"][0];
    assert_eq!(
        (diagnostic["line"].as_u64(), diagnostic["column"].as_u64()),
        (Some(4), Some(12)),
        "{}",
        broken.body
    );

    publish(&server, FAILOVER).await;
    let carol = server.person("carol", &[Responder]).await;
    let bad_params = server
        .post(
            &carol,
            "/api/v1/runs",
            json!({ "runbook": "failover", "params": { "cluster": "Main!" } }),
        )
        .await;
    assert_eq!(bad_params.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        bad_params.body["error"]["message"].as_str().unwrap().contains("must match"),
        "{}",
        bad_params.body
    );
    let missing = server.post(&carol, "/api/v1/runs", json!({ "runbook": "failover" })).await;
    assert_eq!(missing.status, StatusCode::UNPROCESSABLE_ENTITY);
    let garbage = server.call(Some(&carol), reqwest::Method::POST, "/api/v1/runs", None).await;
    assert_eq!(garbage.status, StatusCode::UNPROCESSABLE_ENTITY);
    publish(&server, "name: regional\nlock: \"region/{{ params.size | int + 1 }}\"\nparams:\n  size: { type: string, default: big }\nsteps:\n  - id: nap\n    sleep: 1ms\n").await;
    let unlockable = server.post(&carol, "/api/v1/runs", json!({ "runbook": "regional" })).await;
    assert_eq!(unlockable.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", unlockable.body);
    // A declared secret this server has no value for: the run does not start, and says why.
    publish(&server, "name: paging\nsecrets: [PAGER_KEY]\nsteps:\n  - id: page\n    http: { method: POST, url: \"https://pager.example.com/\", headers: { X-Key: \"{{ secrets.PAGER_KEY }}\" } }\n    read_only: true\n").await;
    let unpaged = server.post(&carol, "/api/v1/runs", json!({ "runbook": "paging" })).await;
    assert_eq!(unpaged.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", unpaged.body);
    assert!(
        unpaged.body["error"]["message"].as_str().unwrap().contains("STEADY_SECRET_PAGER_KEY"),
        "{}",
        unpaged.body
    );
    // A secret sent where a starter chooses the host: refused at publication, with its place.
    let phished = publish(&server, "name: phished\nsecrets: [PAGER_KEY]\nparams:\n  api: { type: string, default: \"https://pager.example.com\" }\nsteps:\n  - id: page\n    http: { url: \"{{ params.api }}/v1\", headers: { X-Key: \"{{ secrets.PAGER_KEY }}\" } }\n    read_only: true\n").await;
    assert_eq!(phished.status, StatusCode::UNPROCESSABLE_ENTITY);
    let diagnostic = &phished.body["error"]["details"][0];
    assert_eq!((diagnostic["line"].as_u64(), diagnostic["column"].as_u64()), (Some(7), Some(18)));
    assert!(diagnostic["message"].as_str().unwrap().contains("parameter `api`"), "{diagnostic}");
    let no_runbook = server.post(&carol, "/api/v1/runs", json!({ "runbook": "nope" })).await;
    assert_eq!(no_runbook.status, StatusCode::NOT_FOUND);
    let no_run = server.get(&carol, "/api/v1/runs/not-a-uuid").await;
    assert_eq!(no_run.status, StatusCode::NOT_FOUND);
}

async fn a_list_parameter_is_a_json_array_checked_item_by_item(backend: Backend) {
    let server = Server::start("list-param", backend).await;
    let fleet = "name: fleet\nparams:\n  regions: { type: list, enum: [eu, us, \"eu,west\"] }\nsteps:\n  - id: each\n    for_each: params.regions\n    sleep: 1ms\n";
    let published = publish(&server, fleet).await;
    assert_eq!(published.status, StatusCode::CREATED, "{}", published.body);
    let carol = server.person("carol", &[Responder]).await;
    let start = json!({ "runbook": "fleet", "params": { "regions": ["eu,west", "us"] } });
    let started = server.post(&carol, "/api/v1/runs", start).await;
    assert_eq!(started.status, StatusCode::CREATED, "{}", started.body);
    assert_eq!(started.body["params"]["regions"], json!(["eu,west", "us"]));
    let start = json!({ "runbook": "fleet", "params": { "regions": ["eu", "mars"] } });
    let refused = server.post(&carol, "/api/v1/runs", start).await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        refused.body["error"]["message"].as_str().unwrap().contains("got `mars`"),
        "{}",
        refused.body
    );
}

async fn a_gate_past_its_timeout_refuses_a_late_approval(backend: Backend) {
    let server = Server::start("timeout", backend).await;
    publish(&server, "name: slow\nroles:\n  approver: {}\nsteps:\n  - id: go\n    approval: { role: approver, timeout: 300ms }\n").await;
    let carol = server.person("carol", &[Responder]).await;
    let alice = server.person("alice", &[Responder]).await;
    let started = server.post(&carol, "/api/v1/runs", json!({ "runbook": "slow", "assignments": [{ "role": "approver", "person": "alice" }] })).await;
    let run = started.body["id"].as_str().unwrap().to_owned();
    server.wait_for(&carol, &run, "waiting").await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let late =
        server.post(&alice, &format!("/api/v1/runs/{run}/steps/go/approve"), json!({})).await;
    assert_eq!(late.status, StatusCode::CONFLICT, "{}", late.body);
    server.wait_for(&carol, &run, "needs_attention").await;

    let auditor = server.person("audrey", &[Auditor]).await;
    let events = server.get(&auditor, &format!("/api/v1/audit?run={run}")).await;
    let actions: Vec<&str> =
        events.body.as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert!(actions.contains(&"gate.timed_out"), "{actions:?}");
    let verified = server.get(&auditor, "/api/v1/audit/verify").await;
    assert_eq!(verified.body["intact"], true);
    let csv = server.get(&auditor, &format!("/api/v1/audit/export?format=csv&run={run}")).await;
    let csv = csv.body.as_str().unwrap().to_owned();
    assert!(
        csv.starts_with("seq,id,at,actor,action,run_id,step_id,data,prev_hash,hash\n"),
        "{csv}"
    );
    assert!(csv.contains(",gate.timed_out,"), "{csv}");
    let jsonl = server.get(&auditor, &format!("/api/v1/audit/export?run={run}")).await;
    let lines: Vec<serde_json::Value> = jsonl
        .body
        .as_str()
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines.len(), actions.len());
    assert_eq!(
        server.get(&auditor, "/api/v1/audit/export?format=xml").await.status,
        StatusCode::UNPROCESSABLE_ENTITY
    );
}

/// Reads Server-Sent Events until `until` is seen; returns `(id, event)` pairs.
async fn read_events(
    server: &Server,
    token: &str,
    path: &str,
    last_id: Option<&str>,
    until: &str,
) -> Vec<(String, String)> {
    let mut request = server.client.get(format!("{}{path}", server.url)).bearer_auth(token);
    if let Some(last_id) = last_id {
        request = request.header("last-event-id", last_id);
    }
    let mut response = request.send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while !text.contains(&format!("event: {until}\n")) {
        let chunk = tokio::time::timeout_at(deadline, response.chunk())
            .await
            .expect("events in time")
            .unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk.expect("the stream stays open")));
    }
    text.split("\n\n")
        .filter_map(|block| {
            let field = |name: &str| {
                block.lines().find_map(|line| line.strip_prefix(name).map(str::to_owned))
            };
            Some((field("id: ")?, field("event: ")?))
        })
        .collect()
}

async fn a_run_streams_its_events_and_a_reconnect_resumes_where_it_left(backend: Backend) {
    let server = Server::start("events", backend).await;
    publish(&server, FAILOVER).await;
    let carol = server.person("carol", &[Responder]).await;
    let alice = server.person("alice", &[Responder]).await;
    let started = server
        .post(&carol, "/api/v1/runs", json!({ "runbook": "failover", "params": { "cluster": "main" }, "assignments": [{ "role": "approver", "person": "alice" }] }))
        .await;
    let run = started.body["id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/runs/{run}/events");
    let first = read_events(&server, &carol, &path, None, "step.waiting").await;
    let actions: Vec<&str> = first.iter().map(|(_, action)| action.as_str()).collect();
    assert_eq!(
        actions,
        ["run.started", "step.started", "step.finished", "output.stored", "step.waiting"]
    );

    server.post(&alice, &format!("/api/v1/runs/{run}/steps/go/approve"), json!({})).await;
    let (last_id, _) = first.last().unwrap().clone();
    let rest = read_events(&server, &carol, &path, Some(&last_id), "run.finished").await;
    assert!(
        rest.iter().all(|(id, _)| id.parse::<i64>().unwrap() > last_id.parse::<i64>().unwrap())
    );
    assert_eq!(rest.first().map(|(_, action)| action.as_str()), Some("approval.granted"));
    assert_eq!(rest.last().map(|(_, action)| action.as_str()), Some("run.finished"));
}

/// A webhook receiver on `port` that answers 200 and keeps every body it gets.
pub(crate) async fn receiver(port: u16) -> std::sync::Arc<std::sync::Mutex<Vec<String>>> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = received.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut request = Vec::new();
            let mut buffer = [0u8; 8192];
            loop {
                let read = socket.read(&mut buffer).await.unwrap_or(0);
                request.extend_from_slice(&buffer[..read]);
                let text = String::from_utf8_lossy(&request).into_owned();
                let complete = text.split_once("\r\n\r\n").is_some_and(|(head, body)| {
                    let length = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    body.len() >= length
                });
                if read == 0 || complete {
                    break;
                }
            }
            let text = String::from_utf8_lossy(&request).into_owned();
            log.lock().unwrap().push(
                text.split_once("\r\n\r\n").map(|(_, body)| body.to_owned()).unwrap_or_default(),
            );
            let _ = socket
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
                .await;
        }
    });
    received
}

async fn notifications_arrive_and_keep_arriving_after_the_receiver_was_down(backend: Backend) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config = steady_web::ServerConfig {
        notify: vec![format!("http://127.0.0.1:{port}/hook")],
        notify_backoff_max: std::time::Duration::from_millis(200),
        ..Default::default()
    };
    let server = Server::start_with("notify", backend, config).await;
    publish(&server, FAILOVER).await;
    let carol = server.person("carol", &[Responder]).await;
    let alice = server.person("alice", &[Responder]).await;
    let started = server
        .post(&carol, "/api/v1/runs", json!({ "runbook": "failover", "params": { "cluster": "main" }, "assignments": [{ "role": "approver", "person": "alice" }] }))
        .await;
    let run = started.body["id"].as_str().unwrap().to_owned();
    server.wait_for(&carol, &run, "waiting").await;

    // The receiver is down: deliveries fail, are counted, and are retried.
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    let metrics = server.call(None, reqwest::Method::GET, "/metrics", None).await.body;
    let failures = metrics
        .as_str()
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("steady_notification_failures_total "))
        .unwrap();
    assert!(failures.parse::<u64>().unwrap() > 0, "{metrics}");

    let received = receiver(port).await;
    let arrived = |needle: &str| received.lock().unwrap().iter().any(|body| body.contains(needle));
    for _ in 0..100 {
        if arrived("Approval requested") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(arrived("Approval requested"), "{:?}", received.lock().unwrap());
    assert!(arrived("held by user:alice"), "{:?}", received.lock().unwrap());

    server.post(&alice, &format!("/api/v1/runs/{run}/steps/go/approve"), json!({})).await;
    server.wait_for(&carol, &run, "succeeded").await;
    for _ in 0..100 {
        if arrived("finished: succeeded") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(arrived("finished: succeeded"), "{:?}", received.lock().unwrap());
    let bodies = received.lock().unwrap().clone();
    assert_eq!(
        bodies.iter().filter(|b| b.contains("Approval requested")).count(),
        1,
        "delivered once: {bodies:?}"
    );
}
