-- Why a run exists: `person` (someone started it) or `verification` (Steady, on the runbook's
-- `verify` schedule). Every run before this migration was a person's.
ALTER TABLE runs ADD COLUMN origin TEXT NOT NULL DEFAULT 'person';

-- A runbook's runs, newest first: the runbooks page and verifications read runs by runbook,
-- and a runbook verified every minute has many.
CREATE INDEX runs_runbook ON runs (runbook, created_at);

-- The periods of each runbook's `verify` schedule, each claimed by the one node that starts
-- its verification: the primary key lets exactly one claim through.
CREATE TABLE verification_slots (
    runbook     TEXT NOT NULL,
    slot_start  TEXT NOT NULL,
    node        TEXT NOT NULL,
    run_id      TEXT NOT NULL,
    claimed_at  TEXT NOT NULL,
    PRIMARY KEY (runbook, slot_start)
);

-- Where each runbook's verification stands: the latest result and, while verifications fail,
-- the first failure since the last pass. Written with the change that ends a verification.
CREATE TABLE verifications (
    runbook         TEXT    PRIMARY KEY,
    version         BIGINT  NOT NULL,
    at              TEXT    NOT NULL,
    passed          BOOLEAN NOT NULL,
    run_id          TEXT,
    failing_since   TEXT,
    failing_run_id  TEXT,
    failing_step    TEXT,
    failing_reason  TEXT
);
