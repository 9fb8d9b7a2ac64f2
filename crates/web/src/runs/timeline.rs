//! The postmortem timeline: a run as Markdown, who did what and when, with the approvals'
//! comments and the steps' results; how long it took, against the rehearsals before it and
//! the runbook's `rto`.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use steady_engine::audit::{AuditData, StepFinished, format_timestamp};
use steady_engine::rehearsal::RehearsalQuery;
use steady_engine::run::{RunMode, RunRecord, RunStatus};

use crate::AppState;
use crate::error::AppError;
use crate::extract::PageRunId;
use crate::page::{Me, PageResult};
use crate::runbooks::figures::{figure, figures};

/// The run as a Markdown timeline for the postmortem: who did what, when, with the
/// approvals' comments.
pub(crate) async fn timeline(
    State(state): State<AppState>,
    _me: Me,
    PageRunId(id): PageRunId,
) -> PageResult {
    let snapshot =
        state.store.run(id).await?.ok_or_else(|| AppError::not_found(format!("no run {id}")))?;
    let run = &snapshot.run;
    let filter = steady_engine::store::AuditFilter { run_id: Some(id), ..Default::default() };
    let events = state.store.audit_events(&filter).await?;
    // Markdown passes HTML through: what people wrote (notes, comments, names, errors) is
    // escaped, so that it shows as text wherever the postmortem is rendered.
    let html = |text: &str| text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    let mut text = format!(
        "# {} — run {}\n\n- Mode: {}\n- Status: {}\n- Commander: {} (started by {})\n- Runbook version: {} ({})\n- Started: {}\n",
        run.runbook,
        run.id,
        crate::dto::mode_label(run),
        run.status,
        html(&run.commander.to_string()),
        html(&run.started_by.to_string()),
        run.version,
        run.sha256,
        format_timestamp(run.created_at),
    );
    if let Some(finished) = run.finished_at {
        text.push_str(&format!("- Finished: {}\n", format_timestamp(finished)));
        let took = figure((finished - run.created_at).to_std().unwrap_or_default());
        let recovered = run.status == RunStatus::Succeeded && run.mode != RunMode::DryRun;
        let label = if recovered { "Time to recover" } else { "Duration" };
        text.push_str(&format!("- {label}: {took}\n"));
    }
    // A dry run executes almost nothing: its time compares with no rehearsal.
    if run.mode != RunMode::DryRun {
        text.push_str(&rehearsed(&state, run).await?);
    }
    text.push_str(
        "\n## Timeline\n\n| When | Who | What | Step | Details |\n|---|---|---|---|---|\n",
    );
    let cell = |text: &str| html(text).replace('|', "\\|").replace('\n', " ");
    for event in &events {
        // An event whose data is not its type's (none Steady wrote) shows without details.
        let data = AuditData::from_stored(&event.action, &event.data).ok();
        let details = match data {
            Some(AuditData::ApprovalGranted(answer) | AuditData::ApprovalRejected(answer)) => {
                answer.comment.map(|c| format!("“{c}”")).unwrap_or_default()
            }
            Some(AuditData::ManualCompleted(answer) | AuditData::ManualFailed(answer)) => {
                answer.note.unwrap_or_default()
            }
            Some(AuditData::StepFinished(finished)) => {
                let (status, error) = match finished {
                    StepFinished::Answered(answered) => (answered.status, None),
                    StepFinished::Settled(settled) => (settled.status, None),
                    StepFinished::Unrecorded(unrecorded) => {
                        (unrecorded.status, Some(unrecorded.error))
                    }
                    StepFinished::Attempted(attempted) => (attempted.status, attempted.error),
                };
                match error {
                    Some(error) => format!("{status}: {error}"),
                    None => status.to_string(),
                }
            }
            Some(AuditData::DecisionTaken(taken)) => match taken.reason {
                Some(reason) => format!("{}: “{reason}”", taken.decision),
                None => taken.decision.to_string(),
            },
            Some(AuditData::RunCancelled(Some(cancelled))) => format!("“{}”", cancelled.reason),
            Some(AuditData::NoteAdded(note)) => note.text,
            Some(AuditData::RoleAssigned(holder) | AuditData::RoleUnassigned(holder)) => {
                format!("{} → {}", holder.role, holder.person)
            }
            Some(AuditData::RunFinished(finished)) => finished.status.to_string(),
            _ => String::new(),
        };
        text.push_str(&format!(
            "| {} | {} | {} | {} | {} |\n",
            crate::page::absolute(event.at),
            cell(&event.actor.to_string()),
            event.action,
            event.step_id.as_deref().unwrap_or(""),
            cell(&details)
        ));
    }
    Ok(([(header::CONTENT_TYPE, "text/markdown; charset=utf-8")], text).into_response())
}

/// "- Rehearsed: median 11m, p90 13m (5 runs before this one); rto 15m": the whole procedure
/// in the succeeded drills and live runs that started before `run`.
async fn rehearsed(state: &AppState, run: &RunRecord) -> Result<String, AppError> {
    let query = RehearsalQuery {
        before: Some(run.created_at),
        steps: false,
        ..RehearsalQuery::of(&run.runbook)
    };
    let figures = figures(state, &query).await?;
    let runbook = state.engine.runbook(&run.runbook, run.version).await?;
    let rto = runbook.rto.map(|rto| format!("; rto {}", figure(rto.as_std()))).unwrap_or_default();
    Ok(match &figures.whole {
        Some(whole) => format!(
            "- Rehearsed: median {}, p90 {} ({} before this one){rto}\n",
            figure(whole.median),
            figure(whole.p90),
            match figures.rehearsals {
                1 => "1 run".to_owned(),
                n => format!("{n} runs"),
            }
        ),
        None => format!("- Rehearsed: never before this run{rto}\n"),
    })
}
