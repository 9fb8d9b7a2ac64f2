//! The audit and users pages as auditors and admins use them without JavaScript: the log
//! newest first with its count and filters that never ignore a value, and the users page's
//! forms (roles, passwords, tokens), each refused without the session's CSRF token.

use reqwest::{StatusCode, header};
use steady_engine::accounts::GlobalRole::{Admin, Auditor, Responder};

use crate::pages::{Browser, csrf};
use crate::*;

on_every_backend!(
    an_auditor_reads_the_log_newest_first_and_a_bad_filter_says_what_is_wrong,
    an_admin_edits_roles_and_resets_a_password_with_plain_forms,
    a_new_token_is_shown_once_after_a_redirect_and_never_cached,
);

const CHECK: &str = r#"
name: check
steps:
  - id: look
    run: ["echo", "fine"]
    read_only: true
    timeout: 5s
"#;

async fn an_auditor_reads_the_log_newest_first_and_a_bad_filter_says_what_is_wrong(
    backend: Backend,
) {
    let server = Server::start("admin-audit", backend).await;
    publish(&server, CHECK).await;
    let rita = server.person("rita", &[Responder]).await;
    let api_auditor = server.person("auditbot", &[Auditor]).await;
    server.person("audrey", &[Auditor]).await;
    let mut runs = Vec::new();
    for _ in 0..2 {
        let started = server
            .post(
                &rita,
                "/api/v1/runs",
                serde_json::json!({ "runbook": "check", "mode": "dry-run" }),
            )
            .await;
        let run = started.body["id"].as_str().unwrap().to_owned();
        server.wait_for(&rita, &run, "succeeded").await;
        runs.push(run);
    }
    let audrey = Browser::sign_in(&server, "audrey").await;

    // Newest first, with how many events there are.
    let (status, page) = audrey.get("/audit").await;
    assert_eq!(status, StatusCode::OK);
    let all = server.get(&api_auditor, "/api/v1/audit").await.body.as_array().unwrap().len();
    assert!(page.contains(&format!("<strong>{all}</strong> events match, newest first")), "{page}");
    let table = &page[page.find("<table").unwrap()..];
    let newest = table.find("login.succeeded").unwrap();
    let oldest = table.find("runbook.published").unwrap();
    assert!(newest < oldest, "the newest event comes first: {page}");
    // The navigation says where one is; every page links the app's own icon.
    assert!(page.contains(r#"<a href="/audit" aria-current="page">Audit</a>"#), "{page}");
    assert!(page.contains(r#"<link rel="icon" href="/static/favicon.svg""#), "{page}");
    let icon =
        server.client.get(format!("{}/static/favicon.svg", server.url)).send().await.unwrap();
    assert_eq!(icon.headers()[header::CONTENT_TYPE], "image/svg+xml");
    assert!(icon.text().await.unwrap().starts_with("<svg"));

    // The start of a run's id, as pages show it, finds that run's events only.
    let prefix = &runs[1][..13];
    let (_, page) = audrey.get(&format!("/audit?run={prefix}&action=run.started")).await;
    assert!(page.contains("<strong>1</strong> event matches"), "{page}");
    assert!(page.contains(&format!("/runs/{}", runs[1])) && !page.contains(&runs[0]), "{page}");
    // Actions are a list to pick from, with the one asked for selected.
    assert!(page.contains("<option selected>run.started</option>"), "{page}");
    assert!(page.contains("<option>token.revoked</option>"), "{page}");

    // A value that cannot mean anything is a 400 that says why, never a filter dropped.
    let (status, page) = audrey.get("/audit?action=run.startd").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(page.contains("✗ unknown audit action `run.startd`: use one of runbook.published"));
    assert!(!page.contains("events match"), "{page}");
    let (status, page) = audrey.get("/audit?run=01%25").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(page.contains("run `01%` is not a run id nor the start of one"), "{page}");
    let (status, page) = audrey.get("/audit?since=yesterday").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(page.contains("since `yesterday` is not a date like 2026-11-30"), "{page}");

    // The API refuses the same way, in its own shape.
    let refused = server.get(&api_auditor, "/api/v1/audit?action=run.startd").await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert!(
        refused.body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("unknown audit action `run.startd`"),
        "{}",
        refused.body
    );
    let refused = server.get(&api_auditor, "/api/v1/audit/export?action=nope").await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    let refused = server.get(&api_auditor, "/api/v1/audit?run=not-a-run").await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert!(refused.body["error"]["message"].as_str().unwrap().contains("not-a-run"));
    let known = server.get(&api_auditor, "/api/v1/audit?action=run.started").await;
    assert_eq!(known.body.as_array().unwrap().len(), 2);
}

async fn an_admin_edits_roles_and_resets_a_password_with_plain_forms(backend: Backend) {
    let server = Server::start("admin-users", backend).await;
    let admin_token = server.person("ada", &[Admin]).await;
    server.person("carol", &[Responder]).await;
    let ada = Browser::sign_in(&server, "ada").await;
    let carol = Browser::sign_in(&server, "carol").await;
    let (_, users) = ada.get("/users").await;
    let token = csrf(&users);
    // The name's pattern is valid under the `v` flag browsers use for `pattern`.
    assert!(users.contains(r#"pattern="[a-z][a-z0-9._\-]*""#), "{users}");
    let roles_of = |name: &'static str| {
        let (server, admin_token) = (&server, &admin_token);
        async move {
            let users = server.get(admin_token, "/api/v1/users").await.body;
            let user = users.as_array().unwrap().iter().find(|u| u["name"] == name).unwrap();
            user["roles"].clone()
        }
    };

    // Ticking roles and saving gives carol exactly those, and says so after the redirect.
    let form = [("csrf", token.as_str()), ("role", "responder"), ("role", "auditor")];
    let (status, _, location) = ada.post("/users/carol/roles", &form).await;
    assert_eq!((status, location.as_deref()), (StatusCode::SEE_OTHER, Some("/users?done=roles")));
    assert_eq!(roles_of("carol").await, serde_json::json!(["responder", "auditor"]));
    assert!(ada.get("/users?done=roles").await.1.contains("✓ Roles saved."));
    let audit = server.get(&admin_token, "/api/v1/audit?action=user.roles_changed").await.body;
    assert_eq!(audit[0]["actor"], "user:ada");
    assert_eq!(
        audit[0]["data"],
        serde_json::json!({ "user": "carol", "roles": ["responder", "auditor"] })
    );

    // A forged form (no CSRF token) changes nothing; nor does an unknown role.
    let (status, _, _) = ada.post("/users/carol/roles", &[("role", "admin")]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, page, _) =
        ada.post("/users/carol/roles", &[("csrf", token.as_str()), ("role", "boss")]).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.contains("unknown role `boss`"), "{page}");
    assert_eq!(roles_of("carol").await, serde_json::json!(["responder", "auditor"]));
    // The last admin keeps the admin role.
    let (status, page, _) =
        ada.post("/users/ada/roles", &[("csrf", token.as_str()), ("role", "auditor")]).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(page.contains("cannot take away your own admin role"), "{page}");
    // Only admins.
    let carol_token = csrf(&carol.get("/work").await.1);
    let (status, _, _) = carol
        .post("/users/carol/roles", &[("csrf", carol_token.as_str()), ("role", "admin")])
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // A new password: the policy applies, CSRF is checked, carol's sessions end.
    let (status, page, _) =
        ada.post("/users/carol/password", &[("csrf", token.as_str()), ("password", "short")]).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.contains("✗ "), "{page}");
    let (status, _, _) =
        ada.post("/users/carol/password", &[("password", "carol-new-password-long")]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(carol.get("/work").await.0, StatusCode::OK, "nothing changed yet");
    let form = [("csrf", token.as_str()), ("password", "carol-new-password-long")];
    let (status, _, location) = ada.post("/users/carol/password", &form).await;
    assert_eq!(
        (status, location.as_deref()),
        (StatusCode::SEE_OTHER, Some("/users?done=password"))
    );
    assert_ne!(carol.get("/work").await.0, StatusCode::OK, "carol's session ended");
    let signed_in = server
        .client
        .post(format!("{}/api/v1/session", server.url))
        .json(&serde_json::json!({ "name": "carol", "password": "carol-new-password-long" }))
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status(), StatusCode::OK);
    let audit = server.get(&admin_token, "/api/v1/audit?action=user.password_reset").await.body;
    assert_eq!(audit[0]["data"], serde_json::json!({ "user": "carol", "sessions_ended": 1 }));
    assert!(!audit.to_string().contains("carol-new-password-long"));
}

async fn a_new_token_is_shown_once_after_a_redirect_and_never_cached(backend: Backend) {
    let server = Server::start("admin-tokens", backend).await;
    let admin_token = server.person("ada", &[Admin]).await;
    server.person("newbie", &[Responder]).await;
    let ada = Browser::sign_in(&server, "ada").await;
    let token = csrf(&ada.get("/users").await.1);

    // A forged form issues nothing.
    let (status, _, _) = ada.post("/tokens", &[("user", "newbie"), ("label", "ci")]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let tokens = server.get(&admin_token, "/api/v1/tokens").await.body;
    assert!(!tokens.to_string().contains("\"ci\""), "{tokens}");

    // POST, redirect, GET: the secret is in neither the redirect's address nor its body.
    let response = ada
        .client
        .post(format!("{}/tokens", ada.base))
        .header(header::COOKIE, &ada.cookie)
        .form(&[("csrf", token.as_str()), ("user", "newbie"), ("label", "ci")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()[header::LOCATION], "/users");
    let carried = response.headers()[header::SET_COOKIE].to_str().unwrap().to_owned();
    assert!(carried.contains("HttpOnly") && carried.contains("Path=/users"), "{carried}");
    let carried = carried.split(';').next().unwrap().to_owned();
    assert!(response.text().await.unwrap().is_empty());

    let shown = ada
        .client
        .get(format!("{}/users", ada.base))
        .header(header::COOKIE, format!("{}; {carried}", ada.cookie))
        .send()
        .await
        .unwrap();
    assert_eq!(shown.headers()[header::CACHE_CONTROL], "no-store");
    let forget = shown.headers()[header::SET_COOKIE].to_str().unwrap().to_owned();
    assert!(forget.contains("Max-Age=0"), "{forget}");
    let page = shown.text().await.unwrap();
    let secret = carried.split_once('=').unwrap().1;
    assert!(page.contains(&format!("New token, shown once: <code>{secret}</code>")), "{page}");
    let works = server.get(secret, "/api/v1/runs").await;
    assert_eq!(works.status, StatusCode::OK, "the shown secret is the token's");

    // Shown once: the page without the cookie has no secret.
    let (_, again) = ada.get("/users").await;
    assert!(!again.contains(secret) && !again.contains("shown once"), "{again}");
}
