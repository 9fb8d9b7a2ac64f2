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
use steady_engine::engine::now;
use steady_engine::run::{Actor, Timestamp};

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
            "/static/favicon.svg",
            get(|| async {
                asset("image/svg+xml", include_str!("../../../templates/static/favicon.svg"))
            }),
        )
        // Browsers ask for this one without reading the page's link.
        .route("/favicon.ico", get(|| async { Redirect::permanent("/static/favicon.svg") }))
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
    /// The path of the page asked for, for marking where one is in the navigation.
    pub path: String,
}

impl Me {
    fn new(caller: Caller, path: &str) -> Me {
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
            path: path.to_owned(),
        }
    }

    /// Whether the page is `section` or within it (`/runs/…` is within Runs), so that the
    /// navigation marks it `aria-current`.
    pub(crate) fn on(&self, section: &str) -> bool {
        self.path == section
            || self.path.strip_prefix(section).is_some_and(|rest| rest.starts_with('/'))
    }

    /// Finds who is calling like the API does, but without asking for the CSRF header: a
    /// page's form carries the token in a field, which only `CsrfForm` reads and checks.
    pub(crate) async fn authenticate(parts: &Parts, state: &AppState) -> Result<Me, PageError> {
        Ok(Me::new(auth::authenticate(parts, state, false).await?, parts.uri.path()))
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

/// A moment as every page shows it: one `<time>` element with the absolute time in UTC, zone
/// written out (`2026-11-30 14:02:07 UTC`), and how long ago (or how soon) it is, both rendered
/// on the server so that a page without JavaScript says both; `steady.js` refreshes the
/// relative part as the page stays open. View models hold a `Moment` rather than a string so
/// that no template can show a time any other way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Moment {
    at: Timestamp,
    /// When the page was rendered, which the relative part counts from.
    now: Timestamp,
}

impl Moment {
    /// The moment `at`, as seen from now.
    pub(crate) fn new(at: Timestamp) -> Moment {
        Moment { at, now: now() }
    }
}

/// The one absolute format: `2026-11-30 14:02:07 UTC`.
pub(crate) fn absolute(at: Timestamp) -> String {
    at.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// The HTML of a moment. Built only from numbers and fixed words, so it needs no escaping;
/// this is why `Moment` may be marked [`HtmlSafe`](askama::filters::HtmlSafe).
impl std::fmt::Display for Moment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "<time datetime=\"{}\" data-relative>{} <span class=\"ago\">({})</span></time>",
            self.at.format("%Y-%m-%dT%H:%M:%SZ"),
            absolute(self.at),
            relative(self.at - self.now),
        )
    }
}

impl askama::filters::HtmlSafe for Moment {}

/// Text in which Steady's own messages quote names between backticks (`` `promote` waits for
/// … `approver` ``), shown with those names as `<code>` and everything else escaped. The
/// terminal shows the same messages with their backticks; a page shows them as code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CodeSpans(pub(crate) String);

impl std::fmt::Display for CodeSpans {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<&str> = self.0.split('`').collect();
        // An odd number of backticks leaves the last one unmatched: it stays a backtick.
        let paired = if parts.len() % 2 == 1 { parts.len() } else { parts.len() - 1 };
        for (index, part) in parts.iter().enumerate() {
            let escaped = askama::filters::escape(part, askama::filters::Html)
                .map_err(|_| std::fmt::Error)?;
            if index % 2 == 1 && index < paired {
                write!(f, "<code>{escaped}</code>")?;
            } else if index % 2 == 1 {
                write!(f, "`{escaped}")?;
            } else {
                write!(f, "{escaped}")?;
            }
        }
        Ok(())
    }
}

/// Every part of a [`CodeSpans`] is escaped as it is written, so it may be marked safe.
impl askama::filters::HtmlSafe for CodeSpans {}

/// How far a moment is from now, in words: `4 min ago`, `in 12 min`, `just now`. `steady.js`
/// has the same rules (`relative`), to refresh it.
pub(crate) fn relative(offset: chrono::Duration) -> String {
    let seconds = offset.num_seconds();
    if seconds.abs() < 5 {
        return "just now".to_owned();
    }
    let words = coarse(seconds.unsigned_abs());
    if seconds < 0 { format!("{words} ago") } else { format!("in {words}") }
}

/// A span rounded down to its largest unit, for reading at a glance.
fn coarse(seconds: u64) -> String {
    match seconds {
        0..60 => format!("{seconds} s"),
        60..3600 => format!("{} min", seconds / 60),
        3600..86400 => format!("{} h", seconds / 3600),
        86400..172800 => "1 day".to_owned(),
        _ => format!("{} days", seconds / 86400),
    }
}

/// How long something took (or has taken so far), precise for short steps and in two units
/// for long ones: `850 ms`, `4.2 s`, `3 min 7 s`, `2 h 5 min`, `1 d 3 h`.
pub(crate) fn duration(span: chrono::Duration) -> String {
    let millis = span.num_milliseconds().max(0);
    let seconds = millis / 1000;
    match seconds {
        _ if millis < 1000 => format!("{millis} ms"),
        0..60 => format!("{:.1} s", millis as f64 / 1000.0),
        60..3600 => format!("{} min {} s", seconds / 60, seconds % 60),
        3600..86400 => format!("{} h {} min", seconds / 3600, seconds % 3600 / 60),
        _ => format!("{} d {} h", seconds / 86400, seconds % 86400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_names_read_as_code_and_nothing_else_is_markup() {
        let text = CodeSpans("`go` waits for <b>`approver`</b> & a stray ` tick".into());
        assert_eq!(
            text.to_string(),
            "<code>go</code> waits for &#60;b&#62;<code>approver</code>&#60;/b&#62; &#38; a stray ` tick"
        );
    }

    fn at(text: &str) -> Timestamp {
        chrono::DateTime::parse_from_rfc3339(text).unwrap().to_utc()
    }

    #[test]
    fn a_moment_says_when_in_utc_and_how_long_ago() {
        let moment = Moment { at: at("2026-11-30T14:02:07.5Z"), now: at("2026-11-30T14:06:30Z") };
        assert_eq!(
            moment.to_string(),
            "<time datetime=\"2026-11-30T14:02:07Z\" data-relative>2026-11-30 14:02:07 UTC \
             <span class=\"ago\">(4 min ago)</span></time>"
        );
        assert_eq!(absolute(moment.at), "2026-11-30 14:02:07 UTC");
    }

    #[test]
    fn relative_times_read_at_a_glance() {
        let s = chrono::Duration::seconds;
        assert_eq!(relative(s(-2)), "just now");
        assert_eq!(relative(s(-42)), "42 s ago");
        assert_eq!(relative(s(720)), "in 12 min");
        assert_eq!(relative(s(-3 * 3600 - 5)), "3 h ago");
        assert_eq!(relative(s(-90_000)), "1 day ago");
        assert_eq!(relative(s(-9 * 86400)), "9 days ago");
    }

    #[test]
    fn durations_are_precise_when_short() {
        let ms = chrono::Duration::milliseconds;
        assert_eq!(duration(ms(850)), "850 ms");
        assert_eq!(duration(ms(4_240)), "4.2 s");
        assert_eq!(duration(ms(187_000)), "3 min 7 s");
        assert_eq!(duration(ms(7_500_000)), "2 h 5 min");
        assert_eq!(duration(ms(97_200_000)), "1 d 3 h");
        assert_eq!(duration(ms(-5)), "0 ms");
    }
}
