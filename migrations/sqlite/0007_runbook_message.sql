-- What the author said changed in a runbook version (none for versions published from files).
ALTER TABLE runbook_versions ADD COLUMN message TEXT;
