//! The commander's cockpit and the author's desk, as a browser without JavaScript sees them:
//! *my work* in sections, sign-in that returns to the link that was opened (and nowhere
//! else), picking people for roles with a warning when nobody could approve a gate,
//! publishing a new version from the browser, and notifications that link to the run.

use reqwest::{StatusCode, header};
use steady_engine::accounts::GlobalRole::{Admin, Auditor, Author, Responder};

use crate::pages::{Browser, RESTART, csrf};
use crate::*;

on_every_backend!(
    my_work_shows_decisions_owed_runs_commanded_and_what_waits_on_others,
    sign_in_returns_to_the_link_opened_and_never_to_another_site,
    the_start_form_offers_people_and_warns_when_nobody_could_approve_a_gate,
    an_author_fixes_an_error_previews_and_publishes_a_new_version,
    notifications_link_to_the_gate_carry_its_prompt_and_escape_slack_markup,
);

/// A check that fails: with the default `on_failure: pause` the run waits for its commander.
const FLAKY: &str = r#"
name: flaky
steps:
  - id: check
    name: Check the replica
    run: ["false"]
    read_only: true
    timeout: 5s
"#;

async fn start_confirmed(browser: &Browser, runbook: &str, fields: &[(&str, &str)]) -> String {
    let (_, page) = browser.get(&format!("/runbooks/{runbook}")).await;
    let token = csrf(&page);
    let mut form = vec![("csrf", token.as_str()), ("mode", "live")];
    form.extend_from_slice(fields);
    form.extend([("version", "1"), ("confirmed", "yes")]);
    let (status, body, location) = browser.post(&format!("/runbooks/{runbook}/start"), &form).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
    location.unwrap().trim_start_matches("/runs/").to_owned()
}

async fn my_work_shows_decisions_owed_runs_commanded_and_what_waits_on_others(backend: Backend) {
    let server = Server::start("cockpit", backend).await;
    publish(&server, RESTART).await;
    publish(&server, FLAKY).await;
    let watcher = server.person("watcher", &[Responder]).await;
    server.person("carol", &[Responder]).await;
    server.person("alice", &[Responder]).await;
    let carol = Browser::sign_in(&server, "carol").await;
    let alice = Browser::sign_in(&server, "alice").await;

    // Carol starts a restart naming only herself as approver: she may not approve her own
    // run, so nobody can open the gate. And a check that fails, which stops for her decision.
    let lonely =
        start_confirmed(&carol, "restart", &[("param.service", "api"), ("role.approver", "carol")])
            .await;
    let stopped = start_confirmed(&carol, "flaky", &[]).await;
    // And a restart the watcher may approve: she waits on him.
    let shared = start_confirmed(
        &carol,
        "restart",
        &[("param.service", "db"), ("role.approver", "carol, watcher")],
    )
    .await;
    server.wait_for(&watcher, &lonely, "waiting").await;
    server.wait_for(&watcher, &shared, "waiting").await;
    server.wait_for(&watcher, &stopped, "needs_attention").await;

    let (status, work) = carol.get("/work").await;
    assert_eq!(status, StatusCode::OK);
    let sections: Vec<usize> =
        ["Decisions I owe", "Waiting for me", "Runs I command", "Waiting on others"]
            .iter()
            .map(|title| work.find(title).unwrap_or_else(|| panic!("{title}: {work}")))
            .collect();
    let (decisions, waiting, commanded, others) = (
        &work[sections[0]..sections[1]],
        &work[sections[1]..sections[2]],
        &work[sections[2]..sections[3]],
        &work[sections[3]..],
    );
    // Her stopped run is hers to decide, and so is the gate nobody may approve.
    assert!(decisions.contains(&format!("/runs/{stopped}#step-check")), "{decisions}");
    assert!(
        decisions.contains("The step failed and the run waits for your decision"),
        "{decisions}"
    );
    assert!(decisions.contains(&format!("/runs/{lonely}#step-go")), "{decisions}");
    assert!(decisions.contains("Nobody in the run may give 1 of the approvals"), "{decisions}");
    // Nothing she cannot answer is offered to her.
    assert!(waiting.contains("Nothing waits for you"), "{waiting}");
    assert!(commanded.contains(&lonely[..13]) && commanded.contains(&stopped[..13]), "{commanded}");
    assert!(others.contains(&format!("/runs/{shared}#step-go")), "{others}");
    assert!(
        others.contains("user:carol started this run and may not approve its gates"),
        "{others}"
    );
    // The gate nobody may open is her decision, said once: not also waiting on others.
    assert!(!others.contains(&lonely), "{others}");
    // A lost session is said on the page, with the way back here.
    assert!(
        work.contains(r#"data-signed-out hidden>Signed out — <a href="/login?next=/work">"#),
        "{work}"
    );

    // On a phone, her bottom bar says what she may do at a gate of her own run: reject only.
    let (_, page) = carol.get(&format!("/runs/{shared}")).await;
    let bar = &page[page.find(r#"id="gate-bar""#).expect("gate bar")..];
    let bar = &bar[..bar.find("</form>").unwrap()];
    assert!(
        bar.contains("You started this run: you may reject <code>go</code>, not approve it"),
        "{bar}"
    );
    assert!(bar.contains(r#"value="reject""#) && !bar.contains(r#"value="approve""#), "{bar}");
    // The watcher may do both, and is told it waits for him.
    let watcher_browser = Browser::sign_in(&server, "watcher").await;
    let (_, his) = watcher_browser.get(&format!("/runs/{shared}")).await;
    assert!(his.contains("<code>go</code> waits for you"), "{his}");

    // Alice takes no part in either run: nothing is hers.
    let (_, hers) = alice.get("/work").await;
    assert!(!hers.contains(&lonely) && !hers.contains(&stopped), "{hers}");
    assert!(hers.contains("You command no active run"), "{hers}");
}

async fn sign_in_returns_to_the_link_opened_and_never_to_another_site(backend: Backend) {
    let server = Server::start("next", backend).await;
    server.person("carol", &[Responder]).await;
    server.person("audrey", &[Auditor]).await;
    server.person("ada", &[Admin]).await;
    let client =
        reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();

    // A link from a notification, opened signed out, goes to the login page and remembers it.
    let link = "/runs?status=waiting&mode=live";
    let response = client.get(format!("{}{link}", server.url)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let login = response.headers()[header::LOCATION].to_str().unwrap().to_owned();
    assert_eq!(login, "/login?next=%2Fruns%3Fstatus%3Dwaiting%26mode%3Dlive");
    let page =
        client.get(format!("{}{login}", server.url)).send().await.unwrap().text().await.unwrap();
    assert!(page.contains(r#"name="next" value="/runs?status=waiting&#38;mode=live""#), "{page}");

    let sign_in = |name: &'static str, next: &'static str| {
        let client = client.clone();
        let url = format!("{}/login", server.url);
        async move {
            let password = format!("{name}-password-long");
            let response = client
                .post(url)
                .form(&[("name", name), ("password", password.as_str()), ("next", next)])
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::SEE_OTHER, "{name} signs in");
            response.headers()[header::LOCATION].to_str().unwrap().to_owned()
        }
    };
    assert_eq!(sign_in("carol", link).await, link);
    // A step's anchor, which the login page's script adds to `next`, is kept: the browser
    // scrolls to the step after signing in. Anchors do not loosen what else is refused.
    assert_eq!(sign_in("carol", "/runs/x#step-go").await, "/runs/x#step-go");
    assert_eq!(sign_in("carol", "//evil.com#step-go").await, "/work");
    assert_eq!(sign_in("carol", "/runs/x#a b").await, "/work");
    // Anything that is not a path of this site lands where signing in always lands.
    for hostile in
        ["//evil.com", "/\\evil.com", "https://evil.com", "/\\/evil.com", " /x", "evil.com"]
    {
        assert_eq!(sign_in("carol", hostile).await, "/work", "{hostile:?}");
        let asked = client
            .get(format!("{}/login", server.url))
            .query(&[("next", hostile)])
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(!asked.contains(r#"name="next""#), "{hostile:?} is not kept: {asked}");
    }
    // The runs list, which follows live events, says so when the session ends, with the way
    // back to the list as filtered.
    let carol = Browser::sign_in(&server, "carol").await;
    let (_, runs) = carol.get("/runs?status=waiting&mode=live").await;
    let notice = r#"data-signed-out hidden>Signed out — <a href="/login?next=%2Fruns%3Fstatus%3Dwaiting%26mode%3Dlive">"#;
    assert!(runs.contains(notice), "{runs}");
    let (_, runs) = carol.get("/runs").await;
    assert!(runs.contains(r#"<a href="/login?next=%2Fruns">sign in"#), "{runs}");

    // People without runs to command do not land on an empty "my work".
    assert_eq!(sign_in("audrey", "").await, "/audit");
    assert_eq!(sign_in("ada", "").await, "/runs");
    let ada = Browser::sign_in(&server, "ada").await;
    let response = ada
        .client
        .get(format!("{}/", server.url))
        .header(header::COOKIE, &ada.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()[header::LOCATION], "/runs");
}

async fn the_start_form_offers_people_and_warns_when_nobody_could_approve_a_gate(backend: Backend) {
    let server = Server::start("picks", backend).await;
    publish(&server, RESTART).await;
    server.person("carol", &[Responder]).await;
    server.person("alice", &[Responder]).await;
    server.person("audrey", &[Auditor]).await;
    let carol = Browser::sign_in(&server, "carol").await;

    // The form suggests the people who can act in a run, without JavaScript.
    let (_, page) = carol.get("/runbooks/restart").await;
    assert!(page.contains(r#"<input name="role.approver" list="people""#), "{page}");
    assert!(
        page.contains(r#"<option value="alice">"#) && page.contains(r#"<option value="carol">"#),
        "{page}"
    );
    assert!(!page.contains(r#"<option value="audrey">"#), "auditors do not act in runs: {page}");

    // Only the starter as approver: the confirmation page says nobody could open the gate.
    let token = csrf(&page);
    let form = |approver: &'static str| {
        vec![
            ("csrf", token.clone()),
            ("param.service", "api".into()),
            ("role.approver", approver.into()),
            ("mode", "live".into()),
        ]
    };
    let pairs = |form: &[(&'static str, String)]| -> Vec<(&'static str, String)> { form.to_vec() };
    let post = |form: Vec<(&'static str, String)>| {
        let carol = &carol;
        async move {
            let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
            carol.post("/runbooks/restart/start", &form).await
        }
    };
    let (status, confirm, _) = post(pairs(&form("carol"))).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        confirm.contains("Who holds each role")
            && confirm.contains("<code>approver</code>: user:carol"),
        "{confirm}"
    );
    assert!(
        confirm.contains("⚠ Gate `go` needs 1 approval(s) from `approver`, and 1 of them could come from nobody (user:carol starts the run, so does not count)"),
        "{confirm}"
    );
    let (_, fine, _) = post(pairs(&form("alice, carol"))).await;
    assert!(
        fine.contains("user:alice, user:carol") && !fine.contains("could come from nobody"),
        "{fine}"
    );

    // A forged form is refused before anything is read.
    let mut forged = form("alice");
    forged.retain(|(key, _)| *key != "csrf");
    let (status, refused, _) = post(forged).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{refused}");
}

/// Version 2 of `restart`, as an author types it: a typo in a template first.
const TYPO: &str = "name: restart\nroles:\n  approver: { description: Signs off }\nparams:\n  service: { type: string, default: api }\nsteps:\n  - id: go\n    approval: { role: approver, prompt: \"Restart {{ params.servce }}?\" }\n  - id: restart\n    run: [\"echo\", \"restarted {{ params.service }}\"]\n";

async fn an_author_fixes_an_error_previews_and_publishes_a_new_version(backend: Backend) {
    let server = Server::start("authoring", backend).await;
    publish(&server, RESTART).await;
    let token = server.person("wendy", &[Author]).await;
    server.person("carol", &[Responder]).await;
    let wendy = Browser::sign_in(&server, "wendy").await;
    let carol = Browser::sign_in(&server, "carol").await;

    // Only authors publish, as over the API.
    let (_, runbook) = carol.get("/runbooks/restart").await;
    assert!(!runbook.contains("/runbooks/restart/new-version"));
    let (status, _) = carol.get("/runbooks/restart/new-version").await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let (_, runbook) = wendy.get("/runbooks/restart").await;
    assert!(runbook.contains(r#"href="/runbooks/restart/new-version""#), "{runbook}");
    let (status, editor) = wendy.get("/runbooks/restart/new-version").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        editor.contains("description: &#34;Restarts &#60;b&#62;api"),
        "the current source, escaped: {editor}"
    );
    let token_field = csrf(&editor);
    let send =
        |source: &'static str, message: &'static str, action: &'static str, with_csrf: bool| {
            let wendy = &wendy;
            let token_field = token_field.clone();
            async move {
                let mut form = vec![("source", source), ("message", message), ("action", action)];
                if with_csrf {
                    form.push(("csrf", token_field.as_str()));
                }
                wendy.post("/runbooks/restart/new-version", &form).await
            }
        };

    // Validate: the typo is shown at its line and column, with the line itself.
    let (status, checked, _) = send(TYPO, "", "validate", true).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(checked.contains("✗ 1 error(s)") && checked.contains("line 8, column"), "{checked}");
    assert!(checked.contains("servce"), "{checked}");
    assert!(checked.contains("Restart {{ params.servce }}?"), "what was typed is kept: {checked}");
    let (status, refused, _) = send(TYPO, "", "publish", true).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(refused.contains("fix the errors below before publishing"), "{refused}");

    // Fixed: valid, with the lint warning a step without a timeout earns; the preview is the diff.
    let fixed: &'static str = Box::leak(TYPO.replace("servce", "service").into_boxed_str());
    let (status, valid, _) = send(fixed, "", "validate", true).await;
    assert_eq!(status, StatusCode::OK, "{valid}");
    assert!(
        valid.contains("✓ Valid") && valid.contains("⚠ 1 warning(s)") && valid.contains("timeout"),
        "{valid}"
    );
    let (_, preview, _) = send(fixed, "", "preview", true).await;
    assert!(preview.contains("What changes against v1"), "{preview}");
    assert!(preview.contains(r#"<span class="del">-  - id: healthy</span>"#), "{preview}");

    // A forged form publishes nothing.
    let (status, _, _) = send(fixed, "sneaky", "publish", false).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let (status, _, location) = send(fixed, "Drop the <health> check", "publish", true).await;
    assert_eq!(
        (status, location.as_deref()),
        (StatusCode::SEE_OTHER, Some("/runbooks/restart#v2"))
    );
    let versions = server.get(&token, "/api/v1/runbooks/restart").await.body;
    assert_eq!(versions[1]["message"], "Drop the <health> check", "{versions}");
    assert_eq!(versions[0]["message"], serde_json::Value::Null, "{versions}");
    let (_, page) = wendy.get("/runbooks/restart").await;
    assert!(page.contains("Drop the &#60;health&#62; check"), "{page}");
    assert!(page.contains("⚠ 1 warning(s)") && page.contains(r#"id="v2""#), "{page}");
    let (_, diff) = wendy.get("/runbooks/restart/diff?version=2").await;
    assert!(diff.contains("Drop the &#60;health&#62; check"), "{diff}");

    // The same source again is not a new version; another runbook's name is not this page's.
    let (status, same, _) = send(fixed, "again", "publish", true).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(same.contains("nothing changed: this is v2 already"), "{same}");
    let renamed: &'static str =
        Box::leak(fixed.replace("name: restart", "name: other").into_boxed_str());
    let (status, other, _) = send(renamed, "", "publish", true).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(other.contains("the source is named `other`"), "{other}");
}

/// A runbook whose text tries to ping everyone and slip in a link.
const HOSTILE: &str = r#"
name: hostile
roles:
  approver: { description: Signs off }
params:
  target: { type: string, default: api }
steps:
  - id: go
    approval: { role: approver, prompt: "Restart <!channel> *x* <http://evil|y> {{ params.target }}?" }
  - id: done
    run: ["true"]
    timeout: 5s
"#;

async fn notifications_link_to_the_gate_carry_its_prompt_and_escape_slack_markup(backend: Backend) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let received = crate::stories::receiver(port).await;
    let config = steady_web::ServerConfig {
        notify: vec![format!("http://127.0.0.1:{port}/hook")],
        public_url: Some("https://steady.example.com".into()),
        notify_backoff_max: std::time::Duration::from_millis(200),
        ..Default::default()
    };
    let server = Server::start_with("notify-links", backend, config).await;
    publish(&server, HOSTILE).await;
    let carol = server.person("carol", &[Responder]).await;
    server.person("alice", &[Responder]).await;
    server.person("bob", &[Responder]).await;
    let started = server
        .post(&carol, "/api/v1/runs", json!({ "runbook": "hostile", "params": { "target": "<@U1> & db" }, "assignments": [{ "role": "approver", "person": "alice" }] }))
        .await;
    let run = started.body["id"].as_str().unwrap().to_owned();
    server.wait_for(&carol, &run, "waiting").await;

    // The commander gives the role to Bob with the run page's form, without JavaScript.
    let browser = Browser::sign_in(&server, "carol").await;
    let (_, page) = browser.get(&format!("/runs/{run}")).await;
    assert!(
        page.contains(r#"list="run-people""#) && page.contains(r#"<option value="bob">"#),
        "{page}"
    );
    let token = csrf(&page);
    let form =
        [("csrf", token.as_str()), ("role", "approver"), ("person", "bob"), ("assign", "yes")];
    let (status, _, _) = browser.post(&format!("/runs/{run}/assign"), &form).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (status, _, _) = browser.post(&format!("/runs/{run}/assign"), &form[1..]).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "no CSRF token, no change");
    let reason = json!({ "reason": "wrong <!channel> cluster" });
    server.post(&carol, &format!("/api/v1/runs/{run}/cancel"), reason).await;

    let texts = || -> Vec<String> {
        received
            .lock()
            .unwrap()
            .iter()
            .filter_map(|body| serde_json::from_str::<serde_json::Value>(body).ok())
            .map(|message| message["text"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    let find = |start: &str| texts().into_iter().find(|text| text.starts_with(start));
    for _ in 0..200 {
        if find("Cancelled").is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let base = format!("https://steady.example.com/runs/{run}");
    let started = find("Live run started").unwrap_or_else(|| panic!("{:?}", texts()));
    assert!(started.ends_with(&format!("<{base}|Open the run>")), "{started}");
    assert!(started.contains("target=&lt;@U1&gt; &amp; db"), "{started}");
    // The roles given at the start are named with the run, as a role given later is.
    assert!(started.contains("\nRoles: `approver` user:alice"), "{started}");
    let asked = find("Approval requested").unwrap_or_else(|| panic!("{:?}", texts()));
    assert!(
        asked
            .contains("> Restart &lt;!channel&gt; *x* &lt;http://evil|y&gt; &lt;@U1&gt; &amp; db?"),
        "{asked}"
    );
    assert!(asked.ends_with(&format!("<{base}#step-go|Open the run>")), "{asked}");
    let assigned = find("Role assigned").unwrap_or_else(|| panic!("{:?}", texts()));
    assert!(
        assigned.contains("user:bob now holds `approver`")
            && assigned.contains("given by user:carol"),
        "{assigned}"
    );
    let cancelled = find("Cancelled").unwrap_or_else(|| panic!("{:?}", texts()));
    assert!(
        cancelled.contains("by user:carol")
            && cancelled.contains("> wrong &lt;!channel&gt; cluster"),
        "{cancelled}"
    );
    // Only Steady's own links are markup: nothing from the runbook or the parameters is.
    for text in texts() {
        let markup: Vec<&str> = text.match_indices('<').map(|(at, _)| &text[at..]).collect();
        assert!(
            markup.iter().all(|m| m.starts_with("<https://steady.example.com/runs/")),
            "{text}"
        );
    }
    let bodies = received.lock().unwrap().clone();
    let approval: serde_json::Value =
        serde_json::from_str(bodies.iter().find(|b| b.contains("Approval requested")).unwrap())
            .unwrap();
    assert_eq!(approval["url"], format!("{base}#step-go"));
}
