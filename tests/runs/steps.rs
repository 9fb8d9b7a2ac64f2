//! Every step kind doing its job, and failing the ways steps fail.

use steady_engine::run::{RunStatus, StepStatus};

use crate::*;

stories!(
    commands_checks_and_sleeps_run_in_order_and_record_their_output,
    expectations_decide_failure_and_on_failure_decides_what_follows,
    a_failed_step_pauses_the_run_for_the_commanders_decision,
    skip_and_abort_are_decisions_too,
    retries_run_again_after_their_delay_and_count_attempts,
    a_timeout_kills_the_whole_process_group,
    output_beyond_one_mebibyte_is_cut_and_the_cut_recorded,
    secrets_never_reach_stored_output_or_the_audit_log,
    a_lock_key_admits_one_active_run_across_runbooks,
    a_failed_step_with_on_failure_rollback_runs_the_rollback_sequence,
    http_steps_send_rendered_requests_and_read_json_answers,
    templates_write_booleans_and_json_bodies_as_shells_and_servers_read_them,
    a_template_that_cannot_be_rendered_is_named_in_the_failure,
);

async fn commands_checks_and_sleeps_run_in_order_and_record_their_output(h: Harness) {
    h.publish(
        r#"
name: basic
params:
  who: { type: string, default: world }
steps:
  - id: greet
    run: echo "hello" {{ params.who }} && echo warning >&2
    read_only: true
    timeout: 5s
  - id: argv
    run: ["printf", "%s|", "{{ params.who }}", "two words"]
    read_only: true
    timeout: 5s
  - id: greeted
    check: "steps.greet.stdout == 'hello ' ~ params.who and steps.greet.stderr == 'warning'"
  - id: env
    run: echo "$TARGET ${STEADY_STEP_ID:-clean}"
    env: { TARGET: "{{ params.who }}-db" }
    read_only: true
    timeout: 5s
    expect: { stdout: "^world-db clean$" }
  - id: json
    run: "echo '{\"lag\": 42}'"
    read_only: true
    timeout: 5s
  - id: lag_known
    check: "steps.json.json.lag == 42"
  - id: nap
    sleep: 100ms
  - id: skipped
    when: "params.who == 'nobody'"
    run: ["false"]
    read_only: true
    timeout: 5s
"#,
    )
    .await;
    let run = h.start("basic", &[], &[]).await;
    assert_eq!(h.drive(run).await, RunStatus::Succeeded);
    assert_eq!(
        h.statuses(run).await,
        [
            "greet=succeeded",
            "argv=succeeded",
            "greeted=succeeded",
            "env=succeeded",
            "json=succeeded",
            "lag_known=succeeded",
            "nap=succeeded",
            "skipped=skipped"
        ]
    );
    let snapshot = h.snapshot(run).await;
    let greet = snapshot.last_attempt("greet").unwrap();
    assert_eq!(
        (greet.stdout.as_str(), greet.stderr.as_str(), greet.exit_code),
        ("hello world\n", "warning\n", Some(0))
    );
    assert_eq!(snapshot.last_attempt("argv").unwrap().stdout, "world|two words|");
    h.verify_chain().await;
}

async fn expectations_decide_failure_and_on_failure_decides_what_follows(h: Harness) {
    h.publish(
        r#"
name: failing
steps:
  - id: tolerated
    run: exit 3
    read_only: true
    timeout: 5s
    expect: { exit_code: [0, 3] }
  - id: wrong_output
    run: echo f
    read_only: true
    timeout: 5s
    expect: { stdout: "^t$" }
    on_failure: continue
  - id: fatal
    run: exit 1
    read_only: true
    timeout: 5s
    on_failure: abort
  - id: never
    run: ["true"]
    read_only: true
    timeout: 5s
"#,
    )
    .await;
    let run = h.start("failing", &[], &[]).await;
    assert_eq!(h.drive(run).await, RunStatus::Failed);
    assert_eq!(
        h.statuses(run).await,
        ["tolerated=succeeded", "wrong_output=failed", "fatal=failed", "never=pending"]
    );
    let snapshot = h.snapshot(run).await;
    assert_eq!(
        snapshot.last_attempt("wrong_output").unwrap().error.as_deref(),
        Some("stdout does not match `^t$`")
    );
    assert_eq!(
        snapshot.last_attempt("fatal").unwrap().error.as_deref(),
        Some("exit code 1, expected 0")
    );
}

async fn a_failed_step_pauses_the_run_for_the_commanders_decision(h: Harness) {
    let flag = h.path("ready");
    h.publish(
        &r#"
name: pausing
steps:
  - id: wait_for_flag
    run: ["test", "-e", "FLAG"]
    read_only: true
    timeout: 5s
  - id: after
    run: ["true"]
    read_only: true
    timeout: 5s
"#
        .replace("FLAG", &flag),
    )
    .await;
    let run = h.start("pausing", &[], &[]).await;
    assert_eq!(h.drive(run).await, RunStatus::NeedsAttention);

    // Only the commander decides.
    let refused = h.engine.decide(run, &alice(), steady_engine::run::Decision::Retry).await;
    assert!(
        matches!(refused, Err(steady_engine::engine::EngineError::NotCommander { .. })),
        "{refused:?}"
    );

    std::fs::write(&flag, "").unwrap();
    h.engine.decide(run, &commander(), steady_engine::run::Decision::Retry).await.unwrap();
    assert_eq!(h.drive(run).await, RunStatus::Succeeded);
    assert_eq!(h.snapshot(run).await.step("wait_for_flag").unwrap().attempt, 2);
}

async fn skip_and_abort_are_decisions_too(h: Harness) {
    h.publish(
        r#"
name: decisions
steps:
  - id: broken
    run: exit 1
    read_only: true
    timeout: 5s
  - id: also_broken
    run: exit 1
    read_only: true
    timeout: 5s
"#,
    )
    .await;
    let run = h.start("decisions", &[], &[]).await;
    assert_eq!(h.drive(run).await, RunStatus::NeedsAttention);
    h.engine.decide(run, &commander(), steady_engine::run::Decision::Skip).await.unwrap();
    assert_eq!(h.drive(run).await, RunStatus::NeedsAttention);
    assert_eq!(h.step_status(run, "broken").await, StepStatus::Skipped);
    let status =
        h.engine.decide(run, &commander(), steady_engine::run::Decision::Abort).await.unwrap();
    assert_eq!(status, RunStatus::Failed);
    assert!(h.actions(run).await.contains(&"decision.taken".to_owned()));
}

async fn retries_run_again_after_their_delay_and_count_attempts(h: Harness) {
    let counter = h.path("count");
    h.publish(
        &r#"
name: retrying
steps:
  - id: flaky
    run: echo x >> COUNTER; test $(wc -l < COUNTER) -ge 3
    idempotent: true
    timeout: 5s
    retries: { count: 3, delay: 50ms }
"#
        .replace("COUNTER", &counter),
    )
    .await;
    let run = h.start("retrying", &[], &[]).await;
    assert_eq!(h.drive(run).await, RunStatus::Succeeded);
    assert_eq!(count_lines(&counter), 3);
    let snapshot = h.snapshot(run).await;
    let statuses: Vec<_> = snapshot.attempts.iter().map(|a| a.status.unwrap().as_str()).collect();
    assert_eq!(statuses, ["failed", "failed", "succeeded"]);
}

async fn a_timeout_kills_the_whole_process_group(h: Harness) {
    let pid_file = h.path("child.pid");
    h.publish(
        &r#"
name: hanging
steps:
  - id: hang
    run: sleep 30 & echo $! > PIDFILE; wait
    read_only: true
    timeout: 500ms
    on_failure: continue
"#
        .replace("PIDFILE", &pid_file),
    )
    .await;
    let run = h.start("hanging", &[], &[]).await;
    let started = std::time::Instant::now();
    assert_eq!(h.drive(run).await, RunStatus::Succeeded);
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    assert_eq!(h.step_status(run, "hang").await, StepStatus::TimedOut);
    let child: i32 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
    // A killed process may linger as a zombie until something reaps it: that counts as gone.
    let state = std::fs::read_to_string(format!("/proc/{child}/stat")).unwrap_or_default();
    let alive = state.rsplit(')').next().is_some_and(|rest| !rest.trim_start().starts_with('Z'));
    assert!(!alive, "the background child {child} was killed with its group: {state}");
}

async fn output_beyond_one_mebibyte_is_cut_and_the_cut_recorded(h: Harness) {
    h.publish(
        r#"
name: chatty
steps:
  - id: flood
    run: head -c 3000000 /dev/zero | tr '\0' 'x'
    read_only: true
    timeout: 10s
"#,
    )
    .await;
    let run = h.start("chatty", &[], &[]).await;
    assert_eq!(h.drive(run).await, RunStatus::Succeeded);
    let snapshot = h.snapshot(run).await;
    let attempt = snapshot.last_attempt("flood").unwrap();
    assert_eq!(attempt.stdout.len(), 1024 * 1024);
    assert!(attempt.stdout_truncated && !attempt.stderr_truncated);
}

async fn http_steps_send_rendered_requests_and_read_json_answers(h: Harness) {
    let (url, received) =
        http_server(200, r#"{"healthy_backends": 4, "required_backends": 3}"#).await;
    let (down, _) = http_server(503, "{}").await;
    h.publish(
        &r#"
name: calling
secrets: [TOKEN]
params:
  region: { type: string, default: eu-west-1 }
steps:
  - id: capacity
    http:
      url: "URL/pools/{{ params.region }}"
      headers: { Authorization: "Bearer {{ secrets.TOKEN }}" }
    read_only: true
    timeout: 5s
  - id: enough
    check: "steps.capacity.json.healthy_backends >= steps.capacity.json.required_backends"
  - id: announce
    http: { method: POST, url: "URL/hook", json: { text: "moving {{ params.region }}", count: 2 } }
    read_only: true
    timeout: 5s
  - id: down
    http: { url: "DOWN/healthz" }
    read_only: true
    timeout: 5s
    on_failure: continue
"#
        .replace("DOWN", &down)
        .replace("URL", &url),
    )
    .await;
    let run = h.start("calling", &[], &[]).await;
    assert_eq!(h.drive(run).await, RunStatus::Succeeded);
    assert_eq!(
        h.statuses(run).await,
        ["capacity=succeeded", "enough=succeeded", "announce=succeeded", "down=failed"]
    );
    let requests = received.lock().unwrap().clone();
    assert!(requests[0].starts_with("GET /pools/eu-west-1 HTTP/1.1"));
    assert!(
        requests[0]
            .to_lowercase()
            .contains(&format!("authorization: bearer {SECRET}").to_lowercase())
    );
    assert!(requests[1].starts_with("POST /hook"));
    assert!(requests[1].ends_with(r#"{"count":2,"text":"moving eu-west-1"}"#), "{}", requests[1]);
    let snapshot = h.snapshot(run).await;
    assert_eq!(
        snapshot.last_attempt("down").unwrap().error.as_deref(),
        Some("HTTP status 503, expected 2xx")
    );
    // What was stored shows the secret masked.
    let rendered = snapshot.step("capacity").unwrap().rendered.clone().unwrap().to_string();
    assert!(rendered.contains("Bearer ***") && !rendered.contains(SECRET), "{rendered}");
}

async fn secrets_never_reach_stored_output_or_the_audit_log(h: Harness) {
    h.publish(
        r#"
name: secretive
secrets: [TOKEN]
steps:
  - id: leak
    run: echo "token is {{ secrets.TOKEN }}" && echo "$T" >&2 && exit 1
    env: { T: "{{ secrets.TOKEN }}" }
    read_only: true
    timeout: 5s
    on_failure: continue
"#,
    )
    .await;
    let run = h.start("secretive", &[], &[]).await;
    assert_eq!(h.drive(run).await, RunStatus::Succeeded);
    let snapshot = h.snapshot(run).await;
    let attempt = snapshot.last_attempt("leak").unwrap();
    assert_eq!((attempt.stdout.as_str(), attempt.stderr.as_str()), ("token is ***\n", "***\n"));
    let events = h.store.audit_events(&Default::default()).await.unwrap();
    let everything = format!("{events:?}{snapshot:?}");
    assert!(!everything.contains(SECRET), "a secret leaked into storage");
}

async fn a_lock_key_admits_one_active_run_across_runbooks(h: Harness) {
    for name in ["failover-a", "failover-b"] {
        h.publish(
            &r#"
name: NAME
lock: "pg/{{ params.cluster }}"
roles:
  approver: { description: Signs off }
params:
  cluster: { type: string, required: true }
steps:
  - id: go
    approval: { role: approver }
"#
            .replace("NAME", name),
        )
        .await;
    }
    let first = h.start("failover-a", &[("cluster", "main")], &[]).await;
    assert_eq!(h.drive(first).await, RunStatus::Waiting);
    let refused = h
        .engine
        .start_run(steady_engine::engine::StartRun {
            origin: steady_engine::run::RunOrigin::Person,
            runbook: "failover-b".into(),
            version: None,
            params: vec![("cluster".into(), "main".into())],
            mode: steady_engine::run::RunMode::Live,
            actor: commander(),
            assignments: vec![],
        })
        .await;
    match refused {
        Err(steady_engine::engine::EngineError::LockHeld { key, run_id }) => {
            assert_eq!((key.as_str(), run_id), ("pg/main", first))
        }
        other => panic!("expected a lock conflict, got {other:?}"),
    }
    // Another cluster is another key; and once the first run ends, the key is free.
    h.start("failover-b", &[("cluster", "other")], &[]).await;
    h.engine.cancel(first, &commander()).await.unwrap();
    h.start("failover-b", &[("cluster", "main")], &[]).await;
}

async fn a_failed_step_with_on_failure_rollback_runs_the_rollback_sequence(h: Harness) {
    let ledger = h.path("ledger");
    h.publish(
        &r#"
name: rolling
roles:
  approver: { description: Signs off }
steps:
  - id: go
    approval: { role: approver }
  - id: switch
    run: echo switched >> LEDGER
    timeout: 5s
  - id: verify
    run: exit 1
    read_only: true
    timeout: 5s
    on_failure: rollback
  - id: never
    run: echo never >> LEDGER
    timeout: 5s
rollback:
  - id: switch_back
    run: echo "switched back after {{ steps.verify.status }}" >> LEDGER
    idempotent: true
    timeout: 5s
  - id: broken_undo
    run: exit 2
    idempotent: true
    timeout: 5s
"#
        .replace("LEDGER", &ledger),
    )
    .await;
    let run = h.start("rolling", &[], &[("approver", &alice())]).await;
    assert_eq!(h.drive(run).await, RunStatus::Waiting);
    h.engine.approve(run, "go", &alice(), None).await.unwrap();
    // A rollback step that fails pauses the rollback for a decision, like any step.
    assert_eq!(h.drive(run).await, RunStatus::NeedsAttention);
    assert_eq!(std::fs::read_to_string(&ledger).unwrap(), "switched\nswitched back after failed\n");
    h.engine.decide(run, &commander(), steady_engine::run::Decision::Skip).await.unwrap();
    assert_eq!(h.drive(run).await, RunStatus::RolledBack);
    assert_eq!(
        h.statuses(run).await,
        [
            "go=approved",
            "switch=succeeded",
            "verify=failed",
            "never=pending",
            "switch_back=succeeded",
            "broken_undo=skipped"
        ]
    );
    assert!(h.actions(run).await.contains(&"run.rollback_started".to_owned()));
}

async fn templates_write_booleans_and_json_bodies_as_shells_and_servers_read_them(h: Harness) {
    let (url, received) = http_server(200, "{}").await;
    h.publish(
        &r#"
name: typed
params:
  dry: { type: boolean, default: true }
  replicas: { type: integer, default: 3 }
  region: { type: string, default: eu-west-1 }
steps:
  - id: in_a_shell
    run: test {{ params.dry }} = true
    read_only: true
    timeout: 5s
  - id: as_an_argument
    run: ["echo", "{{ params.dry }}", "{{ not params.dry }}"]
    read_only: true
    timeout: 5s
    expect: { stdout: "^true false$" }
  - id: inside_lists_and_maps
    run: ["echo", "{{ [params.dry] }}", "{{ {'dry': params.dry} }}", "{{ params.dry | string }}"]
    read_only: true
    timeout: 5s
    expect: { stdout: '^\[true\] \{"dry":true\} true$' }
  - id: announce
    http:
      method: POST
      url: "URL/hook"
      json:
        dry: "{{ params.dry }}"
        replicas: "{{ params.replicas }}"
        region: "{{ params.region }}"
        zones: "{{ ['a', 'b'] }}"
        text: "{{ params.replicas }} replicas in {{ params.region }}, dry run {{ params.dry }}"
    read_only: true
    timeout: 5s
"#
        .replace("URL", &url),
    )
    .await;
    let run = h.start("typed", &[], &[]).await;
    assert_eq!(h.drive(run).await, RunStatus::Succeeded, "{:?}", h.statuses(run).await);
    let requests = received.lock().unwrap().clone();
    assert!(
        requests[0].ends_with(
            r#"{"dry":true,"region":"eu-west-1","replicas":3,"text":"3 replicas in eu-west-1, dry run true","zones":["a","b"]}"#
        ),
        "{}",
        requests[0]
    );
}

async fn a_template_that_cannot_be_rendered_is_named_in_the_failure(h: Harness) {
    h.publish(
        r#"
name: broken
params:
  hosts: { type: list, default: [a] }
steps:
  - id: greet
    run: ["echo", "ok", "{{ params.hosts[3] | upper }}"]
    read_only: true
    timeout: 5s
"#,
    )
    .await;
    let run = h.start("broken", &[], &[]).await;
    assert_eq!(h.drive(run).await, RunStatus::NeedsAttention);
    let state = h.snapshot(run).await.step("greet").unwrap().clone();
    assert_eq!(state.status, StepStatus::Failed);
    let note = state.note.unwrap();
    assert!(note.contains("in `{{ params.hosts[3] | upper }}`"), "{note}");
}
