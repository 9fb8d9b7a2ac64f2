//! Rehearsal figures: what an incident commander learns from the drills before the day — how
//! long each step and the whole procedure take against `rto`, how long the rest of a run
//! should take, and which step is taking longer than it ever did — and what the postmortem
//! says about the time to recover.

use reqwest::StatusCode;
use serde_json::json;
use steady_engine::accounts::GlobalRole::Responder;

use crate::pages::Browser;
use crate::*;

on_every_backend!(
    drills_and_live_runs_that_succeeded_are_the_figures_shown_against_rto,
    a_step_waiting_longer_than_any_rehearsal_is_marked_and_the_rest_expected,
);

/// A quick failover: a check, a step whose length and outcome the starter picks, and a
/// recovery time objective of 15 minutes.
const FAILOVER: &str = r#"
name: failover
rto: 15m
params:
  pause: { type: string, default: "0", pattern: "^[0-9.]+$" }
  outcome: { type: string, default: "true", enum: ["true", "false"] }
steps:
  - id: check
    run: ["true"]
    read_only: true
    timeout: 5s
  - id: promote
    run: ["sh", "-c", "sleep {{ params.pause }}; {{ params.outcome }}"]
    timeout: 30s
    on_failure: abort
"#;

/// A runbook whose objective no rehearsal can meet.
const TOO_SLOW: &str = r#"
name: too-slow
rto: 1ms
steps:
  - id: nap
    sleep: 20ms
"#;

/// Starts a run of `runbook` and waits until it is `status`.
async fn run(server: &Server, token: &str, body: serde_json::Value, status: &str) -> String {
    let started = server.post(token, "/api/v1/runs", body).await;
    assert_eq!(started.status, StatusCode::CREATED, "{}", started.body);
    let id = started.body["id"].as_str().unwrap().to_owned();
    server.wait_for(token, &id, status).await;
    id
}

async fn drills_and_live_runs_that_succeeded_are_the_figures_shown_against_rto(backend: Backend) {
    let server = Server::start("figures", backend).await;
    publish(&server, FAILOVER).await;
    publish(&server, TOO_SLOW).await;
    let carol_token = server.person("carol", &[Responder]).await;
    let carol = Browser::sign_in(&server, "carol").await;
    let (_, page) = carol.get("/runbooks/failover").await;
    assert!(page.contains("No succeeded drill or live run yet"), "{page}");
    let (_, page) = carol.get("/runbooks").await;
    assert!(page.contains("rto 15m, never rehearsed"), "{page}");

    // Two drills and a live run succeed; a dry run (whose read-only check runs) and a
    // failed live run are no rehearsals.
    let failover = |mode: &str, outcome: &str| json!({ "runbook": "failover", "mode": mode, "params": { "pause": "0.1", "outcome": outcome } });
    run(&server, &carol_token, failover("drill", "true"), "succeeded").await;
    run(&server, &carol_token, failover("drill", "true"), "succeeded").await;
    let live = run(&server, &carol_token, failover("live", "true"), "succeeded").await;
    run(&server, &carol_token, failover("dry-run", "true"), "succeeded").await;
    run(&server, &carol_token, failover("live", "false"), "failed").await;
    run(&server, &carol_token, json!({ "runbook": "too-slow", "mode": "drill" }), "succeeded")
        .await;

    let figures = server.get(&carol_token, "/api/v1/runbooks/failover/figures").await;
    assert_eq!(figures.status, StatusCode::OK);
    let body = &figures.body;
    assert_eq!((body["rehearsals"].as_u64(), body["drills"].as_u64()), (Some(3), Some(2)));
    assert_eq!((body["rto_ms"].as_u64(), body["over_rto"].as_bool()), (Some(900_000), Some(false)));
    assert_eq!(body["whole"]["samples"], 3);
    let steps: Vec<(&str, u64)> = body["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["id"].as_str().unwrap(), s["took"]["samples"].as_u64().unwrap()))
        .collect();
    assert_eq!(steps, [("check", 3), ("promote", 3)], "neither the dry run nor the failed run");
    let promote = &body["steps"][1]["took"];
    assert!(promote["median_ms"].as_u64().unwrap() >= 100, "{promote}");
    assert!(promote["max_ms"].as_u64() >= promote["p90_ms"].as_u64());
    let missing = server.get(&carol_token, "/api/v1/runbooks/nothing/figures").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);

    let (_, page) = carol.get("/runbooks/failover").await;
    assert!(page.contains("<h2>Rehearsal figures</h2>"), "{page}");
    assert!(
        page.contains("From 3 succeeded runs of any version (2 drills, 1 live run)."),
        "{page}"
    );
    assert!(page.contains(r#"<strong class="within-rto">rehearsed p90 "#), "{page}");
    assert!(page.contains(" of rto 15m</strong>"), "{page}");
    assert!(page.contains("<td><code>promote</code></td>"), "{page}");
    let (_, page) = carol.get("/runbooks").await;
    assert!(page.contains(r#"<span class="within-rto">rehearsed p90 "#), "{page}");
    assert!(
        page.contains(r#"<span class="over-rto">⚠ rehearsed p90 "#),
        "too-slow is over: {page}"
    );
    assert!(page.contains(" of rto 1ms</span>"), "{page}");

    // The postmortem of the live run: its time to recover, against the drills before it.
    let (status, markdown) = carol.get(&format!("/runs/{live}/timeline.md")).await;
    assert_eq!(status, StatusCode::OK);
    let line = |label: &str| {
        markdown.lines().find(|line| line.starts_with(label)).unwrap_or_default().to_owned()
    };
    assert!(line("- Time to recover: ").len() > "- Time to recover: ".len(), "{markdown}");
    let rehearsed = line("- Rehearsed: median ");
    assert!(rehearsed.ends_with(" (2 runs before this one); rto 15m"), "{markdown}");
}

/// A drill whose manual step its operator answers in a minute, then a live run at that step:
/// the header expects the rest, the page says when to look again, and once the step has
/// waited longer than the drill did it is marked, in the header and on the step.
async fn a_step_waiting_longer_than_any_rehearsal_is_marked_and_the_rest_expected(
    backend: Backend,
) {
    let server = Server::start("figures-slower", backend).await;
    publish(
        &server,
        r#"
name: fence
roles:
  dba: {}
steps:
  - id: fence
    manual: { role: dba, instructions: Power off the old primary. }
  - id: promote
    run: ["true"]
    timeout: 5s
"#,
    )
    .await;
    let token = server.person("carol", &[Responder]).await;
    let carol = Browser::sign_in(&server, "carol").await;
    let start = |mode: &str| json!({ "runbook": "fence", "mode": mode, "assignments": [{ "role": "dba", "person": "carol" }] });
    let drill = run(&server, &token, start("drill"), "waiting").await;
    // The operator takes a minute to fence in the drill.
    server.clock.advance(std::time::Duration::from_secs(60));
    let done =
        server.post(&token, &format!("/api/v1/runs/{drill}/steps/fence/complete"), json!({})).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    server.wait_for(&token, &drill, "succeeded").await;

    let live = run(&server, &token, start("live"), "waiting").await;
    let (_, page) = carol.get(&format!("/runs/{live}")).await;
    assert!(page.contains(r#"<span class="expected">expected to finish in ~"#), "{page}");
    assert!(page.contains("(from 1 rehearsal)</span>"), "{page}");
    assert!(page.contains(" data-look-again=\""), "the page knows when to look again: {page}");
    assert!(!page.contains("slower than any rehearsal"), "{page}");

    // Two minutes on, the operator still has not fenced: longer than the drill ever took.
    server.clock.advance(std::time::Duration::from_secs(120));
    let (_, page) = carol.get(&format!("/runs/{live}")).await;
    assert!(page.contains("<code>fence</code> is slower than any rehearsal: 2m"), "{page}");
    assert!(
        page.contains(r#"<span class="slower">⚠ slower than any rehearsal (longest "#),
        "{page}"
    );
    assert!(!page.contains(" data-look-again=\""), "{page}");
    assert!(
        page.contains("expected to take at least ~1s more (from 1 rehearsal; past the rehearsed median: <code>fence</code>)"),
        "promote is still to come, fence overran: {page}"
    );

    // A dry run has no outlook; a finished run neither.
    let dry = run(&server, &token, start("dry-run"), "succeeded").await;
    let (_, page) = carol.get(&format!("/runs/{dry}")).await;
    assert!(!page.contains("expected to"), "{page}");
}
