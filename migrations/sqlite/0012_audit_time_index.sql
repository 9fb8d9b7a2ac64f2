-- The index on an audit event's time is dropped: SQLite never used it (a time filter is read
-- in `seq` order, which is the order events are written in), and every event a driver writes,
-- two a step, paid one more page to sync for it.
DROP INDEX IF EXISTS audit_events_at;
