//! Proposals from alerts, as a browser without JavaScript sees them: the proposal's page with
//! its alerts, parameters, lock and the facts its dry run gathered; taking command through the
//! confirmation page with the roles chosen; dismissing with a reason (and refusing without
//! one); a proposal that expired; what people without the responder role see and may not do;
//! and *my work* listing proposals first.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use steady_engine::accounts::GlobalRole::{Auditor, Responder, Trigger};

use crate::pages::{Browser, csrf};
use crate::*;

on_every_backend!(
    a_proposal_page_shows_its_alerts_parameters_lock_and_facts,
    a_responder_takes_command_through_the_confirmation_page_with_roles,
    a_responder_dismisses_with_a_reason_and_a_proposal_left_alone_expires,
    forged_forms_and_people_without_the_responder_role_are_refused,
    my_work_lists_proposals_first_and_the_runs_list_tells_them_apart,
);

/// A failover an alert proposes, with a dry run that gathers the facts first: a read-only
/// step that takes a moment (so that the page can be seen while it gathers), and a check.
const FAILOVER: &str = r#"
name: failover
title: Fail over the database
lock: "db/{{ params.cluster }}"
roles:
  approver: { description: Signs off the promotion }
params:
  cluster: { type: string, required: true, pattern: "^[a-z0-9-]+$" }
steps:
  - id: in_recovery
    name: The standby is in recovery
    run: ["sh", "-c", "sleep 2; echo t"]
    read_only: true
    timeout: 10s
  - id: standby_ok
    check: "steps.in_recovery.stdout | trim == 't'"
  - id: go
    approval: { role: approver }
  - id: promote
    name: Promote the standby
    run: ["echo", "promoted {{ params.cluster }}"]
    timeout: 5s
triggers:
  - source: json
    when: "alert.labels.alertname == 'PrimaryDown'"
    params: { cluster: "{{ alert.labels.cluster }}" }
    then: dry-run
"#;

/// A server with the failover published, the `alerts` trigger account's token, and carol, a
/// responder, signed in.
async fn setup(name: &str, backend: Backend) -> (Server, String, Browser) {
    let server = Server::start(name, backend).await;
    let published = publish(&server, FAILOVER).await;
    assert_eq!(published.status, StatusCode::CREATED, "{}", published.body);
    let alerts = server.person("alerts", &[Trigger]).await;
    server.person("carol", &[Responder]).await;
    server.person("alice", &[Responder]).await;
    let carol = Browser::sign_in(&server, "carol").await;
    (server, alerts, carol)
}

/// Delivers a `PrimaryDown` alert about `cluster` (`firing` or `resolved`); returns what it
/// came to: the run it went to and, for a new proposal, its dry run.
async fn alert(server: &Server, token: &str, cluster: &str, status: &str) -> (String, Value) {
    let body = json!({
        "status": status,
        "labels": { "alertname": "PrimaryDown", "cluster": cluster, "severity": "critical" },
    });
    let delivered = server.post(token, "/api/v1/hooks/json", body).await;
    assert_eq!(delivered.status, StatusCode::OK, "{}", delivered.body);
    let outcome = delivered.body["outcomes"][0].clone();
    (outcome["run_id"].as_str().unwrap_or_default().to_owned(), outcome["dry_run_id"].clone())
}

/// A new proposal about `cluster`, once its dry run has gathered the facts; returns its id.
async fn proposal(server: &Server, token: &str, watcher: &str, cluster: &str) -> String {
    let (run, dry_run) = alert(server, token, cluster, "firing").await;
    let dry_run = dry_run.as_str().expect("a dry run gathers the facts").to_owned();
    server.wait_for(watcher, &dry_run, "succeeded").await;
    run
}

async fn status_of(server: &Server, token: &str, run: &str) -> Value {
    server.get(token, &format!("/api/v1/runs/{run}")).await.body["status"].clone()
}

/// The fields of a form, borrowed as `Browser::post` takes them.
fn fields(pairs: &[(&str, String)]) -> Vec<(String, String)> {
    pairs.iter().map(|(key, value)| ((*key).to_owned(), value.clone())).collect()
}

async fn post(browser: &Browser, path: &str, form: &[(String, String)]) -> (StatusCode, String) {
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let (status, body, location) = browser.post(path, &form).await;
    (status, location.unwrap_or(body))
}

async fn a_proposal_page_shows_its_alerts_parameters_lock_and_facts(backend: Backend) {
    let (server, alerts, carol) = setup("proposal-page", backend).await;
    let watcher = server.person("watcher", &[Responder]).await;

    // While the dry run gathers, the page says so and follows the dry run's events too.
    let (run, dry_run) = alert(&server, &alerts, "c1", "firing").await;
    let dry_run = dry_run.as_str().unwrap().to_owned();
    let (status, gathering) = carol.get(&format!("/runs/{run}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(gathering.contains("still gathering"), "{gathering}");
    assert!(gathering.contains(&format!(r#"data-facts-run="{dry_run}""#)), "{gathering}");
    assert!(gathering.contains(&format!(r#"data-live-run="{run}""#)), "a proposal is followed");
    server.wait_for(&watcher, &dry_run, "succeeded").await;
    // The same alert resolving is noted on the proposal, newest first.
    let (added, _) = alert(&server, &alerts, "c1", "resolved").await;
    assert_eq!(added, run, "the resolved alert goes to the same proposal");

    let (status, page) = carol.get(&format!("/runs/{run}")).await;
    assert_eq!(status, StatusCode::OK);
    for shown in [
        "◆ PROPOSED",
        "Proposed by alert <code>PrimaryDown</code>, which has resolved since.",
        "Nothing runs until a responder takes command.",
        "It expires",
        // The parameters read from the alert, and the lock it would take.
        "Parameters, read from the alert",
        "<dt>cluster</dt><dd>c1</dd>",
        "<code>db/c1</code>, taken when someone takes command",
        // The alerts with their labels.
        "<dt>severity</dt><dd>critical</dd>",
        "· proposed this run",
        // The facts: the read-only step's output, the check with what it compared.
        "Facts from a dry run",
        "✓ succeeded",
        "1 check passed",
        "compared <code>steps.in_recovery.stdout</code> = <code>t</code>",
        &format!(r#"href="/runs/{dry_run}""#),
        // The buttons, and the plan of steps, none run.
        &format!(r#"href="/runs/{run}/take""#),
        &format!(r#"action="/runs/{run}/dismiss""#),
        "data-confirm-reason=",
        "none has run",
        "· not run",
        "echo &#39;promoted c1&#39;",
        "Nobody commands it yet",
    ] {
        assert!(page.contains(shown), "{shown:?} is missing:\n{page}");
    }
    let resolved = page.find("✓ resolved</span>").expect("the resolved alert is marked");
    let firing = page.find("▲ firing</span>").expect("the firing alert is listed");
    assert!(resolved < firing, "newest first");
    // The parameters are in the proposal's panel, not twice over in the header too.
    let header = &page[page.find(r#"id="situation""#).unwrap()..];
    let header = &header[..header.find("</section>").unwrap()];
    assert!(!header.contains("<dt>cluster</dt>"), "{header}");
    assert!(!page.contains("data-facts-run"), "the facts are in: nothing more to follow");
    // What a commander does to a run makes no sense before anyone commands it.
    for hidden in ["/cancel\"", "assign-form", "hand-over-form", "note-form", "⚠ nobody"] {
        assert!(!page.contains(hidden), "{hidden:?} is shown:\n{page}");
    }
    // Its event stream stays open from where the page was drawn: a proposal has not finished.
    let latest = server.state.store.latest_seq().await.unwrap();
    let events = server
        .client
        .get(format!("{}/api/v1/runs/{run}/events?after={latest}", server.url))
        .bearer_auth(&watcher)
        .send()
        .await
        .unwrap();
    assert_eq!(events.status(), StatusCode::OK);
}

async fn a_responder_takes_command_through_the_confirmation_page_with_roles(backend: Backend) {
    let (server, alerts, carol) = setup("proposal-take", backend).await;
    let watcher = server.person("watcher", &[Responder]).await;
    let run = proposal(&server, &alerts, &watcher, "c1").await;
    let take = format!("/runs/{run}/take");

    let (status, page) = carol.get(&take).await;
    assert_eq!(status, StatusCode::OK);
    for shown in [
        "Take command of Fail over the database",
        "● LIVE",
        "taking lock <code>db/c1</code>",
        "Proposed by alert <code>PrimaryDown</code>",
        "1 check passed",
        r#"name="role.approver""#,
        r#"<option value="alice">"#,
        "<code>approver</code>: <em>nobody</em>",
        // Nobody could approve the gate: carol would start the run, so she may not.
        "Gate `go` needs 1 approval(s) from `approver`",
        "(user:carol starts the run, so does not count)",
        "run      echo &#39;promoted c1&#39;",
    ] {
        assert!(page.contains(shown), "{shown:?} is missing:\n{page}");
    }
    let token = csrf(&page);

    // Checking the roles shows who would hold them, and the warning goes.
    let check = fields(&[
        ("csrf", token.clone()),
        ("role.approver", "alice".into()),
        ("confirmed", "no".into()),
    ]);
    let (status, checked) = post(&carol, &take, &check).await;
    assert_eq!(status, StatusCode::OK);
    assert!(checked.contains("<code>approver</code>: user:alice"), "{checked}");
    assert!(checked.contains(r#"name="role.approver" value="alice""#), "{checked}");
    assert!(!checked.contains("Gate `go` needs"), "{checked}");
    assert_eq!(
        server.get(&watcher, &format!("/api/v1/runs/{run}")).await.body["status"],
        "proposed"
    );

    // Taking command starts it live, commanded by carol, alice its approver.
    let confirmed = fields(&[
        ("csrf", token.clone()),
        ("role.approver", "alice".into()),
        ("confirmed", "yes".into()),
    ]);
    let (status, location) = post(&carol, &take, &confirmed).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{location}");
    assert_eq!(location, format!("/runs/{run}"));
    let detail = server.wait_for(&watcher, &run, "waiting").await;
    assert_eq!(detail["commander"], "user:carol", "{detail}");
    assert!(detail.to_string().contains("user:alice"), "alice holds approver: {detail}");
    let (_, page) = carol.get(&format!("/runs/{run}")).await;
    for shown in [
        "● LIVE",
        "◆ Proposed by alert <code>PrimaryDown</code>",
        "taken by <strong>user:carol</strong>",
        "Commander <strong>user:carol</strong>",
        "Facts from a dry run",
    ] {
        assert!(page.contains(shown), "{shown:?} is missing:\n{page}");
    }
    assert!(!page.contains(&format!(r#"href="/runs/{run}/take""#)), "{page}");

    // Taken once: the take page now sends people to the run.
    let (status, again) = carol.get(&take).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(again.contains("no longer a proposal: it is waiting"), "{again}");
    assert!(again.contains(&format!(r#"href="/runs/{run}""#)), "{again}");

    // A proposal whose lock a run started meanwhile holds: the error page links to that run.
    let second = proposal(&server, &alerts, &watcher, "c2").await;
    let started = server
        .post(
            &watcher,
            "/api/v1/runs",
            json!({ "runbook": "failover", "params": { "cluster": "c2" } }),
        )
        .await;
    assert_eq!(started.status, StatusCode::CREATED, "{}", started.body);
    let holder = started.body["id"].as_str().unwrap().to_owned();
    let (status, held) = post(
        &carol,
        &format!("/runs/{second}/take"),
        &fields(&[("csrf", token), ("confirmed", "yes".into())]),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(held.contains(&format!("is held by active run {holder}")), "{held}");
    assert!(held.contains(&format!(r#"href="/runs/{holder}""#)), "{held}");
}

async fn a_responder_dismisses_with_a_reason_and_a_proposal_left_alone_expires(backend: Backend) {
    let (server, alerts, carol) = setup("proposal-dismiss", backend).await;
    let watcher = server.person("watcher", &[Responder]).await;
    let run = proposal(&server, &alerts, &watcher, "c1").await;
    let dismiss = format!("/runs/{run}/dismiss");
    let (_, page) = carol.get(&format!("/runs/{run}")).await;
    let token = csrf(&page);

    // Without JavaScript the button leads to the confirmation page, which asks why.
    let (status, asked) = post(&carol, &dismiss, &fields(&[("csrf", token.clone())])).await;
    assert_eq!(status, StatusCode::OK);
    assert!(asked.contains("Dismiss <code>failover</code>"), "{asked}");
    assert!(asked.contains("nothing runs"), "{asked}");
    assert!(asked.contains(&format!(r#"action="{dismiss}""#)), "{asked}");
    assert!(!asked.contains("● LIVE"), "a proposal is not a live run yet: {asked}");
    for blank in ["", "   "] {
        let form =
            fields(&[("csrf", token.clone()), ("confirm", "yes".into()), ("reason", blank.into())]);
        let (status, again) = post(&carol, &dismiss, &form).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(again.contains("Say why"), "{again}");
    }
    assert_eq!(
        server.get(&watcher, &format!("/api/v1/runs/{run}")).await.body["status"],
        "proposed"
    );

    let form = fields(&[
        ("csrf", token.clone()),
        ("confirm", "yes".into()),
        ("reason", "a drill of the alerting, nothing is down".into()),
    ]);
    let (status, location) = post(&carol, &dismiss, &form).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{location}");
    assert_eq!(location, format!("/runs/{run}"));
    assert_eq!(
        server.get(&watcher, &format!("/api/v1/runs/{run}")).await.body["status"],
        "dismissed"
    );
    let (_, page) = carol.get(&format!("/runs/{run}")).await;
    for shown in [
        "⊘ dismissed by user:carol: “a drill of the alerting, nothing is down”",
        "ended: this is the final state",
        "Nobody took command.",
        "<dt>severity</dt><dd>critical</dd>",
        "4 steps planned, none run",
    ] {
        assert!(page.contains(shown), "{shown:?} is missing:\n{page}");
    }
    assert!(!page.contains("● LIVE"), "it never ran: {page}");
    assert!(!page.contains("data-live-run"), "{page}");
    assert!(!page.contains(&format!(r#"href="/runs/{run}/take""#)), "{page}");
    // Dismissed once: a second dismissal (a colleague's, say) says so and links to it.
    let (status, again) = post(&carol, &dismiss, &form).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(again.contains("no longer a proposal: it is dismissed"), "{again}");
    assert!(again.contains(&format!(r#"href="/runs/{run}""#)), "{again}");

    // Nobody takes the next one, and no alert comes for it: it expires.
    let left = proposal(&server, &alerts, &watcher, "c2").await;
    // The server's expiry (an hour, by default) ends it, looking every second.
    server.clock.advance(Duration::from_secs(2 * 3600));
    server.wait_for(&watcher, &left, "dismissed").await;
    // Two hours on, carol's session has lapsed too.
    let carol = Browser::sign_in(&server, "carol").await;
    let (_, page) = carol.get(&format!("/runs/{left}")).await;
    assert!(page.contains("⊘ expired: nobody took it within 1 h"), "{page}");
    assert!(page.contains("<dd>c2</dd>"), "its alert is still shown: {page}");
}

async fn forged_forms_and_people_without_the_responder_role_are_refused(backend: Backend) {
    let (server, alerts, carol) = setup("proposal-guard", backend).await;
    let watcher = server.person("watcher", &[Responder]).await;
    server.person("audrey", &[Auditor]).await;
    let run = proposal(&server, &alerts, &watcher, "c1").await;

    // Carol's own forms, sent without their CSRF token.
    let take = fields(&[("confirmed", "yes".into())]);
    let (status, _) = post(&carol, &format!("/runs/{run}/take"), &take).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let dismiss = fields(&[("confirm", "yes".into()), ("reason", "forged".into())]);
    let (status, _) = post(&carol, &format!("/runs/{run}/dismiss"), &dismiss).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(status_of(&server, &watcher, &run).await, "proposed");

    // An auditor reads the proposal but is offered nothing, and may do nothing.
    let audrey = Browser::sign_in(&server, "audrey").await;
    let (status, page) = audrey.get(&format!("/runs/{run}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("Waiting for a responder to take command."), "{page}");
    assert!(page.contains("Facts from a dry run"), "{page}");
    assert!(!page.contains(&format!(r#"href="/runs/{run}/take""#)), "{page}");
    assert!(!page.contains(&format!(r#"action="/runs/{run}/dismiss""#)), "{page}");
    let (status, _) = audrey.get(&format!("/runs/{run}/take")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let token = csrf(&page);
    let take = fields(&[("csrf", token.clone()), ("confirmed", "yes".into())]);
    let (status, _) = post(&audrey, &format!("/runs/{run}/take"), &take).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let dismiss =
        fields(&[("csrf", token), ("confirm", "yes".into()), ("reason", "not mine".into())]);
    let (status, _) = post(&audrey, &format!("/runs/{run}/dismiss"), &dismiss).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (_, work) = audrey.get("/work").await;
    assert!(!work.contains("Proposed by alerts"), "{work}");
    assert_eq!(status_of(&server, &watcher, &run).await, "proposed");
}

async fn my_work_lists_proposals_first_and_the_runs_list_tells_them_apart(backend: Backend) {
    let (server, alerts, carol) = setup("proposal-work", backend).await;
    let watcher = server.person("watcher", &[Responder]).await;
    let (_, empty) = carol.get("/work").await;
    assert!(!empty.contains("Proposed by alerts"), "no proposal, no section: {empty}");

    let first = proposal(&server, &alerts, &watcher, "c1").await;
    let second = proposal(&server, &alerts, &watcher, "c2").await;
    let (status, work) = carol.get("/work").await;
    assert_eq!(status, StatusCode::OK);
    let proposed = work.find("Proposed by alerts").expect("the proposals' section");
    assert!(proposed < work.find("Decisions I owe").unwrap(), "it comes first: {work}");
    let section = &work[proposed..work.find("Decisions I owe").unwrap()];
    for shown in [
        "Fail over the database",
        "Alert <code>PrimaryDown</code>",
        "<dt>cluster</dt><dd>c1</dd>",
        "<dt>cluster</dt><dd>c2</dd>",
        "Facts: <span class=\"badge ok\">✓ succeeded</span> 1 check passed",
        &format!(r#"href="/runs/{first}/take""#),
        &format!(r#"action="/runs/{second}/dismiss""#),
    ] {
        assert!(section.contains(shown), "{shown:?} is missing:\n{section}");
    }
    let newest = section.find(&format!("/runs/{second}")).unwrap();
    assert!(newest < section.find(&format!("/runs/{first}")).unwrap(), "newest first");
    assert!(work.contains(r#"id="reason-dialog""#), "dismissing asks why: {work}");
    assert!(!section.contains("Older proposals are open too"), "{section}");

    // An alert storm: my work shows the ten newest and links to the rest.
    for n in 0..10 {
        alert(&server, &alerts, &format!("storm{n}"), "firing").await;
    }
    let (_, stormy) = carol.get("/work").await;
    let section = &stormy
        [stormy.find("Proposed by alerts").unwrap()..stormy.find("Decisions I owe").unwrap()];
    assert_eq!(section.matches("◆ proposed</span>").count(), 10, "{section}");
    assert!(
        section.contains("storm9") && !section.contains("<dd>c1</dd>"),
        "the newest: {section}"
    );
    assert!(
        section.contains(r#"<a href="/runs?status=proposed">the runs page lists them all</a>"#),
        "{section}"
    );
    let (_, all) = carol.get("/runs?status=proposed").await;
    assert!(all.contains(&format!("/runs/{first}")), "{all}");
    for n in 0..10 {
        let (storm, _) = alert(&server, &alerts, &format!("storm{n}"), "firing").await;
        let dismissed = server
            .post(&watcher, &format!("/api/v1/runs/{storm}/dismiss"), json!({ "reason": "storm" }))
            .await;
        assert_eq!(dismissed.status, StatusCode::OK, "{}", dismissed.body);
    }
    let (_, work) = carol.get("/work").await;

    // The runs list: a badge of their own, and a status to filter by.
    let (_, runs) = carol.get("/runs?status=proposed").await;
    assert!(runs.contains(r#"<span class="badge proposed">◆ proposed</span>"#), "{runs}");
    assert!(runs.contains("nobody yet"), "{runs}");
    assert!(runs.contains(r#"<option value="proposed" selected>"#), "{runs}");

    // Taken, the first one leaves the section for "Runs I command"; dismissed, the second goes.
    let token = csrf(&work);
    let take = fields(&[("csrf", token.clone()), ("confirmed", "yes".into())]);
    let (status, _) = post(&carol, &format!("/runs/{first}/take"), &take).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let dismiss =
        fields(&[("csrf", token), ("confirm", "yes".into()), ("reason", "c2 came back".into())]);
    let (status, _) = post(&carol, &format!("/runs/{second}/dismiss"), &dismiss).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (_, work) = carol.get("/work").await;
    assert!(!work.contains("Proposed by alerts"), "{work}");
    let commanded = &work[work.find("Runs I command").unwrap()..];
    assert!(commanded.contains(&format!("/runs/{first}")), "{commanded}");
    let (_, runs) = carol.get("/runs?status=dismissed").await;
    assert!(runs.contains(r#"<span class="badge dismissed">⊘ dismissed</span>"#), "{runs}");
    assert!(runs.contains(&format!("/runs/{second}")), "{runs}");
    assert!(!runs.contains(&format!("/runs/{first}")), "{runs}");
}
