-- Proposals: runs an alert proposed (status `proposed`), which hold no lock and run nothing
-- until a person takes command.
--
-- What a run acts on, as alerts are matched to runs (`RunRecord::subject` in the engine):
-- `lock:KEY`, or `params:RUNBOOK:HASH` for a run without a lock; NULL for a dry run. Runs
-- before this migration are matched by their lock key only.
ALTER TABLE runs ADD COLUMN subject TEXT;
UPDATE runs SET subject = 'lock:' || lock_key WHERE lock_key IS NOT NULL AND mode <> 'dry-run';
CREATE INDEX runs_subject ON runs (subject);

-- One open proposal per subject, whichever node receives the alerts and however many
-- deliveries race: the second insert is refused, and the alert is added to the first.
CREATE UNIQUE INDEX runs_open_proposal ON runs (subject) WHERE status = 'proposed';

-- For a proposal made with `then: dry-run`: the dry run that gathered its facts.
ALTER TABLE runs ADD COLUMN dry_run_id TEXT;
