-- Airlock's store: plain tables an operator can read with sqlite3.
-- Timestamps are RFC 3339 UTC text; JSON columns are text.

CREATE TABLE tokens (
    name         TEXT PRIMARY KEY,
    token_hash   TEXT NOT NULL UNIQUE,     -- hex SHA-256 of the token; the token itself is never stored
    groups       TEXT NOT NULL,            -- JSON array of group names
    created_at   TEXT NOT NULL,
    expires_at   TEXT,
    revoked_at   TEXT,
    last_used_at TEXT
);

CREATE TABLE sessions (
    id          TEXT PRIMARY KEY,          -- UUIDv7
    principal   TEXT,                      -- NULL when authentication failed
    target      TEXT NOT NULL,
    protocol    TEXT NOT NULL,
    client_addr TEXT NOT NULL,
    started_at  TEXT NOT NULL,
    ended_at    TEXT
);
CREATE INDEX sessions_started_at ON sessions(started_at);

-- One row per event, all sessions in one hash chain: `id` is the chain position,
-- `prev_hash` the previous row's `hash`, `hash` an HMAC over this row and `prev_hash`.
CREATE TABLE events (
    id         INTEGER PRIMARY KEY,
    session_id TEXT NOT NULL,
    seq        INTEGER NOT NULL,           -- position within the session, from 1
    at         TEXT NOT NULL,
    kind       TEXT NOT NULL,
    statement  TEXT,
    decision   TEXT,
    detail     TEXT NOT NULL,              -- JSON object
    prev_hash  TEXT NOT NULL,
    hash       TEXT NOT NULL
);
CREATE INDEX events_session ON events(session_id, seq);
