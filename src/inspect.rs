//! `steady runs` and `steady show`: what happened, for people and (with `--json`) for tools.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use steady_engine::audit::format_timestamp;
use steady_engine::run::{RunFilter, RunOrigin, RunSnapshot, RunStatus, StepState, StepStatus};
use steady_engine::runbook::{Runbook, item_text};
use steady_web::dto;

use crate::app::{App, DbArgs};
use crate::terminal::{badge, out, run_badge, say};

#[derive(Debug, clap::Args)]
pub struct RunsArgs {
    /// Only runs with this status.
    #[arg(long, value_parser = parse_status)]
    status: Option<RunStatus>,
    /// Only runs of this runbook.
    #[arg(long)]
    runbook: Option<String>,
    /// Only runs of this origin: `person`, `verification` (Steady's scheduled dry runs) or
    /// `trigger` (proposals alerts made, and the dry runs gathering their facts).
    #[arg(long, value_parser = parse_origin)]
    origin: Option<RunOrigin>,
    /// At most this many runs.
    #[arg(long, default_value_t = 50)]
    limit: u32,
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    db: DbArgs,
}

fn parse_status(text: &str) -> Result<RunStatus, String> {
    text.parse().map_err(|_| {
        let names: Vec<&str> = RunStatus::ALL.iter().map(|s| s.as_str()).collect();
        format!("use one of {}", names.join(", "))
    })
}

fn parse_origin(text: &str) -> Result<RunOrigin, String> {
    text.parse().map_err(|_| "use person, verification or trigger".to_owned())
}

#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    /// The run's id, or a unique prefix of it.
    run: String,
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    db: DbArgs,
}

pub async fn runs(args: RunsArgs) -> anyhow::Result<ExitCode> {
    let app = App::open(&args.db).await?;
    let filter = RunFilter {
        status: args.status,
        runbook: args.runbook.clone(),
        origin: args.origin,
        limit: Some(args.limit),
        ..RunFilter::default()
    };
    let runs = app.store.runs(&filter).await?;
    if args.json {
        let runs: Vec<_> = runs.iter().map(dto::run).collect();
        out(&format!("{}\n", serde_json::to_string_pretty(&runs)?));
        return Ok(ExitCode::SUCCESS);
    }
    if runs.is_empty() {
        say!("no runs");
    }
    for run in &runs {
        say!(
            "{}  {:<20} {:<24} v{:<3} {:<8} {}  by {}",
            run.id,
            run_badge(run.status),
            run.runbook,
            run.version,
            dto::mode_label(run),
            run.created_at.format("%Y-%m-%d %H:%M:%S"),
            run.commander
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn show(args: ShowArgs) -> anyhow::Result<ExitCode> {
    let app = App::open(&args.db).await?;
    let run_id = app.resolve_run(&args.run).await?;
    let snapshot = app.store.run(run_id).await?.with_context(|| format!("no run {run_id}"))?;
    if args.json {
        out(&format!("{}\n", serde_json::to_string_pretty(&dto::snapshot(&snapshot))?));
    } else {
        // The runbook only words a group's progress: a run whose version cannot be read is
        // still shown.
        let runbook = app.engine.runbook(&snapshot.run.runbook, snapshot.run.version).await.ok();
        print_snapshot(&snapshot, runbook);
    }
    Ok(ExitCode::SUCCESS)
}

/// "1.25s": how long an attempt or an item took.
fn seconds(took: chrono::TimeDelta) -> String {
    format!("{:.2}s", took.num_milliseconds() as f64 / 1000.0)
}

/// One step (or a branch, `indent`ed under its group): its status and id, then its details.
fn print_step(snapshot: &RunSnapshot, step: &StepState, indent: &str) {
    let phase = if step.phase.as_str() == "rollback" { "rollback " } else { "" };
    say!("{indent}{phase}{:<16} {}", badge(step.status), step.step_id);
    print_details(snapshot, step, indent);
}

/// What a step did: its rendered action, note, votes and attempts with their output.
fn print_details(snapshot: &RunSnapshot, step: &StepState, indent: &str) {
    if let Some(rendered) = &step.rendered {
        say!("{indent}      does  {}", dto::describe_rendered(rendered));
    }
    if let Some(note) = &step.note {
        say!("{indent}      note  {note}");
    }
    if let Some(by) = &step.completed_by {
        say!("{indent}      by    {by}");
    }
    for vote in snapshot.votes.iter().filter(|v| v.step_id == step.step_id) {
        let verdict = if vote.approve { "approved" } else { "rejected" };
        let void = if vote.void { " (void: the guarded step changed)" } else { "" };
        let comment = vote.comment.as_deref().map(|c| format!(": {c}")).unwrap_or_default();
        say!("{indent}      {verdict} by {}{comment}{void}", vote.actor);
    }
    for attempt in snapshot.attempts.iter().filter(|a| a.step_id == step.step_id) {
        let duration = match (attempt.started_at, attempt.finished_at) {
            (Some(start), Some(end)) => seconds(end - start),
            _ => "-".to_owned(),
        };
        let status = attempt.status.map(|s| s.as_str()).unwrap_or("?");
        let code = attempt.exit_code.map(|c| format!(", exit {c}")).unwrap_or_default();
        let http = attempt.http_status.map(|c| format!(", HTTP {c}")).unwrap_or_default();
        say!("{indent}      attempt {} {status} in {duration}{code}{http}", attempt.number);
        if let Some(error) = &attempt.error {
            say!("{indent}        error   {error}");
        }
        for (name, text, truncated) in [
            ("stdout", &attempt.stdout, attempt.stdout_truncated),
            ("stderr", &attempt.stderr, attempt.stderr_truncated),
        ] {
            if text.is_empty() {
                continue;
            }
            let lines: Vec<&str> = text.lines().collect();
            let shown = lines.len().min(20);
            for (index, line) in lines[..shown].iter().enumerate() {
                say!("{indent}        {:<7} {line}", if index == 0 { name } else { "" });
            }
            if lines.len() > shown || truncated {
                say!(
                    "{indent}                (more in `steady show --json`{})",
                    if truncated { "; truncated at 1 MiB" } else { "" }
                );
            }
        }
    }
}

/// The run as people read it; `runbook`, when it could be read, words each group's progress.
fn print_snapshot(snapshot: &RunSnapshot, runbook: Option<Arc<Runbook>>) {
    let run = &snapshot.run;
    say!("run {}  {}", run.id, run_badge(run.status));
    say!(
        "runbook    {} version {} ({})",
        run.runbook,
        run.version,
        &run.sha256[..12.min(run.sha256.len())]
    );
    say!(
        "mode       {}{}",
        dto::mode_label(run),
        if run.phase.as_str() == "rollback" { ", rolling back" } else { "" }
    );
    say!("commander  {} (started by {})", run.commander, run.started_by);
    if let Some(lock) = &run.lock_key {
        say!("lock       {lock}");
    }
    if let Some(lease) = &run.lease {
        say!("driven by  {} (lease until {})", lease.owner, format_timestamp(lease.expires_at));
    }
    for assignment in &snapshot.assignments {
        say!("role       {} = {}", assignment.role, assignment.person);
    }
    say!("started    {}", format_timestamp(run.created_at));
    if let Some(finished) = run.finished_at {
        say!("finished   {}", format_timestamp(finished));
    }
    say!();
    // Each group's branches and items are printed under it, indented, never on their own.
    for step in snapshot.steps.iter().filter(|step| step.parent.is_none()) {
        print_step(snapshot, step, "");
        let children: Vec<&StepState> = snapshot.children(&step.step_id).collect();
        let written = runbook.as_deref().and_then(|runbook| runbook.find_step(&step.step_id));
        if let Some(written) = written.filter(|written| written.has_children()) {
            say!("      progress {}", dto::group_progress(written, step, &children));
        }
        for child in children {
            match &child.item {
                // A fan-out may have hundreds of items: one line each, and the output only
                // of those that need someone's attention.
                Some(item) => {
                    let took = match (child.started_at, child.finished_at) {
                        (Some(start), Some(end)) => seconds(end - start),
                        _ => String::new(),
                    };
                    say!("    {:<16} {:<24} {took}", badge(child.status), item_text(item));
                    if child.status.is_failure() || child.status == StepStatus::Interrupted {
                        print_details(snapshot, child, "    ");
                    }
                }
                None => print_step(snapshot, child, "    "),
            }
        }
    }
    for note in &snapshot.notes {
        say!("note by {} at {}: {}", note.author, format_timestamp(note.at), note.text);
    }
}
