-- Steady's schema on SQLite. Released migrations are never edited: add a new file instead.
-- Timestamps are RFC 3339 text in UTC with microseconds, so that they sort as text.

CREATE TABLE runbook_versions (
    name          TEXT    NOT NULL,
    version       INTEGER NOT NULL,
    sha256        TEXT    NOT NULL,
    source        TEXT    NOT NULL,
    published_by  TEXT    NOT NULL,
    published_at  TEXT    NOT NULL,
    PRIMARY KEY (name, version)
);

CREATE TABLE runs (
    id                TEXT    PRIMARY KEY,
    runbook           TEXT    NOT NULL,
    version           INTEGER NOT NULL,
    sha256            TEXT    NOT NULL,
    mode              TEXT    NOT NULL,
    status            TEXT    NOT NULL,
    phase             TEXT    NOT NULL,
    started_by        TEXT    NOT NULL,
    commander         TEXT    NOT NULL,
    params            TEXT    NOT NULL,
    lock_key          TEXT,
    created_at        TEXT    NOT NULL,
    updated_at        TEXT    NOT NULL,
    finished_at       TEXT,
    lease_owner       TEXT,
    lease_expires_at  TEXT,
    revision          INTEGER NOT NULL,
    FOREIGN KEY (runbook, version) REFERENCES runbook_versions (name, version)
);

-- At most one active run holds a lock key, whatever its runbook.
CREATE UNIQUE INDEX runs_active_lock ON runs (lock_key)
    WHERE lock_key IS NOT NULL AND status IN ('running', 'waiting', 'needs_attention');
CREATE INDEX runs_created_at ON runs (created_at);
CREATE INDEX runs_status ON runs (status);

CREATE TABLE run_steps (
    run_id                 TEXT    NOT NULL REFERENCES runs (id),
    step_id                TEXT    NOT NULL,
    phase                  TEXT    NOT NULL,
    position               INTEGER NOT NULL,
    status                 TEXT    NOT NULL,
    attempt                INTEGER NOT NULL,
    attempts_before_round  INTEGER NOT NULL,
    started_at             TEXT,
    finished_at            TEXT,
    deadline               TEXT,
    escalated_to           TEXT,
    rendered               TEXT,
    note                   TEXT,
    completed_by           TEXT,
    PRIMARY KEY (run_id, step_id)
);
CREATE INDEX run_steps_deadline ON run_steps (deadline) WHERE deadline IS NOT NULL;

CREATE TABLE step_attempts (
    run_id            TEXT    NOT NULL REFERENCES runs (id),
    step_id           TEXT    NOT NULL,
    number            INTEGER NOT NULL,
    status            TEXT,
    started_at        TEXT,
    finished_at       TEXT,
    exit_code         INTEGER,
    http_status       INTEGER,
    stdout            TEXT    NOT NULL,
    stderr            TEXT    NOT NULL,
    stdout_truncated  INTEGER NOT NULL,
    stderr_truncated  INTEGER NOT NULL,
    json              TEXT,
    error             TEXT,
    PRIMARY KEY (run_id, step_id, number)
);

CREATE TABLE votes (
    id        TEXT    PRIMARY KEY,
    run_id    TEXT    NOT NULL REFERENCES runs (id),
    step_id   TEXT    NOT NULL,
    actor     TEXT    NOT NULL,
    approve   INTEGER NOT NULL,
    comment   TEXT,
    bound     TEXT    NOT NULL,
    digest    TEXT    NOT NULL,
    at        TEXT    NOT NULL,
    void      INTEGER NOT NULL
);
-- A person answers a gate once: a second, concurrent approval by the same person is refused.
CREATE UNIQUE INDEX votes_once_per_person ON votes (run_id, step_id, actor) WHERE void = 0;

CREATE TABLE assignments (
    run_id  TEXT NOT NULL REFERENCES runs (id),
    role    TEXT NOT NULL,
    person  TEXT NOT NULL,
    PRIMARY KEY (run_id, role, person)
);

CREATE TABLE notes (
    id       TEXT PRIMARY KEY,
    run_id   TEXT NOT NULL REFERENCES runs (id),
    step_id  TEXT,
    author   TEXT NOT NULL,
    text     TEXT NOT NULL,
    at       TEXT NOT NULL
);
CREATE INDEX notes_run ON notes (run_id);

-- An event is stored as exactly the canonical JSON its hash covers (`body`); the columns
-- used to filter are generated from it, so that none can be changed on its own.
CREATE TABLE audit_events (
    seq        INTEGER PRIMARY KEY,
    body       TEXT    NOT NULL,
    prev_hash  TEXT    NOT NULL,
    hash       TEXT    NOT NULL,
    id         TEXT    GENERATED ALWAYS AS (json_extract(body, '$.id')) VIRTUAL,
    at         TEXT    GENERATED ALWAYS AS (json_extract(body, '$.at')) VIRTUAL,
    actor      TEXT    GENERATED ALWAYS AS (json_extract(body, '$.actor')) VIRTUAL,
    action     TEXT    GENERATED ALWAYS AS (json_extract(body, '$.action')) VIRTUAL,
    run_id     TEXT    GENERATED ALWAYS AS (json_extract(body, '$.run_id')) VIRTUAL
);
CREATE INDEX audit_events_run ON audit_events (run_id);
CREATE INDEX audit_events_at ON audit_events (at);

-- The log is append-only for Steady itself; whoever bypasses this has to drop the triggers,
-- and `steady audit verify` still finds the first event they changed.
CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only');
END;
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only');
END;
