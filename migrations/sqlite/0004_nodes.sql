-- Server nodes say they are alive here, so that every node and the admin page can see which
-- are up: several `steady serve` processes may share one database.
CREATE TABLE nodes (
    id          TEXT PRIMARY KEY,
    address     TEXT NOT NULL,
    started_at  TEXT NOT NULL,
    last_seen   TEXT NOT NULL
);
