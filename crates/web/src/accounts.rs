//! Accounts: signing in and out, users and API tokens, for the API and the pages. The rules
//! (names, roles, passwords, the sign-in throttle, hashing) are the engine's
//! `AccountService`; these handlers check global roles, read requests and shape answers.

pub(crate) mod session;
pub(crate) mod tokens;
pub(crate) mod users;

use axum::Router;
use axum::routing::{get, post, put};
use serde::Serialize;
use steady_engine::accounts::User;
use steady_engine::audit::format_timestamp;
use utoipa::ToSchema;

use crate::AppState;
use crate::dto::global_roles_schema;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/session", post(session::login).delete(session::logout).get(session::whoami))
        .route("/api/v1/users", get(users::list_users).post(users::create_user))
        .route("/api/v1/users/{name}", put(users::update_user))
        .route("/api/v1/tokens", get(tokens::list_tokens).post(tokens::create_token))
        .route("/api/v1/tokens/{id}", axum::routing::delete(tokens::revoke_token))
        .route("/login", get(session::login_page).post(session::login_form))
        .route("/logout", post(session::logout_form))
        .route("/users", get(users::users).post(users::add_user))
        .route("/users/{name}/disabled", post(users::set_disabled))
        .route("/users/{name}/roles", post(users::set_roles))
        .route("/users/{name}/password", post(users::reset_password))
        .route("/tokens", post(tokens::add_token))
        .route("/tokens/{id}/revoke", post(tokens::revoke))
}

/// An account.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserView {
    pub name: String,
    #[schema(schema_with = global_roles_schema)]
    pub roles: Vec<&'static str>,
    pub disabled: bool,
    #[schema(format = DateTime)]
    pub created_at: String,
}

impl UserView {
    pub fn new(user: &User) -> UserView {
        UserView {
            name: user.name.clone(),
            roles: user.roles.iter().map(|r| r.as_str()).collect(),
            disabled: user.disabled,
            created_at: format_timestamp(user.created_at),
        }
    }
}
