//! The API against its own OpenAPI document: Schemathesis generates requests from
//! `/api/v1/openapi.json` — valid ones, and ones that break the schema — sends them to a real
//! server with a real database, and checks every answer with all of its default checks: no
//! 5xx, only declared statuses, content types and headers, bodies that fit the declared
//! schemas, schema-valid requests accepted and invalid ones refused, auth not ignored,
//! undeclared methods answered 405. Bounded and seeded, so that a run is repeatable and short.
//!
//! `scripts/test.sh` installs Schemathesis (pinned) when it is missing; without it this test
//! fails and says so.

use std::process::Stdio;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use steady_engine::accounts::GlobalRole::{Admin, Auditor, Author, Responder};

use crate::*;

on_every_backend!(the_api_keeps_the_promises_of_its_openapi_document);

/// The Schemathesis release the test is written for; `scripts/test.sh` installs it.
const SCHEMATHESIS: &str = "4.32.5";

/// A runbook whose live runs wait at a gate, so that a run's routes have something to act on.
const CONTRACT: &str = r#"
name: contract
roles:
  approver: { description: Signs off }
steps:
  - id: look
    run: ["true"]
    read_only: true
    timeout: 5s
  - id: go
    approval: { role: approver, prompt: "Go?" }
  - id: done
    manual: { role: approver, instructions: "Say it is done." }
"#;

async fn the_api_keeps_the_promises_of_its_openapi_document(backend: Backend) {
    let server = Server::start("contract", backend).await;
    // One person who may do everything, so that the checks reach past the role checks.
    let token = server.person("sam", &[Admin, Author, Responder, Auditor]).await;
    let published = server.post(&token, "/api/v1/runbooks", json!({ "source": CONTRACT })).await;
    assert_eq!(published.status, StatusCode::CREATED, "{}", published.body);
    let mut runs = Vec::new();
    for _ in 0..2 {
        let started = server.post(&token, "/api/v1/runs", json!({ "runbook": "contract" })).await;
        assert_eq!(started.status, StatusCode::CREATED, "{}", started.body);
        let run = started.body["id"].as_str().unwrap().to_owned();
        server.wait_for(&token, &run, "waiting").await;
        runs.push(run);
    }

    let dir = std::env::temp_dir()
        .join(format!("steady-schemathesis-{backend:?}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("schemathesis.toml"), config(&runs[0], &runs[1])).unwrap();

    let schema = format!("{}/api/v1/openapi.json", server.url);
    let command = tokio::process::Command::new("schemathesis")
        .current_dir(&dir)
        .args(["--config-file", "schemathesis.toml", "run", &schema])
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .args(["--seed", "1", "--max-examples", "15", "--workers", "2"])
        .args(["--request-timeout", "10", "--no-color"])
        // Event streams last as long as their run or their client: there is no answer to
        // check, only a stream that Schemathesis would wait on until its timeout.
        .args(["--exclude-path-regex", "/events$"])
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    // A whole run takes under a minute here; a hung one fails the test instead of the suite.
    let ran = tokio::time::timeout(Duration::from_secs(300), command).await;
    let output = match ran {
        Ok(Ok(output)) => output,
        Err(_) => panic!("schemathesis did not finish within 5 minutes"),
        Ok(Err(error)) => panic!(
            "cannot run schemathesis ({error}): install it with `pip install schemathesis=={SCHEMATHESIS}` (scripts/test.sh does)"
        ),
    };
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    // Shown with `--nocapture`: how many cases ran, and how long it took.
    println!("{report}");
    assert!(output.status.success(), "schemathesis found the API breaking its document:\n{report}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// What Schemathesis cannot know from the document alone. Where several entries match an
/// operation, the first that sets something wins.
fn config(run: &str, doomed: &str) -> String {
    format!(
        r#"
# A run's routes act on runs that exist and wait at their gate; random ids would only ever
# meet 404. Cancelling has a run of its own, so that the others stay active.
[[operations]]
include-path = "/api/v1/runs/{{id}}/cancel"
parameters = {{ "path.id" = "{doomed}" }}

[[operations]]
include-path = "/api/v1/runs/{{id}}/steps/{{step}}/{{action}}"
parameters = {{ "path.id" = "{run}", "path.step" = "go" }}

[[operations]]
include-path-regex = "^/api/v1/runs/\\{{id\\}}"
parameters = {{ "path.id" = "{run}" }}

# A body can fit the schema and still be refused with 422, because what makes it right is
# data rather than shape: a runbook's YAML must be a valid runbook, parameters must fit the
# runbook's `params`, people must be existing users, roles must be the runbook's, and a gate
# is approved but a manual step completed; the role `trigger` is held alone; a run is taken
# or dismissed only while it is a proposal (the run here is not one: 409); and the hooks take
# only a `trigger` account's token, which this person is not (403).
[[operations]]
include-name = [
  "POST /api/v1/users",
  "PUT /api/v1/users/{{name}}",
  "POST /api/v1/runs/{{id}}/take",
  "POST /api/v1/runs/{{id}}/dismiss",
  "POST /api/v1/hooks/{{source}}",
  "POST /api/v1/runbooks",
  "POST /api/v1/runs",
  "POST /api/v1/runs/{{id}}/assignments",
  "POST /api/v1/runs/{{id}}/commander",
  "POST /api/v1/runs/{{id}}/steps/{{step}}/{{action}}",
]
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "404", "409", "422"]
"#
    )
}
