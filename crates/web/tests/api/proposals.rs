//! Alerts proposing runbooks, told as the on-call engineer lives them: Alertmanager and Grafana
//! deliver their own payloads, the failover runbook is proposed once with its read-only facts
//! gathered, repeats and resolutions are noted on it, nothing runs until a responder takes
//! command, and proposals nobody wants are dismissed or expire.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use steady_engine::accounts::GlobalRole::{Responder, Trigger};
use steady_web::ServerConfig;

use crate::*;

on_every_backend!(
    an_alert_proposes_the_failover_and_a_responder_takes_it_to_the_end,
    twenty_deliveries_of_the_same_alert_make_exactly_one_proposal,
    one_proposal_whichever_node_receives_the_alerts,
    the_lock_is_taken_when_someone_takes_command_not_before,
    proposals_nobody_wants_are_dismissed_or_expire,
    bad_payloads_are_refused_and_nothing_is_stored,
    hostile_alerts_are_contained,
    facts_that_cannot_be_gathered_leave_the_proposal_standing,
);

/// The failover as the shipped runbook shapes it, with commands that run here: a read-only
/// measurement the dry run performs, a gate, and the promotion.
const FAILOVER: &str = r#"name: pg-failover
lock: "pg/{{ params.cluster }}"
roles:
  approver: {}
params:
  cluster: { type: string, required: true, pattern: "^[a-z0-9-]+$" }
  standby_host: { type: string, required: true, pattern: "^[A-Za-z0-9][A-Za-z0-9.-]*$" }
triggers:
  - source: alertmanager
    when: "alert.labels.alertname == 'PostgresPrimaryDown'"
    params: { cluster: "{{ alert.labels.cluster }}", standby_host: "{{ alert.labels.standby }}" }
    then: dry-run
  - source: grafana
    when: "alert.labels.alertname == 'PostgresPrimaryDown'"
    params: { cluster: "{{ alert.labels.cluster }}", standby_host: "{{ alert.labels.standby }}" }
steps:
  - id: lag
    run: ["echo", "0"]
    read_only: true
    timeout: 5s
  - id: go
    approval: { role: approver, prompt: "Promote {{ params.standby_host }}?" }
  - id: promote
    run: ["echo", "promoted {{ params.standby_host }}"]
    timeout: 5s
"#;

fn fixture(name: &str) -> Value {
    let path =
        format!("{}/../engine/tests/fixtures/alerts/{name}.json", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The one outcome a delivery had for `pg-failover`.
fn outcome(delivery: &Response) -> &Value {
    assert_eq!(delivery.status, StatusCode::OK, "{}", delivery.body);
    let outcomes = delivery.body["outcomes"].as_array().unwrap();
    assert_eq!(outcomes.len(), 1, "{}", delivery.body);
    &outcomes[0]
}

/// The actions of a run's audit events, in order.
async fn actions(server: &Server, run: &str) -> Vec<String> {
    let auditor = server.person(&format!("auditor{}", rand_suffix()), &[GlobalRole::Auditor]).await;
    let events = server.get(&auditor, &format!("/api/v1/audit?run={run}&limit=100")).await;
    events
        .body
        .as_array()
        .unwrap_or_else(|| panic!("{}", events.body))
        .iter()
        .map(|event| event["action"].as_str().unwrap().to_owned())
        .collect()
}

async fn an_alert_proposes_the_failover_and_a_responder_takes_it_to_the_end(backend: Backend) {
    let server = Server::start("proposal-taken", backend).await;
    assert_eq!(publish(&server, FAILOVER).await.status, StatusCode::CREATED);
    let alertmanager = server.person("alertmanager", &[Trigger]).await;
    let rita = server.person("rita", &[Responder]).await;
    let vic = server.person("vic", &[Responder]).await;

    // PostgresPrimaryDown fires for cluster main: the failover is proposed, its facts gathered.
    let fired = server
        .post(&alertmanager, "/api/v1/hooks/alertmanager", fixture("alertmanager-firing"))
        .await;
    let proposed = outcome(&fired);
    assert_eq!(proposed["outcome"], "proposed", "{}", fired.body);
    assert_eq!(proposed["runbook"], "pg-failover");
    assert_eq!(proposed["alert"], "8f3c2a1b9d0e4f56", "Alertmanager's fingerprint tells the alert");
    let id = proposed["run_id"].as_str().unwrap().to_owned();
    let dry_run = proposed["dry_run_id"].as_str().expect("then: dry-run gathers facts").to_owned();

    let facts = server.wait_for(&rita, &dry_run, "succeeded").await;
    assert_eq!(facts["mode"], "dry-run");
    let lag = facts["steps"].as_array().unwrap().iter().find(|s| s["id"] == "lag").unwrap();
    assert_eq!(lag["status"], "succeeded", "the read-only measurement ran: {lag}");

    let proposal = server.get(&rita, &format!("/api/v1/runs/{id}")).await.body;
    assert_eq!(proposal["status"], "proposed");
    assert_eq!(proposal["params"]["cluster"], "main");
    assert_eq!(proposal["params"]["standby_host"], "db2.example.com");
    for step in proposal["steps"].as_array().unwrap() {
        assert_eq!(step["status"], "pending", "nothing runs before someone takes command: {step}");
    }

    // The same alert again, then Grafana's view of it, then a grouped notification in which
    // main resolved and billing fires: main's are noted on the proposal, billing proposes.
    let again = server
        .post(&alertmanager, "/api/v1/hooks/alertmanager", fixture("alertmanager-firing"))
        .await;
    assert_eq!(outcome(&again)["outcome"], "added");
    assert_eq!(outcome(&again)["run_id"], id.as_str());
    let grafana =
        server.post(&alertmanager, "/api/v1/hooks/grafana", fixture("grafana-firing")).await;
    assert_eq!(outcome(&grafana)["outcome"], "added", "a related alert for the same lock key");
    assert_eq!(outcome(&grafana)["run_id"], id.as_str());
    let grouped = server
        .post(&alertmanager, "/api/v1/hooks/alertmanager", fixture("alertmanager-grouped"))
        .await;
    let outcomes = grouped.body["outcomes"].as_array().unwrap();
    assert_eq!(outcomes.len(), 2, "{}", grouped.body);
    assert_eq!(outcomes[0]["outcome"], "proposed", "billing is another cluster");
    assert_ne!(outcomes[0]["run_id"], id.as_str());
    assert_eq!(outcomes[1]["status"], "resolved");
    assert_eq!(outcomes[1]["outcome"], "added", "main's resolution is noted on its proposal");
    assert_eq!(outcomes[1]["run_id"], id.as_str());

    // Rita takes command; vic approves; the failover runs to the end.
    let taken = server
        .post(
            &rita,
            &format!("/api/v1/runs/{id}/take"),
            json!({ "assignments": [{ "role": "approver", "person": "vic" }] }),
        )
        .await;
    assert_eq!(taken.status, StatusCode::OK, "{}", taken.body);
    let waiting = server.wait_for(&rita, &id, "waiting").await;
    assert_eq!(waiting["commander"], "user:rita");
    assert_eq!(waiting["mode"], "live");
    let twice = server.post(&vic, &format!("/api/v1/runs/{id}/take"), json!({})).await;
    assert_eq!(twice.status, StatusCode::CONFLICT, "a taken proposal is a run: {}", twice.body);
    let self_approval =
        server.post(&rita, &format!("/api/v1/runs/{id}/steps/go/approve"), json!({})).await;
    assert_eq!(self_approval.status, StatusCode::FORBIDDEN, "the taker started the run");
    let approved =
        server.post(&vic, &format!("/api/v1/runs/{id}/steps/go/approve"), json!({})).await;
    assert_eq!(approved.status, StatusCode::OK, "{}", approved.body);
    server.wait_for(&rita, &id, "succeeded").await;

    let actions = actions(&server, &id).await;
    let count = |action: &str| actions.iter().filter(|a| *a == action).count();
    assert_eq!(actions[0], "run.proposed", "{actions:?}");
    assert_eq!(count("run.alert_added"), 3, "{actions:?}");
    assert_eq!(count("run.taken"), 1, "{actions:?}");
    assert_eq!(actions.last().unwrap(), "run.finished", "{actions:?}");
}

async fn twenty_deliveries_of_the_same_alert_make_exactly_one_proposal(backend: Backend) {
    let server = Server::start("proposal-twenty", backend).await;
    assert_eq!(publish(&server, FAILOVER).await.status, StatusCode::CREATED);
    let grafana = server.person("grafana", &[Trigger]).await;
    let payload = fixture("grafana-firing");
    let deliveries =
        (0..20).map(|_| server.post(&grafana, "/api/v1/hooks/grafana", payload.clone()));
    let delivered = futures_util::future::join_all(deliveries).await;
    let outcomes: Vec<&Value> = delivered.iter().map(outcome).collect();
    let proposed: Vec<_> = outcomes.iter().filter(|o| o["outcome"] == "proposed").collect();
    assert_eq!(proposed.len(), 1, "{outcomes:?}");
    let id = proposed[0]["run_id"].as_str().unwrap();
    assert!(outcomes.iter().all(|o| o["run_id"] == id), "every delivery went to it: {outcomes:?}");
    let rita = server.person("rita", &[Responder]).await;
    let listed = server.get(&rita, "/api/v1/runs?status=proposed").await;
    assert_eq!(listed.body.as_array().unwrap().len(), 1, "{}", listed.body);
    let actions = actions(&server, id).await;
    assert_eq!(actions.iter().filter(|a| *a == "run.alert_added").count(), 19, "{actions:?}");
}

async fn one_proposal_whichever_node_receives_the_alerts(backend: Backend) {
    let url = database_url("proposal-nodes", backend);
    let first =
        Server::start_on(&url, "proposal-node-a", ServerConfig::default(), BTreeMap::new()).await;
    let second =
        Server::start_on(&url, "proposal-node-b", ServerConfig::default(), BTreeMap::new()).await;
    assert_eq!(publish(&first, FAILOVER).await.status, StatusCode::CREATED);
    let grafana = first.person("grafana", &[Trigger]).await;
    let payload = fixture("grafana-firing");
    let deliveries = (0..20).map(|n| {
        let node = if n % 2 == 0 { &first } else { &second };
        node.post(&grafana, "/api/v1/hooks/grafana", payload.clone())
    });
    let delivered = futures_util::future::join_all(deliveries).await;
    let outcomes: Vec<&Value> = delivered.iter().map(outcome).collect();
    assert_eq!(outcomes.iter().filter(|o| o["outcome"] == "proposed").count(), 1, "{outcomes:?}");
    let rita = second.person("rita", &[Responder]).await;
    let listed = first.get(&rita, "/api/v1/runs?status=proposed").await;
    assert_eq!(listed.body.as_array().unwrap().len(), 1, "{}", listed.body);
}

async fn the_lock_is_taken_when_someone_takes_command_not_before(backend: Backend) {
    let server = Server::start("proposal-lock", backend).await;
    assert_eq!(publish(&server, FAILOVER).await.status, StatusCode::CREATED);
    let grafana = server.person("grafana", &[Trigger]).await;
    let rita = server.person("rita", &[Responder]).await;
    let fired = server.post(&grafana, "/api/v1/hooks/grafana", fixture("grafana-firing")).await;
    let proposal = outcome(&fired)["run_id"].as_str().unwrap().to_owned();

    // A proposal holds no lock: Rita starts the failover of main by hand meanwhile.
    let params = json!({ "cluster": "main", "standby_host": "db2.example.com" });
    let started = server
        .post(&rita, "/api/v1/runs", json!({ "runbook": "pg-failover", "params": params }))
        .await;
    assert_eq!(started.status, StatusCode::CREATED, "{}", started.body);
    let live = started.body["id"].as_str().unwrap().to_owned();

    // The alert again goes to the live run that acts on main, and the proposal cannot start
    // while that run holds the lock.
    let again = server.post(&grafana, "/api/v1/hooks/grafana", fixture("grafana-firing")).await;
    assert_eq!(outcome(&again)["run_id"], live.as_str(), "{}", again.body);
    let taken = server.post(&rita, &format!("/api/v1/runs/{proposal}/take"), json!({})).await;
    assert_eq!(taken.status, StatusCode::CONFLICT, "{}", taken.body);
    assert!(taken.body["error"]["message"].as_str().unwrap().contains(&live), "{}", taken.body);
    let still = server.get(&rita, &format!("/api/v1/runs/{proposal}")).await;
    assert_eq!(still.body["status"], "proposed");

    // Once the live run is over, taking the proposal takes the lock.
    let cancelled = server.post(&rita, &format!("/api/v1/runs/{live}/cancel"), json!({})).await;
    assert_eq!(cancelled.status, StatusCode::OK, "{}", cancelled.body);
    let taken = server.post(&rita, &format!("/api/v1/runs/{proposal}/take"), json!({})).await;
    assert_eq!(taken.status, StatusCode::OK, "{}", taken.body);
    let blocked = server
        .post(&rita, "/api/v1/runs", json!({ "runbook": "pg-failover", "params": params }))
        .await;
    assert_eq!(blocked.status, StatusCode::CONFLICT, "the taken proposal holds the lock now");
}

async fn proposals_nobody_wants_are_dismissed_or_expire(backend: Backend) {
    let config =
        ServerConfig { proposal_expiry: Duration::from_secs(600), ..ServerConfig::default() };
    let server = Server::start_with("proposal-ends", backend, config).await;
    assert_eq!(publish(&server, FAILOVER).await.status, StatusCode::CREATED);
    let grafana = server.person("grafana", &[Trigger]).await;
    let rita = server.person("rita", &[Responder]).await;
    let alert = |cluster: &str| {
        let mut payload = fixture("grafana-firing");
        payload["alerts"][0]["labels"]["cluster"] = json!(cluster);
        payload["alerts"][0]["fingerprint"] = json!(format!("fp-{cluster}"));
        payload
    };

    // A flapping alert for a test cluster: Rita dismisses it, saying why.
    let fired = server.post(&grafana, "/api/v1/hooks/grafana", alert("staging")).await;
    let dismissed = outcome(&fired)["run_id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/runs/{dismissed}/dismiss");
    let unexplained = server.post(&rita, &path, json!({ "reason": "  " })).await;
    assert_eq!(unexplained.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", unexplained.body);
    let ok =
        server.post(&rita, &path, json!({ "reason": "staging flaps during the load test" })).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    let run = server.get(&rita, &format!("/api/v1/runs/{dismissed}")).await.body;
    assert_eq!(run["status"], "dismissed");
    let late = server.post(&rita, &format!("/api/v1/runs/{dismissed}/take"), json!({})).await;
    assert_eq!(late.status, StatusCode::CONFLICT, "{}", late.body);

    // Another proposal nobody takes: an alert keeps it alive, then ten quiet minutes end it.
    let fired = server.post(&grafana, "/api/v1/hooks/grafana", alert("edge")).await;
    let idle = outcome(&fired)["run_id"].as_str().unwrap().to_owned();
    server.clock.advance(Duration::from_secs(500));
    let again = server.post(&grafana, "/api/v1/hooks/grafana", alert("edge")).await;
    assert_eq!(outcome(&again)["run_id"], idle.as_str());
    server.clock.advance(Duration::from_secs(500));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let alive = server.get(&rita, &format!("/api/v1/runs/{idle}")).await.body;
    assert_eq!(alive["status"], "proposed", "the alert 500 s ago kept it alive");
    server.clock.advance(Duration::from_secs(200));
    server.wait_for(&rita, &idle, "dismissed").await;
    let actions = actions(&server, &idle).await;
    assert_eq!(actions.last().unwrap(), "run.expired", "{actions:?}");

    // A new alert for the expired subject proposes again.
    let anew = server.post(&grafana, "/api/v1/hooks/grafana", alert("edge")).await;
    assert_eq!(outcome(&anew)["outcome"], "proposed");
    assert_ne!(outcome(&anew)["run_id"], idle.as_str());
}

/// A delivery that must be refused: what it is, the token, the path, the body, the status.
type BadDelivery<'a> = (&'a str, Option<String>, &'a str, Vec<u8>, StatusCode);

async fn bad_payloads_are_refused_and_nothing_is_stored(backend: Backend) {
    let server = Server::start("proposal-bad", backend).await;
    assert_eq!(publish(&server, FAILOVER).await.status, StatusCode::CREATED);
    let trigger = server.person("alertmanager", &[Trigger]).await;
    let rita = server.person("rita", &[Responder]).await;
    let raw = |token: Option<String>, path: &str, body: Vec<u8>| {
        let mut request = server.client.post(format!("{}{path}", server.url)).body(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        async move { request.send().await.unwrap() }
    };
    let hook = "/api/v1/hooks/alertmanager";
    let cases: Vec<BadDelivery> = vec![
        (
            "not JSON",
            Some(trigger.clone()),
            hook,
            b"{\"alerts\": [".to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "version 3",
            Some(trigger.clone()),
            hook,
            br#"{"version":"3","alerts":[]}"#.to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "an array for json",
            Some(trigger.clone()),
            "/api/v1/hooks/json",
            b"[1]".to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "over 1 MiB",
            Some(trigger.clone()),
            hook,
            vec![b' '; 1024 * 1024 + 1],
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        (
            "an unknown source",
            Some(trigger.clone()),
            "/api/v1/hooks/nagios",
            b"{}".to_vec(),
            StatusCode::NOT_FOUND,
        ),
        (
            "no token",
            None,
            hook,
            serde_json::to_vec(&fixture("alertmanager-firing")).unwrap(),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "a responder's token",
            Some(rita.clone()),
            hook,
            serde_json::to_vec(&fixture("alertmanager-firing")).unwrap(),
            StatusCode::FORBIDDEN,
        ),
    ];
    for (case, token, path, body, expected) in cases {
        let response = raw(token, path, body).await;
        assert_eq!(response.status(), expected, "{case}: {}", response.text().await.unwrap());
    }
    let runs = server.call(Some(&rita), Method::GET, "/api/v1/runs", None).await;
    assert_eq!(runs.body.as_array().unwrap().len(), 0, "{}", runs.body);

    // A trigger account is held alone and does nothing else.
    let admin = server.person("ada", &[GlobalRole::Admin]).await;
    let both = server
        .post(&admin, "/api/v1/users", json!({ "name": "both", "roles": ["trigger", "responder"], "password": "a-long-enough-password" }))
        .await;
    assert_eq!(both.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", both.body);
    assert_eq!(server.get(&trigger, "/api/v1/runs").await.status, StatusCode::FORBIDDEN);
}

/// What an alerting system could be made to send by whoever controls a label: none of it is a
/// 5xx, a half-stored delivery, a flood of proposals, or a trigger account in a run.
async fn hostile_alerts_are_contained(backend: Backend) {
    let server = Server::start("proposal-hostile", backend).await;
    const LOOSE: &str = "name: loose\nlock: \"site/{{ params.site }}\"\nroles:\n  approver: {}\nparams:\n  site: { type: string, required: true }\ntriggers:\n  - source: json\n    when: \"alert.kind == 'down'\"\n    params: { site: \"{{ alert.site }}\" }\nsteps:\n  - id: go\n    approval: { role: approver }\n";
    assert_eq!(publish(&server, LOOSE).await.status, StatusCode::CREATED);
    let trigger = server.person("alerts", &[Trigger]).await;
    let rita = server.person("rita", &[Responder]).await;
    let deliver = |body: Value| server.post(&trigger, "/api/v1/hooks/json", body);

    // A label too long for a lock key is that alert's failure, not the server's.
    let long = deliver(json!({ "kind": "down", "site": "x".repeat(3000) })).await;
    let failed = outcome(&long);
    assert_eq!(failed["outcome"], "failed", "{}", long.body);
    let error = failed["error"].as_str().unwrap();
    assert!(error.contains("at most 512"), "{error}");
    assert!(error.starts_with("runbook `loose`, trigger on line 8: "), "said where: {error}");
    assert!(error.chars().count() <= 301, "the answer does not repeat the whole value: {error}");

    // NUL in labels and values is stored as U+2400, like everything else from outside.
    let nul = deliver(json!({ "kind": "down", "site": "a\0b", "labels": { "x\0": "y\0" } })).await;
    assert_eq!(outcome(&nul)["outcome"], "proposed", "{}", nul.body);
    let id = outcome(&nul)["run_id"].as_str().unwrap().to_owned();

    // The trigger account is no person: it holds no role and commands nothing.
    let taken = server
        .post(
            &rita,
            &format!("/api/v1/runs/{id}/take"),
            json!({ "assignments": [{ "role": "approver", "person": "alerts" }] }),
        )
        .await;
    assert_eq!(taken.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", taken.body);
    let login = server
        .call(
            None,
            Method::POST,
            "/api/v1/session",
            Some(json!({ "name": "alerts", "password": "alerts-password-long" })),
        )
        .await;
    assert_eq!(login.status, StatusCode::FORBIDDEN, "{}", login.body);

    // One delivery of 120 distinct alerts proposes at most 100 runs.
    let (mut proposed, mut refused) = (0, 0);
    let grouped = json!({
        "version": "4", "status": "firing", "receiver": "steady", "groupLabels": {}, "commonLabels": {},
        "commonAnnotations": {}, "externalURL": "http://am", "groupKey": "{}", "truncatedAlerts": 0,
        "alerts": (0..120).map(|n| json!({
            "status": "firing", "labels": { "alertname": "SiteDown", "site": format!("s{n}") },
            "annotations": {}, "startsAt": "2026-11-30T03:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prom", "fingerprint": format!("f{n}")
        })).collect::<Vec<_>>()
    });
    const SITES: &str = "name: sites\nparams:\n  site: { type: string, required: true, pattern: '^s[0-9]+$' }\ntriggers:\n  - source: alertmanager\n    when: \"alert.labels.alertname == 'SiteDown'\"\n    params: { site: \"{{ alert.labels.site }}\" }\nsteps:\n  - id: nap\n    sleep: 1ms\n";
    assert_eq!(publish(&server, SITES).await.status, StatusCode::CREATED);
    let delivered = server.post(&trigger, "/api/v1/hooks/alertmanager", grouped).await;
    assert_eq!(delivered.status, StatusCode::OK, "{}", delivered.body);
    for outcome in delivered.body["outcomes"].as_array().unwrap() {
        match outcome["outcome"].as_str().unwrap() {
            "proposed" => proposed += 1,
            "failed" => {
                assert!(
                    outcome["error"].as_str().unwrap().contains("already proposed 100"),
                    "{outcome}"
                );
                refused += 1;
            }
            other => panic!("{other}: {outcome}"),
        }
    }
    assert_eq!((proposed, refused), (100, 20));
}

/// The standby cannot be reached: the dry run that gathers the facts fails at its read-only
/// measurement and ends `failed` (nobody commands it to decide anything), while the proposal
/// stays, for a person to judge.
async fn facts_that_cannot_be_gathered_leave_the_proposal_standing(backend: Backend) {
    let server = Server::start("proposal-no-facts", backend).await;
    let unreachable = FAILOVER.replace(r#"run: ["echo", "0"]"#, r#"run: ["false"]"#);
    assert_eq!(publish(&server, &unreachable).await.status, StatusCode::CREATED);
    let alertmanager = server.person("alertmanager", &[Trigger]).await;
    let rita = server.person("rita", &[Responder]).await;
    let fired = server
        .post(&alertmanager, "/api/v1/hooks/alertmanager", fixture("alertmanager-firing"))
        .await;
    let proposed = outcome(&fired);
    let dry_run = proposed["dry_run_id"].as_str().unwrap();
    server.wait_for(&rita, dry_run, "failed").await;
    let id = proposed["run_id"].as_str().unwrap();
    assert_eq!(server.get(&rita, &format!("/api/v1/runs/{id}")).await.body["status"], "proposed");
}
