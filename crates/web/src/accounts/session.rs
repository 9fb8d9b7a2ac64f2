//! Signing in and out: `POST/DELETE/GET /api/v1/session` and the login page. Both ways in go
//! through `AccountService::sign_in`; both set and clear the same session cookie.

use askama::Template;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::{Deserialize, Serialize};
use steady_engine::accounts::SignedIn;
use utoipa::ToSchema;

use super::UserView;
use crate::AppState;
use crate::auth::{self, Caller};
use crate::error::AppError;
use crate::extract::{ClientAddress, CsrfForm, StrictJson};
use crate::page::{Me, PageResult, render};

#[derive(Deserialize, ToSchema)]
pub(crate) struct Login {
    name: String,
    password: String,
}

/// A session: who is signed in, and the CSRF token that state-changing requests made with the
/// session cookie send in `X-CSRF-Token` (none for a bearer token).
#[derive(Serialize, ToSchema)]
pub(crate) struct SessionView {
    user: UserView,
    csrf_token: Option<String>,
}

/// Signs in: the session cookie comes in `Set-Cookie`. Only `application/json` is accepted, so
/// that a form on another site cannot sign anyone in.
#[utoipa::path(post, tag = "accounts", path = "/api/v1/session", security(()), request_body = Login, responses((status = 200, description = "Signed in; the session cookie is set", body = SessionView), (status = 401, description = "Wrong name or password"), (status = 415, description = "The body is not application/json"), (status = 422, description = "Invalid input"), (status = 429, description = "Too many failed sign-ins")))]
pub(crate) async fn login(
    State(state): State<AppState>,
    ClientAddress(address): ClientAddress,
    StrictJson(Login { name, password }): StrictJson<Login>,
) -> Result<Response, AppError> {
    let signed_in = state.account_service.sign_in(&name, &password, &address).await?;
    let cookie = session_cookie(&state, &signed_in);
    let body = SessionView {
        user: UserView::new(&signed_in.user),
        csrf_token: Some(signed_in.csrf_token),
    };
    Ok(([(header::SET_COOKIE, cookie)], Json(body)).into_response())
}

/// Signs out: ends the session of the cookie sent, if any. A bearer token stays valid.
#[utoipa::path(delete, tag = "accounts", path = "/api/v1/session", responses((status = 204, description = "Signed out"), (status = 401, description = "Not signed in")))]
pub(crate) async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    _caller: Caller,
) -> Result<Response, AppError> {
    if let Some(id) = auth::session_cookie(&headers, state.config.secure_cookies) {
        state.accounts.delete_session(&auth::secret_hash(&id)).await?;
    }
    Ok(([(header::SET_COOKIE, removal_cookie(&state))], StatusCode::NO_CONTENT).into_response())
}

#[utoipa::path(get, tag = "accounts", path = "/api/v1/session", responses((status = 200, description = "Who is calling", body = SessionView), (status = 401, description = "Not signed in")))]
pub(crate) async fn whoami(caller: Caller) -> Json<SessionView> {
    Json(SessionView { user: UserView::new(&caller.user), csrf_token: caller.csrf_token })
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    me: Option<Me>,
    error: Option<String>,
    /// Where to go once signed in: the page whose session ran out (a run being watched).
    next: Option<String>,
}

/// `?next=` on the login page: a path on this site to return to.
#[derive(Deserialize)]
pub(crate) struct NextQuery {
    next: Option<String>,
}

/// `next` when it is a path on this site; anything that could leave it (`//host`, a scheme,
/// a backslash that some browsers read as a slash) is dropped.
fn local_path(next: Option<&str>) -> Option<String> {
    let next = next?;
    let local = next.starts_with('/')
        && !next.starts_with("//")
        && !next.contains('\\')
        && !next.chars().any(char::is_control);
    local.then(|| next.to_owned())
}

pub(crate) async fn login_page(
    axum::extract::Query(query): axum::extract::Query<NextQuery>,
) -> Response {
    render(&LoginPage { me: None, error: None, next: local_path(query.next.as_deref()) })
}

#[derive(Deserialize)]
pub(crate) struct LoginForm {
    name: String,
    password: String,
    #[serde(default)]
    next: Option<String>,
}

/// The login page's form. It has no CSRF token to check, since there is no session yet:
/// instead a form posted from another site is refused by its `Origin`. The one page form
/// read without `CsrfForm` (see `clippy.toml`).
#[allow(clippy::disallowed_types)]
pub(crate) async fn login_form(
    State(state): State<AppState>,
    headers: HeaderMap,
    ClientAddress(address): ClientAddress,
    axum::Form(form): axum::Form<LoginForm>,
) -> Response {
    // Browsers say where a form came from. Behind a reverse proxy the public host arrives as
    // X-Forwarded-Host.
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) {
        let origin_host = origin.split("://").nth(1).unwrap_or_default();
        let ours = [header::HOST.as_str(), "x-forwarded-host"]
            .iter()
            .filter_map(|name| headers.get(*name).and_then(|h| h.to_str().ok()))
            .any(|host| host.split(',').any(|host| host.trim() == origin_host));
        if !ours {
            let page = LoginPage {
                me: None,
                error: Some("sign in from Steady's own page".into()),
                next: None,
            };
            return (StatusCode::FORBIDDEN, render(&page)).into_response();
        }
    }
    match state.account_service.sign_in(&form.name, &form.password, &address).await {
        Ok(signed_in) => {
            let cookie = session_cookie(&state, &signed_in);
            let next = local_path(form.next.as_deref()).unwrap_or_else(|| "/work".to_owned());
            ([(header::SET_COOKIE, cookie)], Redirect::to(&next)).into_response()
        }
        Err(error) => {
            let error = AppError::from(error);
            let next = local_path(form.next.as_deref());
            (error.status, render(&LoginPage { me: None, error: Some(error.message), next }))
                .into_response()
        }
    }
}

/// The sign-out button: a form, like every page action.
pub(crate) async fn logout_form(
    State(state): State<AppState>,
    CsrfForm { me, .. }: CsrfForm<serde::de::IgnoredAny>,
) -> PageResult {
    if let Some(session) = &me.caller.session {
        state.accounts.delete_session(&session.id_hash).await?;
    }
    Ok(([(header::SET_COOKIE, removal_cookie(&state))], Redirect::to("/login")).into_response())
}

/// The `Set-Cookie` value of a new session: HTTP-only, same-site strict, for the whole site,
/// `Secure` (and `__Host-` named) when the server is reached over https.
fn session_cookie(state: &AppState, signed_in: &SignedIn) -> String {
    let name = auth::session_cookie_name(state.config.secure_cookies);
    let mut cookie = cookie::Cookie::new(name, signed_in.session_id.clone());
    cookie.set_http_only(true);
    cookie.set_same_site(cookie::SameSite::Strict);
    cookie.set_path("/");
    cookie.set_secure(state.config.secure_cookies);
    cookie.to_string()
}

/// The `Set-Cookie` value that makes the browser forget its session cookie.
fn removal_cookie(state: &AppState) -> String {
    let mut cookie =
        cookie::Cookie::new(auth::session_cookie_name(state.config.secure_cookies), "");
    cookie.set_path("/");
    cookie.set_secure(state.config.secure_cookies);
    cookie.make_removal();
    cookie.to_string()
}
