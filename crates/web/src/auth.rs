//! Who is calling: passwords (argon2id), server-side sessions with CSRF tokens, API tokens,
//! and the `Caller` extractor every protected route takes.

use std::net::SocketAddr;

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, header};
use sha2::{Digest, Sha256};
use steady_engine::accounts::{GlobalRole, Session, User};
use steady_engine::engine::now;

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

/// The shortest password accepted (ASVS 2.1.1).
pub const MIN_PASSWORD_CHARS: usize = 12;
/// The longest password accepted: room for any passphrase or generated password (ASVS 2.1.2
/// asks for at least 64), and a bound on the work one hash takes.
pub const MAX_PASSWORD_CHARS: usize = 128;

/// Why a new password is refused, if it is: too short, too long, or nothing but spaces.
pub fn password_problem(password: &str) -> Option<String> {
    let chars = password.chars().count();
    if chars < MIN_PASSWORD_CHARS {
        Some(format!("a password needs at least {MIN_PASSWORD_CHARS} characters"))
    } else if chars > MAX_PASSWORD_CHARS {
        Some(format!("a password has at most {MAX_PASSWORD_CHARS} characters"))
    } else if password.trim().is_empty() {
        Some("a password needs more than spaces".to_owned())
    } else {
        None
    }
}

/// Hashes a password with argon2id and a random salt, as a PHC string.
pub fn hash_password(password: &str) -> Result<String, AppError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|error| AppError::invalid(format!("cannot hash the password: {error}")))
}

/// Whether `password` matches a stored PHC hash.
pub fn verify_password(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash)
        .is_ok_and(|hash| Argon2::default().verify_password(password.as_bytes(), &hash).is_ok())
}

/// An argon2id hash of a password nobody knows, checked when a name does not exist so that
/// timing does not tell which names do.
pub fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_password(&new_secret()).unwrap_or_default())
}

/// A fresh random secret: 256 bits, hex.
pub fn new_secret() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

/// How secrets are kept: only their SHA-256 is stored, so a stolen database opens nothing.
pub fn secret_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// A session's CSRF token, derived from its secret id: only the browser holding the session
/// cookie and the pages rendered for it know it, and only its hash is stored (see
/// [`secret_hash`]), so a stolen database yields no token.
pub fn csrf_token(session_id: &str) -> String {
    secret_hash(&format!("csrf:{session_id}"))
}

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
    let name = session_cookie_name(secure);
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

/// Where the request's caller is noted once known, so that a refusal can be logged with who
/// was refused (see `record_denials`).
#[derive(Debug, Clone, Default)]
pub struct CallerName(pub std::sync::Arc<std::sync::Mutex<Option<String>>>);

impl CallerName {
    fn record(parts: &Parts, caller: &Caller) {
        if let Some(slot) = parts.extensions.get::<CallerName>()
            && let Ok(mut name) = slot.0.lock()
        {
            *name = Some(caller.user.actor().as_str().to_owned());
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
    let bearer = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    if let Some(secret) = bearer {
        let caller = by_token(state, &secret_hash(secret.trim())).await?;
        CallerName::record(parts, &caller);
        return Ok(caller);
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
    let now = now();
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

/// Turns for sign-in attempts: attempts for the same name wait for each other. Striped over a
/// fixed set of locks, so that inventing names cannot grow it.
#[derive(Debug)]
pub struct LoginTurns(Vec<tokio::sync::Mutex<()>>);

impl Default for LoginTurns {
    fn default() -> Self {
        LoginTurns((0..64).map(|_| tokio::sync::Mutex::new(())).collect())
    }
}

impl LoginTurns {
    pub async fn turn(&self, name: &str) -> tokio::sync::MutexGuard<'_, ()> {
        let stripe = Sha256::digest(name.as_bytes())[0] as usize % self.0.len();
        self.0[stripe].lock().await
    }
}

/// The address a request came from, as an extractor that never fails.
#[derive(Debug, Clone)]
pub struct ClientAddress(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddress {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientAddress(client_address(&parts.extensions)))
    }
}

/// Creates an account: checks the name, the roles and the password, hashes the password.
/// One way for the API, the pages and the CLI.
pub async fn create_account(
    accounts: &dyn steady_engine::accounts::Accounts,
    by: &steady_engine::run::Actor,
    name: &str,
    roles: &[String],
    password: Option<&str>,
) -> Result<steady_engine::accounts::User, AppError> {
    if !crate::api::valid_user_name(name) {
        return Err(AppError::invalid(
            "a user name starts with a-z and uses a-z, 0-9, `.`, `_` and `-`",
        ));
    }
    let roles = roles
        .iter()
        .map(|role| {
            role.parse::<GlobalRole>().map_err(|_| {
                AppError::invalid(format!(
                    "unknown role `{role}`: use admin, author, responder or auditor"
                ))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let password_hash = match password {
        Some(password) => match password_problem(password) {
            Some(problem) => return Err(AppError::invalid(problem)),
            None => Some(hash_password(password)?),
        },
        None => None,
    };
    let user = steady_engine::accounts::User {
        name: name.to_owned(),
        roles,
        password_hash,
        disabled: false,
        created_at: now(),
    };
    accounts.create_user(&user, by).await?;
    Ok(user)
}

/// Issues an API token for `user`; returns it with its secret, which is shown once and never
/// stored. One way for the API, the pages and the CLI.
pub async fn issue_token(
    accounts: &dyn steady_engine::accounts::Accounts,
    by: &steady_engine::run::Actor,
    user: &str,
    label: &str,
) -> Result<(steady_engine::accounts::ApiToken, String), AppError> {
    if accounts.user(user).await?.is_none() {
        return Err(AppError::not_found(format!("no user `{user}`")));
    }
    let secret = format!("stdy_{}", new_secret());
    let token = steady_engine::accounts::ApiToken {
        id: uuid::Uuid::now_v7(),
        label: label.to_owned(),
        user: user.to_owned(),
        hash: secret_hash(&secret),
        created_at: now(),
        revoked_at: None,
    };
    accounts.create_token(&token, by).await?;
    Ok((token, secret))
}
