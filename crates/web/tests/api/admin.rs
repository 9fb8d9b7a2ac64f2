//! The audit and users pages as auditors and admins use them without JavaScript: the log
//! newest first with its count and filters that never ignore a value, and the users page's
//! forms (roles, passwords, tokens), each refused without the session's CSRF token.

use reqwest::StatusCode;
use steady_engine::accounts::GlobalRole::{Auditor, Responder};

use crate::pages::Browser;
use crate::*;

on_every_backend!(an_auditor_reads_the_log_newest_first_and_a_bad_filter_says_what_is_wrong,);

const CHECK: &str = r#"
name: check
steps:
  - id: look
    run: ["echo", "fine"]
    read_only: true
    timeout: 5s
"#;

async fn an_auditor_reads_the_log_newest_first_and_a_bad_filter_says_what_is_wrong(
    backend: Backend,
) {
    let server = Server::start("admin-audit", backend).await;
    publish(&server, CHECK).await;
    let rita = server.person("rita", &[Responder]).await;
    let api_auditor = server.person("auditbot", &[Auditor]).await;
    server.person("audrey", &[Auditor]).await;
    let mut runs = Vec::new();
    for _ in 0..2 {
        let started = server
            .post(
                &rita,
                "/api/v1/runs",
                serde_json::json!({ "runbook": "check", "mode": "dry-run" }),
            )
            .await;
        let run = started.body["id"].as_str().unwrap().to_owned();
        server.wait_for(&rita, &run, "succeeded").await;
        runs.push(run);
    }
    let audrey = Browser::sign_in(&server, "audrey").await;

    // Newest first, with how many events there are.
    let (status, page) = audrey.get("/audit").await;
    assert_eq!(status, StatusCode::OK);
    let all = server.get(&api_auditor, "/api/v1/audit").await.body.as_array().unwrap().len();
    assert!(page.contains(&format!("<strong>{all}</strong> events match, newest first")), "{page}");
    let table = &page[page.find("<table").unwrap()..];
    let newest = table.find("login.succeeded").unwrap();
    let oldest = table.find("runbook.published").unwrap();
    assert!(newest < oldest, "the newest event comes first: {page}");

    // The start of a run's id, as pages show it, finds that run's events only.
    let prefix = &runs[1][..13];
    let (_, page) = audrey.get(&format!("/audit?run={prefix}&action=run.started")).await;
    assert!(page.contains("<strong>1</strong> event matches"), "{page}");
    assert!(page.contains(&format!("/runs/{}", runs[1])) && !page.contains(&runs[0]), "{page}");
    // Actions are a list to pick from, with the one asked for selected.
    assert!(page.contains("<option selected>run.started</option>"), "{page}");
    assert!(page.contains("<option>token.revoked</option>"), "{page}");

    // A value that cannot mean anything is a 400 that says why, never a filter dropped.
    let (status, page) = audrey.get("/audit?action=run.startd").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(page.contains("✗ unknown audit action `run.startd`: use one of runbook.published"));
    assert!(!page.contains("events match"), "{page}");
    let (status, page) = audrey.get("/audit?run=01%25").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(page.contains("run `01%` is not a run id nor the start of one"), "{page}");
    let (status, page) = audrey.get("/audit?since=yesterday").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(page.contains("since `yesterday` is not a date like 2026-11-30"), "{page}");

    // The API refuses the same way, in its own shape.
    let refused = server.get(&api_auditor, "/api/v1/audit?action=run.startd").await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert!(
        refused.body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("unknown audit action `run.startd`"),
        "{}",
        refused.body
    );
    let refused = server.get(&api_auditor, "/api/v1/audit/export?action=nope").await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    let refused = server.get(&api_auditor, "/api/v1/audit?run=not-a-run").await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert!(refused.body["error"]["message"].as_str().unwrap().contains("not-a-run"));
    let known = server.get(&api_auditor, "/api/v1/audit?action=run.started").await;
    assert_eq!(known.body.as_array().unwrap().len(), 2);
}
