//! The confirmation page of what ends or reverses work — cancelling, rolling back, aborting,
//! dismissing a proposal — for a browser without JavaScript: it says what will happen and asks
//! for the reason that is recorded with it. (With JavaScript the run page asks the same in a
//! dialog.)

use askama::Template;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use steady_engine::engine::EngineError;
use steady_engine::policy;
use steady_engine::run::{Decision, RunMode, RunStatus};
use uuid::Uuid;

use super::ReasonForm;
use crate::AppState;
use crate::error::AppError;
use crate::page::{Me, PageResult, render};
use crate::runs::short_id;
use crate::runs::show::{decision, snapshot};

/// What the commander asked for, or a responder, for a proposal.
pub(crate) enum Asked {
    Cancel,
    Decide(Decision),
    Dismiss,
}

#[derive(Template)]
#[template(path = "run_confirm.html")]
struct ConfirmPage {
    me: Option<Me>,
    csrf: String,
    run_id: Uuid,
    short_id: String,
    runbook: String,
    live: bool,
    /// The button's words: "Cancel the run", "Roll back", "Abort".
    action: &'static str,
    does: String,
    post_to: String,
    decision: Option<&'static str>,
    error: Option<&'static str>,
}

/// The confirmation page for `asked` on run `id`: 200 the first time, 422 when the person
/// confirmed without a reason. Refused as the engine would refuse the act itself, so that
/// nobody is asked to confirm what they may not do.
pub(crate) async fn page(
    state: &AppState,
    id: Uuid,
    me: Me,
    form: &ReasonForm,
    asked: Asked,
) -> PageResult {
    let snapshot = snapshot(state, id).await?;
    let run = &snapshot.run;
    // Nobody commands a proposal yet: any responder (the caller checked) may dismiss it.
    if !matches!(asked, Asked::Dismiss) {
        policy::may_command(run, &me.actor).map_err(EngineError::from)?;
    }
    let (action, does, post_to, decision_value) = match asked {
        Asked::Dismiss => {
            if run.status != RunStatus::Proposed {
                let mut error = AppError::from(EngineError::NotProposed { status: run.status });
                error.run = Some(id);
                return Err(error.into());
            }
            (
                "Dismiss",
                "Dismissing ends this proposal: nothing runs. If the alert fires again later, it \
                 proposes the runbook anew."
                    .to_owned(),
                format!("/runs/{id}/dismiss"),
                None,
            )
        }
        Asked::Cancel => {
            if !run.status.is_active() {
                return Err(EngineError::RunNotActive { status: run.status }.into());
            }
            (
                "Cancel the run",
                "Cancel stops the run now: a running step is stopped and no further step runs."
                    .to_owned(),
                format!("/runs/{id}/cancel"),
                None,
            )
        }
        Asked::Decide(asked) => {
            let runbook = state.engine.runbook(&run.runbook, run.version).await?;
            let offered = decision(&runbook, &snapshot)
                .and_then(|panel| panel.choice(asked.as_str()).map(|c| c.does.clone()));
            let Some(does) = offered else {
                return Err(AppError::conflict(format!(
                    "{asked} is not one of this run's choices now (it is {})",
                    run.status.as_str().replace('_', " ")
                ))
                .into());
            };
            let action = if asked == Decision::Rollback { "Roll back" } else { "Abort" };
            (action, does, format!("/runs/{id}/decide"), Some(asked.as_str()))
        }
    };
    let error = (form.confirm == "yes").then_some("Say why: the reason is recorded with it.");
    let page = ConfirmPage {
        csrf: me.csrf.clone(),
        run_id: id,
        short_id: short_id(id),
        runbook: run.runbook.clone(),
        live: run.mode == RunMode::Live && run.status != RunStatus::Proposed,
        action,
        does,
        post_to,
        decision: decision_value,
        error,
        me: Some(me),
    };
    let status = if error.is_some() { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK };
    Ok((status, render(&page)).into_response())
}
