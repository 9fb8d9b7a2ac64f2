//! JSON shapes of the API and the CLI's `--json`, built explicitly from engine types so that
//! the engine's types can change without changing what callers see.

use serde_json::{Value, json};
use steady_engine::Diagnostic;
use steady_engine::accounts::{ApiToken, User};
use steady_engine::audit::{AuditEvent, format_timestamp};
use steady_engine::run::{RunRecord, RunSnapshot, RunbookVersion};

/// A run without its steps, as listed.
pub fn run(run: &RunRecord) -> Value {
    json!({
        "id": run.id,
        "runbook": run.runbook,
        "version": run.version,
        "sha256": run.sha256,
        "mode": run.mode.as_str(),
        "status": run.status.as_str(),
        "phase": run.phase.as_str(),
        "started_by": run.started_by.as_str(),
        "commander": run.commander.as_str(),
        "params": run.params,
        "lock": run.lock_key,
        "created_at": format_timestamp(run.created_at),
        "finished_at": run.finished_at.map(format_timestamp),
        "lease": run.lease.as_ref().map(|lease| json!({"owner": lease.owner, "expires_at": format_timestamp(lease.expires_at)})),
    })
}

/// A whole run: steps, attempts with their output, votes, role holders and notes.
pub fn snapshot(snapshot: &RunSnapshot) -> Value {
    let steps: Vec<Value> = snapshot
        .steps
        .iter()
        .map(|step| {
            let attempts: Vec<Value> = snapshot
                .attempts
                .iter()
                .filter(|a| a.step_id == step.step_id)
                .map(|a| {
                    json!({
                        "number": a.number,
                        "status": a.status.map(|s| s.as_str()),
                        "started_at": a.started_at.map(format_timestamp),
                        "finished_at": a.finished_at.map(format_timestamp),
                        "exit_code": a.exit_code,
                        "http_status": a.http_status,
                        "stdout": a.stdout,
                        "stderr": a.stderr,
                        "stdout_truncated": a.stdout_truncated,
                        "stderr_truncated": a.stderr_truncated,
                        "json": a.json,
                        "error": a.error,
                    })
                })
                .collect();
            let votes: Vec<Value> = snapshot
                .votes
                .iter()
                .filter(|v| v.step_id == step.step_id)
                .map(|v| {
                    json!({
                        "actor": v.actor.as_str(),
                        "approve": v.approve,
                        "comment": v.comment,
                        "digest": v.digest,
                        "at": format_timestamp(v.at),
                        "void": v.void,
                    })
                })
                .collect();
            json!({
                "id": step.step_id,
                "phase": step.phase.as_str(),
                "status": step.status.as_str(),
                "attempt": step.attempt,
                "started_at": step.started_at.map(format_timestamp),
                "finished_at": step.finished_at.map(format_timestamp),
                "deadline": step.deadline.map(format_timestamp),
                "escalated_to": step.escalated_to,
                "rendered": step.rendered,
                "note": step.note,
                "completed_by": step.completed_by.as_ref().map(|a| a.as_str()),
                "attempts": attempts,
                "votes": votes,
            })
        })
        .collect();
    let mut run = run(&snapshot.run);
    run["steps"] = Value::Array(steps);
    run["assignments"] = snapshot
        .assignments
        .iter()
        .map(|a| json!({"role": a.role, "person": a.person.as_str()}))
        .collect();
    run["notes"] = snapshot
        .notes
        .iter()
        .map(|n| json!({"author": n.author.as_str(), "step": n.step_id, "text": n.text, "at": format_timestamp(n.at)}))
        .collect();
    run
}

/// A runbook version, with its source when asked for.
pub fn runbook_version(version: &RunbookVersion, with_source: bool) -> Value {
    let mut value = json!({
        "name": version.name,
        "version": version.version,
        "sha256": version.sha256,
        "published_by": version.published_by.as_str(),
        "published_at": format_timestamp(version.published_at),
    });
    if with_source {
        value["source"] = Value::String(version.source.clone());
    }
    value
}

/// Validation diagnostics with their line and column.
pub fn diagnostics(diagnostics: &[Diagnostic]) -> Value {
    diagnostics
        .iter()
        .map(|d| json!({ "severity": d.severity.as_str(), "line": d.at.line, "column": d.at.column, "message": d.message }))
        .collect()
}

pub fn audit_event(event: &AuditEvent) -> Value {
    json!({
        "seq": event.seq,
        "id": event.id,
        "at": format_timestamp(event.at),
        "actor": event.actor.as_str(),
        "action": event.action,
        "run_id": event.run_id,
        "step_id": event.step_id,
        "data": event.data,
        "prev_hash": event.prev_hash,
        "hash": event.hash,
    })
}

pub fn user(user: &User) -> Value {
    json!({
        "name": user.name,
        "roles": user.roles.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
        "disabled": user.disabled,
        "created_at": format_timestamp(user.created_at),
    })
}

/// A server node on this database: `up` when it said it was alive recently, `this` for the
/// node that answers.
pub fn node(node: &steady_engine::store::NodeRecord, up: bool, this: bool) -> Value {
    json!({
        "id": node.id,
        "address": node.address,
        "started_at": format_timestamp(node.started_at),
        "last_seen": format_timestamp(node.last_seen),
        "up": up,
        "this": this,
    })
}

pub fn token(token: &ApiToken) -> Value {
    json!({
        "id": token.id,
        "label": token.label,
        "user": token.user,
        "created_at": format_timestamp(token.created_at),
        "revoked_at": token.revoked_at.map(format_timestamp),
    })
}

/// The columns of the audit log's CSV export.
pub const AUDIT_CSV_HEADER: [&str; 10] =
    ["seq", "id", "at", "actor", "action", "run_id", "step_id", "data", "prev_hash", "hash"];

/// One audit event as a CSV record, in the order of `AUDIT_CSV_HEADER`.
pub fn audit_csv_record(event: &AuditEvent) -> [String; 10] {
    [
        event.seq.to_string(),
        event.id.to_string(),
        format_timestamp(event.at),
        event.actor.as_str().to_owned(),
        event.action.clone(),
        event.run_id.map(|id| id.to_string()).unwrap_or_default(),
        event.step_id.clone().unwrap_or_default(),
        event.data.to_string(),
        event.prev_hash.clone(),
        event.hash.clone(),
    ]
    .map(defuse_formula)
}

/// A field a spreadsheet would run as a formula gets a leading quote.
fn defuse_formula(field: String) -> String {
    if field.starts_with(['=', '+', '-', '@']) { format!("'{field}") } else { field }
}

/// Audit events as export text: JSON Lines, or CSV records (without the header).
pub fn audit_export(events: &[AuditEvent], csv: bool) -> String {
    if !csv {
        return events.iter().map(|event| format!("{}\n", audit_event(event))).collect();
    }
    let mut writer = ::csv::Writer::from_writer(Vec::new());
    for event in events {
        // Writing into memory cannot fail.
        let _ = writer.write_record(audit_csv_record(event));
    }
    String::from_utf8(writer.into_inner().unwrap_or_default()).unwrap_or_default()
}

/// The CSV header line of the export.
pub fn audit_csv_header() -> String {
    let mut writer = ::csv::Writer::from_writer(Vec::new());
    let _ = writer.write_record(AUDIT_CSV_HEADER);
    String::from_utf8(writer.into_inner().unwrap_or_default()).unwrap_or_default()
}

/// One line for a rendered action (a step's `rendered`), as people read it.
pub fn describe_action(rendered: &Value) -> String {
    match rendered["kind"].as_str() {
        // Quoted as a shell would need it, so that argument boundaries show.
        Some("run") => rendered["argv"]
            .as_array()
            .map(|argv| {
                let argv: Vec<&str> = argv.iter().filter_map(Value::as_str).collect();
                shlex::try_join(argv.iter().copied()).unwrap_or_else(|_| argv.join(" "))
            })
            .unwrap_or_default(),
        Some("shell") => rendered["command"].as_str().unwrap_or_default().to_owned(),
        Some("http") => format!(
            "{} {}",
            rendered["method"].as_str().unwrap_or_default(),
            rendered["url"].as_str().unwrap_or_default()
        ),
        Some("check") => format!("check {}", rendered["expression"].as_str().unwrap_or_default()),
        Some("manual") => format!(
            "manual ({}): {}",
            rendered["role"].as_str().unwrap_or_default(),
            rendered["instructions"].as_str().unwrap_or_default().trim()
        ),
        Some("approval") => format!(
            "approval by {} x{}{}",
            rendered["role"].as_str().unwrap_or_default(),
            rendered["approvals"],
            rendered["prompt"].as_str().map(|p| format!(": {p}")).unwrap_or_default()
        ),
        Some("sleep") => format!("sleep {}", rendered["duration"].as_str().unwrap_or_default()),
        _ => rendered.to_string(),
    }
}
