//! The leak scanner: the guard every future feature must pass. A real `steady serve` runs
//! runbooks that print, echo, encode, cut, fail with and send their secrets in every way we
//! could think of — live and as a dry run, through a gate, a manual step and notifications —
//! and then every byte Steady wrote is read: each database table (the audit log included),
//! `steady show`, `steady audit export`, the API's run JSON, the event stream, the pages and the
//! Markdown timeline, the notifications a webhook received, `/metrics` and the server's
//! standard error. No declared secret, no 4-character prefix of one, no form a client or an
//! encoder gives it, and nothing of Steady's own environment may appear anywhere.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use reqwest::Method;
use serde_json::{Value, json};
use steady_testkit::cluster::Cluster;

const TOKEN: &str = "Zq7-Kv2!Xw9#L'p4/é+";
/// A key long enough that `base64` and `openssl base64` wrap its encoding.
const LONG_KEY: &str = "Lk3vQ9x-Wm2Rb8Ts6Yd4Hn1Jc7Pf5Ga0Ue9Io2Kw8Ez4Ar6Nt1Bq3Cv5Xs7Dy9Fh0Gj2Mk4Ol6Pi8Qu1Rw3Se5Tx7Uz9Vb0Wc2Xd";
/// The secret part of the webhook URL secret; its `http://127.0.0.1:` start is not secret.
const HOOK_PATH: &str = "Rm5Tj8Wd3";
const UNDECLARED: &str = "Yh6Pq1Nc8Undeclared";
const ADMIN_PASSWORD: &str = "a-long-admin-password";

#[test]
fn no_secret_reaches_anything_steady_writes_on_sqlite() {
    let dir = crate::scratch("leaks-sqlite");
    scan(format!("sqlite://{}", dir.join("steady.db").display()), "leaks-sqlite");
}

#[test]
fn no_secret_reaches_anything_steady_writes_on_postgres() {
    scan(steady_testkit::postgres_database(), "leaks-postgres");
}

/// A webhook receiver on 127.0.0.1 that keeps every request and echoes its body back.
fn receiver() -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    let received = Arc::new(Mutex::new(Vec::new()));
    let log = received.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
            let mut request = Vec::new();
            let mut buffer = [0u8; 8192];
            while let Ok(read) = stream.read(&mut buffer) {
                if read == 0 {
                    break;
                }
                request.extend_from_slice(&buffer[..read]);
                let text = String::from_utf8_lossy(&request);
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let length = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    if body.len() >= length {
                        break;
                    }
                }
            }
            let text = String::from_utf8_lossy(&request).into_owned();
            let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
            log.lock().expect("log").push(text);
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes());
        }
    });
    (port, received)
}

const LEAKY: &str = r#"
name: leaky
title: Prints its secrets in every way
secrets: [TOKEN, HOOK, LONG_KEY]
roles:
  approver: { description: Signs off }
steps:
  - id: environment
    run: ["env"]
    read_only: true
    timeout: 5s
  - id: echo
    run: echo token {{ secrets.TOKEN }} && echo "$T" >&2
    env: { T: "{{ secrets.TOKEN }}" }
    read_only: true
    timeout: 5s
  - id: encodings
    run:
      - python3
      - -c
      - |
        import json, os, sys, urllib.parse, base64, shlex
        for v in (os.environ["T"], os.environ["H"]):
            print(v)
            print(urllib.parse.quote(v, safe=""))
            print(urllib.parse.quote(v))
            print(urllib.parse.quote_plus(v))
            print(json.dumps(v))
            print(json.dumps(v, ensure_ascii=False))
            print(json.dumps({"v": v}))
            print(base64.b64encode(v.encode()).decode())
            print(base64.b64encode(("x" + v).encode()).decode())
            print(base64.b64encode(("xy" + v).encode()).decode())
            print(shlex.quote(v))
            print("".join("\\u%04x" % ord(c) for c in v))
            print("".join("%%%02X" % b for b in v.encode()))
            print(json.dumps(v).replace("+", "\\u002B").replace("'", "\\u0027"))
            print(repr(v), file=sys.stderr)
        print(os.environ["H"].replace(":" + os.environ["P"], ""))
        k = os.environ["L"].encode()
        b = base64.b64encode(k).decode()
        print("\n".join(b[i:i + 76] for i in range(0, len(b), 76)))
        print("\n".join(b[i:i + 64] for i in range(0, len(b), 64)))
    env: { T: "{{ secrets.TOKEN }}", H: "{{ secrets.HOOK }}", L: "{{ secrets.LONG_KEY }}", P: "PORT" }
    read_only: true
    timeout: 10s
  - id: quoted
    run: ["bash", "-c", "printf '%q\\n' \"$T\"; set -x; : \"$T\""]
    env: { T: "{{ secrets.TOKEN }}" }
    read_only: true
    timeout: 10s
  - id: at_the_cap
    run: ["python3", "-c", "import os, sys; sys.stdout.write('x' * (1024 * 1024 - 7) + os.environ['T'] * 3)"]
    env: { T: "{{ secrets.TOKEN }}" }
    read_only: true
    timeout: 10s
  - id: send
    http: { method: POST, url: "{{ secrets.HOOK }}", json: { token: "{{ secrets.TOKEN }}", note: "sent" } }
    read_only: true
    timeout: 5s
  - id: unreachable
    http: { url: "http://127.0.0.1:9/login?token={{ secrets.TOKEN }}", headers: { X-Token: "{{ secrets.TOKEN }}" } }
    read_only: true
    timeout: 5s
    on_failure: continue
  - id: fails_loudly
    run: echo "cannot log in with {{ secrets.TOKEN }}" >&2; exit 3
    read_only: true
    timeout: 5s
    on_failure: continue
  - id: judged
    check: "steps.echo.stdout == 'token ' ~ secrets.TOKEN and steps.send.json.token == secrets.TOKEN"
  - id: go
    approval: { role: approver, prompt: "Send {{ secrets.TOKEN }} to {{ secrets.HOOK }}?" }
  - id: by_hand
    manual: { role: approver, instructions: "Log in with {{ secrets.TOKEN }}" }
  - id: after
    run: ["sh", "-c", "echo done; echo \"$T\""]
    env: { T: "{{ secrets.TOKEN }}" }
    timeout: 5s
"#;

fn scan(db: String, name: &str) {
    let (port, received) = receiver();
    let hook = format!("http://127.0.0.1:{port}/hook/{HOOK_PATH}");
    let leaky = LEAKY.replace("PORT", &port.to_string());
    let notify = format!("http://127.0.0.1:{port}/notify");
    let cluster = Cluster::start_with_env(
        std::path::Path::new(env!("CARGO_BIN_EXE_steady")),
        db,
        name,
        1,
        Duration::from_secs(5),
        &[("leaky.yaml", &leaky)],
        &["--notify", &notify],
        &[
            ("STEADY_SECRET_TOKEN", TOKEN),
            ("STEADY_SECRET_HOOK", &hook),
            ("STEADY_SECRET_LONG_KEY", LONG_KEY),
            ("STEADY_SECRET_OTHER", UNDECLARED),
            // Every event the server can log, at every level and as JSON, is scanned too.
            ("STEADY_LOG", "debug"),
            ("STEADY_LOG_FORMAT", "json"),
        ],
    );
    let admin = cluster.person("carol", "responder");
    let alex = cluster.person("alex", "responder");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
    let mut collected: Vec<(String, String)> = Vec::new();
    runtime.block_on(async {
        let node = cluster.any_node();
        let assignments = json!([{ "role": "approver", "person": "alex" }]);
        // A rehearsal first, as the responder who was refused a secret before.
        let (status, dry) = cluster
            .call(
                node,
                &admin,
                Method::POST,
                "/api/v1/runs",
                Some(json!({
                    "runbook": "leaky", "mode": "dry-run", "assignments": assignments
                })),
            )
            .await;
        assert_eq!(status, 201, "{dry}");
        let dry = dry["id"].as_str().expect("id").to_owned();
        let live = cluster.start_run(node, &admin, "leaky", json!({}), assignments).await;
        cluster.wait_for(&admin, &dry, &["succeeded", "failed", "needs_attention"]).await;
        let waiting = cluster.wait_for(&admin, &live, &["waiting"]).await;
        assert_eq!(step(&waiting, "judged")["status"], "succeeded", "{waiting}");
        let path = format!("/api/v1/runs/{live}/steps/go/approve");
        let (status, body) = cluster
            .call(
                node,
                &alex,
                Method::POST,
                &path,
                Some(json!({ "comment": format!("ok, used {TOKEN}") })),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        cluster.wait_for(&admin, &live, &["waiting"]).await;
        let path = format!("/api/v1/runs/{live}/steps/by_hand/complete");
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let (status, body) = cluster
                .call(
                    node,
                    &alex,
                    Method::POST,
                    &path,
                    Some(json!({ "note": format!("done with {TOKEN}") })),
                )
                .await;
            if status == 200 {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{status} {body}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let finished = cluster.wait_for(&admin, &live, &["succeeded"]).await;
        // The steps really had the values: the effects worked, the checks judged real values.
        assert_eq!(step(&finished, "environment")["status"], "succeeded");
        let environment = last_stdout(&finished, "environment");
        let names: Vec<&str> = environment.lines().filter_map(|l| l.split('=').next()).collect();
        assert!(
            names
                .iter()
                .all(|n| ["PATH", "HOME", "LANG", "TZ", "USER", "T"].contains(n) || n.is_empty()),
            "{environment}"
        );
        assert!(
            received
                .lock()
                .expect("log")
                .iter()
                .any(|r| r.contains(&format!("POST /hook/{HOOK_PATH}")))
        );

        let client = reqwest::Client::new();
        for id in [&dry, &live] {
            for path in [
                format!("/api/v1/runs/{id}"),
                format!("/runs/{id}"),
                format!("/runs/{id}/timeline.md"),
                format!("/api/v1/runs/{id}/events?after=0"),
            ] {
                let url = node.url(&path);
                let request = client.get(&url).bearer_auth(&admin).send();
                let text = match tokio::time::timeout(Duration::from_secs(3), async {
                    let mut response = request.await.expect("get");
                    let mut text = String::new();
                    // An event stream never ends: keep what arrives within a second.
                    let _ = tokio::time::timeout(Duration::from_secs(1), async {
                        while let Ok(Some(chunk)) = response.chunk().await {
                            text.push_str(&String::from_utf8_lossy(&chunk));
                        }
                    })
                    .await;
                    text
                })
                .await
                {
                    Ok(text) => text,
                    Err(_) => panic!("{path} did not answer"),
                };
                assert!(text.len() > 100, "{path} answered too little: {text}");
                collected.push((path, text));
            }
        }
        let metrics = client.get(node.url("/metrics")).send().await.expect("metrics");
        collected.push(("/metrics".to_owned(), metrics.text().await.expect("text")));
    });
    for id in cluster_runs(&cluster) {
        for args in [vec!["show", id.as_str()], vec!["show", id.as_str(), "--json"]] {
            let (code, text) = cluster.cli(&args);
            assert_eq!(code, 0, "{text}");
            collected.push((args.join(" "), text));
        }
    }
    for format in ["jsonl", "csv"] {
        let (code, text) = cluster.cli(&["audit", "export", "--format", format]);
        assert_eq!(code, 0, "{text}");
        collected.push((format!("audit export {format}"), text));
    }
    collected.push(("database".to_owned(), dump_database(&cluster.db)));
    for request in received.lock().expect("log").iter().filter(|r| r.contains("/notify")) {
        collected.push(("notification".to_owned(), request.clone()));
    }
    assert!(collected.iter().any(|(what, _)| what == "notification"), "notifications were sent");
    let log = std::fs::read_to_string(cluster.dir.join("nodes.log")).unwrap_or_default();
    // The log was written: runs driven, steps ended, requests served and refused.
    for logged in ["driving the run", "step ended", "finished processing request"] {
        assert!(log.contains(logged), "the server's log has no `{logged}`:\n{log}");
    }
    collected.push(("server stderr".to_owned(), log));

    let forbidden = forbidden(&hook);
    for (what, text) in &collected {
        for needle in &forbidden {
            if let Some(at) = text.find(needle.as_str()) {
                let mut from = at.saturating_sub(80);
                while !text.is_char_boundary(from) {
                    from -= 1;
                }
                let mut to = (at + needle.len() + 80).min(text.len());
                while !text.is_char_boundary(to) {
                    to += 1;
                }
                panic!("`{needle}` leaked into {what}: …{}…", &text[from..to]);
            }
        }
    }
}

fn step<'a>(run: &'a Value, id: &str) -> &'a Value {
    run["steps"].as_array().expect("steps").iter().find(|s| s["id"] == id).expect("step")
}

fn last_stdout(run: &Value, id: &str) -> String {
    let attempts = step(run, id)["attempts"].as_array().cloned().unwrap_or_default();
    attempts.last().map(|a| a["stdout"].as_str().unwrap_or_default().to_owned()).unwrap_or_default()
}

fn cluster_runs(cluster: &Cluster) -> Vec<String> {
    let (code, text) = cluster.cli(&["runs", "--json"]);
    assert_eq!(code, 0, "{text}");
    let runs: Value = serde_json::from_str(&text).expect("json");
    runs.as_array()
        .expect("runs")
        .iter()
        .map(|run| run["id"].as_str().expect("id").to_owned())
        .collect()
}

/// Every value that must never appear: each secret, every 4-character-or-longer prefix of the
/// non-URL secret and of the webhook's secret path, their encodings, and Steady's own
/// configuration that no step may see.
fn forbidden(hook: &str) -> Vec<String> {
    let mut needles = vec![hook.to_owned(), UNDECLARED.to_owned(), ADMIN_PASSWORD.to_owned()];
    for secret in [TOKEN, HOOK_PATH, LONG_KEY] {
        let chars: Vec<char> = secret.chars().collect();
        for len in 4..=chars.len() {
            needles.push(chars[..len].iter().collect());
        }
    }
    let encoded = |v: &str| -> Vec<String> {
        vec![
            form_urlencoded::byte_serialize(v.as_bytes()).collect(),
            serde_json::to_string(v).expect("json").trim_matches('"').to_owned(),
            base64::engine::general_purpose::STANDARD.encode(v)[..12].to_owned(),
        ]
    };
    needles.extend(encoded(TOKEN));
    needles.extend(encoded(LONG_KEY));
    needles.extend(encoded(hook));
    needles.push(hook.replace("127.0.0.1:", "127.0.0.1%3A"));
    needles
}

/// Every row of every table, as text.
fn dump_database(url: &str) -> String {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
    runtime.block_on(async {
        use sqlx::{Column, Row};
        let mut out = String::new();
        if url.starts_with("sqlite:") {
            let pool = sqlx::SqlitePool::connect(url).await.expect("open");
            let tables: Vec<String> =
                sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table'")
                    .fetch_all(&pool)
                    .await
                    .expect("tables");
            for table in tables {
                for row in sqlx::query(&format!("SELECT * FROM \"{table}\""))
                    .fetch_all(&pool)
                    .await
                    .expect("rows")
                {
                    for column in row.columns() {
                        let value: Option<String> = row
                            .try_get::<Option<String>, _>(column.ordinal())
                            .ok()
                            .flatten()
                            .or_else(|| {
                                row.try_get::<Option<Vec<u8>>, _>(column.ordinal())
                                    .ok()
                                    .flatten()
                                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                            });
                        out.push_str(&value.unwrap_or_default());
                        out.push('\n');
                    }
                }
            }
        } else {
            let pool = sqlx::PgPool::connect(url).await.expect("open");
            let tables: Vec<String> = sqlx::query_scalar(
                "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public'",
            )
            .fetch_all(&pool)
            .await
            .expect("tables");
            for table in tables {
                let rows: Vec<String> =
                    sqlx::query_scalar(&format!("SELECT row_to_json(t)::text FROM \"{table}\" t"))
                        .fetch_all(&pool)
                        .await
                        .expect("rows");
                for row in rows {
                    out.push_str(&row);
                    out.push('\n');
                }
            }
        }
        assert!(out.contains("leaky"), "the dump holds the runs");
        out
    })
}
