-- Proposals: runs an alert proposed (status `proposed`), which hold no lock and run nothing
-- until a person takes command.
--
-- What a run acts on, as alerts are matched to runs (`RunRecord::subject` in the engine):
-- `lock:HASH` of its lock key, or `params:RUNBOOK:HASH` for a run without a lock; NULL for a
-- dry run. Runs started before this migration have none: alerts propose beside them.
ALTER TABLE runs ADD COLUMN subject TEXT;
CREATE INDEX runs_subject ON runs (subject);

-- One open proposal per subject, whichever node receives the alerts and however many
-- deliveries race: the second insert is refused, and the alert is added to the first.
CREATE UNIQUE INDEX runs_open_proposal ON runs (subject) WHERE status = 'proposed';

-- For a proposal made with `then: dry-run`: the dry run that gathered its facts.
ALTER TABLE runs ADD COLUMN dry_run_id TEXT;
