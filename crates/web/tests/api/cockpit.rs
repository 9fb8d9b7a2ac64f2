//! The run page as the incident commander's cockpit, seen by a browser without JavaScript:
//! the situation header, the decision panel that explains each choice, abort, rollback and
//! cancel asking for a reason on a confirmation page, the outcome in words, and a dry run's
//! report.

use reqwest::StatusCode;
use serde_json::json;
use steady_engine::accounts::GlobalRole::Responder;
use steady_engine::audit::AuditData;
use steady_engine::store::AuditFilter;

use crate::pages::{Browser, csrf};
use crate::*;

on_every_backend!(
    a_failed_step_shows_its_output_and_the_commander_aborts_with_a_reason,
    skipping_reads_as_succeeded_with_a_skipped_step_and_rollback_needs_rollback_steps,
    cancelling_asks_why_and_the_page_says_who_cancelled_and_why,
    cancelling_through_the_api_records_the_reason_given,
    the_header_says_whom_a_gate_waits_for_and_until_when,
    a_dry_run_reads_as_a_report,
    the_commander_skips_one_failed_item_and_retries_another_from_the_page,
    a_decision_about_one_child_must_name_a_failed_child_of_the_group,
    a_huge_step_in_a_decision_is_refused_without_being_echoed,
    the_gate_shows_the_whole_request_an_http_step_it_guards_sends,
);

const PROMOTE: &str = r#"
name: promote
title: Promote the standby
params:
  cluster: { type: string, default: main }
steps:
  - id: lag
    run: ["echo", "0"]
    read_only: true
    timeout: 5s
  - id: promote
    run: ["sh", "-c", "echo 'promoting {{ params.cluster }}'; echo 'fatal: standby not ready' >&2; exit 3"]
    timeout: 5s
  - id: announce
    run: ["echo", "announced"]
    timeout: 5s
rollback:
  - id: restore
    run: ["echo", "restored"]
    timeout: 5s
  - id: page_dba
    run: ["echo", "paged"]
    timeout: 5s
"#;

/// `promote` without rollback steps.
const NO_ROLLBACK: &str = r#"
name: flaky
steps:
  - id: try
    run: ["sh", "-c", "echo 'boom' >&2; exit 1"]
    timeout: 5s
  - id: after
    run: ["echo", "after"]
    timeout: 5s
"#;

/// Carol, a responder, signed in; her token, to start runs and watch them.
async fn commander(server: &Server) -> (Browser, String) {
    let token = server.person("carol", &[Responder]).await;
    (Browser::sign_in(server, "carol").await, token)
}

async fn start(server: &Server, token: &str, body: serde_json::Value) -> String {
    let started = server.post(token, "/api/v1/runs", body).await;
    assert_eq!(started.status, StatusCode::CREATED, "{}", started.body);
    started.body["id"].as_str().unwrap().to_owned()
}

async fn decisions(server: &Server, run: &str) -> Vec<(String, Option<String>)> {
    let filter = AuditFilter {
        run_id: Some(run.parse().unwrap()),
        action: Some("decision.taken".into()),
        ..AuditFilter::default()
    };
    let events = server.state.store.audit_events(&filter).await.unwrap();
    events
        .iter()
        .map(|event| match AuditData::from_stored(&event.action, &event.data).unwrap() {
            AuditData::DecisionTaken(taken) => (taken.decision.to_string(), taken.reason),
            other => panic!("{other:?}"),
        })
        .collect()
}

async fn a_failed_step_shows_its_output_and_the_commander_aborts_with_a_reason(backend: Backend) {
    let server = Server::start("cockpit-abort", backend).await;
    let published = publish(&server, PROMOTE).await;
    assert_eq!(published.status, StatusCode::CREATED, "{}", published.body);
    let (carol, token) = commander(&server).await;
    let run = start(&server, &token, json!({ "runbook": "promote" })).await;
    server.wait_for(&token, &run, "needs_attention").await;
    let path = format!("/runs/{run}");

    // The header: a live run, where it is, whom it waits for; the tab says it too.
    let (_, page) = carol.get(&path).await;
    assert!(page.contains("<title>needs attention · promote"), "{page}");
    assert!(page.contains("● LIVE"), "{page}");
    assert!(page.contains("step 2 of 3"), "{page}");
    assert!(page.contains("waits for the commander, user:carol, to decide"), "{page}");
    assert!(page.contains("<dt>cluster</dt><dd>main</dd>"), "{page}");
    assert!(page.contains("showing the state at"), "without JavaScript the page says when: {page}");

    // The decision panel shows what failed, and what each choice would do.
    let panel = &page[page.find(r#"id="decide""#).unwrap()..page.find(r#"class="people"#).unwrap()];
    assert!(panel.contains("fatal: standby not ready") && panel.contains("exit 3"), "{panel}");
    assert!(panel.contains("Retry runs <code>promote</code> again."), "{panel}");
    assert!(
        panel.contains(
            "Skip marks <code>promote</code> skipped and continues at <code>announce</code>."
        ),
        "{panel}"
    );
    assert!(
        panel.contains("Roll back runs <code>restore</code>, <code>page_dba</code>"),
        "{panel}"
    );
    assert!(panel.contains("Abort ends the run as failed"), "{panel}");
    assert!(panel.contains(r#"class="primary">↻ Retry"#), "retry is the primary choice: {panel}");
    assert!(panel.contains(r#"class="danger">■ Abort"#), "{panel}");

    // A forged form is refused before anything is asked.
    let (status, _, _) = carol.post(&format!("{path}/decide"), &[("decision", "abort")]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Abort first asks why, on a page of its own; nothing has happened yet.
    let token_field = csrf(&page);
    let abort = [("csrf", token_field.as_str()), ("decision", "abort")];
    let (status, confirm, _) = carol.post(&format!("{path}/decide"), &abort).await;
    assert_eq!(status, StatusCode::OK);
    assert!(confirm.contains("Abort ends the run as failed"), "{confirm}");
    assert!(confirm.contains(r#"<textarea name="reason" required"#), "{confirm}");
    assert!(confirm.contains(r#"name="confirm" value="yes""#), "{confirm}");
    server.wait_for(&token, &run, "needs_attention").await;

    // Confirming without a reason is sent back with what is missing.
    let empty = [("csrf", token_field.as_str()), ("decision", "abort"), ("confirm", "yes")];
    let (status, again, _) = carol.post(&format!("{path}/decide"), &empty).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(again.contains("Say why"), "{again}");

    let reason = "standby is <b>corrupt</b>";
    let confirmed = [
        ("csrf", token_field.as_str()),
        ("decision", "abort"),
        ("confirm", "yes"),
        ("reason", reason),
    ];
    let (status, _, location) = carol.post(&format!("{path}/decide"), &confirmed).await;
    assert_eq!((status, location.as_deref()), (StatusCode::SEE_OTHER, Some(path.as_str())));
    server.wait_for(&token, &run, "failed").await;
    assert_eq!(decisions(&server, &run).await, [("abort".to_owned(), Some(reason.to_owned()))]);

    // The page tells an abort from a failure, keeps the reason on the step, and says which
    // steps never ran.
    let (_, done) = carol.get(&path).await;
    let reason_shown = "“standby is &#60;b&#62;corrupt&#60;/b&#62;”";
    assert!(
        done.contains(&format!("■ aborted at `promote` by user:carol: {reason_shown}")),
        "{done}"
    );
    let step = &done
        [done.find(r#"id="step-promote""#).unwrap()..done.find(r#"id="step-announce""#).unwrap()];
    assert!(
        step.contains("abort decided by user:carol at") && step.contains(reason_shown),
        "{step}"
    );
    let announce = &done[done.find(r#"id="step-announce""#).unwrap()..];
    assert!(announce.contains("· not run") && !done.contains("· pending"), "{announce}");
    assert!(done.contains("<title>failed · promote"), "{done}");
}

async fn skipping_reads_as_succeeded_with_a_skipped_step_and_rollback_needs_rollback_steps(
    backend: Backend,
) {
    let server = Server::start("cockpit-skip", backend).await;
    let published = publish(&server, NO_ROLLBACK).await;
    assert_eq!(published.status, StatusCode::CREATED, "{}", published.body);
    let (carol, token) = commander(&server).await;
    let run = start(&server, &token, json!({ "runbook": "flaky" })).await;
    server.wait_for(&token, &run, "needs_attention").await;
    let path = format!("/runs/{run}");

    let (_, page) = carol.get(&path).await;
    assert!(page.contains("■ Abort") && page.contains("↷ Skip"), "{page}");
    assert!(!page.contains("Roll back"), "nothing to roll back, so it is not offered: {page}");
    let token_field = csrf(&page);
    let rollback = [("csrf", token_field.as_str()), ("decision", "rollback")];
    let (status, refused, _) = carol.post(&format!("{path}/decide"), &rollback).await;
    assert_eq!(status, StatusCode::CONFLICT, "{refused}");
    assert!(refused.contains("rollback is not one of this run&#39;s choices now"), "{refused}");

    // Skip needs no confirmation: it acts at once, with the reason given if any.
    let skip = [("csrf", token_field.as_str()), ("decision", "skip"), ("reason", "fixed by hand")];
    let (status, _, _) = carol.post(&format!("{path}/decide"), &skip).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    server.wait_for(&token, &run, "succeeded").await;
    let (_, done) = carol.get(&path).await;
    assert!(done.contains("✓ succeeded with 1 skipped step"), "{done}");
    // The step says once who skipped it, when and why: no second "skip decided by" line.
    let step = between(&done, r#"id="step-try""#, r#"id="step-after""#);
    assert!(step.contains("skipped by user:carol at"), "{step}");
    assert!(step.contains(": “fixed by hand”"), "{step}");
    assert_eq!(step.matches("user:carol").count(), 1, "{step}");
    assert!(!done.contains("skip decided by"), "{done}");
    assert!(done.contains("2 of 2 steps done"), "{done}");
    let reason = Some("fixed by hand".to_owned());
    assert_eq!(decisions(&server, &run).await, [("skip".to_owned(), reason)]);
}

async fn cancelling_asks_why_and_the_page_says_who_cancelled_and_why(backend: Backend) {
    let server = Server::start("cockpit-cancel", backend).await;
    let published = publish(&server, NO_ROLLBACK).await;
    assert_eq!(published.status, StatusCode::CREATED, "{}", published.body);
    let (carol, token) = commander(&server).await;
    let run = start(&server, &token, json!({ "runbook": "flaky", "mode": "drill" })).await;
    server.wait_for(&token, &run, "needs_attention").await;
    let path = format!("/runs/{run}");
    let (_, page) = carol.get(&path).await;
    assert!(
        !page.contains("● LIVE") && page.contains(r#"class="badge mode-drill">drill"#),
        "{page}"
    );

    let (status, _, _) = carol.post(&format!("{path}/cancel"), &[("reason", "x")]).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "no CSRF token, no cancel");
    let token_field = csrf(&page);
    let (status, confirm, _) =
        carol.post(&format!("{path}/cancel"), &[("csrf", token_field.as_str())]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(confirm.contains("Cancel stops the run now") && confirm.contains("Cancel the run"));
    server.wait_for(&token, &run, "needs_attention").await;

    let cancel = [("csrf", token_field.as_str()), ("confirm", "yes"), ("reason", "wrong cluster")];
    let (status, _, _) = carol.post(&format!("{path}/cancel"), &cancel).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    server.wait_for(&token, &run, "cancelled").await;
    let (_, done) = carol.get(&path).await;
    assert!(done.contains("■ cancelled by user:carol: “wrong cluster”"), "{done}");
    let filter = AuditFilter {
        run_id: Some(run.parse().unwrap()),
        action: Some("run.cancelled".into()),
        ..AuditFilter::default()
    };
    let events = server.state.store.audit_events(&filter).await.unwrap();
    assert_eq!(events[0].data, json!({ "reason": "wrong cluster" }));
}

/// The API says why too: a reason in the body is recorded; a body that is not one is refused.
async fn cancelling_through_the_api_records_the_reason_given(backend: Backend) {
    let server = Server::start("cockpit-cancel-api", backend).await;
    let published = publish(&server, NO_ROLLBACK).await;
    assert_eq!(published.status, StatusCode::CREATED, "{}", published.body);
    let (_, token) = commander(&server).await;
    let run = start(&server, &token, json!({ "runbook": "flaky", "mode": "drill" })).await;
    server.wait_for(&token, &run, "needs_attention").await;
    let cancel = format!("/api/v1/runs/{run}/cancel");
    let refused = server.post(&token, &cancel, json!({ "why": "typo" })).await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", refused.body);
    let cancelled =
        server.post(&token, &cancel, json!({ "reason": "paged for the wrong cluster" })).await;
    assert_eq!(cancelled.status, StatusCode::OK, "{}", cancelled.body);
    let filter = AuditFilter {
        run_id: Some(run.parse().unwrap()),
        action: Some("run.cancelled".into()),
        ..AuditFilter::default()
    };
    let events = server.state.store.audit_events(&filter).await.unwrap();
    assert_eq!(events[0].data, json!({ "reason": "paged for the wrong cluster" }));
}

const GATED: &str = r#"
name: gated
roles:
  approver: { description: Signs off }
steps:
  - id: check_lag
    check: "1 < 2"
  - id: go
    approval: { role: approver, timeout: 30m, prompt: "Go?" }
  - id: act
    run: ["echo", "acted"]
    timeout: 5s
"#;

async fn the_header_says_whom_a_gate_waits_for_and_until_when(backend: Backend) {
    let server = Server::start("cockpit-gate", backend).await;
    let published = publish(&server, GATED).await;
    assert_eq!(published.status, StatusCode::CREATED, "{}", published.body);
    let (carol, token) = commander(&server).await;
    server.person("alice", &[Responder]).await;
    let body =
        json!({ "runbook": "gated", "assignments": [{ "role": "approver", "person": "alice" }] });
    let run = start(&server, &token, body).await;
    server.wait_for(&token, &run, "waiting").await;
    let (_, page) = carol.get(&format!("/runs/{run}")).await;
    assert!(page.contains("<title>waiting · gated"), "{page}");
    assert!(page.contains("step 2 of 3"), "{page}");
    assert!(
        page.contains(
            "<code>go</code> waits for 0 of 1 approvals from people holding <code>approver</code>"
        ),
        "{page}"
    );
    assert!(page.contains("times out in 29 min") || page.contains("times out in 30 min"), "{page}");
    assert!(page.contains("data-deadline="), "the countdown has its instant: {page}");
    assert!(!page.contains(r#"class="gate-bar""#), "the commander may not answer: {page}");
    // The notice a lost session shows sits at the top of the sticky header, so it is in sight
    // however far the page is scrolled.
    let header = &page[page.find(r#"id="situation""#).expect("header")..];
    let header = &header[..header.find("</section>").expect("end of the header")];
    let notice = header.find("data-signed-out hidden").unwrap_or_else(|| panic!("{header}"));
    assert!(notice < header.find("situation-top").expect("top line"), "{header}");
    assert!(header.contains(&format!(r#"<a href="/login?next=/runs/{run}">sign in"#)), "{header}");

    // Alice, who may answer, gets the phone's bottom bar.
    let alice = Browser::sign_in(&server, "alice").await;
    let (_, hers) = alice.get(&format!("/runs/{run}")).await;
    assert!(hers.contains(r#"class="gate-bar""#) && hers.contains("waits for you"), "{hers}");
}

const REHEARSED: &str = r#"
name: rehearsed
roles:
  approver: { description: Signs off }
steps:
  - id: lag
    run: ["echo", "0"]
    read_only: true
    timeout: 5s
  - id: lag_is_zero
    check: "steps.lag.stdout | trim == '0'"
  - id: go
    approval: { role: approver }
  - id: promote
    run: ["echo", "promoted"]
    timeout: 5s
"#;

async fn a_dry_run_reads_as_a_report(backend: Backend) {
    let server = Server::start("cockpit-dry", backend).await;
    let published = publish(&server, REHEARSED).await;
    assert_eq!(published.status, StatusCode::CREATED, "{}", published.body);
    let (carol, token) = commander(&server).await;
    let run = start(&server, &token, json!({ "runbook": "rehearsed", "mode": "dry-run" })).await;
    server.wait_for(&token, &run, "succeeded").await;
    let (_, page) = carol.get(&format!("/runs/{run}")).await;
    let summary = "1 check passed, 1 read-only step ran, 1 step would run, 1 gate would wait for \
                   approver, nobody in the run could approve gate go: assign its role";
    assert!(page.contains(summary), "{page}");
    assert!(page.contains("4 steps planned, nothing changed"), "{page}");
    assert!(page.contains("○ dry run complete — nothing was changed"), "{page}");
    assert!(page.contains("Nobody holds <code>approver</code>"), "{page}");
    assert!(page.contains("compared <code>steps.lag.stdout</code> = <code>0</code>"), "{page}");
    assert!(page.contains(r#"class="badge mode-dry">dry run"#), "{page}");
}

/// Four hosts restarted at once: `web2` always fails, `web3` fails the first time only (it
/// leaves a mark), so a retry of `web3` succeeds.
const FLEET: &str = r#"
name: fleet
title: Restart the fleet
params:
  hosts: { type: list, default: [web1, web2, web3, web4] }
  mark: { type: string }
steps:
  - id: restart
    name: Restart each host
    for_each: params.hosts
    as: host
    concurrency: 4
    run: ["sh", "-c", "echo restarting {{ host }}; case {{ host }} in web2) echo 'web2: disk full' >&2; exit 1;; web3) if [ ! -e '{{ params.mark }}' ]; then touch '{{ params.mark }}'; echo 'web3: unit failed' >&2; exit 1; fi;; esac"]
    idempotent: true
    timeout: 5s
  - id: after
    run: ["echo", "after"]
    timeout: 5s
"#;

/// Starts the fleet's restart and waits until it needs its commander at `restart`, with
/// `web2` (`restart[1]`) and `web3` (`restart[2]`) failed.
async fn fleet_needing_attention(server: &Server, token: &str, name: &str) -> String {
    let published = publish(server, FLEET).await;
    assert_eq!(published.status, StatusCode::CREATED, "{}", published.body);
    let mark = std::env::temp_dir().join(format!("steady-{name}-{}", uuid::Uuid::new_v4()));
    let params = json!({ "mark": mark.display().to_string() });
    let run = start(server, token, json!({ "runbook": "fleet", "params": params })).await;
    server.wait_for(token, &run, "needs_attention").await;
    run
}

/// The part of the run page between `from` and `to`.
fn between<'p>(page: &'p str, from: &str, to: &str) -> &'p str {
    let start = page.find(from).unwrap_or_else(|| panic!("{from} in {page}"));
    let end = start + page[start..].find(to).unwrap_or_else(|| panic!("{to} in {page}"));
    &page[start..end]
}

async fn the_commander_skips_one_failed_item_and_retries_another_from_the_page(backend: Backend) {
    let server = Server::start("cockpit-items", backend).await;
    let (carol, token) = commander(&server).await;
    let run = fleet_needing_attention(&server, &token, "items").await;
    let path = format!("/runs/{run}");

    // The panel lists the two failed items, each with its last lines and buttons of its own,
    // and says what retrying the whole group does.
    let (_, page) = carol.get(&path).await;
    let panel = between(&page, r#"id="decide""#, r#"class="people"#);
    assert!(panel.contains("2 items failed or were interrupted"), "{panel}");
    assert!(panel.contains("web2: disk full") && panel.contains("web3: unit failed"), "{panel}");
    for item in ["restart[1]", "restart[2]"] {
        assert!(panel.contains(&format!(r#"data-step="{item}""#)), "{item}: {panel}");
        assert!(panel.contains(&format!(r#"name="step" value="{item}""#)), "{item}: {panel}");
    }
    assert!(!panel.contains(r#"data-step="restart[0]""#), "a succeeded item: {panel}");
    assert!(panel.contains("↻ Retry this one") && panel.contains("↷ Skip this one"), "{panel}");
    assert!(
        panel.contains(
            "Retry runs only the failed and interrupted items of <code>restart</code> again \
             (2 items); those that succeeded do not run again."
        ),
        "{panel}"
    );
    // The grid offers the same in a failed item, and nothing in one that succeeded.
    let grid = between(&page, r#"<ul class="items">"#, "</ul>\n");
    let failed = between(grid, r#"id="step-restart[1]""#, "</li>");
    assert!(failed.contains(r#"data-step="restart[1]""#), "{failed}");
    let succeeded = between(grid, r#"id="step-restart[0]""#, "</li>");
    assert!(!succeeded.contains("decide-one"), "{succeeded}");
    assert!(page.contains("2 of 4 hosts, 2 failed, limit 0"), "{page}");

    // Someone who does not command the run sees no buttons.
    server.person("alice", &[Responder]).await;
    let alice = Browser::sign_in(&server, "alice").await;
    let (_, seen) = alice.get(&path).await;
    assert!(seen.contains("web2: disk full") && !seen.contains("decide-one"), "{seen}");

    // Skip `web2` from the panel, without JavaScript: the form posts its button's value.
    let field = csrf(&page);
    let skip = [("csrf", field.as_str()), ("step", "restart[1]"), ("decision", "skip")];
    let (status, body, location) = carol.post(&format!("{path}/decide"), &skip).await;
    assert_eq!(
        (status, location.as_deref()),
        (StatusCode::SEE_OTHER, Some(path.as_str())),
        "{body}"
    );

    // `web3` still awaits a decision: the panel lists it alone.
    server.wait_for(&token, &run, "needs_attention").await;
    let (_, page) = carol.get(&path).await;
    let panel = between(&page, r#"id="decide""#, r#"class="people"#);
    assert!(panel.contains("1 item failed or was interrupted"), "{panel}");
    assert!(!panel.contains(r#"data-step="restart[1]""#), "{panel}");
    let retry = [("csrf", field.as_str()), ("step", "restart[2]"), ("decision", "retry")];
    let (status, body, _) = carol.post(&format!("{path}/decide"), &retry).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{body}");

    // The run goes on: `web3` restarts, `after` runs, and the run ends well.
    let done = server.wait_for(&token, &run, "succeeded").await;
    let status_of = |id: &str| {
        done["steps"].as_array().unwrap().iter().find(|s| s["id"] == id).unwrap()["status"].clone()
    };
    assert_eq!(status_of("restart[1]"), "skipped", "{done}");
    assert_eq!(status_of("restart[2]"), "succeeded", "{done}");
    assert_eq!(status_of("after"), "succeeded", "{done}");
    let (_, page) = carol.get(&path).await;
    assert!(page.contains("skipped by user:carol at"), "{page}");
    assert!(!page.contains("skip decided by"), "said once, in the item's note: {page}");
    assert_eq!(
        decisions(&server, &run).await,
        [("skip".to_owned(), None), ("retry".to_owned(), None)]
    );
}

async fn a_decision_about_one_child_must_name_a_failed_child_of_the_group(backend: Backend) {
    let server = Server::start("cockpit-one-child", backend).await;
    let (_carol, token) = commander(&server).await;
    let run = fleet_needing_attention(&server, &token, "one-child").await;
    // A succeeded item, an item that does not exist, a step that is no child of the group.
    refused_without_echo(&server, &token, &run, &["restart[0]", "restart[9]", "nope"]).await;
}

async fn a_huge_step_in_a_decision_is_refused_without_being_echoed(backend: Backend) {
    let server = Server::start("cockpit-huge-step", backend).await;
    let (_carol, token) = commander(&server).await;
    let run = fleet_needing_attention(&server, &token, "huge-step").await;
    refused_without_echo(&server, &token, &run, &["x".repeat(1_000_000).as_str()]).await;
}

/// Retrying and skipping each of `steps` is refused with a 4xx of less than 10 KB, and the run
/// still awaits its commander, nothing decided.
async fn refused_without_echo(server: &Server, token: &str, run: &str, steps: &[&str]) {
    let path = format!("/api/v1/runs/{run}/decisions");
    for step in steps {
        for decision in ["retry", "skip"] {
            let body = json!({ "decision": decision, "step": step });
            let answer = server.post(token, &path, body).await;
            let shown = &step[..step.len().min(20)];
            assert!(answer.status.is_client_error(), "{decision} {shown}: {}", answer.status);
            let size = answer.body.to_string().len();
            assert!(size < 10_000, "{decision} {shown}: an answer of {size} bytes");
        }
    }
    let still = server.wait_for(token, run, "needs_attention").await;
    assert_eq!(still["status"], "needs_attention");
    assert!(decisions(server, run).await.is_empty());
}

/// A gate before a webhook: approving sends this request, body and all.
const WEBHOOK: &str = r#"
name: webhook
secrets: [HOOK_KEY]
params:
  cluster: { type: string, default: main }
roles:
  approver: { description: Signs off }
steps:
  - id: go
    approval: { role: approver, allow_self_approval: true }
  - id: page
    http:
      method: POST
      url: "https://pager.example.com/v1/events"
      headers: { X-Key: "{{ secrets.HOOK_KEY }}" }
      json: { cluster: "{{ params.cluster }}", severity: "<b>critical</b>" }
"#;

async fn the_gate_shows_the_whole_request_an_http_step_it_guards_sends(backend: Backend) {
    let secrets = std::collections::BTreeMap::from([("HOOK_KEY".to_owned(), "k-9f3a1c".into())]);
    let server =
        Server::start_with_secrets("cockpit-http", backend, Default::default(), secrets).await;
    let published = publish(&server, WEBHOOK).await;
    assert_eq!(published.status, StatusCode::CREATED, "{}", published.body);
    let (carol, token) = commander(&server).await;
    let body = json!({
        "runbook": "webhook",
        "params": { "cluster": "east" },
        "assignments": [{ "role": "approver", "person": "carol" }],
    });
    let run = start(&server, &token, body).await;
    server.wait_for(&token, &run, "waiting").await;

    let (_, page) = carol.get(&format!("/runs/{run}")).await;
    let gate = between(&page, r#"<ul class="guarded">"#, "</ul>");
    // Method and URL, each header with its secret masked, then the JSON body, escaped.
    let request = "POST https://pager.example.com/v1/events\nX-Key: ***\n\n{\n  \"cluster\": \"east\",\n  \"severity\": \"&#60;b&#62;critical&#60;/b&#62;\"\n}";
    let shown = gate.replace("&#34;", "\"");
    assert!(shown.contains(request), "{gate}");
    assert!(!page.contains("k-9f3a1c"), "the secret never reaches the page");
}
