-- The test file published with a runbook version (`NAME.test.yaml`), whose cases all passed
-- before the version was stored; none when the version was published without tests.
ALTER TABLE runbook_versions ADD COLUMN tests TEXT;
