//! The OpenAPI document of the JSON API, generated from the routes' annotations and the types
//! they send and take, never written by hand; served at `/api/v1/openapi.json`.

use axum::routing::get;
use axum::{Json, Router};
use utoipa::OpenApi as _;

use crate::AppState;
use crate::accounts::{session, tokens, users};
use crate::audit::api as audit;
use crate::auth::SESSION_COOKIE;
use crate::error::ErrorBody;
use crate::hooks;
use crate::ops::{health, metrics, nodes};
use crate::runbooks::api as runbooks;
use crate::runbooks::figures;
use crate::runs::{answer, command, events, list, proposal, show, start};

pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/openapi.json", get(openapi))
}

/// The OpenAPI document of this API, generated from the route annotations.
#[derive(Debug, utoipa::OpenApi)]
#[openapi(
    info(title = "Steady", description = "Runbook execution with approval gates"),
    paths(
        health::healthz, metrics::metrics, session::login, session::logout, session::whoami,
        runbooks::list_runbooks, runbooks::runbook_versions, runbooks::runbook_source, runbooks::publish,
        figures::runbook_figures,
        list::list_runs, start::start_run, show::get_run, command::cancel_run, command::decide,
        proposal::take, proposal::dismiss, hooks::receive,
        command::assign, command::transfer_command, command::add_note, answer::answer_step,
        events::run_events, events::all_events, audit::audit, audit::verify_audit, audit::export_audit,
        nodes::list_nodes, users::list_users, users::create_user, users::update_user,
        tokens::list_tokens, tokens::create_token, tokens::revoke_token, openapi
    ),
    components(schemas(
        session::Login, runbooks::Publish, start::StartBody, start::AssignmentBody, command::DecisionBody,
        command::AssignBody, command::CommanderBody, command::NoteBody, answer::AnswerBody,
        users::NewUser, users::UserUpdate, tokens::NewToken, proposal::TakeBody, proposal::DismissBody,
        hooks::Delivery, hooks::Outcome, ErrorBody
    )),
    modifiers(&BearerAuth, &ErrorAnswers)
)]
pub struct ApiDoc;

/// Declares the two ways in: a bearer token, or the session cookie.
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{
            ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme,
        };
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(SESSION_COOKIE))),
        );
        // Either way in, everywhere but the routes that say `security(())` (`[{}]`: open).
        openapi.security = Some(vec![
            utoipa::openapi::security::SecurityRequirement::new::<_, _, &str>("token", []),
            utoipa::openapi::security::SecurityRequirement::new::<_, _, &str>("session", []),
        ]);
    }
}

/// Every error answer of every route is the one `ErrorBody` shape, in JSON: declared once
/// here rather than on each of the routes' statuses.
struct ErrorAnswers;

impl utoipa::Modify for ErrorAnswers {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, RefOr};
        let error = ContentBuilder::new()
            .schema(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name("ErrorBody"))))
            .build();
        for item in openapi.paths.paths.values_mut() {
            let operations =
                [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch];
            for operation in operations.into_iter().flatten() {
                for (status, response) in operation.responses.responses.iter_mut() {
                    let is_error = status.starts_with('4') || status.starts_with('5');
                    if let (true, RefOr::T(response)) = (is_error, response) {
                        response.content.insert("application/json".to_owned(), error.clone());
                    }
                }
            }
        }
    }
}

#[utoipa::path(get, tag = "ops", path = "/api/v1/openapi.json", security(()), responses((status = 200, description = "This document", body = Object)))]
async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
