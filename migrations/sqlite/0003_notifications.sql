-- Notifications are read from the audit log, which is their durable outbox: each target keeps
-- the seq of the last event it was sent, so nothing is lost while it is down.
CREATE TABLE notification_cursors (
    target     TEXT    PRIMARY KEY,
    after_seq  INTEGER NOT NULL
);
