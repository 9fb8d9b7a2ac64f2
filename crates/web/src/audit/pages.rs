//! The audit page: the chain's verification, events filtered and paged, and links to the
//! export with the same filters. For auditors and admins.

use askama::Template;
use axum::extract::{Query, State};
use serde::Deserialize;
use steady_engine::audit::format_timestamp;
use steady_engine::run::Actor;
use uuid::Uuid;

use crate::AppState;
use crate::page::{Me, Moment, PageResult, day, link, render};

struct AuditRow {
    seq: i64,
    at: Moment,
    actor: String,
    action: String,
    run: Option<Uuid>,
    run_short: String,
    step: Option<String>,
    data: String,
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    me: Option<Me>,
    intact: bool,
    events: u64,
    broken: i64,
    rows: Vec<AuditRow>,
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
    #[serde(default)]
    after: i64,
}

pub(crate) async fn audit(
    State(state): State<AppState>,
    me: Me,
    Query(form): Query<AuditForm>,
) -> PageResult {
    me.caller.require_audit_reader()?;
    let verification = state.store.verify_audit().await?;
    let since = day(&form.since);
    let run: Option<Uuid> = form.run.trim().parse().ok();
    let filter = steady_engine::store::AuditFilter {
        run_id: run,
        actor: Some(form.actor.trim()).filter(|a| !a.is_empty()).map(Actor::person),
        action: Some(form.action.trim().to_owned()).filter(|a| !a.is_empty()),
        since,
        after_seq: Some(form.after),
        limit: Some(200),
        ..Default::default()
    };
    let events = state.store.audit_events(&filter).await?;
    let run_text = run.map(|id| id.to_string()).unwrap_or_default();
    let since_text = since.map(format_timestamp).unwrap_or_default();
    let export = |format: &str| {
        link(
            "/api/v1/audit/export",
            &[
                ("format", format),
                ("run", &run_text),
                ("actor", form.actor.trim()),
                ("action", form.action.trim()),
                ("since", &since_text),
            ],
        )
    };
    let next_page = (events.len() == 200).then(|| {
        let last = events.last().map_or(0, |e| e.seq).to_string();
        link(
            "/audit",
            &[
                ("run", &form.run),
                ("actor", &form.actor),
                ("action", &form.action),
                ("since", &form.since),
                ("after", &last),
            ],
        )
    });
    let rows = events
        .iter()
        .map(|e| AuditRow {
            seq: e.seq,
            at: Moment::new(e.at),
            actor: e.actor.to_string(),
            action: e.action.clone(),
            run: e.run_id,
            run_short: e.run_id.map(|id| id.to_string()[..13].to_owned()).unwrap_or_default(),
            step: e.step_id.clone(),
            data: {
                let data = e.data.to_string();
                if data.chars().count() > 160 {
                    format!("{}…", data.chars().take(160).collect::<String>())
                } else {
                    data
                }
            },
        })
        .collect();
    let (export_csv, export_jsonl) = (export("csv"), export("jsonl"));
    let page = AuditPage {
        export_csv,
        export_jsonl,
        me: Some(me),
        intact: verification.first_broken.is_none(),
        events: verification.events,
        broken: verification.first_broken.unwrap_or(0),
        rows,
        filter_run: form.run,
        filter_actor: form.actor,
        filter_action: form.action,
        filter_since: form.since,
        next_page,
    };
    Ok(render(&page))
}
