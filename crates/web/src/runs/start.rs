//! Starting a run: `POST /api/v1/runs`, and the start form of a runbook's page, which shows
//! the rendered plan to confirm before anything runs.

use askama::Template;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;
use steady_engine::engine::StartRun;
use steady_engine::plan::Plan;
use steady_engine::policy;
use steady_engine::run::{Actor, Assignment, RunMode};
use steady_engine::runbook::{Runbook, StepKind};
use utoipa::ToSchema;

use super::back_to;
use super::list::parse_mode;
use crate::AppState;
use crate::auth::Caller;
use crate::dto::{self, RunDetail};
use crate::error::AppError;
use crate::extract::{ApiJson, CsrfForm};
use crate::page::{Me, PageResult, render};

#[derive(Deserialize, ToSchema)]
pub(crate) struct StartBody {
    /// The runbook's name.
    runbook: String,
    /// A published version; the latest when absent.
    version: Option<u32>,
    /// Parameter values by name: strings, numbers or booleans. Values the runbook's `params`
    /// refuse are answered with 422.
    #[serde(default)]
    #[schema(value_type = Object)]
    params: serde_json::Map<String, Value>,
    /// `live` when absent.
    #[serde(default)]
    #[schema(schema_with = nullable_run_mode_schema)]
    mode: Option<String>,
    /// Run roles given to people at the start: roles the runbook declares, people who are
    /// existing, enabled users (else 422).
    #[serde(default)]
    assignments: Vec<AssignmentBody>,
}

fn nullable_run_mode_schema() -> utoipa::openapi::schema::Object {
    dto::names_schema(RunMode::ALL.iter().map(|m| m.as_str()), true)
}

#[derive(Deserialize, ToSchema)]
pub(crate) struct AssignmentBody {
    role: String,
    person: String,
}

impl AssignmentBody {
    pub(crate) fn role(&self) -> &str {
        &self.role
    }

    pub(crate) fn person(&self) -> &str {
        &self.person
    }
}

#[utoipa::path(post, tag = "runs", path = "/api/v1/runs", request_body = StartBody, responses((status = 201, description = "The run, started", body = RunDetail), (status = 401, description = "Not signed in"), (status = 403, description = "Needs the responder role"), (status = 404, description = "No such runbook or version"), (status = 409, description = "The lock is held by another active run"), (status = 422, description = "Invalid input: parameters, secrets, roles or people")))]
pub(crate) async fn start_run(
    State(state): State<AppState>,
    caller: Caller,
    body: ApiJson<StartBody>,
) -> Result<Response, AppError> {
    caller.require_responder()?;
    let start = body.read()?;
    let mode = start.mode.as_deref().map(parse_mode).transpose()?.unwrap_or(RunMode::Live);
    let params = start
        .params
        .into_iter()
        .map(|(key, value)| {
            let text = match value {
                Value::String(text) => text,
                other => other.to_string(),
            };
            (key, text)
        })
        .collect();
    let assignments = start
        .assignments
        .iter()
        .map(|a| Assignment { role: a.role.clone(), person: Actor::person(&a.person) })
        .collect();
    let id = state
        .engine
        .start_run(StartRun {
            origin: steady_engine::run::RunOrigin::Person,
            runbook: start.runbook,
            version: start.version,
            params,
            mode,
            actor: caller.user.actor(),
            assignments,
        })
        .await?;
    let snapshot =
        state.store.run(id).await?.ok_or_else(|| AppError::not_found("the run vanished"))?;
    Ok((StatusCode::CREATED, Json(RunDetail::new(&snapshot))).into_response())
}

// ---------------------------------------------------------------------------------- the page

#[derive(Template)]
#[template(path = "confirm.html")]
struct ConfirmPage {
    me: Option<Me>,
    csrf: String,
    name: String,
    version: u32,
    mode: String,
    plan: String,
    fields: Vec<(String, String)>,
    /// Each run role with who will hold it, in words.
    holders: Vec<(String, String)>,
    /// The gates nobody could approve in the run as confirmed, as the policy says.
    unreachable: Vec<String>,
}

/// The runbook page's start form: first answered with the plan to confirm, then, confirmed
/// for the version still latest, started.
pub(crate) async fn start_form(
    State(state): State<AppState>,
    Path(name): Path<String>,
    CsrfForm { me, form: fields }: CsrfForm<Vec<(String, String)>>,
) -> PageResult {
    let field = |key: &str| {
        fields.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone()).unwrap_or_default()
    };
    me.caller.require_responder()?;
    let (latest, runbook) = crate::runbooks::latest(&state, &name).await?;
    let mode: RunMode = field("mode").parse().map_err(|_| AppError::invalid("choose a mode"))?;
    let params: Vec<(String, String)> = fields
        .iter()
        .filter_map(|(key, value)| Some((key.strip_prefix("param.")?.to_owned(), value.clone())))
        .filter(|(key, value)| {
            !value.is_empty()
                || runbook.param(key).is_some_and(|p| {
                    p.kind == steady_engine::runbook::ParamType::String && p.required
                })
        })
        .collect();
    let assignments = form_assignments(&fields);
    let resolved = steady_engine::params::resolve(&runbook, &params)
        .map_err(steady_engine::engine::EngineError::Params)?;
    if field("confirmed") != "yes" {
        let plan = Plan::new(&runbook, &resolved).to_string();
        let holders = holders_in_words(&runbook, &assignments);
        let unreachable = unreachable_gates(&runbook, &me.actor, &assignments);
        let kept = fields
            .iter()
            .filter(|(k, _)| k != "csrf" && k != "confirmed" && k != "version")
            .cloned()
            .collect();
        return Ok(render(&ConfirmPage {
            csrf: me.csrf.clone(),
            name,
            version: latest.version,
            mode: mode.to_string(),
            plan,
            fields: kept,
            holders,
            unreachable,
            me: Some(me),
        }));
    }
    // What was confirmed is what runs: a version published since must be reviewed first.
    if field("version") != latest.version.to_string() {
        return Err(AppError::conflict(format!(
            "{name} changed since you confirmed it: version {} is the latest now; review its plan again",
            latest.version
        ))
        .into());
    }
    let id = state
        .engine
        .start_run(StartRun {
            origin: steady_engine::run::RunOrigin::Person,
            runbook: name,
            version: Some(latest.version),
            params,
            mode,
            actor: me.actor.clone(),
            assignments,
        })
        .await?;
    Ok(back_to(id, ""))
}

/// The run roles a form gives: each `role.NAME` field holds people, comma-separated.
pub(crate) fn form_assignments(fields: &[(String, String)]) -> Vec<Assignment> {
    let mut assignments = Vec::new();
    for (key, value) in fields {
        if let Some(role) = key.strip_prefix("role.") {
            for person in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                assignments
                    .push(Assignment { role: role.to_owned(), person: Actor::person(person) });
            }
        }
    }
    assignments
}

/// Each run role of `runbook` with who will hold it, in words ("nobody" when nobody does).
pub(crate) fn holders_in_words(
    runbook: &Runbook,
    assignments: &[Assignment],
) -> Vec<(String, String)> {
    runbook
        .roles
        .iter()
        .map(|role| {
            let names: Vec<String> = assignments
                .iter()
                .filter(|a| a.role == role.name)
                .map(|a| a.person.to_string())
                .collect();
            let names = if names.is_empty() { "nobody".to_owned() } else { names.join(", ") };
            (role.name.clone(), names)
        })
        .collect()
}

/// A warning for each gate nobody could approve in a run `starter` starts with these roles,
/// as the policy says.
pub(crate) fn unreachable_gates(
    runbook: &Runbook,
    starter: &Actor,
    assignments: &[Assignment],
) -> Vec<String> {
    policy::gates_out_of_reach(runbook, starter, assignments)
        .into_iter()
        .map(|(step, missing)| unreachable_gate(step, missing, starter))
        .collect()
}

/// The warning for a gate nobody could approve, naming its role and why the starter does not
/// count when separation of duties leaves them out.
fn unreachable_gate(step: &steady_engine::runbook::Step, missing: u32, starter: &Actor) -> String {
    let StepKind::Approval(gate) = &step.kind else { return String::new() };
    let starter_note = if gate.allow_self_approval {
        String::new()
    } else {
        format!(" ({starter} starts the run, so does not count)")
    };
    format!(
        "Gate `{}` needs {} approval(s) from `{}`, and {missing} of them could come from \
         nobody{starter_note}: give `{}` to someone who may approve, or the run will stop there.",
        step.id, gate.approvals, gate.role.name, gate.role.name
    )
}
