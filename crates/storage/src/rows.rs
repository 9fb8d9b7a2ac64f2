//! Stored rows read back into engine records, the same for every backend: both schemas keep
//! ids, timestamps and JSON as text, counts as integers and flags as booleans.

use steady_engine::accounts::{ApiToken, GlobalRole, Session, User};
use steady_engine::audit::AuditEvent;
use steady_engine::run::*;
use steady_engine::store::{NodeRecord, StoreError};

use crate::codec::*;

pub(crate) fn runbook_version(row: &impl Columns) -> Result<RunbookVersion, StoreError> {
    Ok(RunbookVersion {
        name: row.text("name")?,
        version: unsigned(row.integer("version")?)?,
        sha256: row.text("sha256")?,
        source: row.text("source")?,
        published_by: actor(&row.text("published_by")?)?,
        published_at: timestamp(&row.text("published_at")?)?,
        message: row.optional_text("message")?,
        tests: row.optional_text("tests")?,
    })
}

pub(crate) fn run_record(row: &impl Columns) -> Result<RunRecord, StoreError> {
    let lease = match (row.optional_text("lease_owner")?, row.optional_text("lease_expires_at")?) {
        (Some(owner), Some(expires_at)) => {
            Some(Lease { owner, expires_at: timestamp(&expires_at)? })
        }
        _ => None,
    };
    Ok(RunRecord {
        id: uuid(&row.text("id")?)?,
        runbook: row.text("runbook")?,
        version: unsigned(row.integer("version")?)?,
        sha256: row.text("sha256")?,
        mode: name(&row.text("mode")?)?,
        origin: name(&row.text("origin")?)?,
        status: name(&row.text("status")?)?,
        phase: name(&row.text("phase")?)?,
        started_by: actor(&row.text("started_by")?)?,
        commander: actor(&row.text("commander")?)?,
        params: json_from(&row.text("params")?)?,
        lock_key: row.optional_text("lock_key")?,
        created_at: timestamp(&row.text("created_at")?)?,
        updated_at: timestamp(&row.text("updated_at")?)?,
        finished_at: optional_timestamp(row.optional_text("finished_at")?)?,
        lease,
        revision: row.integer("revision")?,
        dry_run: row.optional_text("dry_run_id")?.as_deref().map(uuid).transpose()?,
    })
}

pub(crate) fn step_state(row: &impl Columns) -> Result<StepState, StoreError> {
    Ok(StepState {
        step_id: row.text("step_id")?,
        phase: name(&row.text("phase")?)?,
        position: unsigned(row.integer("position")?)?,
        status: name(&row.text("status")?)?,
        attempt: unsigned(row.integer("attempt")?)?,
        attempts_before_round: unsigned(row.integer("attempts_before_round")?)?,
        started_at: optional_timestamp(row.optional_text("started_at")?)?,
        finished_at: optional_timestamp(row.optional_text("finished_at")?)?,
        deadline: optional_timestamp(row.optional_text("deadline")?)?,
        escalated_to: row.optional_text("escalated_to")?,
        rendered: row.optional_text("rendered")?.as_deref().map(json_from).transpose()?,
        note: row.optional_text("note")?,
        completed_by: row.optional_text("completed_by")?.as_deref().map(actor).transpose()?,
        parent: row.optional_text("parent")?,
        item: row.optional_text("item")?.as_deref().map(json_from).transpose()?,
    })
}

pub(crate) fn attempt(row: &impl Columns) -> Result<Attempt, StoreError> {
    Ok(Attempt {
        step_id: row.text("step_id")?,
        number: unsigned(row.integer("number")?)?,
        status: row.optional_text("status")?.as_deref().map(name).transpose()?,
        started_at: optional_timestamp(row.optional_text("started_at")?)?,
        finished_at: optional_timestamp(row.optional_text("finished_at")?)?,
        exit_code: row
            .optional_integer("exit_code")?
            .map(|code| i32::try_from(code).map_err(|_| corrupt("exit code", &code.to_string())))
            .transpose()?,
        http_status: row.optional_integer("http_status")?.map(|s| u16::try_from(s).unwrap_or(0)),
        final_url: row.optional_text("final_url")?,
        stdout: row.text("stdout")?,
        stderr: row.text("stderr")?,
        stdout_truncated: row.flag("stdout_truncated")?,
        stderr_truncated: row.flag("stderr_truncated")?,
        json: row.optional_text("json")?.as_deref().map(json_from).transpose()?,
        error: row.optional_text("error")?,
    })
}

pub(crate) fn vote(row: &impl Columns) -> Result<Vote, StoreError> {
    Ok(Vote {
        id: uuid(&row.text("id")?)?,
        step_id: row.text("step_id")?,
        actor: actor(&row.text("actor")?)?,
        approve: row.flag("approve")?,
        comment: row.optional_text("comment")?,
        bound: json_from(&row.text("bound")?)?,
        digest: row.text("digest")?,
        at: timestamp(&row.text("at")?)?,
        void: row.flag("void")?,
    })
}

pub(crate) fn assignment(row: &impl Columns) -> Result<Assignment, StoreError> {
    Ok(Assignment { role: row.text("role")?, person: actor(&row.text("person")?)? })
}

pub(crate) fn note(row: &impl Columns) -> Result<Note, StoreError> {
    Ok(Note {
        id: uuid(&row.text("id")?)?,
        step_id: row.optional_text("step_id")?,
        author: actor(&row.text("author")?)?,
        text: row.text("text")?,
        at: timestamp(&row.text("at")?)?,
    })
}

pub(crate) fn audit_event(row: &impl Columns) -> Result<AuditEvent, StoreError> {
    AuditEvent::from_stored(&row.text("body")?, &row.text("prev_hash")?, &row.text("hash")?)
        .map_err(StoreError::Corrupt)
}

pub(crate) fn user(row: &impl Columns) -> Result<User, StoreError> {
    let roles = row.text("roles")?;
    Ok(User {
        name: row.text("name")?,
        roles: roles
            .split(',')
            .filter(|r| !r.is_empty())
            .map(name::<GlobalRole>)
            .collect::<Result<_, _>>()?,
        password_hash: row.optional_text("password_hash")?,
        disabled: row.flag("disabled")?,
        created_at: timestamp(&row.text("created_at")?)?,
    })
}

pub(crate) fn session(row: &impl Columns) -> Result<Session, StoreError> {
    Ok(Session {
        id_hash: row.text("id_hash")?,
        user: row.text("user_name")?,
        csrf_hash: row.text("csrf_token")?,
        created_at: timestamp(&row.text("created_at")?)?,
        last_seen: timestamp(&row.text("last_seen")?)?,
    })
}

pub(crate) fn token(row: &impl Columns) -> Result<ApiToken, StoreError> {
    Ok(ApiToken {
        id: uuid(&row.text("id")?)?,
        label: row.text("label")?,
        user: row.text("user_name")?,
        hash: row.text("hash")?,
        created_at: timestamp(&row.text("created_at")?)?,
        revoked_at: optional_timestamp(row.optional_text("revoked_at")?)?,
    })
}

pub(crate) fn node(row: &impl Columns) -> Result<NodeRecord, StoreError> {
    Ok(NodeRecord {
        id: row.text("id")?,
        address: row.text("address")?,
        started_at: timestamp(&row.text("started_at")?)?,
        last_seen: timestamp(&row.text("last_seen")?)?,
    })
}
