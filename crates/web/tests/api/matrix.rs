//! The authorization matrix: every route, tried by everyone — nobody signed in, an admin, an
//! author, a responder who holds the run's roles (or commands it), a responder who does not,
//! an auditor, and an alerting system's `trigger` account — against the status each must get.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use steady_engine::accounts::GlobalRole::{Admin, Auditor, Author, Responder, Trigger};

use crate::*;

on_every_backend!(every_route_refuses_whoever_may_not_use_it,);

const GATED: &str = "name: gated\nroles:\n  approver: {}\n  operator: {}\nsteps:\n  - id: go\n    approval: { role: approver }\n  - id: act\n    run: [\"true\"]\n    timeout: 5s\n";
const MANUAL: &str = "name: manual\nroles:\n  operator: {}\nsteps:\n  - id: watch\n    manual: { role: operator, instructions: Watch. }\n";
const PROPOSED: &str = "name: proposed\nparams:\n  n: { type: string, pattern: '^[0-9]+$' }\ntriggers:\n  - source: json\n    when: \"alert.labels.alertname == 'Matrix'\"\n    params: { n: \"{{ alert.labels.n }}\" }\nsteps:\n  - id: nap\n    sleep: 1ms\n";
const FAILING: &str = "name: failing\nsteps:\n  - id: broken\n    run: [\"false\"]\n    read_only: true\n    timeout: 5s\n";

/// Who tries: the seven columns of the matrix.
const PEOPLE: [&str; 7] =
    ["anonymous", "admin", "author", "assigned", "unassigned", "auditor", "trigger"];

struct Fixture {
    server: Server,
    tokens: Vec<Option<String>>,
    /// A responder who starts runs for the others to act on.
    commander: String,
}

impl Fixture {
    async fn new(backend: Backend) -> Fixture {
        let server = Server::start("matrix", backend).await;
        for source in [GATED, MANUAL, FAILING, PROPOSED] {
            assert_eq!(publish(&server, source).await.status, StatusCode::CREATED);
        }
        let tokens = vec![
            None,
            Some(server.person("ada", &[Admin]).await),
            Some(server.person("arthur", &[Author]).await),
            Some(server.person("rita", &[Responder]).await),
            Some(server.person("ned", &[Responder]).await),
            Some(server.person("audrey", &[Auditor]).await),
            Some(server.person("alerts", &[Trigger]).await),
        ];
        let commander = server.person("carl", &[Responder]).await;
        Fixture { server, tokens, commander }
    }

    /// A run of `runbook` started by `starter`, with every role given to rita, once it settled
    /// into `status`.
    async fn run(&self, starter: &str, runbook: &str, status: &str) -> String {
        let assignments = match runbook {
            "gated" => {
                json!([{ "role": "approver", "person": "rita" }, { "role": "operator", "person": "rita" }])
            }
            "manual" => json!([{ "role": "operator", "person": "rita" }]),
            _ => json!([]),
        };
        let started = self
            .server
            .post(
                starter,
                "/api/v1/runs",
                json!({ "runbook": runbook, "assignments": assignments }),
            )
            .await;
        assert_eq!(started.status, StatusCode::CREATED, "{}", started.body);
        let id = started.body["id"].as_str().unwrap().to_owned();
        self.server.wait_for(starter, &id, status).await;
        id
    }

    /// A proposal of `proposed`, made by an alert delivered with the trigger account's token.
    async fn proposal(&self, n: usize) -> String {
        let trigger = self.tokens[6].as_deref().unwrap();
        let delivered = self.server.post(trigger, "/api/v1/hooks/json", alert(n)).await;
        assert_eq!(delivered.status, StatusCode::OK, "{}", delivered.body);
        let outcome = &delivered.body["outcomes"][0];
        assert_eq!(outcome["outcome"], "proposed", "{}", delivered.body);
        outcome["run_id"].as_str().unwrap().to_owned()
    }

    fn rita(&self) -> &str {
        self.tokens[3].as_deref().unwrap()
    }
}

/// A `json` alert that proposes `proposed` with `n`: a new proposal for each `n`.
fn alert(n: usize) -> Value {
    json!({ "labels": { "alertname": "Matrix", "n": n.to_string() } })
}

/// What a case sets up for one person before they try: `(method, path, body)`.
type Request = (Method, String, Option<Value>);

async fn every_route_refuses_whoever_may_not_use_it(backend: Backend) {
    let f = Fixture::new(backend).await;
    use StatusCode as S;
    let (ok, created, gone, no, who) =
        (S::OK, S::CREATED, S::NO_CONTENT, S::FORBIDDEN, S::UNAUTHORIZED);
    let readers = [who, ok, ok, ok, ok, ok, no];
    let actors_only = [who, no, no, ok, no, no, no];
    let mut failures = Vec::new();
    let mut counter = 0;

    let cases: Vec<(&str, [StatusCode; 7])> = vec![
        ("GET runbooks", readers),
        ("GET runbook versions", readers),
        ("GET runbook source", readers),
        ("GET runbook figures", readers),
        ("POST runbooks", [who, no, created, no, no, no, no]),
        ("GET runs", readers),
        ("GET run", readers),
        ("GET run events", readers),
        ("GET all events", readers),
        ("POST runs", [who, no, no, created, created, no, no]),
        ("POST approve", actors_only),
        ("POST reject", actors_only),
        ("POST complete", actors_only),
        ("POST fail", actors_only),
        ("POST notes", [who, no, no, created, no, no, no]),
        ("POST cancel", actors_only),
        ("POST assignments", actors_only),
        ("POST commander", actors_only),
        ("POST decisions", actors_only),
        ("GET audit", [who, ok, no, no, no, ok, no]),
        ("GET audit verify", [who, ok, no, no, no, ok, no]),
        ("GET audit export", [who, ok, no, no, no, ok, no]),
        ("GET nodes", [who, ok, no, no, no, ok, no]),
        ("GET users", [who, ok, no, no, no, no, no]),
        ("POST users", [who, created, no, no, no, no, no]),
        ("PUT user", [who, ok, no, no, no, no, no]),
        ("GET tokens", readers),
        ("POST tokens", [who, created, created, created, created, created, no]),
        ("DELETE someone else's token", [who, gone, no, no, no, no, no]),
        ("GET session", readers),
        ("POST hook", [who, no, no, no, no, no, ok]),
        ("POST take", [who, no, no, ok, ok, no, no]),
        ("POST dismiss", [who, no, no, ok, ok, no, no]),
        ("GET healthz", [ok, ok, ok, ok, ok, ok, ok]),
        ("GET metrics", [ok, ok, ok, ok, ok, ok, ok]),
    ];

    for (case, expected) in cases {
        for (person, token) in f.tokens.iter().enumerate() {
            counter += 1;
            let request: Request = match case {
                "GET runbooks" => (Method::GET, "/api/v1/runbooks".into(), None),
                "GET runbook versions" => (Method::GET, "/api/v1/runbooks/gated".into(), None),
                "GET runbook source" => (Method::GET, "/api/v1/runbooks/gated/source".into(), None),
                "GET runbook figures" => {
                    (Method::GET, "/api/v1/runbooks/gated/figures".into(), None)
                }
                "POST runbooks" => {
                    let source =
                        format!("name: fresh-{counter}\nsteps:\n  - id: nap\n    sleep: 1ms\n");
                    (Method::POST, "/api/v1/runbooks".into(), Some(json!({ "source": source })))
                }
                "GET runs" | "GET all events" => (Method::GET, "/api/v1/runs".into(), None),
                "GET run" | "GET run events" => {
                    let run = f.run(&f.commander, "gated", "waiting").await;
                    let suffix = if case == "GET run events" { "/events" } else { "" };
                    (Method::GET, format!("/api/v1/runs/{run}{suffix}"), None)
                }
                "POST runs" => (
                    Method::POST,
                    "/api/v1/runs".into(),
                    Some(json!({ "runbook": "manual", "mode": "dry-run" })),
                ),
                "POST approve" | "POST reject" => {
                    let run = f.run(&f.commander, "gated", "waiting").await;
                    let action = case.trim_start_matches("POST ");
                    (Method::POST, format!("/api/v1/runs/{run}/steps/go/{action}"), Some(json!({})))
                }
                "POST complete" | "POST fail" => {
                    let run = f.run(&f.commander, "manual", "waiting").await;
                    let action = case.trim_start_matches("POST ");
                    (
                        Method::POST,
                        format!("/api/v1/runs/{run}/steps/watch/{action}"),
                        Some(json!({})),
                    )
                }
                "POST notes" => {
                    let run = f.run(&f.commander, "gated", "waiting").await;
                    (
                        Method::POST,
                        format!("/api/v1/runs/{run}/notes"),
                        Some(json!({ "text": "seen" })),
                    )
                }
                "POST cancel" => {
                    let run = f.run(f.rita(), "gated", "waiting").await;
                    (Method::POST, format!("/api/v1/runs/{run}/cancel"), None)
                }
                "POST assignments" => {
                    let run = f.run(f.rita(), "gated", "waiting").await;
                    (
                        Method::POST,
                        format!("/api/v1/runs/{run}/assignments"),
                        Some(json!({ "role": "approver", "person": "ned" })),
                    )
                }
                "POST commander" => {
                    let run = f.run(f.rita(), "gated", "waiting").await;
                    (
                        Method::POST,
                        format!("/api/v1/runs/{run}/commander"),
                        Some(json!({ "to": "carl" })),
                    )
                }
                "POST decisions" => {
                    let run = f.run(f.rita(), "failing", "needs_attention").await;
                    (
                        Method::POST,
                        format!("/api/v1/runs/{run}/decisions"),
                        Some(json!({ "decision": "abort" })),
                    )
                }
                "GET audit" => (Method::GET, "/api/v1/audit?limit=5".into(), None),
                "GET audit verify" => (Method::GET, "/api/v1/audit/verify".into(), None),
                "GET audit export" => (Method::GET, "/api/v1/audit/export?format=csv".into(), None),
                "GET nodes" => (Method::GET, "/api/v1/nodes".into(), None),
                "GET users" => (Method::GET, "/api/v1/users".into(), None),
                "POST users" => {
                    let body = json!({ "name": format!("user{counter}"), "roles": ["responder"], "password": "a-long-enough-password" });
                    (Method::POST, "/api/v1/users".into(), Some(body))
                }
                "PUT user" => {
                    (Method::PUT, "/api/v1/users/ned".into(), Some(json!({ "disabled": false })))
                }
                "GET tokens" => (Method::GET, "/api/v1/tokens".into(), None),
                "POST tokens" => {
                    (Method::POST, "/api/v1/tokens".into(), Some(json!({ "label": "mine" })))
                }
                "DELETE someone else's token" => {
                    let created = f
                        .server
                        .post(&f.commander, "/api/v1/tokens", json!({ "label": "carl's" }))
                        .await;
                    let id = created.body["id"].as_str().unwrap().to_owned();
                    (Method::DELETE, format!("/api/v1/tokens/{id}"), None)
                }
                "GET session" => (Method::GET, "/api/v1/session".into(), None),
                "POST hook" => (Method::POST, "/api/v1/hooks/json".into(), Some(alert(counter))),
                "POST take" | "POST dismiss" => {
                    let run = f.proposal(counter).await;
                    let action = case.trim_start_matches("POST ");
                    let body = (case == "POST dismiss").then(|| json!({ "reason": "a test" }));
                    (Method::POST, format!("/api/v1/runs/{run}/{action}"), body)
                }
                "GET healthz" => (Method::GET, "/healthz".into(), None),
                "GET metrics" => (Method::GET, "/metrics".into(), None),
                other => panic!("no request for {other}"),
            };
            let (method, path, body) = request;
            let path = if case == "GET all events" { "/api/v1/events".to_owned() } else { path };
            let status = if case == "GET run events" || case == "GET all events" {
                // An event stream never ends: its status is all this case needs.
                let mut request = f.server.client.get(format!("{}{path}", f.server.url));
                if let Some(token) = token {
                    request = request.bearer_auth(token);
                }
                request.send().await.unwrap().status()
            } else {
                f.server.call(token.as_deref(), method, &path, body).await.status
            };
            if status != expected[person] {
                failures.push(format!(
                    "{case} as {}: got {status}, expected {}",
                    PEOPLE[person], expected[person]
                ));
            }
        }
    }
    assert!(failures.is_empty(), "authorization matrix:\n{}", failures.join("\n"));
}
