//! The pages as a browser without JavaScript sees them: sign in, start a run from the form,
//! the approver's "my work", approving with a comment, and what the pages refuse.

use reqwest::{StatusCode, header};
use steady_engine::accounts::GlobalRole::{Admin, Auditor, Author, Responder};

use crate::*;

on_every_backend!(
    html_written_in_a_run_stays_text_in_the_timeline_export,
    a_secret_never_reaches_a_page_the_api_the_audit_log_or_metrics,
    hostile_text_from_runbooks_outputs_params_and_notes_is_shown_never_run,
    a_commander_starts_a_run_from_the_form_and_an_approver_answers_in_the_browser,
    pages_refuse_strangers_forged_forms_and_inline_scripts,
    auditors_admins_and_postmortems_have_their_pages,
    what_was_confirmed_is_what_runs_and_links_keep_their_filters,
    a_held_lock_is_a_conflict_page_linking_to_the_run_that_holds_it,
    an_admin_takes_command_with_a_button_and_typos_get_nothing,
    a_list_parameter_is_typed_comma_separated_in_the_start_form,
    a_gate_before_a_fan_out_shows_every_item_it_lets_run,
);

pub(crate) const RESTART: &str = r#"
name: restart
title: Restart the API
description: "Restarts <b>api</b> after a <script>alert(1)</script> check"
roles:
  approver: { description: Signs off }
params:
  service: { type: string, default: api, description: Which service }
steps:
  - id: healthy
    run: ["echo", "{{ params.service }} is up"]
    read_only: true
    timeout: 5s
  - id: go
    approval: { role: approver, prompt: "Restart {{ params.service }}?" }
  - id: restart
    run: ["echo", "restarted {{ params.service }}"]
    timeout: 5s
"#;

/// A browser: remembers its session cookie, follows no redirects by itself.
pub(crate) struct Browser {
    pub(crate) client: reqwest::Client,
    pub(crate) base: String,
    pub(crate) cookie: String,
}

impl Browser {
    pub(crate) async fn sign_in(server: &Server, name: &str) -> Browser {
        let client =
            reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        let response = client
            .post(format!("{}/login", server.url))
            .form(&[("name", name), ("password", &format!("{name}-password-long"))])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        let cookie = response.headers()[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned();
        Browser { client, base: server.url.clone(), cookie }
    }

    pub(crate) async fn get(&self, path: &str) -> (StatusCode, String) {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .header(header::COOKIE, &self.cookie)
            .send()
            .await
            .unwrap();
        (response.status(), response.text().await.unwrap())
    }

    pub(crate) async fn post(
        &self,
        path: &str,
        form: &[(&str, &str)],
    ) -> (StatusCode, String, Option<String>) {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .header(header::COOKIE, &self.cookie)
            .form(form)
            .send()
            .await
            .unwrap();
        let location =
            response.headers().get(header::LOCATION).map(|l| l.to_str().unwrap().to_owned());
        (response.status(), response.text().await.unwrap(), location)
    }
}

pub(crate) fn csrf(html: &str) -> String {
    let start = html.find(r#"name="csrf" value=""#).expect("a CSRF field") + 19;
    html[start..start + 64].to_owned()
}

async fn a_commander_starts_a_run_from_the_form_and_an_approver_answers_in_the_browser(
    backend: Backend,
) {
    let server = Server::start("pages-story", backend).await;
    publish(&server, RESTART).await;
    server.person("carol", &[Responder]).await;
    server.person("alice", &[Responder]).await;
    let carol = Browser::sign_in(&server, "carol").await;
    let alice = Browser::sign_in(&server, "alice").await;

    let (status, page) = carol.get("/runbooks/restart").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains("Restarts &#60;b&#62;api&#60;/b&#62; after a &#60;script&#62;"),
        "runbook text is escaped"
    );
    let token = csrf(&page);
    let start = [
        ("csrf", token.as_str()),
        ("param.service", "api"),
        ("role.approver", "alice, carol"),
        ("mode", "live"),
    ];
    let (status, confirm, _) = carol.post("/runbooks/restart/start", &start).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        confirm.contains("LIVE") && confirm.contains("run      echo &#39;restarted api&#39;"),
        "{confirm}"
    );
    let mut confirmed = start.to_vec();
    confirmed.extend([("version", "1"), ("confirmed", "yes")]);
    let (status, _, location) = carol.post("/runbooks/restart/start", &confirmed).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let run_path = location.unwrap();
    let run = run_path.trim_start_matches("/runs/").to_owned();
    server.wait_for(&server.person("watcher", &[Responder]).await, &run, "waiting").await;

    // The commander may not approve their own run, and the page says so.
    let (_, own) = carol.get(&run_path).await;
    assert!(own.contains("You started this run, so you may not approve its gates."), "{own}");
    assert!(!own.contains("✓ Approve"));
    assert!(own.contains("✗ Reject"), "the starter may still reject, as the engine accepts: {own}");
    // Carol holds the approver role, but what she may not approve is not her work: it waits
    // on others.
    let (_, carol_work) = carol.get("/work").await;
    let waiting = carol_work.split("Waiting for me").nth(1).unwrap().split("Runs I command").next();
    assert!(!waiting.unwrap().contains(&run), "{carol_work}");
    assert!(carol_work.contains("… waiting on others"), "{carol_work}");

    let (_, work) = alice.get("/work").await;
    assert!(work.contains("Restart api?") && work.contains(&run), "{work}");
    let (_, page) = alice.get(&run_path).await;
    assert!(page.contains("✓ Approve"), "{page}");
    assert!(page.contains("echo &#39;restarted api&#39;"), "the gate shows what it guards: {page}");
    let answer =
        [("csrf", csrf(&page)), ("action", "approve".into()), ("comment", "<i>go</i>".into())];
    let answer: Vec<(&str, &str)> = answer.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, _, location) = alice.post(&format!("{run_path}/steps/go/answer"), &answer).await;
    assert_eq!(
        (status, location.as_deref()),
        (StatusCode::SEE_OTHER, Some(format!("{run_path}#step-go").as_str()))
    );
    server.wait_for(&server.person("watcher2", &[Responder]).await, &run, "succeeded").await;
    let (_, done) = carol.get(&run_path).await;
    assert!(done.contains("✓ succeeded") && done.contains("restarted api"), "{done}");
    assert!(done.contains("&#60;i&#62;go&#60;/i&#62;"), "comments are escaped: {done}");
}

async fn pages_refuse_strangers_forged_forms_and_inline_scripts(backend: Backend) {
    let server = Server::start("pages-guard", backend).await;
    publish(&server, RESTART).await;
    server.person("carol", &[Responder]).await;
    let stranger =
        reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let response = stranger.get(format!("{}/work", server.url)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()[header::LOCATION], "/login?next=%2Fwork");
    let csp = response.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(response.headers()["x-frame-options"], "DENY");

    let carol = Browser::sign_in(&server, "carol").await;
    let forged = [("param.service", "api"), ("mode", "live"), ("confirmed", "yes")];
    let (status, _, _) = carol.post("/runbooks/restart/start", &forged).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a form without the CSRF token");
    let (status, _, _) = carol
        .post("/runbooks/restart/start", &[("csrf", "0".repeat(64).as_str()), ("mode", "live")])
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a form with a wrong token");

    let behind_a_proxy = stranger
        .post(format!("{}/login", server.url))
        .header(header::ORIGIN, "https://steady.example.com")
        .header("x-forwarded-host", "steady.example.com")
        .form(&[("name", "carol"), ("password", "carol-password-long")])
        .send()
        .await
        .unwrap();
    assert_eq!(
        behind_a_proxy.status(),
        StatusCode::SEE_OTHER,
        "the public host comes as X-Forwarded-Host"
    );

    let from_elsewhere = stranger
        .post(format!("{}/login", server.url))
        .header(header::ORIGIN, "https://evil.example")
        .form(&[("name", "carol"), ("password", "carol-password-long")])
        .send()
        .await
        .unwrap();
    assert_eq!(from_elsewhere.status(), StatusCode::FORBIDDEN);

    let (_, css) = carol.get("/static/steady.css").await;
    assert!(css.contains("--ok"));
    for page in ["/work", "/runs", "/runbooks", "/runbooks/restart"] {
        let (status, html) = carol.get(page).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert!(
            !html.contains("<script>") && !html.contains(" style="),
            "no inline script or style on {page}"
        );
    }
}

async fn auditors_admins_and_postmortems_have_their_pages(backend: Backend) {
    use steady_engine::accounts::GlobalRole::{Admin, Auditor};
    let server = Server::start("pages-more", backend).await;
    publish(&server, RESTART).await;
    publish(&server, &RESTART.replace("title: Restart the API", "title: Restart the API safely"))
        .await;
    server.person("ada", &[Admin]).await;
    server.person("audrey", &[Auditor]).await;
    server.person("carol", &[Responder]).await;
    let ada = Browser::sign_in(&server, "ada").await;
    let audrey = Browser::sign_in(&server, "audrey").await;
    let carol = Browser::sign_in(&server, "carol").await;

    let (status, audit) = audrey.get("/audit").await;
    assert_eq!(status, StatusCode::OK);
    assert!(audit.contains("✓ chain verified") && audit.contains("runbook.published"), "{audit}");
    assert_eq!(carol.get("/audit").await.0, StatusCode::FORBIDDEN);

    let (_, diff) = carol.get("/runbooks/restart/diff?version=2").await;
    assert!(
        diff.contains("-title: Restart the API") && diff.contains("+title: Restart the API safely"),
        "{diff}"
    );
    let (_, print) = carol.get("/runbooks/restart/print").await;
    assert!(
        print.contains("restart: Restart the API safely") && !print.contains("<form"),
        "{print}"
    );

    let (_, users) = ada.get("/users").await;
    let token = csrf(&users);
    let form = [
        ("csrf", token.as_str()),
        ("name", "newbie"),
        ("role", "responder"),
        ("password", "a-long-enough-password"),
    ];
    let (status, _, location) = ada.post("/users", &form).await;
    assert_eq!((status, location.as_deref()), (StatusCode::SEE_OTHER, Some("/users")));
    // The new token's secret is shown once on the users page (see `admin`).
    let (status, _, location) =
        ada.post("/tokens", &[("csrf", token.as_str()), ("user", "newbie"), ("label", "ci")]).await;
    assert_eq!((status, location.as_deref()), (StatusCode::SEE_OTHER, Some("/users")));
    assert_eq!(carol.get("/users").await.0, StatusCode::FORBIDDEN);

    let started = server
        .post(
            &server.person("rita", &[Responder]).await,
            "/api/v1/runs",
            serde_json::json!({ "runbook": "restart", "mode": "dry-run" }),
        )
        .await;
    let run = started.body["id"].as_str().unwrap().to_owned();
    server.wait_for(&server.person("watcher", &[Responder]).await, &run, "succeeded").await;
    let (status, markdown) = carol.get(&format!("/runs/{run}/timeline.md")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        markdown.starts_with("# restart — run ") && markdown.contains("| step.would_run |"),
        "{markdown}"
    );
}

async fn what_was_confirmed_is_what_runs_and_links_keep_their_filters(backend: Backend) {
    use steady_engine::accounts::GlobalRole::Auditor;
    let server = Server::start("pages-confirm", backend).await;
    publish(&server, RESTART).await;
    server.person("carol", &[Responder]).await;
    server.person("audrey", &[Auditor]).await;
    let carol = Browser::sign_in(&server, "carol").await;
    let (_, page) = carol.get("/runbooks/restart").await;
    let token = csrf(&page);
    let start = [("csrf", token.as_str()), ("param.service", "api"), ("mode", "dry-run")];
    let (_, confirm, _) = carol.post("/runbooks/restart/start", &start).await;
    assert!(confirm.contains(r#"name="version" value="1""#), "{confirm}");
    // An author publishes a new version while the confirmation page is open.
    publish(&server, &RESTART.replace("restarted", "rebooted")).await;
    let mut confirmed = start.to_vec();
    confirmed.extend([("version", "1"), ("confirmed", "yes")]);
    let (status, refused, _) = carol.post("/runbooks/restart/start", &confirmed).await;
    assert_eq!(status, StatusCode::CONFLICT, "{refused}");
    assert!(refused.contains("version 2 is the latest now"), "{refused}");

    // A finished run's event stream says there is nothing more.
    let token = server.person("rita", &[Responder]).await;
    let run = server
        .post(
            &token,
            "/api/v1/runs",
            serde_json::json!({ "runbook": "restart", "mode": "dry-run" }),
        )
        .await;
    let run = run.body["id"].as_str().unwrap().to_owned();
    server.wait_for(&token, &run, "succeeded").await;
    let (status, _) = carol.get(&format!("/api/v1/runs/{run}/events?after=100000")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    let audrey = Browser::sign_in(&server, "audrey").await;
    let (_, audit) = audrey.get("/audit?actor=a%26b&action=note.added").await;
    assert!(
        audit.contains("actor=a%26b") && audit.contains("action=note.added"),
        "filters are encoded into the export links: {audit}"
    );
}

const SECRET: &str = "hunter2-secret-value";

/// A secret used by a step, its output echoing it: every place a person or a tool can read
/// shows `***`, never the value.
async fn a_secret_never_reaches_a_page_the_api_the_audit_log_or_metrics(backend: Backend) {
    let secrets = std::collections::BTreeMap::from([("TOKEN".to_owned(), SECRET.to_owned())]);
    let server = Server::start_with_secrets("secrets", backend, Default::default(), secrets).await;
    let admin = server.person("ada", &[Admin, Author, Responder, Auditor]).await;
    let source = "name: secretive\nsecrets: [TOKEN]\nsteps:\n  - id: leak\n    run: echo \"token is {{ secrets.TOKEN }}\" && echo \"$T\" >&2\n    env: { T: \"{{ secrets.TOKEN }}\" }\n    read_only: true\n    timeout: 5s\n";
    let published = server
        .call(Some(&admin), Method::POST, "/api/v1/runbooks", Some(json!({ "source": source })))
        .await;
    assert_eq!(published.status, StatusCode::CREATED, "{}", published.body);
    let started = server
        .call(Some(&admin), Method::POST, "/api/v1/runs", Some(json!({ "runbook": "secretive" })))
        .await;
    let run = started.body["id"].as_str().unwrap().to_owned();
    let finished = server.wait_for(&admin, &run, "succeeded").await;
    assert_eq!(finished["steps"][0]["attempts"][0]["stdout"], "token is ***\n");

    let browser = Browser::sign_in(&server, "ada").await;
    let mut seen = Vec::new();
    for path in [format!("/runs/{run}"), format!("/runs/{run}/timeline.md"), "/audit".to_owned()] {
        let (status, page) = browser.get(&path).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        seen.push(page);
    }
    for path in [
        format!("/api/v1/runs/{run}"),
        "/api/v1/audit/export?format=jsonl".to_owned(),
        "/api/v1/audit/export?format=csv".to_owned(),
        format!("/api/v1/runs/{run}/events"),
    ] {
        let response = server
            .client
            .get(format!("{}{path}", server.url))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap();
        seen.push(response.text().await.unwrap());
    }
    seen.push(
        server
            .client
            .get(format!("{}/metrics", server.url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    );
    for text in &seen {
        assert!(!text.contains(SECRET), "a secret leaked: {text}");
    }
    assert!(seen.iter().any(|text| text.contains("token is ***")), "the masked output is shown");
}

const HOSTILE: &str = r#"<script>alert(1)</script>"><img src=x onerror=alert(2)>"#;

/// Text from runbooks, parameters, step outputs and notes is shown as text on every page that
/// shows it: the markup an attacker wrote never reaches the browser as markup.
async fn hostile_text_from_runbooks_outputs_params_and_notes_is_shown_never_run(backend: Backend) {
    let server = Server::start("xss", backend).await;
    let admin = server.person("ada", &[Admin, Author, Responder, Auditor]).await;
    let source = format!(
        "name: hostile\ntitle: '{HOSTILE}'\ndescription: '{HOSTILE}'\nparams:\n  note: {{ type: string, description: '{HOSTILE}' }}\nsteps:\n  - id: shout\n    name: '{HOSTILE}'\n    description: '{HOSTILE}'\n    run: [\"echo\", \"{{{{ params.note }}}}\"]\n    read_only: true\n    timeout: 5s\n"
    );
    let published = server
        .call(Some(&admin), Method::POST, "/api/v1/runbooks", Some(json!({ "source": source })))
        .await;
    assert_eq!(published.status, StatusCode::CREATED, "{}", published.body);
    let started = server
        .call(
            Some(&admin),
            Method::POST,
            "/api/v1/runs",
            Some(json!({ "runbook": "hostile", "params": { "note": HOSTILE } })),
        )
        .await;
    assert_eq!(started.status, StatusCode::CREATED, "{}", started.body);
    let run = started.body["id"].as_str().unwrap().to_owned();
    let finished = server.wait_for(&admin, &run, "succeeded").await;
    assert_eq!(finished["steps"][0]["attempts"][0]["stdout"], format!("{HOSTILE}\n"));
    let noted = server
        .call(
            Some(&admin),
            Method::POST,
            &format!("/api/v1/runs/{run}/notes"),
            Some(json!({ "text": HOSTILE })),
        )
        .await;
    assert_eq!(noted.status, StatusCode::CREATED, "{}", noted.body);

    let browser = Browser::sign_in(&server, "ada").await;
    for path in [
        format!("/runs/{run}"),
        "/runs".to_owned(),
        "/runbooks".to_owned(),
        "/runbooks/hostile".to_owned(),
        "/runbooks/hostile/print".to_owned(),
        "/audit".to_owned(),
    ] {
        let (status, html) = browser.get(&path).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert!(
            !html.contains("<script>alert") && !html.contains("<img src=x"),
            "markup on {path}"
        );
    }
    let (_, page) = browser.get(&format!("/runs/{run}")).await;
    // Shown as text: as the heading, the step's name, the output and the note.
    let escaped = "&#60;script&#62;alert(1)&#60;/script&#62;&#34;&#62;&#60;img src=x";
    assert!(page.matches(escaped).count() >= 4, "shown as text: {page}");
}

async fn a_held_lock_is_a_conflict_page_linking_to_the_run_that_holds_it(backend: Backend) {
    let server = Server::start("pages-lock", backend).await;
    publish(&server, &RESTART.replace("name: restart\n", "name: restart\nlock: api\n")).await;
    server.person("carol", &[Responder]).await;
    server.person("alice", &[Responder]).await;
    let carol = Browser::sign_in(&server, "carol").await;
    let (_, page) = carol.get("/runbooks/restart").await;
    let token = csrf(&page);
    let (status, _, location) = confirmed_start(&carol, &token, "alice").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let run_path = location.unwrap();
    let (status, held, _) = confirmed_start(&carol, &token, "alice").await;
    assert_eq!(status, StatusCode::CONFLICT);
    let run = run_path.trim_start_matches("/runs/");
    assert!(held.contains(&format!("is held by active run {run}")), "{held}");
    assert!(
        held.contains(&format!(r#"href="{run_path}""#)),
        "the error page links to the run holding the lock: {held}"
    );
}

async fn an_admin_takes_command_with_a_button_and_typos_get_nothing(backend: Backend) {
    let server = Server::start("pages-take", backend).await;
    publish(&server, RESTART).await;
    server.person("carol", &[Responder]).await;
    server.person("alice", &[Responder]).await;
    server.person("ada", &[Admin]).await;
    let carol = Browser::sign_in(&server, "carol").await;
    let ada = Browser::sign_in(&server, "ada").await;
    let (_, page) = carol.get("/runbooks/restart").await;
    let token = csrf(&page);
    let (status, typo, _) = confirmed_start(&carol, &token, "<script>").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(typo.contains("`&#60;script&#62;` is not an existing, enabled user"), "{typo}");
    let (status, _, location) = confirmed_start(&carol, &token, "alice").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let run_path = location.unwrap();

    // Carol is unreachable; the admin's page offers to take command, and nobody else's does.
    let (_, own) = carol.get(&run_path).await;
    assert!(!own.contains("Take command"), "{own}");
    let (_, page) = ada.get(&run_path).await;
    assert!(page.contains("Take command (admin)"), "{page}");
    let take = [("csrf", csrf(&page)), ("take", "yes".to_owned())];
    let take: Vec<(&str, &str)> = take.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, _, _) = ada.post(&format!("{run_path}/commander"), &take).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (_, after) = ada.get(&run_path).await;
    assert!(after.contains("Commander <strong>user:ada</strong>"), "{after}");
    assert!(after.contains("Hand command to"), "the admin can hand it on: {after}");
    let hand = [("csrf", csrf(&after)), ("to", "alice".to_owned())];
    let hand: Vec<(&str, &str)> = hand.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, _, _) = ada.post(&format!("{run_path}/commander"), &hand).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (_, handed) = ada.get(&run_path).await;
    assert!(handed.contains("Commander <strong>user:alice</strong>"), "{handed}");
}

/// Posts the start form of `restart`, confirmed, with `approver` as the gate's role holder.
async fn a_list_parameter_is_typed_comma_separated_in_the_start_form(backend: Backend) {
    let server = Server::start("pages-list", backend).await;
    let fleet = "name: fleet\nparams:\n  hosts: { type: list, enum: [web1, web2, web3], default: [web1, web2] }\nsteps:\n  - id: uptime\n    for_each: params.hosts\n    run: [\"echo\", \"{{ item }}\"]\n    read_only: true\n    timeout: 5s\n";
    publish(&server, fleet).await;
    server.person("carol", &[Responder]).await;
    let carol = Browser::sign_in(&server, "carol").await;
    let (status, page) = carol.get("/runbooks/fleet").await;
    assert_eq!(status, StatusCode::OK);
    // A text field, not a single choice, with the default as the author wrote it.
    assert!(
        page.contains(
            r#"<input name="param.hosts" value="web1, web2" placeholder="comma-separated">"#
        ),
        "{page}"
    );
    assert!(!page.contains(r#"<select name="param.hosts""#), "{page}");
    let token = csrf(&page);
    let start = [("csrf", token.as_str()), ("param.hosts", "web1, web3"), ("mode", "dry-run")];
    let (status, confirm, _) = carol.post("/runbooks/fleet/start", &start).await;
    assert_eq!(status, StatusCode::OK, "{confirm}");
    assert!(confirm.contains("echo web3") && !confirm.contains("echo web2"), "{confirm}");
    let start = [("csrf", token.as_str()), ("param.hosts", "web1, db1"), ("mode", "dry-run")];
    let (status, refused, _) = carol.post("/runbooks/fleet/start", &start).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    assert!(refused.contains("got `db1`"), "{refused}");
}

async fn confirmed_start(
    browser: &Browser,
    token: &str,
    approver: &str,
) -> (StatusCode, String, Option<String>) {
    let form = [
        ("csrf", token),
        ("param.service", "api"),
        ("role.approver", approver),
        ("mode", "live"),
        ("version", "1"),
        ("confirmed", "yes"),
    ];
    browser.post("/runbooks/restart/start", &form).await
}

/// The Markdown timeline goes into postmortem documents and wikis that render HTML: a note or
/// a name with markup in it shows as the text that was written.
async fn html_written_in_a_run_stays_text_in_the_timeline_export(backend: Backend) {
    let server = Server::start("timeline-html", backend).await;
    publish(&server, RESTART).await;
    let rita = server.person("rita", &[Responder]).await;
    server.person("carol", &[Responder]).await;
    let started = server
        .post(&rita, "/api/v1/runs", serde_json::json!({ "runbook": "restart", "mode": "dry-run" }))
        .await;
    let run = started.body["id"].as_str().unwrap().to_owned();
    server.wait_for(&rita, &run, "succeeded").await;
    let written = "<img src=x onerror=alert(1)> & <b>done</b>";
    let note = server
        .post(&rita, &format!("/api/v1/runs/{run}/notes"), serde_json::json!({ "text": written }))
        .await;
    assert!(note.status.is_success(), "{}", note.body);

    let carol = Browser::sign_in(&server, "carol").await;
    let (status, markdown) = carol.get(&format!("/runs/{run}/timeline.md")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        markdown.contains("&lt;img src=x onerror=alert(1)&gt; &amp; &lt;b&gt;done&lt;/b&gt;"),
        "{markdown}"
    );
    assert!(!markdown.contains("<img") && !markdown.contains("<b>"), "{markdown}");
}

/// An approver signs off a rolling restart once: the gate shows each node's own command.
async fn a_gate_before_a_fan_out_shows_every_item_it_lets_run(backend: Backend) {
    let server = Server::start("pages-gate-fan-out", backend).await;
    let fleet = "name: fleet\nroles:\n  approver: { description: Signs off }\nparams:\n  hosts: { type: list, default: [web1, web2, web3] }\nsteps:\n  - id: go\n    approval: { role: approver }\n  - id: restart\n    for_each: params.hosts\n    as: host\n    concurrency: 2\n    run: [\"echo\", \"restart\", \"{{ host }}\"]\n    idempotent: true\n    timeout: 5s\n";
    publish(&server, fleet).await;
    server.person("carol", &[Responder]).await;
    server.person("alice", &[Responder]).await;
    let carol = Browser::sign_in(&server, "carol").await;
    let alice = Browser::sign_in(&server, "alice").await;
    let (_, page) = carol.get("/runbooks/fleet").await;
    let token = csrf(&page);
    let form = [
        ("csrf", token.as_str()),
        ("param.hosts", "web1, web2, web3"),
        ("role.approver", "alice"),
        ("mode", "live"),
        ("version", "1"),
        ("confirmed", "yes"),
    ];
    let (status, _, location) = carol.post("/runbooks/fleet/start", &form).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let run_path = location.unwrap();
    let run = run_path.trim_start_matches("/runs/").to_owned();
    server.wait_for(&server.person("watcher", &[Responder]).await, &run, "waiting").await;
    let (_, page) = alice.get(&run_path).await;
    assert!(page.contains("✓ Approve"), "{page}");
    for host in ["web1", "web2", "web3"] {
        assert!(page.contains(&format!("echo restart {host}")), "the gate shows {host}: {page}");
    }
    assert!(!page.contains("(rendered when it runs)"), "{page}");
}
