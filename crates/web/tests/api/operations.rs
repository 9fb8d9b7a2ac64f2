//! The server as operators and admins see it: nodes alive and gone in the API and metrics, a
//! run nobody drives taken over, people who do not exist or were disabled, and publishing a
//! version only when its tests pass.

use reqwest::StatusCode;
use serde_json::json;
use steady_engine::accounts::GlobalRole::{self, Auditor, Responder};

use crate::stories::FAILOVER;
use crate::*;

on_every_backend!(
    a_node_says_it_is_alive_in_the_api_and_metrics,
    a_node_gone_for_a_day_leaves_the_metrics,
    the_server_takes_over_a_run_nobody_drives,
    people_who_do_not_exist_are_refused_and_an_admin_takes_an_orphaned_run,
    a_disabled_users_tokens_stay_revoked_and_an_admin_keeps_their_own_account,
    a_version_is_published_only_when_its_tests_pass,
    a_test_file_holding_a_real_secret_is_refused_without_showing_it,
);

async fn the_server_takes_over_a_run_nobody_drives(backend: Backend) {
    // As after an interrupted `steady run`: a run that is `running` with no lease.
    let server = Server::start("takeover", backend).await;
    publish(&server, "name: tiny\nsteps:\n  - id: nap\n    sleep: 10ms\n").await;
    let carol = server.person("carol", &[Responder]).await;
    let run = server
        .state
        .engine
        .start_run(steady_engine::engine::StartRun {
            origin: steady_engine::run::RunOrigin::Person,
            runbook: "tiny".into(),
            version: None,
            params: vec![],
            mode: steady_engine::run::RunMode::Live,
            actor: steady_engine::run::Actor::local("ops"),
            assignments: vec![],
        })
        .await
        .unwrap();
    server.wait_for(&carol, &run.to_string(), "succeeded").await;
}

async fn a_node_says_it_is_alive_in_the_api_and_metrics(backend: Backend) {
    let server = Server::start("nodes", backend).await;
    let admin = server.person("ada", &[GlobalRole::Admin]).await;
    let this = server.state.engine.config().node.clone();
    let mut nodes = server.get(&admin, "/api/v1/nodes").await;
    for _ in 0..50 {
        if nodes.body.as_array().is_some_and(|list| !list.is_empty()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        nodes = server.get(&admin, "/api/v1/nodes").await;
    }
    assert_eq!(nodes.status, StatusCode::OK);
    let node = &nodes.body[0];
    assert_eq!(
        (node["id"].as_str(), node["up"].as_bool(), node["this"].as_bool()),
        (Some(this.as_str()), Some(true), Some(true))
    );
    assert_eq!(node["address"].as_str(), server.url.strip_prefix("http://"));

    let metrics = server.client.get(format!("{}/metrics", server.url)).send().await.unwrap();
    let text = metrics.text().await.unwrap();
    assert!(text.contains(&format!("steady_node_up{{node=\"{this}\",address=")), "{text}");
    assert!(text.contains("this=\"true\"} 1"), "{text}");
}

async fn people_who_do_not_exist_are_refused_and_an_admin_takes_an_orphaned_run(backend: Backend) {
    let server = Server::start("people", backend).await;
    publish(&server, FAILOVER).await;
    let carol = server.person("carol", &[Responder]).await;
    server.person("alice", &[Responder]).await;
    let admin = server.person("ada", &[GlobalRole::Admin]).await;
    for typed in ["alx", "<script>", "steady"] {
        let start = json!({ "runbook": "failover", "params": { "cluster": "main" },
            "assignments": [{ "role": "approver", "person": typed }] });
        let refused = server.post(&carol, "/api/v1/runs", start).await;
        assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY, "{typed}: {}", refused.body);
        let message = refused.body["error"]["message"].as_str().unwrap();
        assert_eq!(message, format!("`{typed}` is not an existing, enabled user"));
    }
    let start = json!({ "runbook": "failover", "params": { "cluster": "main" },
        "assignments": [{ "role": "approver", "person": "alice" }] });
    let run =
        server.post(&carol, "/api/v1/runs", start).await.body["id"].as_str().unwrap().to_owned();
    server.wait_for(&carol, &run, "waiting").await;
    let assign = server
        .post(
            &carol,
            &format!("/api/v1/runs/{run}/assignments"),
            json!({ "role": "approver", "person": "alx" }),
        )
        .await;
    assert_eq!(assign.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", assign.body);
    let typo = server
        .post(&carol, &format!("/api/v1/runs/{run}/commander"), json!({ "to": "caorl" }))
        .await;
    assert_eq!(typo.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", typo.body);
    assert!(typo.body["error"]["message"].as_str().unwrap().contains("`caorl`"), "{}", typo.body);

    // Carol is unreachable: an admin takes the run, and the audit log says who did.
    let to_someone = server
        .post(&admin, &format!("/api/v1/runs/{run}/commander"), json!({ "to": "alice" }))
        .await;
    assert_eq!(to_someone.status, StatusCode::FORBIDDEN, "an admin takes command, no more");
    let taken =
        server.post(&admin, &format!("/api/v1/runs/{run}/commander"), json!({ "to": "ada" })).await;
    assert_eq!(taken.status, StatusCode::OK, "{}", taken.body);
    let shown = server.get(&carol, &format!("/api/v1/runs/{run}")).await;
    assert_eq!(shown.body["commander"], "user:ada", "{}", shown.body);
    let audit = server
        .get(&admin, &format!("/api/v1/audit?run={run}&action=run.commander_transferred"))
        .await;
    assert!(audit.body.to_string().contains("taken_by_admin"), "{}", audit.body);
    // The admin, no responder, hands the run to someone who can steer it.
    let handed = server
        .post(&admin, &format!("/api/v1/runs/{run}/commander"), json!({ "to": "alice" }))
        .await;
    assert_eq!(handed.status, StatusCode::OK, "{}", handed.body);
    let shown = server.get(&carol, &format!("/api/v1/runs/{run}")).await;
    assert_eq!(shown.body["commander"], "user:alice", "{}", shown.body);
}

async fn a_disabled_users_tokens_stay_revoked_and_an_admin_keeps_their_own_account(
    backend: Backend,
) {
    use reqwest::Method;
    let server = Server::start("disable-for-good", backend).await;
    let admin = server.person("ada", &[GlobalRole::Admin]).await;
    let rita = server.person("rita", &[Responder]).await;
    assert_eq!(server.get(&rita, "/api/v1/runs").await.status, StatusCode::OK);
    for disabled in [true, false] {
        let changed = server
            .call(
                Some(&admin),
                Method::PUT,
                "/api/v1/users/rita",
                Some(json!({ "disabled": disabled })),
            )
            .await;
        assert_eq!(changed.status, StatusCode::OK, "{}", changed.body);
    }
    assert_eq!(
        server.get(&rita, "/api/v1/runs").await.status,
        StatusCode::UNAUTHORIZED,
        "re-enabling rita revives none of her old tokens"
    );
    let tokens = server.get(&admin, "/api/v1/tokens").await;
    assert!(
        tokens
            .body
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["user"] == "rita")
            .all(|t| !t["revoked_at"].is_null()),
        "{}",
        tokens.body
    );

    let own = server
        .call(Some(&admin), Method::PUT, "/api/v1/users/ada", Some(json!({ "disabled": true })))
        .await;
    assert_eq!(own.status, StatusCode::CONFLICT, "{}", own.body);
    assert!(
        own.body["error"]["message"].as_str().unwrap().contains("your own account"),
        "{}",
        own.body
    );
    assert_eq!(server.get(&admin, "/api/v1/users").await.status, StatusCode::OK, "ada still works");
}

/// A node that stopped an hour ago shows as down; one retired yesterday is no longer a series.
async fn a_node_gone_for_a_day_leaves_the_metrics(backend: Backend) {
    let server = Server::start("old-nodes", backend).await;
    let node = |id: &str, silent: chrono::Duration| steady_engine::store::NodeRecord {
        id: id.to_owned(),
        address: "10.0.0.9:8080".to_owned(),
        started_at: now() - chrono::Duration::days(30),
        last_seen: now() - silent,
    };
    let store = &server.state.store;
    store.heartbeat(&node("serve:stopped", chrono::Duration::hours(1))).await.unwrap();
    store.heartbeat(&node("serve:retired", chrono::Duration::hours(25))).await.unwrap();
    let metrics = server.client.get(format!("{}/metrics", server.url)).send().await.unwrap();
    let text = metrics.text().await.unwrap();
    assert!(text.contains("steady_node_up{node=\"serve:stopped\""), "{text}");
    assert!(!text.contains("serve:retired"), "{text}");
}

const PROBED: &str = r#"
name: probed
steps:
  - id: standby
    run: ["pg_isready", "-h", "db2"]
    read_only: true
    timeout: 5s
    expect: { stdout: "accepting" }
"#;

const PROBED_TESTS: &str = r#"
runbook: probed
cases:
  - name: a standby that accepts connections passes
    given: { standby: { stdout: "db2:5432 - accepting connections" } }
    expect: { status: succeeded, rendered: { standby: "^pg_isready -h db2$" } }
"#;

async fn a_version_is_published_only_when_its_tests_pass(backend: Backend) {
    let server = Server::start("tested", backend).await;
    let author = server.person("tess", &[GlobalRole::Author]).await;
    let published = server
        .post(&author, "/api/v1/runbooks", json!({ "source": PROBED, "tests": PROBED_TESTS }))
        .await;
    assert_eq!(published.status, StatusCode::CREATED, "{}", published.body);
    assert_eq!(published.body["tests"], 1, "{}", published.body);
    let source = server.get(&author, "/api/v1/runbooks/probed/source").await;
    assert_eq!(source.body["tests_source"], PROBED_TESTS, "the tests are kept with the version");

    // The author points the probe at the wrong host: the test that pins the command fails,
    // and the version is refused with the case and its difference.
    let broken = PROBED.replace("db2", "db3");
    let refused = server
        .post(&author, "/api/v1/runbooks", json!({ "source": broken, "tests": PROBED_TESTS }))
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", refused.body);
    let details = &refused.body["error"]["details"][0];
    assert_eq!(details["case"], "a standby that accepts connections passes");
    let difference = details["difference"].as_str().unwrap();
    assert!(difference.contains("pg_isready -h db3"), "{difference}");
    let latest = server.get(&author, "/api/v1/runbooks/probed/source").await;
    assert_eq!(latest.body["version"], 1, "nothing was stored");

    // A broken test file is refused with where it is broken.
    let typo = PROBED_TESTS.replace("given:", "givne:");
    let invalid =
        server.post(&author, "/api/v1/runbooks", json!({ "source": PROBED, "tests": typo })).await;
    assert_eq!(invalid.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", invalid.body);
    let problem = &invalid.body["error"]["details"][0];
    assert_eq!((problem["line"].as_u64(), problem["column"].as_u64()), (Some(5), Some(5)));
    assert!(problem["message"].as_str().unwrap().contains("did you mean `given`"));

    // New tests for the same source are a new version: the tests travel with it.
    let more = format!(
        "{PROBED_TESTS}  - name: a standby that refuses connections needs a decision\n    given: {{ standby: {{ stdout: \"no response\" }} }}\n    expect: {{ status: needs_attention }}\n"
    );
    let second =
        server.post(&author, "/api/v1/runbooks", json!({ "source": PROBED, "tests": more })).await;
    assert_eq!(second.status, StatusCode::CREATED, "{}", second.body);
    assert_eq!(
        (second.body["version"].as_u64(), second.body["tests"].as_u64()),
        (Some(2), Some(2))
    );
    // In the browser: the runbook page says how many tests passed, and the new version page
    // carries the tests, runs them, and refuses a version that breaks one.
    let browser = crate::pages::Browser::sign_in(&server, "tess").await;
    let (status, page) = browser.get("/runbooks/probed").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("✓ 2 tests passing") && page.contains("Tests of v2"), "{page}");
    let (_, form) = browser.get("/runbooks/probed/new-version").await;
    assert!(form.contains("a standby that refuses connections needs a decision"), "{form}");
    let csrf = crate::pages::csrf(&form);
    let broken = PROBED.replace("db2", "db3");
    let form = [
        ("csrf", csrf.as_str()),
        ("source", broken.as_str()),
        ("tests", more.as_str()),
        ("message", "probe the other host"),
        ("action", "publish"),
    ];
    let (status, page, _) = browser.post("/runbooks/probed/new-version", &form).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.contains("the tests do not pass") && page.contains("pg_isready -h db3"), "{page}");

    let auditor = server.person("audrey", &[Auditor]).await;
    let audit = server.get(&auditor, "/api/v1/audit?action=runbook.published").await;
    assert!(audit.body.to_string().contains("tests_sha256"), "{}", audit.body);

    // Leaving the tests out keeps them: they run against the new source, which they refuse.
    let kept = server.post(&author, "/api/v1/runbooks", json!({ "source": broken })).await;
    assert_eq!(kept.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", kept.body);
    // Dropping them is said on purpose, with `null`.
    let dropped =
        server.post(&author, "/api/v1/runbooks", json!({ "source": broken, "tests": null })).await;
    assert_eq!(dropped.status, StatusCode::CREATED, "{}", dropped.body);
    assert_eq!(dropped.body["tests"], 0);
}

async fn a_test_file_holding_a_real_secret_is_refused_without_showing_it(backend: Backend) {
    let secrets =
        std::collections::BTreeMap::from([("HOOK".to_owned(), "hook-real-9f3a1c".to_owned())]);
    let server = Server::start_with_secrets(
        "secret-tests",
        backend,
        steady_web::ServerConfig::default(),
        secrets,
    )
    .await;
    let author = server.person("tess", &[GlobalRole::Author]).await;
    let source = "name: hooked\nsecrets: [HOOK]\nsteps:\n  - id: wait\n    sleep: 1s\n";
    let tests = "runbook: hooked\ncases:\n  - name: waits\n    secrets: { HOOK: hook-real-9f3a1c }\n    expect: { status: succeeded }\n";
    let refused =
        server.post(&author, "/api/v1/runbooks", json!({ "source": source, "tests": tests })).await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", refused.body);
    let problem = &refused.body["error"]["details"][0];
    assert_eq!((problem["line"].as_u64(), problem["column"].as_u64()), (Some(4), Some(22)));
    assert!(!refused.body.to_string().contains("hook-real-9f3a1c"), "{}", refused.body);
    let stand_in = tests.replace("hook-real-9f3a1c", "stand-in");
    let published = server
        .post(&author, "/api/v1/runbooks", json!({ "source": source, "tests": stand_in }))
        .await;
    assert_eq!(published.status, StatusCode::CREATED, "{}", published.body);
}
