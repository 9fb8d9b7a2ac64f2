//! Who is calling: server-side sessions with CSRF tokens, API tokens, and the `Caller`
//! extractor every protected route takes. Passwords and the rules of signing in live in the
//! engine's `AccountService`; this is the HTTP side: cookies and headers.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, header};
use steady_engine::accounts::{GlobalRole, Session, User};

/// How credentials are hashed and made, re-exported for tools and tests that set up accounts
/// directly in a store.
pub use steady_engine::accounts::credentials::{
    csrf_token, hash_password, new_secret, secret_hash,
};

use crate::AppState;
use crate::error::AppError;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "steady_session";
/// The session cookie's name when cookies are `Secure`: browsers accept a `__Host-` cookie only
/// if it is `Secure`, host-only and for `/`, so no sibling domain or plain-http page can set or
/// shadow it (ASVS 3.3.1). Without https the prefix would make browsers drop the cookie.
pub const SECURE_SESSION_COOKIE: &str = "__Host-steady_session";

/// The session cookie's name under this configuration.
pub fn session_cookie_name(secure: bool) -> &'static str {
    if secure { SECURE_SESSION_COOKIE } else { SESSION_COOKIE }
}
/// The header that carries a session's CSRF token on state-changing requests.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// Whether `sent` is the CSRF token whose hash a session stores, compared in constant time.
fn csrf_is(sent: &str, session: &Session) -> bool {
    !sent.is_empty() && same(&secret_hash(sent), &session.csrf_hash)
}

/// Compares two strings in time that does not depend on where they differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The person behind a request, and how they proved it.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user: User,
    /// The session, when the request came from a browser; `None` for a bearer token.
    pub session: Option<Session>,
    /// The hash of the bearer token, when the request came with one.
    pub token_hash: Option<String>,
    /// The session's CSRF token, for pages and `GET /api/v1/session` to hand to the browser.
    pub csrf_token: Option<String>,
}

impl Caller {
    pub fn require(&self, role: GlobalRole) -> Result<(), AppError> {
        if self.user.has(role) {
            Ok(())
        } else {
            Err(AppError::forbidden(format!("this needs the `{role}` role")))
        }
    }

    /// The audit log is for auditors and admins.
    pub fn require_audit_reader(&self) -> Result<(), AppError> {
        if self.user.has(GlobalRole::Auditor) || self.user.has(GlobalRole::Admin) {
            Ok(())
        } else {
            Err(AppError::forbidden("the audit log is for auditors and admins"))
        }
    }

    /// Acting in runs (starting, answering, deciding) needs the responder role; auditors read
    /// everything and act on nothing.
    pub fn require_responder(&self) -> Result<(), AppError> {
        self.require(GlobalRole::Responder)
    }
}

/// The address a request came from, for the sign-in throttle.
pub fn client_address(parts_extensions: &axum::http::Extensions) -> String {
    parts_extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(address)| address.ip().to_string())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// The value of the session cookie, if the request has one.
pub fn session_cookie(headers: &HeaderMap, secure: bool) -> Option<String> {
    cookie_value(headers, session_cookie_name(secure))
}

/// The value of the request's cookie `name`, if it has one.
pub(crate) fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(cookie::Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|cookie| cookie.name() == name)
        .map(|cookie| cookie.value().to_owned())
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = AppError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        authenticate(parts, state, true).await
    }
}

/// An alerting system delivering alerts: a bearer token of an account holding the global role
/// `trigger`, the only thing such an account may do (every other route refuses it).
#[derive(Debug, Clone)]
pub struct TriggerCaller(pub User);

impl FromRequestParts<AppState> for TriggerCaller {
    type Rejection = AppError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let secret = bearer(parts).ok_or_else(AppError::unauthenticated)?;
        let caller = by_token(state, &secret_hash(secret)).await?;
        CallerName::record(parts, &caller);
        if !caller.user.has(GlobalRole::Trigger) {
            return Err(AppError::forbidden(
                "delivering alerts needs a token of an account with the `trigger` role",
            ));
        }
        Ok(TriggerCaller(caller.user))
    }
}

/// The secret of an `Authorization: Bearer` header, if the request has one.
fn bearer(parts: &Parts) -> Option<&str> {
    parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim)
}

/// Where the request's caller is noted once known, so that a refusal can be logged with who
/// was refused (see `record_denials`).
#[derive(Debug, Clone, Default)]
pub struct CallerName(pub std::sync::Arc<std::sync::Mutex<Option<String>>>);

impl CallerName {
    fn record(parts: &Parts, caller: &Caller) {
        if let Some(slot) = parts.extensions.get::<CallerName>()
            && let Ok(mut name) = slot.0.lock()
        {
            *name = Some(caller.user.actor().to_string());
        }
    }

    pub fn get(&self) -> Option<String> {
        self.0.lock().ok().and_then(|name| name.clone())
    }
}

/// Finds who is calling. With `csrf_header`, a state-changing request made with the session
/// cookie must carry the session's CSRF token in `X-CSRF-Token` (the API); without, the caller
/// checks the token itself (the pages, whose forms carry it in a field).
pub async fn authenticate(
    parts: &Parts,
    state: &AppState,
    csrf_header: bool,
) -> Result<Caller, AppError> {
    if let Some(secret) = bearer(parts) {
        let caller = by_token(state, &secret_hash(secret)).await?;
        CallerName::record(parts, &caller);
        return refuse_trigger(caller);
    }
    let id = session_cookie(&parts.headers, state.config.secure_cookies)
        .ok_or_else(AppError::unauthenticated)?;
    let mut caller = by_session(state, &secret_hash(&id), true).await?;
    caller.csrf_token = Some(csrf_token(&id));
    CallerName::record(parts, &caller);
    // A browser can be made to send the cookie by another site; it cannot be made to send
    // this header, which only Steady's own pages know.
    if csrf_header && !matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS) {
        let sent = parts
            .headers
            .get(CSRF_HEADER)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default();
        if !caller.session.as_ref().is_some_and(|session| csrf_is(sent, session)) {
            return Err(AppError::forbidden("missing or wrong CSRF token"));
        }
    }
    refuse_trigger(caller)
}

/// An alerting system's account delivers alerts and does nothing else: not even read.
fn refuse_trigger(caller: Caller) -> Result<Caller, AppError> {
    if caller.user.has(GlobalRole::Trigger) {
        return Err(AppError::forbidden(
            "a `trigger` account only delivers alerts to /api/v1/hooks/{source}",
        ));
    }
    Ok(caller)
}

/// Whether a CSRF token sent with a form is the session's.
pub fn csrf_matches(caller: &Caller, sent: &str) -> bool {
    caller.session.as_ref().is_some_and(|session| csrf_is(sent, session))
}

impl Caller {
    /// Whether the credentials this caller came with still hold: for long-lived responses
    /// (event streams) that must end when a token is revoked, a session ends or a user is
    /// disabled.
    pub async fn still_valid(&self, state: &AppState) -> bool {
        match (&self.session, &self.token_hash) {
            // Checking does not count as using: a stream left open must not keep a session alive.
            (Some(session), _) => by_session(state, &session.id_hash, false).await.is_ok(),
            (None, Some(hash)) => by_token(state, hash).await.is_ok(),
            (None, None) => false,
        }
    }
}

async fn by_token(state: &AppState, hash: &str) -> Result<Caller, AppError> {
    let token = state.accounts.token_by_hash(hash).await?;
    let token =
        token.filter(|token| token.revoked_at.is_none()).ok_or_else(AppError::unauthenticated)?;
    let user = active_user(state, &token.user).await?;
    Ok(Caller { user, session: None, token_hash: Some(hash.to_owned()), csrf_token: None })
}

async fn by_session(state: &AppState, id_hash: &str, touch: bool) -> Result<Caller, AppError> {
    let session = state.accounts.session(id_hash).await?.ok_or_else(AppError::unauthenticated)?;
    // The engine's clock, which also started the session: tests move it instead of waiting.
    let now = state.engine.now();
    let idle =
        chrono::Duration::from_std(state.config.session_idle).unwrap_or(chrono::Duration::MAX);
    let lifetime =
        chrono::Duration::from_std(state.config.session_lifetime).unwrap_or(chrono::Duration::MAX);
    let expired = session.last_seen.checked_add_signed(idle).is_some_and(|end| end < now)
        || session.created_at.checked_add_signed(lifetime).is_some_and(|end| end < now);
    if expired {
        state.accounts.delete_session(id_hash).await?;
        return Err(AppError::unauthenticated());
    }
    let user = active_user(state, &session.user).await?;
    if touch {
        state.accounts.touch_session(id_hash, now).await?;
    }
    Ok(Caller { user, session: Some(session), token_hash: None, csrf_token: None })
}

async fn active_user(state: &AppState, name: &str) -> Result<User, AppError> {
    state
        .accounts
        .user(name)
        .await?
        .filter(|user| !user.disabled)
        .ok_or_else(AppError::unauthenticated)
}
