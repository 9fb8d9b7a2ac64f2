//! The request extractors handlers share, so that each kind of input is refused the same way
//! everywhere: run ids in the path, JSON bodies, query strings, and page forms, whose CSRF
//! token is checked before the handler sees the form.

use std::collections::HashMap;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, FromRequestParts, Path, Query, RawForm, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::AppState;
use crate::error::AppError;
use crate::page::{Me, PageError, csrf_refused};

/// A query string, whose mistakes are answered like every other: a 422 in the API's shape.
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AppError> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(value)) => Ok(ApiQuery(value)),
            Err(rejection) => Err(AppError::invalid(rejection.body_text())),
        }
    }
}

/// A page size asked for, or the default: one larger than the most a page holds is refused,
/// never silently cut, since a client that pages on would take the short page for the last.
pub(crate) fn page_limit(asked: Option<u32>, default: u32, most: u32) -> Result<u32, AppError> {
    match asked {
        Some(limit) if limit > most => {
            Err(AppError::invalid(format!("limit is at most {most}: ask for the next page")))
        }
        Some(limit) => Ok(limit),
        None => Ok(default),
    }
}

/// The run named by the route's `{id}` segment. Anything but a UUID names no run: 404
/// `no run <text>`, as for a UUID that names none.
#[derive(Debug, Clone, Copy)]
pub struct RunId(pub Uuid);

impl<S: Send + Sync> FromRequestParts<S> for RunId {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Response> {
        run_id(parts, state).await.map(RunId).map_err(|error| match error {
            Refused::Path(response) => response,
            Refused::NoRun(error) => error.into_response(),
        })
    }
}

/// [`RunId`] for pages: a malformed id shows the error page.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PageRunId(pub Uuid);

impl<S: Send + Sync> FromRequestParts<S> for PageRunId {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Response> {
        run_id(parts, state).await.map(PageRunId).map_err(|error| match error {
            Refused::Path(response) => response,
            Refused::NoRun(error) => PageError(error).into_response(),
        })
    }
}

/// Why a run id could not be read: the path itself (axum's own answer), or no such run.
enum Refused {
    Path(Response),
    NoRun(AppError),
}

async fn run_id<S: Send + Sync>(parts: &mut Parts, state: &S) -> Result<Uuid, Refused> {
    let Path(params) = Path::<HashMap<String, String>>::from_request_parts(parts, state)
        .await
        .map_err(|rejection| Refused::Path(rejection.into_response()))?;
    let text = params.get("id").map(String::as_str).unwrap_or_default();
    Uuid::parse_str(text).map_err(|_| Refused::NoRun(AppError::not_found(format!("no run {text}"))))
}

/// A JSON body, read whole; [`ApiJson::read`] gives the value or the refusal. One that is not
/// the expected JSON is the caller's mistake, a 422 that says what is wrong (`invalid JSON
/// body: …`), never a 5xx. The content type is not checked. A body that cannot be read (over
/// axum's 2 MiB limit) is refused by axum before the handler runs.
///
/// The verdict on the JSON waits for the handler, so that it can first say whether the caller
/// may do this at all: who may act is answered before what they sent.
#[derive(Debug)]
pub struct ApiJson<T>(Result<T, AppError>);

impl<T> ApiJson<T> {
    /// The body, or the 422 that refuses it.
    pub fn read(self) -> Result<T, AppError> {
        self.0
    }
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = Response;

    async fn from_request(request: Request, state: &S) -> Result<Self, Response> {
        let bytes =
            Bytes::from_request(request, state).await.map_err(IntoResponse::into_response)?;
        Ok(ApiJson(parse_json(&bytes)))
    }
}

/// [`ApiJson`] for a body that may be left out: an empty body reads as `T::default()`.
#[derive(Debug)]
pub struct ApiJsonOrEmpty<T>(Result<T, AppError>);

impl<T> ApiJsonOrEmpty<T> {
    /// The body, `T::default()` when there was none, or the 422 that refuses it.
    pub fn read(self) -> Result<T, AppError> {
        self.0
    }
}

impl<T: DeserializeOwned + Default, S: Send + Sync> FromRequest<S> for ApiJsonOrEmpty<T> {
    type Rejection = Response;

    async fn from_request(request: Request, state: &S) -> Result<Self, Response> {
        let bytes =
            Bytes::from_request(request, state).await.map_err(IntoResponse::into_response)?;
        if bytes.is_empty() {
            return Ok(ApiJsonOrEmpty(Ok(T::default())));
        }
        Ok(ApiJsonOrEmpty(parse_json(&bytes)))
    }
}

/// The most a [`StrictJson`] body may hold: 64 KiB.
const STRICT_JSON_LIMIT: usize = 64 * 1024;

/// A JSON body that must say it is `application/json` (else 415 `unsupported`) and hold at
/// most 64 KiB (else 422): for sign-in, which a form on another site must not be able to post.
/// A form can post `text/plain` that happens to be JSON; it cannot post `application/json`
/// without the browser asking first.
#[derive(Debug)]
pub struct StrictJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for StrictJson<T> {
    type Rejection = AppError;

    async fn from_request(request: Request, _state: &S) -> Result<Self, AppError> {
        let is_json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.starts_with("application/json"));
        if !is_json {
            return Err(AppError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported",
                "send the sign-in as application/json",
            ));
        }
        let bytes = axum::body::to_bytes(request.into_body(), STRICT_JSON_LIMIT)
            .await
            .map_err(|_| AppError::invalid("the body is too large"))?;
        parse_json(&bytes).map(StrictJson)
    }
}

fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, AppError> {
    serde_json::from_slice(bytes)
        .map_err(|error| AppError::invalid(format!("invalid JSON body: {error}")))
}

/// A page's form post, with the signed-in person who sent it, whose session's CSRF token the
/// form's `csrf` field carried. The only way a page handler gets a form or, on a POST, the
/// person (`Me` refuses anything but reading), so no page action can skip the check.
///
/// Refused in this order: not signed in (to the login page), a body that is not the form
/// (axum's answer), a missing or wrong token (403 error page).
#[derive(Debug)]
pub(crate) struct CsrfForm<T> {
    pub me: Me,
    pub form: T,
}

// The one place a page form is read (see `clippy.toml`).
#[allow(clippy::disallowed_types)]
impl<T: DeserializeOwned> FromRequest<AppState> for CsrfForm<T> {
    type Rejection = Response;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Response> {
        let (parts, body) = request.into_parts();
        let me = Me::authenticate(&parts, state).await.map_err(IntoResponse::into_response)?;
        let method = parts.method.clone();
        let content_type = parts.headers.get(header::CONTENT_TYPE).cloned();
        let RawForm(bytes) = RawForm::from_request(Request::from_parts(parts, body), state)
            .await
            .map_err(IntoResponse::into_response)?;
        // The form is read twice: once as the handler's type, with axum's own refusals, and
        // once for the token, which the handler's type need not mention.
        let mut again = Request::new(Body::from(bytes.clone()));
        *again.method_mut() = method;
        if let Some(content_type) = content_type {
            again.headers_mut().insert(header::CONTENT_TYPE, content_type);
        }
        let axum::extract::Form(form) = axum::extract::Form::<T>::from_request(again, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let sent = form_urlencoded::parse(&bytes)
            .find(|(key, _)| key == "csrf")
            .map(|(_, value)| value.into_owned())
            .unwrap_or_default();
        if !me.sent_csrf(&sent) {
            return Err(csrf_refused().into_response());
        }
        Ok(CsrfForm { me, form })
    }
}

/// The address a request came from, for the sign-in throttle: the peer's IP, or `unknown`.
#[derive(Debug, Clone)]
pub struct ClientAddress(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddress {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientAddress(crate::auth::client_address(&parts.extensions)))
    }
}
