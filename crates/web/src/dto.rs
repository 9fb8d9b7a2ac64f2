//! JSON shapes shared by several resources and the CLI's `--json` (runs, audit events,
//! diagnostics) and the schemas of closed sets, built explicitly from engine types so that the
//! engine's types can change without changing what callers see. Shapes only one resource
//! sends live beside its handlers.

use serde::Serialize;
use serde_json::Value;
use steady_engine::Diagnostic;
use steady_engine::accounts::GlobalRole;
use steady_engine::audit::{AuditEvent, format_timestamp};
use steady_engine::plan::{Action, Rendered};
use steady_engine::run::{
    Decision, Phase, RunMode, RunOrigin, RunRecord, RunSnapshot, RunStatus, StepState, StepStatus,
};
use steady_engine::runbook::Step;
use utoipa::ToSchema;
use utoipa::openapi::schema::{Object, ObjectBuilder, SchemaType, Type};
use uuid::Uuid;

/// A closed set of names as a string schema with an `enum`, taken from the engine's own list so
/// that the document cannot drift from what the server accepts and answers.
pub(crate) fn names_schema(
    names: impl IntoIterator<Item = &'static str>,
    nullable: bool,
) -> Object {
    let mut values: Vec<Value> = names.into_iter().map(Value::from).collect();
    let schema_type = if nullable {
        values.push(Value::Null);
        SchemaType::from_iter([Type::String, Type::Null])
    } else {
        SchemaType::new(Type::String)
    };
    ObjectBuilder::new().schema_type(schema_type).enum_values(Some(values)).build()
}

pub(crate) fn run_status_schema() -> Object {
    names_schema(RunStatus::ALL.iter().map(|s| s.as_str()), false)
}

pub(crate) fn run_mode_schema() -> Object {
    names_schema(RunMode::ALL.iter().map(|m| m.as_str()), false)
}

pub(crate) fn run_origin_schema() -> Object {
    names_schema(RunOrigin::ALL.iter().map(|o| o.as_str()), false)
}

/// A run's mode as people read it wherever runs are listed or shown: `dry-run · verification`
/// for a verification, the mode alone otherwise.
pub fn mode_label(run: &RunRecord) -> String {
    match run.origin {
        RunOrigin::Person => run.mode.to_string(),
        RunOrigin::Verification => format!("{} · verification", run.mode),
        RunOrigin::Trigger => format!("{} · alert", run.mode),
    }
}

pub(crate) fn phase_schema() -> Object {
    names_schema(Phase::ALL.iter().map(|p| p.as_str()), false)
}

pub(crate) fn step_status_schema() -> Object {
    names_schema(StepStatus::ALL.iter().map(|s| s.as_str()), false)
}

pub(crate) fn nullable_step_status_schema() -> Object {
    names_schema(StepStatus::ALL.iter().map(|s| s.as_str()), true)
}

pub(crate) fn decision_schema() -> Object {
    names_schema(Decision::ALL.iter().map(|d| d.as_str()), false)
}

pub(crate) fn global_role_schema() -> Object {
    names_schema(GlobalRole::ALL.iter().map(|r| r.as_str()), false)
}

/// A list of global roles, each from the closed set.
pub(crate) fn global_roles_schema() -> utoipa::openapi::schema::Array {
    utoipa::openapi::schema::Array::new(global_role_schema())
}

/// A run without its steps, as listed.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunView {
    #[schema(value_type = String, format = "uuid")]
    pub id: Uuid,
    pub runbook: String,
    /// The runbook version the run follows, for good.
    pub version: u32,
    /// The SHA-256 of that version's source.
    pub sha256: String,
    #[schema(schema_with = run_mode_schema)]
    pub mode: &'static str,
    /// `person` when someone started it; `verification` when Steady did, as a dry run on the
    /// runbook's `verify` schedule.
    #[schema(schema_with = run_origin_schema)]
    pub origin: &'static str,
    #[schema(schema_with = run_status_schema)]
    pub status: &'static str,
    /// `main` until the run rolls back.
    #[schema(schema_with = phase_schema)]
    pub phase: &'static str,
    /// `user:NAME`, `local:NAME` or `steady`.
    pub started_by: String,
    pub commander: String,
    /// Parameter values by name.
    #[schema(value_type = Object)]
    pub params: Value,
    /// The rendered lock key, when the runbook declares one. A proposal holds it only once
    /// someone takes command.
    pub lock: Option<String>,
    /// For a proposal whose trigger said `then: dry-run`: the dry run that gathered its facts.
    #[schema(value_type = Option<String>, format = "uuid")]
    pub dry_run: Option<uuid::Uuid>,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub finished_at: Option<String>,
    /// Which process drives the run, while one does.
    pub lease: Option<LeaseView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LeaseView {
    pub owner: String,
    #[schema(format = DateTime)]
    pub expires_at: String,
}

impl RunView {
    pub fn new(run: &RunRecord) -> RunView {
        RunView {
            id: run.id,
            runbook: run.runbook.clone(),
            version: run.version,
            sha256: run.sha256.clone(),
            mode: run.mode.as_str(),
            origin: run.origin.as_str(),
            status: run.status.as_str(),
            phase: run.phase.as_str(),
            started_by: run.started_by.to_string(),
            commander: run.commander.to_string(),
            params: serde_json::to_value(&run.params).unwrap_or_default(),
            lock: run.lock_key.clone(),
            dry_run: run.dry_run,
            created_at: format_timestamp(run.created_at),
            finished_at: run.finished_at.map(format_timestamp),
            lease: run.lease.as_ref().map(|lease| LeaseView {
                owner: lease.owner.clone(),
                expires_at: format_timestamp(lease.expires_at),
            }),
        }
    }
}

/// A whole run: steps, attempts with their output, votes, role holders and notes.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunDetail {
    #[serde(flatten)]
    pub run: RunView,
    pub steps: Vec<StepView>,
    pub assignments: Vec<AssignmentView>,
    pub notes: Vec<NoteView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StepView {
    pub id: String,
    #[schema(schema_with = phase_schema)]
    pub phase: &'static str,
    #[schema(schema_with = step_status_schema)]
    pub status: &'static str,
    /// The attempt under way or last made; 0 before the first.
    pub attempt: u32,
    #[schema(format = DateTime)]
    pub started_at: Option<String>,
    #[schema(format = DateTime)]
    pub finished_at: Option<String>,
    /// When a gate times out.
    #[schema(format = DateTime)]
    pub deadline: Option<String>,
    /// The role a timed-out gate passed to.
    pub escalated_to: Option<String>,
    /// The rendered command, request or instructions, secrets masked.
    #[schema(value_type = Option<Object>)]
    pub rendered: Option<Value>,
    pub note: Option<String>,
    pub completed_by: Option<String>,
    /// For a branch of a `parallel` group or an item of a fan-out: the id of its group step,
    /// by which a client groups them (children are listed after the top-level steps).
    pub parent: Option<String>,
    /// For an item of a fan-out: the item, as the `for_each` expression yielded it (any JSON
    /// value, most often a string).
    #[schema(value_type = Option<Value>)]
    pub item: Option<Value>,
    pub attempts: Vec<AttemptView>,
    pub votes: Vec<VoteView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AttemptView {
    pub number: u32,
    #[schema(schema_with = nullable_step_status_schema)]
    pub status: Option<&'static str>,
    #[schema(format = DateTime)]
    pub started_at: Option<String>,
    #[schema(format = DateTime)]
    pub finished_at: Option<String>,
    pub exit_code: Option<i32>,
    pub http_status: Option<u16>,
    pub stdout: String,
    pub stderr: String,
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
    /// The output parsed as JSON, when it was JSON.
    pub json: Option<Value>,
    pub error: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct VoteView {
    pub actor: String,
    pub approve: bool,
    pub comment: Option<String>,
    /// What the approval is bound to: the digest of the parameters and the guarded actions.
    pub digest: String,
    #[schema(format = DateTime)]
    pub at: String,
    /// The guarded actions rendered differently when they were about to run.
    pub void: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AssignmentView {
    pub role: String,
    pub person: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NoteView {
    pub author: String,
    pub step: Option<String>,
    pub text: String,
    #[schema(format = DateTime)]
    pub at: String,
}

impl RunDetail {
    pub fn new(snapshot: &RunSnapshot) -> RunDetail {
        let steps = snapshot
            .steps
            .iter()
            .map(|step| StepView {
                id: step.step_id.clone(),
                phase: step.phase.as_str(),
                status: step.status.as_str(),
                attempt: step.attempt,
                started_at: step.started_at.map(format_timestamp),
                finished_at: step.finished_at.map(format_timestamp),
                deadline: step.deadline.map(format_timestamp),
                escalated_to: step.escalated_to.clone(),
                rendered: step.rendered.as_ref().map(Rendered::to_value),
                note: step.note.clone(),
                completed_by: step.completed_by.as_ref().map(|a| a.to_string()),
                parent: step.parent.clone(),
                item: step.item.clone(),
                attempts: snapshot
                    .attempts
                    .iter()
                    .filter(|a| a.step_id == step.step_id)
                    .map(|a| AttemptView {
                        number: a.number,
                        status: a.status.map(|s| s.as_str()),
                        started_at: a.started_at.map(format_timestamp),
                        finished_at: a.finished_at.map(format_timestamp),
                        exit_code: a.exit_code,
                        http_status: a.http_status,
                        stdout: a.stdout.clone(),
                        stderr: a.stderr.clone(),
                        stdout_truncated: a.stdout_truncated,
                        stderr_truncated: a.stderr_truncated,
                        json: a.json.clone(),
                        error: a.error.clone(),
                    })
                    .collect(),
                votes: snapshot
                    .votes
                    .iter()
                    .filter(|v| v.step_id == step.step_id)
                    .map(|v| VoteView {
                        actor: v.actor.to_string(),
                        approve: v.approve,
                        comment: v.comment.clone(),
                        digest: v.digest.clone(),
                        at: format_timestamp(v.at),
                        void: v.void,
                    })
                    .collect(),
            })
            .collect();
        RunDetail {
            run: RunView::new(&snapshot.run),
            steps,
            assignments: snapshot
                .assignments
                .iter()
                .map(|a| AssignmentView { role: a.role.clone(), person: a.person.to_string() })
                .collect(),
            notes: snapshot
                .notes
                .iter()
                .map(|n| NoteView {
                    author: n.author.to_string(),
                    step: n.step_id.clone(),
                    text: n.text.clone(),
                    at: format_timestamp(n.at),
                })
                .collect(),
        }
    }
}

/// A run without its steps, as the CLI's `--json` prints it.
pub fn run(run: &RunRecord) -> Value {
    serde_json::to_value(RunView::new(run)).unwrap_or_default()
}

/// A whole run, as the CLI's `--json` prints it.
pub fn snapshot(snapshot: &RunSnapshot) -> Value {
    serde_json::to_value(RunDetail::new(snapshot)).unwrap_or_default()
}

/// A validation diagnostic with its line and column.
#[derive(Debug, Serialize, ToSchema)]
pub struct DiagnosticView {
    #[schema(schema_with = severity_schema)]
    pub severity: &'static str,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

fn severity_schema() -> Object {
    names_schema(["error", "warning"], false)
}

/// Validation diagnostics with their line and column.
pub fn diagnostics(diagnostics: &[Diagnostic]) -> Value {
    let views: Vec<DiagnosticView> = diagnostics
        .iter()
        .map(|d| DiagnosticView {
            severity: d.severity.as_str(),
            line: d.at.line,
            column: d.at.column,
            message: d.message.clone(),
        })
        .collect();
    serde_json::to_value(views).unwrap_or_default()
}

/// One event of the audit chain.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEventView {
    pub seq: i64,
    #[schema(value_type = String, format = "uuid")]
    pub id: Uuid,
    #[schema(format = DateTime)]
    pub at: String,
    pub actor: String,
    pub action: String,
    #[schema(value_type = Option<String>, format = "uuid")]
    pub run_id: Option<Uuid>,
    pub step_id: Option<String>,
    /// What happened; step output by SHA-256, not inline.
    pub data: Value,
    pub prev_hash: String,
    /// SHA-256 over `prev_hash` and the canonical JSON of the other fields.
    pub hash: String,
}

impl AuditEventView {
    pub fn new(event: &AuditEvent) -> AuditEventView {
        AuditEventView {
            seq: event.seq,
            id: event.id,
            at: format_timestamp(event.at),
            actor: event.actor.to_string(),
            action: event.action.clone(),
            run_id: event.run_id,
            step_id: event.step_id.clone(),
            data: event.data.clone(),
            prev_hash: event.prev_hash.clone(),
            hash: event.hash.clone(),
        }
    }
}

pub fn audit_event(event: &AuditEvent) -> Value {
    serde_json::to_value(AuditEventView::new(event)).unwrap_or_default()
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
        event.actor.to_string(),
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

/// One line for a step's `rendered`, as people read it: its action, or the condition a dry run
/// could not evaluate, as its JSON.
pub fn describe_rendered(rendered: &Rendered) -> String {
    match rendered {
        Rendered::Action(action) => describe_action(action),
        Rendered::Condition(_) | Rendered::Stored(_) => rendered.to_string(),
    }
}

/// One line for a rendered action, as people read it.
pub fn describe_action(action: &Action) -> String {
    match action {
        // Quoted as a shell would need it, so that argument boundaries show.
        Action::Run { argv } => {
            shlex::try_join(argv.iter().map(String::as_str)).unwrap_or_else(|_| argv.join(" "))
        }
        Action::Shell { command } => command.clone(),
        Action::Http { method, url, .. } => format!("{method} {url}"),
        Action::Check { expression } => format!("check {expression}"),
        Action::Manual { role, instructions } => {
            format!("manual ({role}): {}", instructions.trim())
        }
        Action::Approval { role, approvals, prompt, .. } => format!(
            "approval by {role} x{approvals}{}",
            prompt.as_ref().map(|p| format!(": {p}")).unwrap_or_default()
        ),
        Action::Sleep { duration } => format!("sleep {duration}"),
        Action::Parallel { branches } => format!("at once: {}", branches.join(", ")),
        Action::ForEach { items, concurrency, max_failures } => format!(
            "for each of {} items, at most {concurrency} at once, stop after {max_failures} failed",
            items.len()
        ),
    }
}

/// What a gate lets run, in full: an `http` step as the request it sends (method and URL,
/// each header, then its body, secrets masked as the run stored them), any other action in
/// one line as `describe_action` writes it.
pub fn describe_guarded(action: &Action) -> String {
    let Action::Http { method, url, headers, json, body } = action else {
        return describe_action(action);
    };
    let mut request = format!("{method} {url}");
    for (name, value) in headers {
        request.push_str(&format!("\n{name}: {value}"));
    }
    let body = match json {
        Some(json) => serde_json::to_string_pretty(json).ok(),
        None => body.clone(),
    };
    if let Some(body) = body {
        request.push_str(&format!("\n\n{body}"));
    }
    request
}

/// A fan-out's `as` name made plural for "5 of 12 hosts": only a name of three letters or more
/// that does not already end in "s" gets an "s" ("host" → "hosts"); any other ("i", "ip",
/// "address", "hosts") would read wrong, so the items are "items".
fn plural_of(name: &str) -> String {
    if name.chars().count() >= 3 && !name.ends_with(['s', 'S']) {
        format!("{name}s")
    } else {
        "items".to_owned()
    }
}

/// A group step's progress in words, as the run page and `steady show` say it: "17 of 40
/// hosts, 2 running, 1 failed, limit 2" for a fan-out (its `as` name made plural when that is
/// safe, see [`plural_of`]), "1 of 2 branches done" for a `parallel` group; children whose
/// driver died are counted apart ("2 interrupted"): they did not fail, though they await the
/// same decision. `children` are the group's step states.
pub fn group_progress(step: &Step, group: &StepState, children: &[&StepState]) -> String {
    let interrupted = |s: StepStatus| s == StepStatus::Interrupted;
    let over = |s: StepStatus| {
        s.is_passed() || s.is_failure() || interrupted(s) || s == StepStatus::Cancelled
    };
    let count = |test: &dyn Fn(StepStatus) -> bool| {
        children.iter().filter(|child| test(child.status)).count()
    };
    let done = count(&|s| s.is_passed());
    let failed = count(&|s| s.is_failure());
    let interrupted = match count(&interrupted) {
        0 => String::new(),
        n => format!(", {n} interrupted"),
    };
    let Some(fan_out) = &step.fan_out else {
        let total = step.branches().len();
        let ended = count(&over);
        let noun = if total == 1 { "branch" } else { "branches" };
        let failures = if failed > 0 { format!(", {failed} failed") } else { String::new() };
        return format!("{ended} of {total} {noun} done{failures}{interrupted}");
    };
    let noun = plural_of(&fan_out.name);
    let total = match &group.rendered {
        Some(Rendered::Action(Action::ForEach { items, .. })) => items.len(),
        _ => children.len(),
    };
    if group.rendered.is_none() && children.is_empty() {
        return format!("{noun} known when it starts, limit {}", fan_out.max_failures);
    }
    let running = count(&|s| !over(s) && s != StepStatus::Pending);
    let running = if running > 0 { format!(", {running} running") } else { String::new() };
    let limit = fan_out.max_failures.allowed(total);
    format!("{done} of {total} {noun}{running}, {failed} failed{interrupted}, limit {limit}")
}

#[cfg(test)]
mod tests;
