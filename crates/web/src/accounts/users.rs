//! Users: listing, creating and disabling accounts, through `/api/v1/users` and the users
//! page (which also lists tokens: see `tokens`), where an admin also edits an account's roles
//! and sets a new password. For admins only.

use askama::Template;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use steady_engine::accounts::GlobalRole;
use steady_engine::run::Actor;
use utoipa::ToSchema;
use uuid::Uuid;

use super::UserView;
use crate::AppState;
use crate::auth::Caller;
use crate::dto::global_roles_schema;
use crate::error::AppError;
use crate::extract::{ApiJson, CsrfForm};
use crate::page::{Me, Moment, PageResult, render};

#[utoipa::path(get, tag = "accounts", path = "/api/v1/users", responses((status = 200, description = "Every account", body = Vec<UserView>), (status = 401, description = "Not signed in"), (status = 403, description = "For admins")))]
pub(crate) async fn list_users(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<UserView>>, AppError> {
    caller.require(GlobalRole::Admin)?;
    Ok(Json(state.accounts.users().await?.iter().map(UserView::new).collect()))
}

#[derive(Deserialize, ToSchema)]
pub(crate) struct NewUser {
    /// Starts with a-z and uses a-z, 0-9, `.`, `_` and `-`.
    #[schema(pattern = "^[a-z][a-z0-9._-]*$", max_length = 64)]
    name: String,
    /// Global roles.
    #[schema(schema_with = global_roles_schema)]
    roles: Vec<String>,
    /// Without one the user signs in with tokens only. Something other than spaces.
    #[schema(min_length = 12, max_length = 128, pattern = "\\S")]
    password: Option<String>,
}

#[utoipa::path(post, tag = "accounts", path = "/api/v1/users", request_body = NewUser, responses((status = 201, description = "Created", body = UserView), (status = 401, description = "Not signed in"), (status = 403, description = "For admins"), (status = 409, description = "The name is taken"), (status = 422, description = "Invalid input")))]
pub(crate) async fn create_user(
    State(state): State<AppState>,
    caller: Caller,
    body: ApiJson<NewUser>,
) -> Result<Response, AppError> {
    caller.require(GlobalRole::Admin)?;
    let new = body.read()?;
    let user = state
        .account_service
        .create_account(&caller.user.actor(), &new.name, &new.roles, new.password.as_deref())
        .await?;
    Ok((StatusCode::CREATED, Json(UserView::new(&user))).into_response())
}

#[derive(Deserialize, ToSchema)]
pub(crate) struct UserUpdate {
    /// A disabled user cannot sign in; their sessions end and their tokens are revoked at
    /// once, for good: enabling them again restores neither.
    disabled: bool,
}

#[utoipa::path(put, tag = "accounts", path = "/api/v1/users/{name}", request_body = UserUpdate, params(("name" = String, Path, description = "User name")), responses((status = 200, description = "The account", body = UserView), (status = 401, description = "Not signed in"), (status = 403, description = "For admins"), (status = 404, description = "No such user"), (status = 409, description = "Your own account, or the last enabled admin"), (status = 422, description = "Invalid input")))]
pub(crate) async fn update_user(
    State(state): State<AppState>,
    Path(name): Path<String>,
    caller: Caller,
    body: ApiJson<UserUpdate>,
) -> Result<Json<UserView>, AppError> {
    caller.require(GlobalRole::Admin)?;
    let UserUpdate { disabled } = body.read()?;
    let user = set_disabled_as(&state, &name, disabled, &caller.user.actor()).await?;
    Ok(Json(UserView::new(&user)))
}

/// Disables or enables an account: one way for the API and the page. Returns the account as
/// it is now; 404 when there is none, 409 when it would lock people out.
async fn set_disabled_as(
    state: &AppState,
    name: &str,
    disabled: bool,
    by: &Actor,
) -> Result<steady_engine::accounts::User, AppError> {
    let missing = || AppError::not_found(format!("no user `{name}`"));
    if !state.accounts.set_disabled(name, disabled, by).await? {
        return Err(missing());
    }
    state.accounts.user(name).await?.ok_or_else(missing)
}

/// An account as the users page shows it, with what its roles form starts from.
struct UserRow {
    name: String,
    roles: String,
    disabled: bool,
    /// Every global role, and whether the account holds it.
    holds: Vec<(&'static str, bool)>,
}

#[derive(Template)]
#[template(path = "users.html")]
struct UsersPage {
    me: Option<Me>,
    csrf: String,
    users: Vec<UserRow>,
    tokens: Vec<(Uuid, String, String, Moment, bool)>,
    all_roles: Vec<&'static str>,
    new_secret: Option<String>,
    /// What the last form did, from the redirect's `done`.
    done: Option<&'static str>,
}

/// The users page, showing a token's secret once right after it was issued. Never cached:
/// the secret must not stay in a cache or come back with the browser's back button.
async fn users_page(
    state: &AppState,
    me: Me,
    new_secret: Option<String>,
    done: Option<&'static str>,
) -> PageResult {
    me.caller.require(GlobalRole::Admin)?;
    let users = state
        .accounts
        .users()
        .await?
        .iter()
        .map(|u| UserRow {
            name: u.name.clone(),
            roles: u.roles.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(", "),
            disabled: u.disabled,
            holds: GlobalRole::ALL.iter().map(|r| (r.as_str(), u.has(*r))).collect(),
        })
        .collect();
    let tokens = state
        .accounts
        .tokens(None)
        .await?
        .iter()
        .map(|t| {
            (
                t.id,
                t.label.clone(),
                t.user.clone(),
                Moment::new(t.created_at),
                t.revoked_at.is_some(),
            )
        })
        .collect();
    let page = UsersPage {
        csrf: me.csrf.clone(),
        me: Some(me),
        users,
        tokens,
        all_roles: GlobalRole::ALL.iter().map(|r| r.as_str()).collect(),
        new_secret,
        done,
    };
    Ok(([(header::CACHE_CONTROL, "no-store")], render(&page)).into_response())
}

#[derive(Deserialize, Default)]
pub(crate) struct UsersQuery {
    /// What the form that redirected here did: `roles` or `password`.
    #[serde(default)]
    done: String,
}

/// The users page; right after a token was issued, its secret, once (see `tokens`).
pub(crate) async fn users(
    State(state): State<AppState>,
    Query(query): Query<UsersQuery>,
    headers: HeaderMap,
    me: Me,
) -> PageResult {
    let done = match query.done.as_str() {
        "roles" => Some("✓ Roles saved."),
        "password" => Some("✓ Password set; their sessions have ended."),
        _ => None,
    };
    let secret = super::tokens::shown_once(&headers);
    let mut response = users_page(&state, me, secret.clone(), done).await?;
    if secret.is_some() {
        let forget = super::tokens::forget_secret(&state);
        if let Ok(value) = forget.parse() {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    Ok(response)
}

/// Fields of a form by name: every value of a repeated one (`role`), or the first.
fn fields_named<'a>(fields: &'a [(String, String)], key: &'a str) -> impl Iterator<Item = &'a str> {
    fields.iter().filter(move |(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// The new-user form: a name, a password and any number of `role` fields.
pub(crate) async fn add_user(
    State(state): State<AppState>,
    CsrfForm { me, form: fields }: CsrfForm<Vec<(String, String)>>,
) -> PageResult {
    me.caller.require(GlobalRole::Admin)?;
    let field = |key: &str| fields_named(&fields, key).next().unwrap_or_default().to_owned();
    let roles: Vec<String> = fields_named(&fields, "role").map(str::to_owned).collect();
    // The page always sets a password: an account for tokens only is made through the API.
    let password = field("password");
    state
        .account_service
        .create_account(&me.actor, &field("name"), &roles, Some(&password))
        .await?;
    Ok(Redirect::to("/users").into_response())
}

/// An admin gives an account exactly the roles ticked (none ticked: no roles).
pub(crate) async fn set_roles(
    State(state): State<AppState>,
    Path(name): Path<String>,
    CsrfForm { me, form: fields }: CsrfForm<Vec<(String, String)>>,
) -> PageResult {
    me.caller.require(GlobalRole::Admin)?;
    let roles: Vec<String> = fields_named(&fields, "role").map(str::to_owned).collect();
    state.account_service.set_roles(&me.actor, &name, &roles).await?;
    Ok(Redirect::to("/users?done=roles").into_response())
}

#[derive(Deserialize)]
pub(crate) struct PasswordForm {
    password: String,
}

/// An admin sets a new password for an account, under the password policy.
pub(crate) async fn reset_password(
    State(state): State<AppState>,
    Path(name): Path<String>,
    CsrfForm { me, form }: CsrfForm<PasswordForm>,
) -> PageResult {
    me.caller.require(GlobalRole::Admin)?;
    state.account_service.reset_password(&me.actor, &name, &form.password).await?;
    Ok(Redirect::to("/users?done=password").into_response())
}
#[derive(Deserialize)]
pub(crate) struct DisableForm {
    /// `yes` to disable, anything else to enable.
    disabled: String,
}

pub(crate) async fn set_disabled(
    State(state): State<AppState>,
    Path(name): Path<String>,
    CsrfForm { me, form }: CsrfForm<DisableForm>,
) -> PageResult {
    me.caller.require(GlobalRole::Admin)?;
    set_disabled_as(&state, &name, form.disabled == "yes", &me.actor).await?;
    Ok(Redirect::to("/users").into_response())
}
