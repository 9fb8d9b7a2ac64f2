//! Continuous verification: a runbook that asks to be dry-run every second against a stand-in
//! system (a file that says whether the standby is in recovery). Its verification passes,
//! fails once the stand-in changes — announced once, however often it fails again — and
//! recovers when the stand-in is put back, as the API, the pages, `/metrics`, the audit log
//! and the notifications all tell.

use std::time::Duration;

use serde_json::Value;
use steady_engine::accounts::GlobalRole::{Admin, Responder};
use steady_engine::store::AuditFilter;

use crate::pages::Browser;
use crate::{Backend, Server, publish};

on_every_backend!(
    a_scheduled_dry_run_passes_then_fails_once_announced_and_recovers,
    a_verification_that_cannot_start_is_a_failed_one,
    a_new_version_is_never_rehearsed_until_it_is,
);

/// `DIR` is replaced by the stand-in system's folder.
const STANDBY: &str = r##"
name: standby
owner: team-database
contacts: [{ name: DB on-call, how: "#db-oncall" }]
roles:
  approver: { description: Signs off the promotion }
params:
  dir: { type: string, required: true }
verify: { every: 1s, params: { dir: "DIR" } }
lock: "pg/main"
steps:
  - id: standby_in_recovery
    name: The standby is in recovery
    run: ["cat", "{{ params.dir }}/standby"]
    read_only: true
    timeout: 5s
    expect: { stdout: "^t$" }
  - id: go
    approval: { role: approver, prompt: "Promote?" }
  - id: promote
    run: ["touch", "{{ params.dir }}/promoted"]
    timeout: 5s
"##;

/// Polls `probe` until it returns something, for at most ten seconds.
async fn eventually<T>(what: &str, mut probe: impl AsyncFnMut() -> Option<T>) -> T {
    for _ in 0..200 {
        if let Some(found) = probe().await {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("never saw {what}");
}

async fn a_scheduled_dry_run_passes_then_fails_once_announced_and_recovers(backend: Backend) {
    let system = tempfile_dir("verify-story");
    std::fs::write(system.join("standby"), "t\n").unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let received = crate::stories::receiver(port).await;
    let config = steady_web::ServerConfig {
        notify: vec![format!("http://127.0.0.1:{port}/hook")],
        notify_backoff_max: Duration::from_millis(200),
        verification_tick: Duration::from_millis(100),
        ..Default::default()
    };
    let server = Server::start_with("verify-story", backend, config).await;
    let token = server.person("root", &[Admin, Responder]).await;
    let source = STANDBY.replace("DIR", &system.display().to_string());
    assert!(publish(&server, &source).await.status.is_success());

    // It passes: a dry run of origin `verification`, by Steady, holding no lock, the gate
    // and the promotion only recorded as what they would do.
    let runbook = eventually("a passing verification", async || {
        let list = server.get(&token, "/api/v1/runbooks").await.body;
        let runbook = list.as_array()?.iter().find(|r| r["name"] == "standby")?.clone();
        (runbook["verification"]["passed"] == true).then_some(runbook)
    })
    .await;
    assert_eq!(runbook["verification"]["failing"], Value::Null);
    let runs = server.get(&token, "/api/v1/runs?origin=verification").await.body;
    let run = &runs.as_array().unwrap().last().unwrap();
    assert_eq!(
        (&run["mode"], &run["origin"], &run["started_by"], &run["lock"]),
        (
            &Value::from("dry-run"),
            &Value::from("verification"),
            &Value::from("steady"),
            &Value::Null
        )
    );
    let detail = server.get(&token, &format!("/api/v1/runs/{}", run["id"].as_str().unwrap())).await;
    let statuses: Vec<&str> = detail.body["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["succeeded", "would_run", "would_run"]);
    assert!(!system.join("promoted").exists(), "a verification changes nothing");
    assert!(
        server.get(&token, "/api/v1/runs?origin=person").await.body.as_array().unwrap().is_empty()
    );

    // The pages say so: verified, and the version counts as rehearsed.
    let browser = Browser::sign_in(&server, "root").await;
    let (_, page) = browser.get("/runbooks").await;
    assert!(page.contains("✓ verified") && page.contains("✓ rehearsed"), "{page}");
    let (_, page) = browser.get("/runs?origin=verification").await;
    assert!(page.contains("dry-run · verification"), "{page}");

    // The stand-in system changes: the standby was promoted behind Steady's back.
    std::fs::write(system.join("standby"), "f\n").unwrap();
    let failing = eventually("a failing verification", async || {
        let list = server.get(&token, "/api/v1/runbooks").await.body;
        let runbook = list.as_array()?.iter().find(|r| r["name"] == "standby")?.clone();
        (runbook["verification"]["passed"] == false).then(|| runbook["verification"].clone())
    })
    .await;
    assert_eq!(failing["failing"]["step"], "standby_in_recovery");
    assert_eq!(failing["failing"]["reason"], "stdout does not match `^t$`");
    let failed_run = failing["failing"]["run_id"].as_str().unwrap().to_owned();
    let run = server.get(&token, &format!("/api/v1/runs/{failed_run}")).await.body;
    assert_eq!(run["status"], "failed", "a verification needs nobody's decision: {run}");

    // It keeps failing, period after period; it was announced once.
    eventually("three failed verifications", async || {
        let runs = server.get(&token, "/api/v1/runs?origin=verification&status=failed").await.body;
        (runs.as_array()?.len() >= 3).then_some(())
    })
    .await;
    let texts = || -> Vec<String> {
        received
            .lock()
            .unwrap()
            .iter()
            .filter_map(|body| serde_json::from_str::<Value>(body).ok())
            .map(|message| message["text"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    let announced = eventually("the failure's notification", async || {
        let texts = texts();
        let failing: Vec<String> =
            texts.into_iter().filter(|t| t.starts_with("Verification failing")).collect();
        (!failing.is_empty()).then_some(failing)
    })
    .await;
    assert_eq!(announced.len(), 1, "{announced:?}");
    assert_eq!(
        announced[0],
        "Verification failing: standby v1: `standby_in_recovery` stdout does not match `^t$`.\nFor owner team-database; roles approver; contacts DB on-call (#db-oncall)."
    );
    let events =
        |action: &str| AuditFilter { action: Some(action.into()), ..AuditFilter::default() };
    let store = &server.state.store;
    assert_eq!(store.count_audit_events(&events("verification.failed")).await.unwrap(), 1);
    let failed = store.audit_events(&events("verification.failed")).await.unwrap();
    assert_eq!(
        failed[0].step_id.as_deref(),
        Some("standby_in_recovery"),
        "the event names the step"
    );
    let (_, page) = browser.get("/runbooks").await;
    assert!(page.contains("⚠ verification failing since"), "{page}");
    assert!(
        page.contains("<code>standby_in_recovery</code> stdout does not match <code>^t$</code>")
    );
    assert!(page.contains(&format!("/runs/{failed_run}")), "{page}");
    let (_, page) = browser.get("/runbooks/standby").await;
    assert!(page.contains("⚠ verification failing since"), "{page}");
    let metrics = server.call(None, reqwest::Method::GET, "/metrics", None).await.body;
    let metrics = metrics.as_str().unwrap();
    assert!(metrics.contains("steady_verification_passed{runbook=\"standby\"} 0"), "{metrics}");
    assert!(metrics.contains("steady_verification_last_seconds{runbook=\"standby\"} 1"));

    // The stand-in is put back: the next verification passes, and that is announced once.
    std::fs::write(system.join("standby"), "t\n").unwrap();
    eventually("a passing verification again", async || {
        let list = server.get(&token, "/api/v1/runbooks").await.body;
        let runbook = list.as_array()?.iter().find(|r| r["name"] == "standby")?.clone();
        (runbook["verification"]["passed"] == true).then_some(())
    })
    .await;
    let recovered = eventually("the recovery's notification", async || {
        texts().into_iter().find(|t| t.starts_with("Verification passing again"))
    })
    .await;
    assert!(
        recovered.starts_with("Verification passing again: standby v1 (failing since "),
        "{recovered}"
    );
    // Two more periods: still one failure and one recovery announced, and no run of a
    // verification was news on its own.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(store.count_audit_events(&events("verification.failed")).await.unwrap(), 1);
    assert_eq!(store.count_audit_events(&events("verification.recovered")).await.unwrap(), 1);
    let texts = texts();
    assert_eq!(texts.iter().filter(|t| t.starts_with("Verification")).count(), 2, "{texts:?}");
    assert!(!texts.iter().any(|t| t.starts_with("Run ")), "{texts:?}");
    let metrics = server.call(None, reqwest::Method::GET, "/metrics", None).await.body;
    assert!(
        metrics.as_str().unwrap().contains("steady_verification_passed{runbook=\"standby\"} 1")
    );
}

/// Declares a secret this server has no value for.
const NEEDS_A_TOKEN: &str = r#"
name: needs-token
secrets: [API_TOKEN]
verify: { every: 1s }
steps:
  - id: credentials_work
    http: { method: GET, url: "http://127.0.0.1:9/", headers: { Authorization: "{{ secrets.API_TOKEN }}" } }
    read_only: true
    timeout: 5s
"#;

/// A node without a declared secret's value cannot start the verification: that is a failed
/// verification, with the reason, announced once and shown; no run is created.
async fn a_verification_that_cannot_start_is_a_failed_one(backend: Backend) {
    let config = steady_web::ServerConfig {
        verification_tick: Duration::from_millis(100),
        ..Default::default()
    };
    let server = Server::start_with("verify-unstarted", backend, config).await;
    let token = server.person("root", &[Admin, Responder]).await;
    assert!(publish(&server, NEEDS_A_TOKEN).await.status.is_success());
    let failing = eventually("a failed verification", async || {
        let list = server.get(&token, "/api/v1/runbooks").await.body;
        let runbook = list.as_array()?.iter().find(|r| r["name"] == "needs-token")?.clone();
        (runbook["verification"]["passed"] == false).then(|| runbook["verification"].clone())
    })
    .await;
    assert_eq!(
        (&failing["run_id"], &failing["failing"]["step"], &failing["failing"]["run_id"]),
        (&Value::Null, &Value::Null, &Value::Null)
    );
    assert_eq!(
        failing["failing"]["reason"],
        "could not start: declared secret `API_TOKEN` has no value: set STEADY_SECRET_API_TOKEN"
    );
    // Two more periods fail the same way; the failure was announced once, and no run exists.
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let events =
        AuditFilter { action: Some("verification.failed".into()), ..AuditFilter::default() };
    assert_eq!(server.state.store.count_audit_events(&events).await.unwrap(), 1);
    assert!(server.get(&token, "/api/v1/runs").await.body.as_array().unwrap().is_empty());
    let browser = Browser::sign_in(&server, "root").await;
    let (_, page) = browser.get("/runbooks/needs-token").await;
    assert!(page.contains("⚠ verification failing since"), "{page}");
    assert!(
        page.contains("could not start: declared secret <code>API_TOKEN</code> has no value"),
        "{page}"
    );
}

/// `review_every` counts rehearsals of the current version: a drill of v1 does not make v2
/// rehearsed, a drill or a passing verification of v2 does.
async fn a_new_version_is_never_rehearsed_until_it_is(backend: Backend) {
    const PROBE: &str = "name: probe\nreview_every: 30d\nsteps:\n  - id: look\n    run: [\"true\"]\n    read_only: true\n    timeout: 5s\n";
    let config = steady_web::ServerConfig {
        verification_tick: Duration::from_millis(100),
        ..Default::default()
    };
    let server = Server::start_with("verify-rehearsed", backend, config).await;
    let token = server.person("root", &[Admin, Responder]).await;
    let browser = Browser::sign_in(&server, "root").await;
    let badge = async || {
        let (_, page) = browser.get("/runbooks").await;
        ["never rehearsed", "✓ rehearsed"].into_iter().find(|badge| page.contains(badge))
    };
    assert!(publish(&server, PROBE).await.status.is_success());
    assert_eq!(badge().await, Some("never rehearsed"));
    let drill = serde_json::json!({ "runbook": "probe", "mode": "drill" });
    let run = server.post(&token, "/api/v1/runs", drill.clone()).await.body["id"].clone();
    server.wait_for(&token, run.as_str().unwrap(), "succeeded").await;
    assert_eq!(badge().await, Some("✓ rehearsed"));

    let v2 = PROBE.replace("timeout: 5s", "timeout: 6s");
    assert!(publish(&server, &v2).await.status.is_success());
    assert_eq!(badge().await, Some("never rehearsed"), "v1's drill does not rehearse v2");

    // A passing verification of the current version is a rehearsal of it.
    let v3 = format!("{v2}verify: {{ every: 1s }}\n");
    assert!(publish(&server, &v3).await.status.is_success());
    eventually("v3 rehearsed by its verification", async || {
        (badge().await == Some("✓ rehearsed")).then_some(())
    })
    .await;
}

/// A fresh scratch folder for one test on one backend.
fn tempfile_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "steady-{name}-{}-{}",
        std::process::id(),
        steady_web::auth::new_secret()[..6].to_owned()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
