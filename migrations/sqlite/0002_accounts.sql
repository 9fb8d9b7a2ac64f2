-- Accounts: users with global roles, server-side sessions and API tokens.

CREATE TABLE users (
    name           TEXT    PRIMARY KEY,
    roles          TEXT    NOT NULL,
    password_hash  TEXT,
    disabled       INTEGER NOT NULL,
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
