-- One node at a time delivers to a notification target, like a run's lease: several nodes
-- (or a node and its replacement) must not each send every message.
ALTER TABLE notification_cursors ADD COLUMN owner TEXT;
ALTER TABLE notification_cursors ADD COLUMN owner_expires_at TEXT;
