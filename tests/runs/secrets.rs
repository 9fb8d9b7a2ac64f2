//! Secrets and what a step sees (SPEC §3.3), played by an author who prints secrets in every
//! way a careless script does, and by a starter who tries to send them elsewhere.

use std::sync::{Arc, Mutex};

use steady_engine::engine::{EngineError, StartRun, Then};
use steady_engine::run::{Completion, RunMode, RunStatus, StepStatus};
use steady_engine::secrets::SecretsError;

use crate::{Harness, SECRET, commander};

stories!(
    undeclared_secrets_are_neither_given_to_steps_nor_masked,
    expressions_and_later_steps_see_real_values_while_storage_sees_masks,
    a_declared_secret_without_a_usable_value_refuses_the_start,
    every_form_of_a_secret_is_masked_in_errors_and_output,
    overlapping_secrets_and_the_output_cap_leave_no_prefix,
    redirects_are_followed_only_within_the_origin_and_never_for_a_post,
    a_step_killed_by_a_signal_says_so,
    a_parameter_holding_a_secret_is_refused_and_what_people_write_is_masked,
    json_escapes_cannot_smuggle_a_secret_into_storage_or_a_later_step,
);

/// Another engine on the harness's database with exactly these secret values, as a node
/// started with other `STEADY_SECRET_*` variables.
fn with_secrets(h: &Harness, secrets: &[(&str, &str)]) -> steady_engine::engine::Engine {
    let mut config = h.engine.config().clone();
    config.secrets =
        secrets.iter().map(|(name, value)| (name.to_string(), value.to_string())).collect();
    steady_engine::engine::Engine::new(h.store.clone(), config)
}

fn live(runbook: &str) -> StartRun {
    StartRun {
        origin: steady_engine::run::RunOrigin::Person,
        runbook: runbook.to_owned(),
        version: None,
        params: Vec::new(),
        mode: RunMode::Live,
        actor: commander(),
        assignments: Vec::new(),
    }
}

/// Everything stored about a run and the whole audit log, as text.
async fn stored(h: &Harness, run: uuid::Uuid) -> String {
    let events = h.store.audit_events(&Default::default()).await.unwrap();
    format!("{events:?}{:?}", h.snapshot(run).await)
}

async fn undeclared_secrets_are_neither_given_to_steps_nor_masked(h: Harness) {
    // The node has a secret N=5 for some other runbook; this one declares none.
    let engine = with_secrets(&h, &[("N", "5555"), ("TOKEN", SECRET)]);
    h.publish(
        r#"
name: counting
steps:
  - id: count
    run: ["sh", "-c", "echo 15; echo 5555 >&2"]
    read_only: true
    timeout: 5s
  - id: fifteen
    check: "steps.count.stdout | int == 15 and steps.count.stderr == '5555'"
"#,
    )
    .await;
    let run = engine.start_run(live("counting")).await.unwrap();
    let (_keep, stop) = tokio::sync::watch::channel(steady_engine::runner::Stop::No);
    engine.drive(run, &steady_engine::engine::Quiet, stop).await.unwrap();
    assert_eq!(h.statuses(run).await, ["count=succeeded", "fifteen=succeeded"]);
    let snapshot = h.snapshot(run).await;
    let count = snapshot.last_attempt("count").unwrap();
    assert_eq!((count.stdout.as_str(), count.stderr.as_str()), ("15\n", "5555\n"));
}

async fn expressions_and_later_steps_see_real_values_while_storage_sees_masks(h: Harness) {
    let handed = h.path("handed-over");
    h.publish(
        &r#"
name: handing
secrets: [TOKEN]
steps:
  - id: fetch
    run: ["sh", "-c", "printf '%s\n' \"$T\""]
    env: { T: "{{ secrets.TOKEN }}" }
    read_only: true
    timeout: 5s
    expect: { stdout: "^s3cr3t-" }
  - id: same
    check: "steps.fetch.stdout == secrets.TOKEN"
  - id: hand_over
    when: "steps.fetch.stdout | length == 18"
    run: ["sh", "-c", "printf %s \"$V\" > HANDED"]
    env: { V: "{{ steps.fetch.stdout }}" }
    read_only: true
    timeout: 5s
"#
        .replace("HANDED", &handed),
    )
    .await;
    let run = h.start("handing", &[], &[]).await;
    assert_eq!(h.drive(run).await, RunStatus::Succeeded);
    assert_eq!(h.statuses(run).await, ["fetch=succeeded", "same=succeeded", "hand_over=succeeded"]);
    // The effect got the real value; what was stored shows only the mask.
    assert_eq!(std::fs::read_to_string(&handed).unwrap(), SECRET);
    assert_eq!(h.snapshot(run).await.last_attempt("fetch").unwrap().stdout, "***\n");
    assert!(!stored(&h, run).await.contains(SECRET));
}

async fn a_declared_secret_without_a_usable_value_refuses_the_start(h: Harness) {
    h.publish(
        r#"
name: calling-home
secrets: [TOKEN, HOOK]
steps:
  - id: call
    http: { url: "http://127.0.0.1:9/x", headers: { Authorization: "Bearer {{ secrets.TOKEN }}{{ secrets.HOOK }}" } }
    read_only: true
"#,
    )
    .await;
    let missing = with_secrets(&h, &[("TOKEN", SECRET)]);
    match missing.start_run(live("calling-home")).await {
        Err(EngineError::Secrets(SecretsError::Missing(names))) => assert_eq!(names, ["HOOK"]),
        other => panic!("a run with a missing secret started: {other:?}"),
    }
    let empty = with_secrets(&h, &[("TOKEN", SECRET), ("HOOK", "")]);
    assert!(matches!(
        empty.start_run(live("calling-home")).await,
        Err(EngineError::Secrets(SecretsError::Missing(_)))
    ));
    let short = with_secrets(&h, &[("TOKEN", SECRET), ("HOOK", "abc")]);
    let refused = short.start_run(live("calling-home")).await.unwrap_err();
    assert_eq!(
        refused.to_string(),
        "declared secret `HOOK` has a value shorter than 4 characters, too short to be masked reliably"
    );
    // Dry runs too: a rehearsal would send the same empty credential.
    let mut dry = live("calling-home");
    dry.mode = RunMode::DryRun;
    assert!(missing.start_run(dry).await.is_err());
    assert!(h.store.runs(&Default::default()).await.unwrap().is_empty(), "nothing was created");
}

async fn every_form_of_a_secret_is_masked_in_errors_and_output(h: Harness) {
    // A webhook URL whose default port and spaces a client rewrites, and which holds
    // characters that percent- and JSON-encoding change.
    let hook = "http://127.0.0.1:80/hooks/T0 B1/\"x\u{e9}\"";
    let engine = with_secrets(&h, &[("HOOK", hook)]);
    h.publish(
        r#"
name: noisy
secrets: [HOOK]
steps:
  - id: post
    http: { method: POST, url: "{{ secrets.HOOK }}", json: { text: "hi" } }
    read_only: true
    timeout: 5s
    on_failure: continue
  - id: encode
    run:
      - python3
      - -c
      - |
        import json, os, sys, urllib.parse, base64
        v = os.environ["H"]
        print(urllib.parse.quote(v, safe=""))
        print(urllib.parse.quote_plus(v))
        print(json.dumps(v))
        print(json.dumps(v, ensure_ascii=False))
        print(base64.b64encode(v.encode()).decode())
        print(urllib.parse.urlsplit(v)._replace(netloc="127.0.0.1").geturl())
        print(v, file=sys.stderr)
    env: { H: "{{ secrets.HOOK }}" }
    read_only: true
    timeout: 10s
"#,
    )
    .await;
    let run = engine.start_run(live("noisy")).await.unwrap();
    let (_keep, stop) = tokio::sync::watch::channel(steady_engine::runner::Stop::No);
    engine.drive(run, &steady_engine::engine::Quiet, stop).await.unwrap();
    assert_eq!(h.statuses(run).await, ["post=failed", "encode=succeeded"]);
    let snapshot = h.snapshot(run).await;
    let error = snapshot.last_attempt("post").unwrap().error.clone().unwrap();
    assert!(error.starts_with("request failed:"), "{error}");
    let encoded = &snapshot.last_attempt("encode").unwrap().stdout;
    assert_eq!(encoded.lines().filter(|line| line.contains("***")).count(), 6, "{encoded}");
    let everything = stored(&h, run).await;
    for form in ["T0 B1", "T0%20B1", "T0+B1", "hooks/T0", "127.0.0.1/hooks"] {
        assert!(!everything.contains(form), "`{form}` leaked: {everything}");
    }
}

async fn overlapping_secrets_and_the_output_cap_leave_no_prefix(h: Harness) {
    let engine = with_secrets(&h, &[("A", "password123"), ("B", "word123456")]);
    h.publish(
        r#"
name: overlapping
secrets: [A, B]
steps:
  - id: both
    run: ["sh", "-c", "printf '%s456\\n%s%s\\n' \"$A\" \"$B\" \"$A\""]
    env: { A: "{{ secrets.A }}", B: "{{ secrets.B }}" }
    read_only: true
    timeout: 5s
  - id: at_the_cap
    run: ["python3", "-c", "import os, sys; sys.stdout.write('x' * (1024 * 1024 - 5) + os.environ['A'])"]
    env: { A: "{{ secrets.A }}" }
    read_only: true
    timeout: 10s
  - id: beyond_the_cap
    run: ["python3", "-c", "import os, sys; sys.stdout.write('x' * (1024 * 1024 - 5) + os.environ['A'] * 9)"]
    env: { A: "{{ secrets.A }}" }
    read_only: true
    timeout: 10s
"#,
    )
    .await;
    let run = engine.start_run(live("overlapping")).await.unwrap();
    let (_keep, stop) = tokio::sync::watch::channel(steady_engine::runner::Stop::No);
    engine.drive(run, &steady_engine::engine::Quiet, stop).await.unwrap();
    let snapshot = h.snapshot(run).await;
    assert_eq!(snapshot.last_attempt("both").unwrap().stdout, "***\n***\n");
    // The secret straddles the limit: masked whole, and the masked output fits.
    let capped = snapshot.last_attempt("at_the_cap").unwrap();
    assert!(capped.stdout.ends_with("xxxxx***"), "{}", &capped.stdout[capped.stdout.len() - 20..]);
    assert!(!capped.stdout_truncated);
    // Output goes on past what is captured: cut, but never inside a secret.
    let beyond = snapshot.last_attempt("beyond_the_cap").unwrap();
    assert!(beyond.stdout.ends_with("xxxxx***"), "{}", &beyond.stdout[beyond.stdout.len() - 20..]);
    assert!(beyond.stdout_truncated);
    for prefix in ["pass", "word12"] {
        assert!(!stored(&h, run).await.contains(prefix), "a prefix `{prefix}` leaked");
    }
}

/// A server that answers each path as told and records each request's head and body.
async fn routes(
    answers: Vec<(&'static str, String)>,
) -> (String, Arc<Mutex<Vec<String>>>, tokio::task::JoinHandle<()>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let received = Arc::new(Mutex::new(Vec::new()));
    let log = received.clone();
    let task = tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut request = Vec::new();
            let mut buffer = [0u8; 4096];
            loop {
                let read = socket.read(&mut buffer).await.unwrap_or(0);
                request.extend_from_slice(&buffer[..read]);
                if read == 0 || crate::head_and_body_complete(&String::from_utf8_lossy(&request)) {
                    break;
                }
            }
            let text = String::from_utf8_lossy(&request).into_owned();
            let path = text.split_whitespace().nth(1).unwrap_or("").to_owned();
            log.lock().unwrap().push(text);
            let head = answers
                .iter()
                .find(|(prefix, _)| path.starts_with(prefix))
                .map_or("404 Not Found\r\n".to_owned(), |(_, head)| head.clone());
            let response =
                format!("HTTP/1.1 {head}content-length: 2\r\nconnection: close\r\n\r\nok");
            let _ = socket.write_all(response.as_bytes()).await;
        }
    });
    (url, received, task)
}

async fn redirects_are_followed_only_within_the_origin_and_never_for_a_post(h: Harness) {
    let (elsewhere, elsewhere_saw, _b) = routes(vec![("/", "200 OK\r\n".to_owned())]).await;
    let (origin, origin_saw, _a) = routes(vec![
        ("/moved", "200 OK\r\n".to_owned()),
        ("/here", "302 Found\r\nlocation: /moved\r\n".to_owned()),
        ("/away", format!("302 Found\r\nlocation: {elsewhere}/stolen\r\n")),
        ("/post", "302 Found\r\nlocation: /moved\r\n".to_owned()),
    ])
    .await;
    h.publish(
        &r#"
name: redirected
secrets: [TOKEN]
steps:
  - id: same_origin
    http: { url: "ORIGIN/here?token={{ secrets.TOKEN }}", headers: { X-Token: "{{ secrets.TOKEN }}" } }
    read_only: true
    timeout: 5s
  - id: cross_origin
    http: { url: "ORIGIN/away", headers: { X-Token: "{{ secrets.TOKEN }}" } }
    read_only: true
    timeout: 5s
    on_failure: continue
  - id: post
    http: { method: POST, url: "ORIGIN/post", json: { token: "{{ secrets.TOKEN }}" } }
    read_only: true
    timeout: 5s
    on_failure: continue
"#
        .replace("ORIGIN", &origin),
    )
    .await;
    let run = h.start("redirected", &[], &[]).await;
    assert_eq!(h.drive(run).await, RunStatus::Succeeded);
    assert_eq!(
        h.statuses(run).await,
        ["same_origin=succeeded", "cross_origin=failed", "post=failed"]
    );
    let snapshot = h.snapshot(run).await;
    assert_eq!(
        snapshot.last_attempt("same_origin").unwrap().final_url.as_deref(),
        Some(format!("{origin}/moved").as_str())
    );
    let cross = snapshot.last_attempt("cross_origin").unwrap();
    assert_eq!(cross.http_status, Some(302));
    assert!(
        cross.error.as_deref().unwrap().contains(&format!("redirect to {elsewhere}/stolen")),
        "{cross:?}"
    );
    let post = snapshot.last_attempt("post").unwrap();
    assert_eq!(post.http_status, Some(302));
    // The other origin never heard of us; the POST was never re-sent as a GET; no Referer.
    assert!(elsewhere_saw.lock().unwrap().is_empty());
    let seen = origin_saw.lock().unwrap().clone();
    let methods: Vec<&str> = seen.iter().map(|r| r.split(' ').next().unwrap()).collect();
    assert_eq!(methods, ["GET", "GET", "GET", "POST"], "{seen:#?}");
    assert!(seen.iter().all(|r| !r.to_lowercase().contains("referer")), "{seen:#?}");
    assert!(!stored(&h, run).await.contains(SECRET));
}

async fn a_step_killed_by_a_signal_says_so(h: Harness) {
    h.publish(
        r#"
name: signalled
steps:
  - id: terminated
    run: ["sh", "-c", "kill -TERM $$"]
    read_only: true
    timeout: 5s
"#,
    )
    .await;
    let run = h.start("signalled", &[], &[]).await;
    assert_eq!(h.drive(run).await, RunStatus::NeedsAttention);
    let snapshot = h.snapshot(run).await;
    let attempt = snapshot.last_attempt("terminated").unwrap();
    assert_eq!(attempt.status, Some(StepStatus::Failed));
    assert_eq!(attempt.exit_code, None);
    assert_eq!(attempt.error.as_deref(), Some("killed by SIGTERM"));
}

async fn a_parameter_holding_a_secret_is_refused_and_what_people_write_is_masked(h: Harness) {
    h.publish(
        r#"
name: pasted
secrets: [TOKEN]
roles:
  operator: { description: Logs in by hand }
params:
  who: { type: string, default: nobody }
steps:
  - id: log_in
    manual: { role: operator, instructions: "Log in as {{ params.who }}" }
"#,
    )
    .await;
    let mut start = live("pasted");
    start.params = vec![("who".to_owned(), format!("admin:{SECRET}"))];
    let refused = h.engine.start_run(start).await.unwrap_err();
    assert_eq!(
        refused.to_string(),
        "parameter `who` holds the value of secret `TOKEN`: parameters are stored and shown, so a secret must come from STEADY_SECRET_TOKEN"
    );
    // Encoded, it is the same secret: base64 of it, as a starter might paste it.
    let mut start = live("pasted");
    start.params = vec![("who".to_owned(), "czNjcjN0LXQwa2VuLXZhbHVl".to_owned())];
    assert!(matches!(
        h.engine.start_run(start).await,
        Err(EngineError::Secrets(SecretsError::InParameter { .. }))
    ));
    let run = h.start("pasted", &[], &[("operator", &crate::alice())]).await;
    assert_eq!(h.drive(run).await, RunStatus::Waiting);
    let pasted = format!("used {SECRET} to log in");
    h.engine.add_note(run, &commander(), None, &pasted).await.unwrap();
    h.engine
        .complete_manual(
            run,
            "log_in",
            &crate::alice(),
            Completion::Done,
            Some(&pasted),
            Then::AnyDriver,
        )
        .await
        .unwrap();
    let snapshot = h.snapshot(run).await;
    assert_eq!(snapshot.step("log_in").unwrap().note.as_deref(), Some("used *** to log in"));
    assert!(!stored(&h, run).await.contains(SECRET));
}

async fn json_escapes_cannot_smuggle_a_secret_into_storage_or_a_later_step(h: Harness) {
    let engine = with_secrets(&h, &[("KEY", "abc+def/ghi=")]);
    h.publish(
        r#"
name: escaped
secrets: [KEY]
steps:
  - id: read_key
    run: ["python3", "-c", "import json, os; print(json.dumps({'pw': os.environ['K']}).replace('+', '\\u002B'))"]
    env: { K: "{{ secrets.KEY }}" }
    read_only: true
    timeout: 10s
  - id: use_key
    run: ["sh", "-c", "test \"$K\" = 'abc+def/ghi='"]
    env: { K: "{{ steps.read_key.json.pw }}" }
    read_only: true
    timeout: 10s
"#,
    )
    .await;
    let run = engine.start_run(live("escaped")).await.unwrap();
    let (_keep, stop) = tokio::sync::watch::channel(steady_engine::runner::Stop::No);
    engine.drive(run, &steady_engine::engine::Quiet, stop).await.unwrap();
    assert_eq!(h.statuses(run).await, ["read_key=succeeded", "use_key=succeeded"]);
    let snapshot = h.snapshot(run).await;
    let read = snapshot.last_attempt("read_key").unwrap();
    assert_eq!(read.stdout, "{\"pw\": \"***\"}\n");
    assert_eq!(read.json, Some(serde_json::json!({ "pw": "***" })));
    let everything = stored(&h, run).await;
    assert!(!everything.contains("abc+def") && !everything.contains("abc\\u002B"), "{everything}");
}
