//! Who may do what: authentication, sessions, CSRF, tokens, and global roles.

use reqwest::{Method, StatusCode, header};
use serde_json::json;
use steady_engine::accounts::GlobalRole::{Admin, Auditor, Author, Responder};

use crate::*;

on_every_backend!(
    nobody_gets_in_without_credentials,
    sign_ins_are_audited_and_refusals_counted,
    a_busy_session_still_ends_at_its_absolute_lifetime,
    behind_https_the_session_cookie_is_a_host_cookie,
    global_roles_decide_who_may_publish_start_read_the_audit_log_and_manage_users,
    a_revoked_token_opens_nothing,
    sessions_need_csrf_tokens_end_at_logout_and_never_take_a_planted_id,
    an_idle_session_expires,
    failed_sign_ins_are_throttled_and_audited,
    the_openapi_document_describes_every_route,
    runs_are_listed_in_keyset_pages_and_bad_queries_are_422s,
    an_admin_disables_a_user_and_their_sessions_and_tokens_stop_working,
    sign_in_refuses_forms_and_parallel_guessing,
    an_event_stream_ends_when_its_token_is_revoked,
    a_stolen_sessions_table_yields_no_csrf_token,
    passwords_of_spaces_or_without_end_are_refused,
);

async fn nobody_gets_in_without_credentials(backend: Backend) {
    let server = Server::start("anonymous", backend).await;
    for (method, path) in [
        (Method::GET, "/api/v1/runs"),
        (Method::POST, "/api/v1/runs"),
        (Method::GET, "/api/v1/runbooks"),
        (Method::GET, "/api/v1/audit"),
        (Method::GET, "/api/v1/users"),
        (Method::POST, "/api/v1/tokens"),
    ] {
        let response = server.call(None, method.clone(), path, None).await;
        assert_eq!(response.status, StatusCode::UNAUTHORIZED, "{method} {path}");
        assert_eq!(response.body["error"]["code"], "unauthenticated");
    }
    let wrong = server.call(Some("stdy_not-a-token"), Method::GET, "/api/v1/runs", None).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(server.call(None, Method::GET, "/healthz", None).await.status, StatusCode::OK);
}

async fn global_roles_decide_who_may_publish_start_read_the_audit_log_and_manage_users(
    backend: Backend,
) {
    let server = Server::start("roles", backend).await;
    let admin = server.person("ada", &[Admin]).await;
    let author = server.person("arthur", &[Author]).await;
    let responder = server.person("rita", &[Responder]).await;
    let auditor = server.person("audrey", &[Auditor]).await;
    let source = json!({ "source": "name: tiny\nsteps:\n  - id: nap\n    sleep: 1ms\n" });

    for token in [&admin, &responder, &auditor] {
        assert_eq!(
            server.post(token, "/api/v1/runbooks", source.clone()).await.status,
            StatusCode::FORBIDDEN
        );
    }
    assert_eq!(server.post(&author, "/api/v1/runbooks", source).await.status, StatusCode::CREATED);

    for token in [&admin, &author, &auditor] {
        let start = server.post(token, "/api/v1/runs", json!({ "runbook": "tiny" })).await;
        assert_eq!(start.status, StatusCode::FORBIDDEN, "{}", start.body);
    }
    let started = server.post(&responder, "/api/v1/runs", json!({ "runbook": "tiny" })).await;
    assert_eq!(started.status, StatusCode::CREATED);
    let run = started.body["id"].as_str().unwrap().to_owned();

    // Everybody reads runs; only auditors and admins read the audit log.
    for token in [&admin, &author, &responder, &auditor] {
        assert_eq!(server.get(token, &format!("/api/v1/runs/{run}")).await.status, StatusCode::OK);
    }
    assert_eq!(server.get(&responder, "/api/v1/audit").await.status, StatusCode::FORBIDDEN);
    assert_eq!(server.get(&auditor, "/api/v1/audit").await.status, StatusCode::OK);

    // The auditor acts on nothing, even a run's note.
    let note =
        server.post(&auditor, &format!("/api/v1/runs/{run}/notes"), json!({ "text": "hmm" })).await;
    assert_eq!(note.status, StatusCode::FORBIDDEN);

    let new_user =
        json!({ "name": "newbie", "roles": ["responder"], "password": "a-long-enough-password" });
    assert_eq!(
        server.post(&responder, "/api/v1/users", new_user.clone()).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        server.post(&admin, "/api/v1/users", new_user.clone()).await.status,
        StatusCode::CREATED
    );
    assert_eq!(server.post(&admin, "/api/v1/users", new_user).await.status, StatusCode::CONFLICT);
    let short = json!({ "name": "short", "roles": ["responder"], "password": "short" });
    assert_eq!(
        server.post(&admin, "/api/v1/users", short).await.status,
        StatusCode::UNPROCESSABLE_ENTITY
    );
}

async fn a_revoked_token_opens_nothing(backend: Backend) {
    let server = Server::start("tokens", backend).await;
    let admin = server.person("ada", &[Admin]).await;
    server.person("rita", &[Responder]).await;
    let created =
        server.post(&admin, "/api/v1/tokens", json!({ "label": "ci", "user": "rita" })).await;
    assert_eq!(created.status, StatusCode::CREATED);
    let secret = created.body["secret"].as_str().unwrap().to_owned();
    assert!(secret.len() >= 32 + 5, "at least 128 bits of randomness");
    assert_eq!(server.get(&secret, "/api/v1/runs").await.status, StatusCode::OK);
    let listed = server.get(&admin, "/api/v1/tokens").await;
    assert!(
        listed
            .body
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t.get("secret").is_none() && t.get("hash").is_none())
    );
    let id = created.body["id"].as_str().unwrap();
    let revoked =
        server.call(Some(&admin), Method::DELETE, &format!("/api/v1/tokens/{id}"), None).await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT);
    assert_eq!(server.get(&secret, "/api/v1/runs").await.status, StatusCode::UNAUTHORIZED);
}

/// Signs in with a password; returns the session cookie and the CSRF token.
async fn sign_in(
    server: &Server,
    name: &str,
    password: &str,
) -> Result<(String, String), StatusCode> {
    let response = server
        .client
        .post(format!("{}/api/v1/session", server.url))
        .json(&json!({ "name": name, "password": password }))
        .send()
        .await
        .unwrap();
    if response.status() != StatusCode::OK {
        return Err(response.status());
    }
    let cookie = response.headers().get(header::SET_COOKIE).unwrap().to_str().unwrap().to_owned();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
    let body: serde_json::Value = response.json().await.unwrap();
    let pair = cookie.split(';').next().unwrap().to_owned();
    Ok((pair, body["csrf_token"].as_str().unwrap().to_owned()))
}

async fn with_cookie(
    server: &Server,
    method: Method,
    path: &str,
    cookie: &str,
    csrf: Option<&str>,
) -> StatusCode {
    let mut request = server
        .client
        .request(method, format!("{}{path}", server.url))
        .header(header::COOKIE, cookie);
    if let Some(csrf) = csrf {
        request = request.header("x-csrf-token", csrf);
    }
    request.json(&json!({ "text": "from the browser" })).send().await.unwrap().status()
}

async fn sessions_need_csrf_tokens_end_at_logout_and_never_take_a_planted_id(backend: Backend) {
    let server = Server::start("sessions", backend).await;
    server.person("rita", &[Responder]).await;
    publish(&server, "name: tiny\nsteps:\n  - id: nap\n    sleep: 1ms\n").await;

    assert_eq!(sign_in(&server, "rita", "wrong-password").await, Err(StatusCode::UNAUTHORIZED));
    let planted = "steady_session=attacker-chosen-id";
    let (cookie, csrf) = sign_in(&server, "rita", "rita-password-long").await.unwrap();
    assert_ne!(cookie, planted, "sign-in issues its own session id");
    assert_eq!(
        with_cookie(&server, Method::GET, "/api/v1/runs", planted, None).await,
        StatusCode::UNAUTHORIZED
    );

    assert_eq!(
        with_cookie(&server, Method::GET, "/api/v1/runs", &cookie, None).await,
        StatusCode::OK
    );
    // A cross-site form can send the cookie but not the token.
    let start = "/api/v1/runs";
    assert_eq!(
        with_cookie(&server, Method::POST, start, &cookie, None).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        with_cookie(&server, Method::POST, start, &cookie, Some("forged")).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        with_cookie(&server, Method::POST, start, &cookie, Some(&csrf)).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "past CSRF, the body is checked"
    );

    assert_eq!(
        with_cookie(&server, Method::DELETE, "/api/v1/session", &cookie, Some(&csrf)).await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        with_cookie(&server, Method::GET, "/api/v1/runs", &cookie, None).await,
        StatusCode::UNAUTHORIZED
    );
}

async fn an_idle_session_expires(backend: Backend) {
    let config = steady_web::ServerConfig {
        session_idle: std::time::Duration::from_secs(30 * 60),
        ..Default::default()
    };
    let server = Server::start_with("idle", backend, config).await;
    server.person("rita", &[Responder]).await;
    let (cookie, _) = sign_in(&server, "rita", "rita-password-long").await.unwrap();
    assert_eq!(
        with_cookie(&server, Method::GET, "/api/v1/runs", &cookie, None).await,
        StatusCode::OK
    );
    server.clock.advance(std::time::Duration::from_secs(29 * 60));
    assert_eq!(
        with_cookie(&server, Method::GET, "/api/v1/runs", &cookie, None).await,
        StatusCode::OK,
        "used within its idle limit, which starts again"
    );
    server.clock.advance(std::time::Duration::from_secs(31 * 60));
    assert_eq!(
        with_cookie(&server, Method::GET, "/api/v1/runs", &cookie, None).await,
        StatusCode::UNAUTHORIZED
    );
}

/// ASVS 7.3.2: however busy, a session ends at its absolute lifetime.
async fn a_busy_session_still_ends_at_its_absolute_lifetime(backend: Backend) {
    let config = steady_web::ServerConfig {
        session_lifetime: std::time::Duration::from_secs(12 * 3600),
        ..Default::default()
    };
    let server = Server::start_with("lifetime", backend, config).await;
    server.person("rita", &[Responder]).await;
    let (cookie, _) = sign_in(&server, "rita", "rita-password-long").await.unwrap();
    // Used every ten minutes all shift long: never idle, yet it ends at twelve hours.
    for _ in 0..71 {
        assert_eq!(
            with_cookie(&server, Method::GET, "/api/v1/runs", &cookie, None).await,
            StatusCode::OK,
            "in use, within its lifetime"
        );
        server.clock.advance(std::time::Duration::from_secs(10 * 60));
    }
    server.clock.advance(std::time::Duration::from_secs(15 * 60));
    assert_eq!(
        with_cookie(&server, Method::GET, "/api/v1/runs", &cookie, None).await,
        StatusCode::UNAUTHORIZED
    );
}

async fn failed_sign_ins_are_throttled_and_audited(backend: Backend) {
    let server = Server::start("throttle", backend).await;
    server.person("rita", &[Responder]).await;
    let auditor = server.person("audrey", &[Auditor]).await;
    for _ in 0..5 {
        assert_eq!(
            sign_in(&server, "rita", "guess-guess-guess").await,
            Err(StatusCode::UNAUTHORIZED)
        );
    }
    // Even the right password waits now.
    assert_eq!(
        sign_in(&server, "rita", "rita-password-long").await,
        Err(StatusCode::TOO_MANY_REQUESTS)
    );
    let failures = server.get(&auditor, "/api/v1/audit?action=login.failed").await;
    assert_eq!(failures.body.as_array().unwrap().len(), 5, "throttled attempts leave no trace");
}

async fn the_openapi_document_describes_every_route(backend: Backend) {
    let server = Server::start("openapi", backend).await;
    let document = server.call(None, Method::GET, "/api/v1/openapi.json", None).await;
    assert_eq!(document.status, StatusCode::OK);
    assert!(document.body["openapi"].as_str().unwrap().starts_with("3."));
    let paths = document.body["paths"].as_object().unwrap();
    let documented: Vec<String> = paths
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .map(move |method| format!("{} {path}", method.to_uppercase()))
        })
        .collect();
    let routes = [
        "GET /healthz",
        "GET /metrics",
        "POST /api/v1/session",
        "GET /api/v1/session",
        "DELETE /api/v1/session",
        "GET /api/v1/runbooks",
        "POST /api/v1/runbooks",
        "GET /api/v1/runbooks/{name}",
        "GET /api/v1/runbooks/{name}/source",
        "GET /api/v1/runbooks/{name}/figures",
        "GET /api/v1/runs",
        "POST /api/v1/runs",
        "GET /api/v1/runs/{id}",
        "POST /api/v1/runs/{id}/cancel",
        "POST /api/v1/runs/{id}/take",
        "POST /api/v1/runs/{id}/dismiss",
        "POST /api/v1/hooks/{source}",
        "POST /api/v1/runs/{id}/decisions",
        "POST /api/v1/runs/{id}/assignments",
        "POST /api/v1/runs/{id}/commander",
        "POST /api/v1/runs/{id}/notes",
        "GET /api/v1/runs/{id}/events",
        "GET /api/v1/events",
        "POST /api/v1/runs/{id}/steps/{step}/{action}",
        "GET /api/v1/audit",
        "GET /api/v1/audit/verify",
        "GET /api/v1/audit/export",
        "GET /api/v1/nodes",
        "GET /api/v1/users",
        "POST /api/v1/users",
        "PUT /api/v1/users/{name}",
        "GET /api/v1/tokens",
        "POST /api/v1/tokens",
        "DELETE /api/v1/tokens/{id}",
        "GET /api/v1/openapi.json",
    ];
    for route in routes {
        assert!(documented.iter().any(|d| d == route), "{route} is not documented: {documented:?}");
    }
    assert_eq!(documented.len(), routes.len(), "{documented:?}");
    assert!(document.body["components"]["schemas"]["StartBody"].is_object());
}

async fn runs_are_listed_in_keyset_pages_and_bad_queries_are_422s(backend: Backend) {
    let server = Server::start("paging", backend).await;
    publish(&server, "name: tiny\nsteps:\n  - id: nap\n    sleep: 1ms\n").await;
    let rita = server.person("rita", &[Responder]).await;
    let mut started = Vec::new();
    for _ in 0..5 {
        let run =
            server.post(&rita, "/api/v1/runs", json!({ "runbook": "tiny", "mode": "drill" })).await;
        started.push(run.body["id"].as_str().unwrap().to_owned());
    }
    started.reverse();
    let first = server.get(&rita, "/api/v1/runs?limit=2&mode=drill").await;
    let ids = |body: &serde_json::Value| -> Vec<String> {
        body.as_array().unwrap().iter().map(|run| run["id"].as_str().unwrap().to_owned()).collect()
    };
    assert_eq!(ids(&first.body), started[..2]);
    let second = server.get(&rita, &format!("/api/v1/runs?limit=2&before={}", started[1])).await;
    assert_eq!(ids(&second.body), started[2..4]);
    let last = server.get(&rita, &format!("/api/v1/runs?limit=2&before={}", started[3])).await;
    assert_eq!(ids(&last.body), started[4..]);

    // A page larger than the most a page holds is refused rather than cut short: a client
    // that pages on would take a short page for the last.
    for query in [
        "?before=not-a-run",
        "?limit=lots",
        "?limit=501",
        "?status=bogus",
        "?mode=fast",
        "?since=yesterday",
    ] {
        let response = server.get(&rita, &format!("/api/v1/runs{query}")).await;
        assert_eq!(response.status, StatusCode::UNPROCESSABLE_ENTITY, "{query}");
        assert_eq!(response.body["error"]["code"], "invalid", "{query}");
    }
}

async fn an_admin_disables_a_user_and_their_sessions_and_tokens_stop_working(backend: Backend) {
    let server = Server::start("disable", backend).await;
    let admin = server.person("ada", &[Admin]).await;
    let rita = server.person("rita", &[Responder]).await;
    let (cookie, _) = sign_in(&server, "rita", "rita-password-long").await.unwrap();
    let disabled = server
        .call(Some(&admin), Method::PUT, "/api/v1/users/rita", Some(json!({ "disabled": true })))
        .await;
    assert_eq!(
        (disabled.status, disabled.body["disabled"].as_bool()),
        (StatusCode::OK, Some(true))
    );
    assert_eq!(server.get(&rita, "/api/v1/runs").await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        with_cookie(&server, Method::GET, "/api/v1/runs", &cookie, None).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(sign_in(&server, "rita", "rita-password-long").await, Err(StatusCode::UNAUTHORIZED));
    let by_rita = server
        .call(Some(&rita), Method::PUT, "/api/v1/users/ada", Some(json!({ "disabled": true })))
        .await;
    assert_eq!(by_rita.status, StatusCode::UNAUTHORIZED);
}

async fn sign_in_refuses_forms_and_parallel_guessing(backend: Backend) {
    let server = Server::start("sign-in-abuse", backend).await;
    server.person("rita", &[Responder]).await;
    let auditor = server.person("audrey", &[Auditor]).await;
    // A cross-site form can only send text/plain.
    let form = server
        .client
        .post(format!("{}/api/v1/session", server.url))
        .header(header::CONTENT_TYPE, "text/plain")
        .body(r#"{"name":"rita","password":"rita-password-long"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // A name no account could have is refused without a trace in the log.
    assert_eq!(
        sign_in(&server, &"x".repeat(5000), "whatever").await,
        Err(StatusCode::UNAUTHORIZED)
    );
    // Twelve guesses at once: the throttle counts every one of them.
    let guesses = (0..12).map(|_| sign_in(&server, "rita", "guess-guess-guess"));
    let answers = futures_util::future::join_all(guesses).await;
    let refused = answers.iter().filter(|a| **a == Err(StatusCode::UNAUTHORIZED)).count();
    let throttled = answers.iter().filter(|a| **a == Err(StatusCode::TOO_MANY_REQUESTS)).count();
    assert_eq!((refused, throttled), (5, 7), "{answers:?}");
    let failures = server.get(&auditor, "/api/v1/audit?action=login.failed").await;
    assert_eq!(failures.body.as_array().unwrap().len(), 5, "only real attempts are audited");
}

async fn an_event_stream_ends_when_its_token_is_revoked(backend: Backend) {
    let server = Server::start("stream-revoked", backend).await;
    let admin = server.person("ada", &[Admin]).await;
    server.person("rita", &[Responder]).await;
    publish(&server, "name: gated\nroles:\n  approver: {}\nsteps:\n  - id: go\n    approval: { role: approver }\n").await;
    let created =
        server.post(&admin, "/api/v1/tokens", json!({ "label": "stream", "user": "rita" })).await;
    let secret = created.body["secret"].as_str().unwrap().to_owned();
    let started = server.post(&secret, "/api/v1/runs", json!({ "runbook": "gated" })).await;
    let run = started.body["id"].as_str().unwrap().to_owned();
    let mut stream = server
        .client
        .get(format!("{}/api/v1/runs/{run}/events", server.url))
        .bearer_auth(&secret)
        .send()
        .await
        .unwrap();
    let id = created.body["id"].as_str().unwrap();
    server.call(Some(&admin), Method::DELETE, &format!("/api/v1/tokens/{id}"), None).await;
    let ended = tokio::time::timeout(std::time::Duration::from_secs(15), async {
        while let Ok(Some(_)) = stream.chunk().await {}
    })
    .await;
    assert!(ended.is_ok(), "the stream ended after the token was revoked");
}

/// ASVS 16.3.1 and 16.3.2: a successful sign-in is an audit event naming who and from where;
/// every refused request is counted for monitoring (and logged on standard error).
async fn sign_ins_are_audited_and_refusals_counted(backend: Backend) {
    let server = Server::start("security-events", backend).await;
    let rita = server.person("rita", &[Responder]).await;
    let audrey = server.person("audrey", &[GlobalRole::Auditor]).await;
    sign_in(&server, "rita", "rita-password-long").await.unwrap();
    let events = server.get(&audrey, "/api/v1/audit?action=login.succeeded").await;
    let events = events.body.as_array().unwrap().clone();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["actor"], "user:rita");
    assert_eq!(events[0]["data"]["address"], "127.0.0.1");

    assert_eq!(server.get(&rita, "/api/v1/users").await.status, StatusCode::FORBIDDEN);
    let anonymous = server.call(None, Method::GET, "/api/v1/runs", None).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    let metrics = server.client.get(format!("{}/metrics", server.url)).send().await.unwrap();
    let text = metrics.text().await.unwrap();
    assert!(text.contains("steady_requests_denied_total{status=\"401\"} 1\n"), "{text}");
    assert!(text.contains("steady_requests_denied_total{status=\"403\"} 1\n"), "{text}");
}

/// ASVS 3.3.1: with `--secure-cookies` the session cookie is `__Host-` prefixed, `Secure`,
/// host-only and for `/`, and only that name opens a session.
async fn behind_https_the_session_cookie_is_a_host_cookie(backend: Backend) {
    let config = steady_web::ServerConfig { secure_cookies: true, ..Default::default() };
    let server = Server::start_with("host-cookie", backend, config).await;
    server.person("rita", &[Responder]).await;
    let response = server
        .client
        .post(format!("{}/api/v1/session", server.url))
        .json(&json!({ "name": "rita", "password": "rita-password-long" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let set = response.headers()[header::SET_COOKIE].to_str().unwrap().to_owned();
    assert!(set.starts_with("__Host-steady_session="), "{set}");
    for attribute in ["Secure", "HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set.contains(attribute), "{attribute} in {set}");
    }
    assert!(!set.contains("Domain"), "{set}");
    let pair = set.split(';').next().unwrap().to_owned();
    assert_eq!(
        with_cookie(&server, Method::GET, "/api/v1/runs", &pair, None).await,
        StatusCode::OK
    );
    let unprefixed = pair.replace("__Host-steady_session", "steady_session");
    assert_eq!(
        with_cookie(&server, Method::GET, "/api/v1/runs", &unprefixed, None).await,
        StatusCode::UNAUTHORIZED
    );
}

/// The sessions table stores hashes only: neither the session id nor the CSRF token can be
/// read back from it, and the token the browser was given still works.
async fn a_stolen_sessions_table_yields_no_csrf_token(backend: Backend) {
    let server = Server::start("csrf-hashed", backend).await;
    server.person("rita", &[Responder]).await;
    let (cookie, csrf) = sign_in(&server, "rita", "rita-password-long").await.unwrap();
    let id = cookie.split_once('=').unwrap().1;
    let stored = server.state.accounts.session(&auth::secret_hash(id)).await.unwrap().unwrap();
    assert_ne!(stored.csrf_hash, csrf);
    assert_eq!(stored.csrf_hash, auth::secret_hash(&csrf));
    // What the table holds is not a token: sent as one, it is refused.
    let start = "/api/v1/runs";
    assert_eq!(
        with_cookie(&server, Method::POST, start, &cookie, Some(&stored.csrf_hash)).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        with_cookie(&server, Method::POST, start, &cookie, Some(&csrf)).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "past CSRF, the body is checked"
    );
    // A page and `GET /api/v1/session` hand the browser the same token.
    let response = server
        .client
        .get(format!("{}/api/v1/session", server.url))
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["csrf_token"], csrf.as_str());
}

async fn passwords_of_spaces_or_without_end_are_refused(backend: Backend) {
    let server = Server::start("password-policy", backend).await;
    let admin = server.person("ada", &[Admin]).await;
    let attempt = |name: &str, password: String| json!({ "name": name, "roles": ["responder"], "password": password });
    let spaces = server.post(&admin, "/api/v1/users", attempt("spaces", " ".repeat(12))).await;
    assert_eq!(spaces.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(spaces.body["error"]["message"], "a password needs more than spaces");
    let huge = server.post(&admin, "/api/v1/users", attempt("huge", "x".repeat(100_000))).await;
    assert_eq!(huge.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(huge.body["error"]["message"], "a password has at most 128 characters");
    let longest = "a long passphrase ".repeat(8)[..128].to_owned();
    let fine = server.post(&admin, "/api/v1/users", attempt("fine", longest.clone())).await;
    assert_eq!(fine.status, StatusCode::CREATED, "{}", fine.body);
    assert!(sign_in(&server, "fine", &longest).await.is_ok());
}
