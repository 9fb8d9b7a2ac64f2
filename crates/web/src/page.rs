//! What every page needs: the signed-in person (`Me`), the error page, rendering with askama
//! from `templates/`, links, and the static assets. Every action is a plain form that works
//! without JavaScript; forms carry the session's CSRF token and arrive through
//! [`CsrfForm`](crate::extract::CsrfForm); all text is escaped by the templates. View models
//! live beside the handlers that build them, explicitly from engine types.

use askama::Template;
use axum::Router;
use axum::http::request::Parts;
use axum::http::{Method, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use steady_engine::accounts::GlobalRole;
use steady_engine::run::Actor;

use crate::AppState;
use crate::auth::{self, Caller};
use crate::error::AppError;

/// The front door and the static assets the templates link to.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(|me: Me| async move { Redirect::to(landing(&me.caller.user)) }))
        .route(
            "/static/steady.css",
            get(|| async {
                asset("text/css", include_str!("../../../templates/static/steady.css"))
            }),
        )
        .route(
            "/static/steady.js",
            get(|| async {
                asset("text/javascript", include_str!("../../../templates/static/steady.js"))
            }),
        )
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "public, max-age=3600")], body)
        .into_response()
}

/// The signed-in person as pages show them.
#[derive(Debug, Clone)]
pub(crate) struct Me {
    pub name: String,
    /// Global roles, comma-separated, for the header.
    pub roles: String,
    /// The session's CSRF token, for the forms' hidden field.
    pub csrf: String,
    pub auditor: bool,
    pub admin: bool,
    pub actor: Actor,
    pub caller: Caller,
}

impl Me {
    fn new(caller: Caller) -> Me {
        let roles = caller.user.roles.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(", ");
        let csrf = caller.csrf_token.clone().unwrap_or_default();
        Me {
            name: caller.user.name.clone(),
            roles,
            csrf,
            auditor: caller.user.has(GlobalRole::Auditor) || caller.user.has(GlobalRole::Admin),
            admin: caller.user.has(GlobalRole::Admin),
            actor: caller.user.actor(),
            caller,
        }
    }

    /// Finds who is calling like the API does, but without asking for the CSRF header: a
    /// page's form carries the token in a field, which only `CsrfForm` reads and checks.
    pub(crate) async fn authenticate(parts: &Parts, state: &AppState) -> Result<Me, PageError> {
        Ok(Me::new(auth::authenticate(parts, state, false).await?))
    }

    /// Whether a CSRF token sent with a form is this session's.
    pub(crate) fn sent_csrf(&self, sent: &str) -> bool {
        auth::csrf_matches(&self.caller, sent)
    }
}

/// The refusal of a form whose CSRF token is missing or wrong.
pub(crate) fn csrf_refused() -> PageError {
    AppError::forbidden("this form has expired or did not come from Steady: reload the page").into()
}

/// Pages find the signed-in person like the API does, but send strangers to the login page,
/// which brings them back to the page they asked for (a link in a notification, say).
/// Only for reading: a state-changing page request gets its person from `CsrfForm`, which
/// checks the form's CSRF token first, so this refuses any other method outright.
impl axum::extract::FromRequestParts<AppState> for Me {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let me = match Me::authenticate(parts, state).await {
            Ok(me) => me,
            Err(PageError(error)) if error.status == StatusCode::UNAUTHORIZED => {
                let asked = parts.uri.path_and_query().map_or("/", |p| p.as_str());
                let login = match safe_next(asked) {
                    Some(next) if next != "/" => link("/login", &[("next", next)]),
                    _ => "/login".to_owned(),
                };
                return Err(Redirect::to(&login).into_response());
            }
            Err(error) => return Err(error.into_response()),
        };
        if !matches!(parts.method, Method::GET | Method::HEAD) {
            return Err(csrf_refused().into_response());
        }
        Ok(me)
    }
}

/// Where to go after signing in when a page asked for `next`: only a path of this site (one
/// `/`, then no `/` or backslash that a browser would read as another host), never a URL, so
/// that a crafted link cannot send someone elsewhere after they signed in.
pub(crate) fn safe_next(next: &str) -> Option<&str> {
    let rest = next.strip_prefix('/')?;
    let other_host = rest.starts_with('/') || rest.starts_with('\\');
    let odd = next.chars().any(|c| c == '\\' || c.is_control() || c.is_whitespace());
    (!other_host && !odd && next.len() <= 2000).then_some(next)
}

/// Where a person lands after signing in: *my work* for those who act in runs; the audit log
/// for auditors; the runs for everyone else (admins, authors), who command no runs.
pub(crate) fn landing(user: &steady_engine::accounts::User) -> &'static str {
    if user.has(GlobalRole::Responder) {
        "/work"
    } else if user.has(GlobalRole::Auditor) {
        "/audit"
    } else {
        "/runs"
    }
}

/// A page error: sends people who are not signed in to the login page, shows the rest.
#[derive(Debug)]
pub(crate) struct PageError(pub AppError);

impl From<AppError> for PageError {
    fn from(error: AppError) -> Self {
        PageError(error)
    }
}

impl From<steady_engine::engine::EngineError> for PageError {
    fn from(error: steady_engine::engine::EngineError) -> Self {
        PageError(error.into())
    }
}

impl From<steady_engine::store::StoreError> for PageError {
    fn from(error: steady_engine::store::StoreError) -> Self {
        PageError(error.into())
    }
}

impl From<steady_engine::accounts::AccountError> for PageError {
    fn from(error: steady_engine::accounts::AccountError) -> Self {
        PageError(error.into())
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    me: Option<Me>,
    title: String,
    message: String,
    /// The run the error is about, linked.
    run: Option<String>,
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        if self.0.status == StatusCode::UNAUTHORIZED {
            return Redirect::to("/login").into_response();
        }
        let title = self.0.status.canonical_reason().unwrap_or("Error").to_owned();
        let run = self.0.run.map(|id| id.to_string());
        let page = ErrorPage { me: None, title, message: self.0.message, run };
        (self.0.status, render(&page)).into_response()
    }
}

/// What a page handler answers: a page, a redirect, or the error page.
pub(crate) type PageResult = Result<Response, PageError>;

/// A link to `path` with the given query, every value encoded, empty ones left out.
pub(crate) fn link(path: &str, pairs: &[(&str, &str)]) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (key, value) in pairs.iter().filter(|(_, value)| !value.is_empty()) {
        query.append_pair(key, value);
    }
    format!("{path}?{}", query.finish())
}

/// Renders a template as an HTML response; a template that fails is a 500, logged.
pub(crate) fn render(template: &impl Template) -> Response {
    match template.render() {
        Ok(html) => Html(html).into_response(),
        Err(error) => {
            tracing::error!(%error, "rendering a page failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "the page could not be rendered").into_response()
        }
    }
}

/// The date a page filter names (`YYYY-MM-DD`), as the midnight that starts it in UTC.
pub(crate) fn day(text: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|d| d.and_utc())
}
