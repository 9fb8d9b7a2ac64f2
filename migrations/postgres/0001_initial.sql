-- Steady's schema on PostgreSQL, for several `steady serve` nodes on one database. Released
-- migrations are never edited: add a new file instead.
--
-- Values are kept as on SQLite, so that both stores read rows back the same way and an
-- export is the same whichever database wrote it: ids, JSON and timestamps are text
-- (RFC 3339 in UTC with microseconds, fixed width, so that they sort as text), counts are
-- BIGINT and flags BOOLEAN.

CREATE TABLE runbook_versions (
    name          TEXT   NOT NULL,
    version       BIGINT NOT NULL,
    sha256        TEXT   NOT NULL,
    source        TEXT   NOT NULL,
    published_by  TEXT   NOT NULL,
    published_at  TEXT   NOT NULL,
    PRIMARY KEY (name, version)
);

CREATE TABLE runs (
    id                TEXT   PRIMARY KEY,
    runbook           TEXT   NOT NULL,
    version           BIGINT NOT NULL,
    sha256            TEXT   NOT NULL,
    mode              TEXT   NOT NULL,
    status            TEXT   NOT NULL,
    phase             TEXT   NOT NULL,
    started_by        TEXT   NOT NULL,
    commander         TEXT   NOT NULL,
    params            TEXT   NOT NULL,
    lock_key          TEXT,
    created_at        TEXT   NOT NULL,
    updated_at        TEXT   NOT NULL,
    finished_at       TEXT,
    lease_owner       TEXT,
    lease_expires_at  TEXT,
    revision          BIGINT NOT NULL,
    FOREIGN KEY (runbook, version) REFERENCES runbook_versions (name, version)
);

-- At most one active run holds a lock key, whatever its runbook and whichever node started it.
CREATE UNIQUE INDEX runs_active_lock ON runs (lock_key)
    WHERE lock_key IS NOT NULL AND status IN ('running', 'waiting', 'needs_attention');
CREATE INDEX runs_created_at ON runs (created_at);
CREATE INDEX runs_status ON runs (status);

CREATE TABLE run_steps (
    run_id                 TEXT   NOT NULL REFERENCES runs (id),
    step_id                TEXT   NOT NULL,
    phase                  TEXT   NOT NULL,
    position               BIGINT NOT NULL,
    status                 TEXT   NOT NULL,
    attempt                BIGINT NOT NULL,
    attempts_before_round  BIGINT NOT NULL,
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
    number            BIGINT  NOT NULL,
    status            TEXT,
    started_at        TEXT,
    finished_at       TEXT,
    exit_code         BIGINT,
    http_status       BIGINT,
    stdout            TEXT    NOT NULL,
    stderr            TEXT    NOT NULL,
    stdout_truncated  BOOLEAN NOT NULL,
    stderr_truncated  BOOLEAN NOT NULL,
    json              TEXT,
    error             TEXT,
    PRIMARY KEY (run_id, step_id, number)
);

CREATE TABLE votes (
    id        TEXT    PRIMARY KEY,
    run_id    TEXT    NOT NULL REFERENCES runs (id),
    step_id   TEXT    NOT NULL,
    actor     TEXT    NOT NULL,
    approve   BOOLEAN NOT NULL,
    comment   TEXT,
    bound     TEXT    NOT NULL,
    digest    TEXT    NOT NULL,
    at        TEXT    NOT NULL,
    void      BOOLEAN NOT NULL
);
-- A person answers a gate once: a second, concurrent approval by the same person through any
-- node is refused.
CREATE UNIQUE INDEX votes_once_per_person ON votes (run_id, step_id, actor) WHERE NOT void;

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
-- used to filter are generated from it, so that none can be changed on its own. Appends
-- from every node are serialised by a transaction-level advisory lock (see the store).
CREATE TABLE audit_events (
    seq        BIGINT PRIMARY KEY,
    body       TEXT   NOT NULL,
    prev_hash  TEXT   NOT NULL,
    hash       TEXT   NOT NULL,
    id         TEXT   GENERATED ALWAYS AS (body::jsonb ->> 'id') STORED,
    at         TEXT   GENERATED ALWAYS AS (body::jsonb ->> 'at') STORED,
    actor      TEXT   GENERATED ALWAYS AS (body::jsonb ->> 'actor') STORED,
    action     TEXT   GENERATED ALWAYS AS (body::jsonb ->> 'action') STORED,
    run_id     TEXT   GENERATED ALWAYS AS (body::jsonb ->> 'run_id') STORED
);
CREATE INDEX audit_events_run ON audit_events (run_id, seq);
CREATE INDEX audit_events_at ON audit_events (at);

-- The log is append-only for Steady itself; whoever bypasses this has to drop the triggers,
-- and `steady audit verify` still finds the first event they changed.
CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only';
END
$$;
CREATE TRIGGER audit_events_no_change BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only();

-- Accounts: users with global roles, server-side sessions and API tokens.
CREATE TABLE users (
    name           TEXT    PRIMARY KEY,
    roles          TEXT    NOT NULL,
    password_hash  TEXT,
    disabled       BOOLEAN NOT NULL,
    created_at     TEXT    NOT NULL
);

-- Only hashes of session ids and token secrets are stored.
CREATE TABLE sessions (
    id_hash     TEXT PRIMARY KEY,
    user_name   TEXT NOT NULL REFERENCES users (name),
    csrf_token  TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    last_seen   TEXT NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_name);

CREATE TABLE api_tokens (
    id          TEXT PRIMARY KEY,
    label       TEXT NOT NULL,
    user_name   TEXT NOT NULL REFERENCES users (name),
    hash        TEXT NOT NULL UNIQUE,
    created_at  TEXT NOT NULL,
    revoked_at  TEXT
);

CREATE TABLE login_failures (
    user_name  TEXT NOT NULL,
    address    TEXT NOT NULL,
    at         TEXT NOT NULL
);
CREATE INDEX login_failures_user ON login_failures (user_name, at);
CREATE INDEX login_failures_address ON login_failures (address, at);

-- Notifications are read from the audit log, which is their durable outbox: each target keeps
-- the seq of the last event it was sent, so nothing is lost while it is down. One node at a
-- time delivers to a target (`owner`, until `owner_expires_at`), and the cursor only moves
-- forward.
CREATE TABLE notification_cursors (
    target            TEXT   PRIMARY KEY,
    after_seq         BIGINT NOT NULL,
    owner             TEXT,
    owner_expires_at  TEXT
);

-- Server nodes say they are alive here, so that every node and the admin page can see which
-- are up.
CREATE TABLE nodes (
    id          TEXT PRIMARY KEY,
    address     TEXT NOT NULL,
    started_at  TEXT NOT NULL,
    last_seen   TEXT NOT NULL
);
