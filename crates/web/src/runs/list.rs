//! Listing runs: `GET /api/v1/runs` (filtered, keyset-paged) and the runs page.

use askama::Template;
use axum::Json;
use axum::extract::{Query, State};
use serde::Deserialize;
use steady_engine::engine::now;
use steady_engine::run::{RunFilter, RunMode, RunOrigin, RunRecord, RunStatus, StepStatus};
use utoipa::IntoParams;
use uuid::Uuid;

use super::{run_badge, short_id, status_class, step_badge};
use crate::AppState;
use crate::auth::Caller;
use crate::dto::{self, RunView};
use crate::error::AppError;
use crate::extract::{ApiQuery, page_limit};
use crate::page::{Me, Moment, PageResult, day, duration, link, render};

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct RunsQuery {
    /// Only runs in this status.
    #[param(schema_with = dto::run_status_schema, required = false)]
    status: Option<String>,
    /// Only runs of this runbook.
    runbook: Option<String>,
    /// Only runs in this mode.
    #[param(schema_with = dto::run_mode_schema, required = false)]
    mode: Option<String>,
    /// Only runs of this origin: `person` (someone started it), `verification` (Steady, on
    /// the runbook's `verify` schedule) or `trigger` (an alert proposed it).
    #[param(schema_with = dto::run_origin_schema, required = false)]
    origin: Option<String>,
    /// Only runs created at or after this time (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime)]
    since: Option<chrono::DateTime<chrono::Utc>>,
    /// Keyset paging: the id of the last run of the previous page.
    #[param(value_type = Option<String>, format = "uuid")]
    before: Option<Uuid>,
    /// How many runs at most; 50 when absent. More than 500 is refused rather than cut short,
    /// so that a short page always means the last page.
    #[param(maximum = 500)]
    limit: Option<u32>,
}

#[utoipa::path(get, tag = "runs", path = "/api/v1/runs", params(RunsQuery), responses((status = 200, description = "Runs, newest first", body = Vec<RunView>), (status = 401, description = "Not signed in"), (status = 422, description = "Invalid query")))]
pub(crate) async fn list_runs(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<RunsQuery>,
    _caller: Caller,
) -> Result<Json<Vec<RunView>>, AppError> {
    let status = match query.status.as_deref() {
        Some(text) => {
            Some(text.parse::<RunStatus>().map_err(|error| AppError::invalid(error.to_string()))?)
        }
        None => None,
    };
    let mode = match query.mode.as_deref() {
        Some(text) => Some(parse_mode(text)?),
        None => None,
    };
    let origin = match query.origin.as_deref() {
        Some(text) => Some(
            text.parse::<RunOrigin>()
                .map_err(|_| AppError::invalid("origin must be person or verification"))?,
        ),
        None => None,
    };
    let filter = RunFilter {
        status,
        runbook: query.runbook,
        mode,
        origin,
        version: None,
        since: query.since,
        before: query.before,
        limit: Some(page_limit(query.limit, 50, 500)?),
    };
    let runs = state.store.runs(&filter).await?;
    Ok(Json(runs.iter().map(RunView::new).collect()))
}

// ---------------------------------------------------------------------------------- the page

struct RunRow {
    id: Uuid,
    short_id: String,
    status: String,
    status_class: &'static str,
    runbook: String,
    version: u32,
    mode: String,
    started: Moment,
    /// How long it took, or has taken so far.
    took: String,
    commander: String,
    /// What an active run is at: its running or waiting step, else the next one.
    now: Option<(String, String, &'static str)>,
}

fn row(run: &RunRecord) -> RunRow {
    RunRow {
        id: run.id,
        short_id: short_id(run.id),
        status: run_badge(run.status),
        status_class: status_class(run.status.as_str()),
        runbook: run.runbook.clone(),
        version: run.version,
        mode: dto::mode_label(run),
        started: Moment::new(run.created_at),
        took: duration(run.finished_at.unwrap_or_else(now) - run.created_at),
        // The trigger account holds a proposal only until a person takes command.
        commander: match run.status {
            RunStatus::Proposed => "nobody yet".to_owned(),
            RunStatus::Dismissed => "nobody".to_owned(),
            _ => run.commander.to_string(),
        },
        now: None,
    }
}

/// The step an active run is at, with its badge: the first running, waiting or interrupted
/// one, else the next pending one. Read only for active runs, which are few.
async fn current_step(state: &AppState, run: &RunRecord) -> Option<(String, String, &'static str)> {
    if !run.status.is_active() {
        return None;
    }
    let snapshot = state.store.run(run.id).await.ok().flatten()?;
    let at = |wanted: &[StepStatus]| snapshot.steps.iter().find(|s| wanted.contains(&s.status));
    let step = at(&[StepStatus::Running, StepStatus::Waiting, StepStatus::Interrupted])
        .or_else(|| at(&[StepStatus::Pending]))?;
    Some((step.step_id.clone(), step_badge(step.status), status_class(step.status.as_str())))
}

#[derive(Template)]
#[template(path = "runs.html")]
struct RunsPage {
    me: Option<Me>,
    /// The newest audit event when the page was rendered: the live script follows from here.
    last_seq: i64,
    /// The login page, coming back to this list with its filters: the notice shown when the
    /// session ends while the list follows live events.
    sign_in_again: String,
    runs: Vec<RunRow>,
    statuses: Vec<String>,
    modes: Vec<String>,
    origins: Vec<String>,
    filter_status: String,
    filter_runbook: String,
    filter_mode: String,
    filter_origin: String,
    filter_since: String,
    next_page: Option<String>,
}

#[derive(Deserialize, Default)]
pub(crate) struct RunsForm {
    #[serde(default)]
    status: String,
    #[serde(default)]
    runbook: String,
    #[serde(default)]
    mode: String,
    #[serde(default)]
    origin: String,
    #[serde(default)]
    since: String,
    #[serde(default)]
    before: String,
}

pub(crate) async fn runs(
    State(state): State<AppState>,
    me: Me,
    Query(form): Query<RunsForm>,
) -> PageResult {
    const PAGE: u32 = 50;
    let filter = RunFilter {
        status: form.status.parse().ok(),
        runbook: Some(form.runbook.clone()).filter(|r| !r.is_empty()),
        mode: form.mode.parse().ok(),
        origin: form.origin.parse().ok(),
        version: None,
        since: day(&form.since),
        before: form.before.parse().ok(),
        limit: Some(PAGE),
    };
    let records = state.store.runs(&filter).await?;
    // The runs list with these filters, from `before` on.
    let from = |before: &str| {
        link(
            "/runs",
            &[
                ("status", &form.status),
                ("runbook", &form.runbook),
                ("mode", &form.mode),
                ("origin", &form.origin),
                ("since", &form.since),
                ("before", before),
            ],
        )
    };
    let next_page = (records.len() == PAGE as usize)
        .then(|| from(&records.last().map(|r| r.id.to_string()).unwrap_or_default()));
    // The runs list as filtered, for the "signed out" notice to come back to.
    let here = from(&form.before);
    let sign_in_again = link("/login", &[("next", here.trim_end_matches('?'))]);
    let mut runs = Vec::with_capacity(records.len());
    for record in &records {
        runs.push(RunRow { now: current_step(&state, record).await, ..row(record) });
    }
    let page = RunsPage {
        me: Some(me),
        last_seq: state.store.latest_seq().await.unwrap_or(0),
        sign_in_again,
        runs,
        statuses: RunStatus::ALL.iter().map(|s| s.as_str().to_owned()).collect(),
        modes: RunMode::ALL.iter().map(|m| m.as_str().to_owned()).collect(),
        origins: RunOrigin::ALL.iter().map(|o| o.as_str().to_owned()).collect(),
        filter_status: form.status,
        filter_runbook: form.runbook,
        filter_mode: form.mode,
        filter_origin: form.origin,
        filter_since: form.since,
        next_page,
    };
    Ok(render(&page))
}

/// A run mode as the API names it: `live`, `drill` or `dry-run`.
pub(crate) fn parse_mode(text: &str) -> Result<RunMode, AppError> {
    text.parse::<RunMode>().map_err(|_| AppError::invalid("mode must be live, drill or dry-run"))
}
