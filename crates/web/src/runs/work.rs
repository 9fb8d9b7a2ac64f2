//! *My work*: every gate and manual step waiting for the signed-in person (as the engine's
//! `policy::work_for` says), oldest first,
//! kept current by the page's script following `/api/v1/events`.

use askama::Template;
use axum::extract::State;
use steady_engine::accounts::GlobalRole;
use steady_engine::plan::{Action, Rendered};
use steady_engine::policy::{self, Work};
use steady_engine::run::{RunFilter, RunStatus};
use steady_engine::runbook::StepKind;
use uuid::Uuid;

use crate::AppState;
use crate::page::{Me, Moment, PageResult, render};

struct WorkItem {
    run_id: Uuid,
    runbook: String,
    mode: String,
    step_id: String,
    step_title: String,
    kind: &'static str,
    role: String,
    /// Since when it has waited.
    waited: Moment,
    deadline: Option<Moment>,
    prompt: Option<String>,
    since: chrono::DateTime<chrono::Utc>,
}

#[derive(Template)]
#[template(path = "work.html")]
struct WorkPage {
    me: Option<Me>,
    items: Vec<WorkItem>,
    /// The newest audit event when the page was rendered: the live script follows from here,
    /// so that nothing happening between rendering and listening is missed.
    last_seq: i64,
}

pub(crate) async fn work(State(state): State<AppState>, me: Me) -> PageResult {
    let last_seq = state.store.latest_seq().await?;
    let waiting = state
        .store
        .runs(&RunFilter {
            status: Some(RunStatus::Waiting),
            limit: Some(500),
            ..RunFilter::default()
        })
        .await?;
    let mut runs = Vec::new();
    for record in waiting {
        let Some(snapshot) = state.store.run(record.id).await? else { continue };
        let runbook = state.engine.runbook(&record.runbook, record.version).await?;
        runs.push((runbook, snapshot));
    }
    // The engine's policy says what this person may answer, exactly as the engine would
    // accept it: a gate its starter may not approve is not their work.
    let responder = me.caller.user.has(GlobalRole::Responder);
    let work = if responder {
        policy::work_for(&me.actor, runs.iter().map(|(runbook, snapshot)| (&**runbook, snapshot)))
    } else {
        Vec::new()
    };
    let mut items = Vec::new();
    for item in work {
        let Work::Answer { snapshot, step, state: state_of, role } = item else { continue };
        let kind = match &step.kind {
            StepKind::Approval(_) => "approval",
            _ => "manual step",
        };
        let record = &snapshot.run;
        let since = state_of.started_at.unwrap_or(record.created_at);
        items.push(WorkItem {
            run_id: record.id,
            runbook: record.runbook.clone(),
            mode: record.mode.to_string(),
            step_id: step.id.clone(),
            step_title: step.title().to_owned(),
            kind,
            role: role.to_owned(),
            waited: Moment::new(since),
            deadline: state_of.deadline.map(Moment::new),
            prompt: match state_of.rendered.as_ref().and_then(Rendered::action) {
                Some(Action::Approval { prompt, .. }) => prompt.clone(),
                Some(Action::Manual { instructions, .. }) => Some(instructions.clone()),
                _ => None,
            },
            since,
        });
    }
    items.sort_by_key(|item| item.since);
    Ok(render(&WorkPage { me: Some(me), items, last_seq }))
}
