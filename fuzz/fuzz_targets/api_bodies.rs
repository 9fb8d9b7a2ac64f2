//! Arbitrary request bodies and query strings sent to the JSON API of a real server on a real
//! SQLite file, as an admin who may do everything a person may, and alert payloads to the hooks
//! as an alerting system's `trigger` account: a 4xx or a 2xx, never a 5xx or a panic.
#![no_main]

use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::http::{Method, Request};
use libfuzzer_sys::fuzz_target;
use steady_engine::accounts::{ApiToken, GlobalRole, User};
use steady_engine::engine::{Engine, EngineConfig, now};
use steady_engine::run::Actor;
use tower::ServiceExt as _;

struct Server {
    runtime: tokio::runtime::Runtime,
    router: axum::Router,
    token: String,
    /// The `trigger` account's token, for the hooks.
    trigger: String,
    run: String,
    /// A proposal an alert made, to take or dismiss.
    proposal: String,
}

const RUNBOOK: &str = r#"
name: gated
params:
  cluster: { type: string, required: true }
roles:
  approver: { description: Signs off }
steps:
  - id: go
    approval: { role: approver, allow_self_approval: true }
  - id: after
    check: "params.cluster != ''"
triggers:
  - source: alertmanager
    when: "alert.labels.alertname == 'Down'"
    params: { cluster: "{{ alert.labels.cluster }}" }
  - source: grafana
    when: "alert.labels.alertname == 'Down'"
    params: { cluster: "{{ alert.labels.cluster }}" }
    then: dry-run
  - source: json
    when: "alert.cluster is defined"
    params: { cluster: "{{ alert.cluster }}" }
"#;

fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let dir = std::env::temp_dir().join(format!("steady-fuzz-api-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}", dir.join("steady.db").display());
        let (router, token, trigger, run, proposal) = runtime.block_on(async {
            let database = steady_storage::open_database(&url).await.unwrap();
            let config =
                EngineConfig::new("fuzz", std::time::Duration::from_secs(10), Default::default());
            let engine = Arc::new(Engine::new(database.store.clone(), config));
            let admin = User {
                name: "ada".into(),
                // Every role a person holds; `trigger` is held alone, by the alerts account.
                roles: GlobalRole::ALL
                    .iter()
                    .copied()
                    .filter(|role| *role != GlobalRole::Trigger)
                    .collect(),
                password_hash: None,
                disabled: false,
                created_at: now(),
            };
            database.accounts.create_user(&admin, &Actor::local("fuzz")).await.unwrap();
            let secret = format!("stdy_{}", steady_web::auth::new_secret());
            let token = ApiToken {
                id: uuid::Uuid::now_v7(),
                label: "fuzz".into(),
                user: "ada".into(),
                hash: steady_web::auth::secret_hash(&secret),
                created_at: now(),
                revoked_at: None,
            };
            database.accounts.create_token(&token, &Actor::local("fuzz")).await.unwrap();
            let alerts = User {
                name: "alerts".into(),
                roles: vec![GlobalRole::Trigger],
                password_hash: None,
                disabled: false,
                created_at: now(),
            };
            database.accounts.create_user(&alerts, &Actor::local("fuzz")).await.unwrap();
            let trigger = format!("stdy_{}", steady_web::auth::new_secret());
            let trigger_token = ApiToken {
                id: uuid::Uuid::now_v7(),
                label: "fuzz".into(),
                user: "alerts".into(),
                hash: steady_web::auth::secret_hash(&trigger),
                created_at: now(),
                revoked_at: None,
            };
            database.accounts.create_token(&trigger_token, &Actor::local("fuzz")).await.unwrap();
            engine.publish(RUNBOOK, &admin.actor()).await.unwrap();
            let run = engine
                .start_run(steady_engine::engine::StartRun {
                    origin: steady_engine::run::RunOrigin::Person,
                    runbook: "gated".into(),
                    version: None,
                    params: vec![("cluster".into(), "main".into())],
                    mode: steady_engine::run::RunMode::Live,
                    actor: admin.actor(),
                    assignments: vec![steady_engine::run::Assignment {
                        role: "approver".into(),
                        person: admin.actor(),
                    }],
                })
                .await
                .unwrap();
            let alert = steady_engine::trigger::parse_payload(
                steady_engine::runbook::AlertSource::Json,
                br#"{"cluster": "edge"}"#,
            )
            .unwrap();
            let proposed = engine
                .receive_alerts(steady_engine::runbook::AlertSource::Json, &alert, &alerts.actor())
                .await
                .unwrap();
            let proposal = match proposed[0].result {
                Ok(steady_engine::engine::Filing::Proposed { run, .. }) => run.to_string(),
                ref other => panic!("no proposal: {other:?}"),
            };
            let state = steady_web::AppState::new(engine, database.accounts, Default::default());
            (steady_web::router(state), secret, trigger, run.to_string(), proposal)
        });
        Server { runtime, router, token, trigger, run, proposal }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&choice, rest)) = data.split_first() else { return };
    let server = server();
    let run = &server.run;
    let proposal = &server.proposal;
    let (method, path): (Method, String) = match choice % 17 {
        0 => (Method::POST, "/api/v1/runs".into()),
        1 => (Method::POST, "/api/v1/runbooks".into()),
        2 => (Method::POST, format!("/api/v1/runs/{run}/steps/go/approve")),
        3 => (Method::POST, format!("/api/v1/runs/{run}/decisions")),
        4 => (Method::POST, format!("/api/v1/runs/{run}/notes")),
        5 => (Method::POST, format!("/api/v1/runs/{run}/assignments")),
        6 => (Method::POST, format!("/api/v1/runs/{run}/commander")),
        7 => (Method::POST, "/api/v1/users".into()),
        8 => (Method::POST, "/api/v1/tokens".into()),
        9 => (Method::POST, "/api/v1/session".into()),
        // The rest of the input as a query string.
        10 => (Method::GET, format!("/api/v1/runs?{}", String::from_utf8_lossy(rest))),
        12 => (Method::POST, "/api/v1/hooks/alertmanager".into()),
        13 => (Method::POST, "/api/v1/hooks/grafana".into()),
        14 => (Method::POST, "/api/v1/hooks/json".into()),
        15 => (Method::POST, format!("/api/v1/runs/{proposal}/take")),
        16 => (Method::POST, format!("/api/v1/runs/{proposal}/dismiss")),
        _ => (Method::GET, format!("/api/v1/audit?{}", String::from_utf8_lossy(rest))),
    };
    let token = if path.starts_with("/api/v1/hooks/") { &server.trigger } else { &server.token };
    let Ok(request) = Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(Body::from(rest.to_vec()))
    else {
        return; // not even a valid URI: no server would see it
    };
    let response = server.runtime.block_on(server.router.clone().oneshot(request)).unwrap();
    assert!(
        !response.status().is_server_error(),
        "{} for {:?}",
        response.status(),
        String::from_utf8_lossy(rest)
    );
});
