//! API tokens: listing, issuing (through `AccountService::issue_token`) and revoking, through
//! `/api/v1/tokens` and the users page, which shows a new token's secret once.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::{Deserialize, Serialize};
use steady_engine::accounts::{ApiToken, GlobalRole};
use steady_engine::audit::format_timestamp;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::AppState;
use crate::auth::Caller;
use crate::error::AppError;
use crate::extract::{ApiJson, CsrfForm};
use crate::page::PageResult;

/// An API token, without its secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenView {
    #[schema(value_type = String, format = "uuid")]
    pub id: Uuid,
    pub label: String,
    pub user: String,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub revoked_at: Option<String>,
}

impl TokenView {
    pub fn new(token: &ApiToken) -> TokenView {
        TokenView {
            id: token.id,
            label: token.label.clone(),
            user: token.user.clone(),
            created_at: format_timestamp(token.created_at),
            revoked_at: token.revoked_at.map(format_timestamp),
        }
    }
}

#[utoipa::path(get, tag = "accounts", path = "/api/v1/tokens", responses((status = 200, description = "Your tokens; every token for an admin", body = Vec<TokenView>), (status = 401, description = "Not signed in")))]
pub(crate) async fn list_tokens(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<TokenView>>, AppError> {
    let mine = (!caller.user.has(GlobalRole::Admin)).then_some(caller.user.name.as_str());
    Ok(Json(state.accounts.tokens(mine).await?.iter().map(TokenView::new).collect()))
}

/// A new token with its secret, shown this once and never stored.
#[derive(Serialize, ToSchema)]
pub(crate) struct NewTokenView {
    #[serde(flatten)]
    token: TokenView,
    /// Send it as `Authorization: Bearer <secret>`.
    secret: String,
}

#[derive(Deserialize, ToSchema)]
pub(crate) struct NewToken {
    label: String,
    /// Another user's token: admins only.
    user: Option<String>,
}

#[utoipa::path(post, tag = "accounts", path = "/api/v1/tokens", request_body = NewToken, responses((status = 201, description = "Created, with its secret", body = NewTokenView), (status = 401, description = "Not signed in"), (status = 403, description = "Another user's token: for admins"), (status = 404, description = "No such user"), (status = 422, description = "Invalid input")))]
pub(crate) async fn create_token(
    State(state): State<AppState>,
    caller: Caller,
    body: ApiJson<NewToken>,
) -> Result<Response, AppError> {
    let NewToken { label, user } = body.read()?;
    let owner = match user {
        Some(user) if user != caller.user.name => {
            caller.require(GlobalRole::Admin)?;
            user
        }
        _ => caller.user.name.clone(),
    };
    let (token, secret) =
        state.account_service.issue_token(&caller.user.actor(), &owner, &label).await?;
    let answer = NewTokenView { token: TokenView::new(&token), secret };
    Ok((StatusCode::CREATED, Json(answer)).into_response())
}

#[utoipa::path(delete, tag = "accounts", path = "/api/v1/tokens/{id}", params(("id" = String, Path, description = "Token id")), responses((status = 204, description = "Revoked"), (status = 401, description = "Not signed in"), (status = 403, description = "Another user's token: for admins"), (status = 404, description = "No such token"), (status = 409, description = "Already revoked")))]
pub(crate) async fn revoke_token(
    State(state): State<AppState>,
    Path(id): Path<String>,
    caller: Caller,
) -> Result<StatusCode, AppError> {
    let id = token_id(&id)?;
    let tokens = state.accounts.tokens(None).await?;
    let token = tokens
        .iter()
        .find(|token| token.id == id)
        .ok_or_else(|| AppError::not_found("no such token"))?;
    if token.user != caller.user.name {
        caller.require(GlobalRole::Admin)?;
    }
    if !state.accounts.revoke_token(id, &caller.user.actor()).await? {
        return Err(AppError::conflict("the token is already revoked"));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// A token id from the path: anything but a UUID names no token.
fn token_id(text: &str) -> Result<Uuid, AppError> {
    Uuid::parse_str(text).map_err(|_| AppError::not_found("no such token"))
}

#[derive(Deserialize)]
pub(crate) struct TokenForm {
    user: String,
    label: String,
}

/// The cookie that carries a new token's secret across the redirect to the users page.
const NEW_SECRET_COOKIE: &str = "steady_new_token";

/// An admin issues a token for anyone, then is redirected to the users page, which shows its
/// secret once (POST, redirect, GET: reloading the page issues no second token). The secret
/// crosses the redirect in a short-lived cookie only this site's users page receives, never
/// in the URL, where history and logs would keep it; any node can show it.
pub(crate) async fn add_token(
    State(state): State<AppState>,
    CsrfForm { me, form }: CsrfForm<TokenForm>,
) -> PageResult {
    me.caller.require(GlobalRole::Admin)?;
    let (_, secret) =
        state.account_service.issue_token(&me.actor, form.user.trim(), &form.label).await?;
    let mut cookie = cookie::Cookie::new(NEW_SECRET_COOKIE, secret);
    cookie.set_http_only(true);
    cookie.set_same_site(cookie::SameSite::Strict);
    cookie.set_path("/users");
    cookie.set_max_age(cookie::time::Duration::minutes(2));
    cookie.set_secure(state.config.secure_cookies);
    Ok((
        [(header::SET_COOKIE, cookie.to_string()), (header::CACHE_CONTROL, "no-store".to_owned())],
        Redirect::to("/users"),
    )
        .into_response())
}

/// The secret of a token just issued in this browser, if the cookie still carries one.
pub(super) fn shown_once(headers: &HeaderMap) -> Option<String> {
    crate::auth::cookie_value(headers, NEW_SECRET_COOKIE)
        .filter(|secret| secret.starts_with("stdy_"))
}

/// The `Set-Cookie` value that removes the secret once it was shown.
pub(super) fn forget_secret(state: &AppState) -> String {
    let mut cookie = cookie::Cookie::new(NEW_SECRET_COOKIE, "");
    cookie.set_http_only(true);
    cookie.set_same_site(cookie::SameSite::Strict);
    cookie.set_path("/users");
    cookie.set_max_age(cookie::time::Duration::ZERO);
    cookie.set_secure(state.config.secure_cookies);
    cookie.to_string()
}

/// An admin revokes a token; one already revoked stays so, without complaint.
pub(crate) async fn revoke(
    State(state): State<AppState>,
    Path(id): Path<String>,
    CsrfForm { me, .. }: CsrfForm<serde::de::IgnoredAny>,
) -> PageResult {
    me.caller.require(GlobalRole::Admin)?;
    state.accounts.revoke_token(token_id(&id)?, &me.actor).await?;
    Ok(Redirect::to("/users").into_response())
}
