//! The audit page: the chain's verification, events newest first, filtered (a run by the start
//! of its id, an action from the typed list) and paged, and links to the export with the same
//! filters. For auditors and admins.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Deserialize;
use steady_engine::audit::{AuditAction, AuditEvent, format_timestamp};
use steady_engine::run::Actor;
use steady_engine::store::AuditFilter;
use uuid::Uuid;

use super::{RunFilter, action_filter};
use crate::AppState;
use crate::error::AppError;
use crate::page::{Me, Moment, PageResult, day, link, render};

struct AuditRow {
    seq: i64,
    at: Moment,
    actor: String,
    action: String,
    run: Option<Uuid>,
    run_short: String,
    step: Option<String>,
    /// The event's data, whole, wrapped by the page.
    data: String,
    /// The first of it, for the summary of a long one.
    data_short: Option<String>,
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    me: Option<Me>,
    intact: bool,
    events: u64,
    broken: i64,
    /// How many events the filter selects, over all pages.
    matching: u64,
    /// What is wrong with the filter, shown above it (the page is then a 400).
    error: Option<String>,
    rows: Vec<AuditRow>,
    actions: Vec<&'static str>,
    filter_run: String,
    filter_actor: String,
    filter_action: String,
    filter_since: String,
    export_csv: String,
    export_jsonl: String,
    next_page: Option<String>,
}

#[derive(Deserialize, Default)]
pub(crate) struct AuditForm {
    #[serde(default)]
    run: String,
    #[serde(default)]
    actor: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    since: String,
    /// Paging, newest first: only events older than this `seq`.
    #[serde(default)]
    before: String,
}

/// How many events a page shows.
const PAGE: u32 = 200;

/// The log newest first, as people read it, with how many events the filter selects. A filter
/// that cannot mean anything is a 400 showing the page again with what is wrong, never a
/// filter quietly dropped.
pub(crate) async fn audit(
    State(state): State<AppState>,
    me: Me,
    Query(form): Query<AuditForm>,
) -> PageResult {
    me.caller.require_audit_reader()?;
    let verification = state.store.verify_audit().await?;
    let mut page = AuditPage {
        export_csv: String::new(),
        export_jsonl: String::new(),
        me: Some(me),
        intact: verification.first_broken.is_none(),
        events: verification.events,
        broken: verification.first_broken.unwrap_or(0),
        matching: 0,
        error: None,
        rows: Vec::new(),
        actions: AuditAction::ALL.iter().map(|a| a.as_str()).collect(),
        filter_run: form.run.clone(),
        filter_actor: form.actor.clone(),
        filter_action: form.action.clone(),
        filter_since: form.since.clone(),
        next_page: None,
    };
    let filter = match filter(&form) {
        Ok(filter) => filter,
        Err(error) => {
            page.error = Some(error.message);
            return Ok((StatusCode::BAD_REQUEST, render(&page)).into_response());
        }
    };
    let events = state.store.audit_events(&filter).await?;
    page.matching = state.store.count_audit_events(&filter).await?;
    // The export keeps chain order and takes whole ids only, so a prefix is not passed on.
    let run_text = filter.run_id.map(|id| id.to_string()).unwrap_or_default();
    let since_text = filter.since.map(format_timestamp).unwrap_or_default();
    let action_text = filter.action.clone().unwrap_or_default();
    let export = |format: &str| {
        link(
            "/api/v1/audit/export",
            &[
                ("format", format),
                ("run", &run_text),
                ("actor", form.actor.trim()),
                ("action", &action_text),
                ("since", &since_text),
            ],
        )
    };
    (page.export_csv, page.export_jsonl) = (export("csv"), export("jsonl"));
    page.next_page = (events.len() == PAGE as usize).then(|| {
        let last = events.last().map_or(0, |e| e.seq).to_string();
        link(
            "/audit",
            &[
                ("run", &form.run),
                ("actor", &form.actor),
                ("action", &form.action),
                ("since", &form.since),
                ("before", &last),
            ],
        )
    });
    page.rows = events.iter().map(row).collect();
    Ok(render(&page))
}

/// The store's filter for what the form says, every value checked.
fn filter(form: &AuditForm) -> Result<AuditFilter, AppError> {
    let (run_id, run_prefix) = RunFilter::parse(&form.run)?.parts();
    let since = match form.since.trim() {
        "" => None,
        text => Some(day(text).ok_or_else(|| {
            AppError::bad_request(format!("since `{text}` is not a date like 2026-11-30"))
        })?),
    };
    let before_seq = match form.before.trim() {
        "" => None,
        text => Some(text.parse::<i64>().map_err(|_| {
            AppError::bad_request(format!("before `{text}` is not an event's seq number"))
        })?),
    };
    Ok(AuditFilter {
        run_id,
        run_prefix,
        actor: Some(form.actor.trim()).filter(|a| !a.is_empty()).map(Actor::person),
        action: action_filter(&form.action)?,
        since,
        before_seq,
        newest_first: true,
        limit: Some(PAGE),
        ..Default::default()
    })
}

fn row(e: &AuditEvent) -> AuditRow {
    let data = e.data.to_string();
    let data_short = (data.chars().count() > 160)
        .then(|| format!("{}…", data.chars().take(160).collect::<String>()));
    AuditRow {
        seq: e.seq,
        at: Moment::new(e.at),
        actor: e.actor.to_string(),
        action: e.action.clone(),
        run: e.run_id,
        run_short: e.run_id.map(|id| id.to_string()[..13].to_owned()).unwrap_or_default(),
        step: e.step_id.clone(),
        data,
        data_short,
    }
}
