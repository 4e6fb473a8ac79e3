-- Airlock's store on PostgreSQL: the same tables and columns as the SQLite store's
-- migrations produce (except that events are one row per event, not blocks).
-- Timestamps are RFC 3339 UTC text exactly as the gateway prints them (fixed width,
-- so text order is time order); JSON columns are text, kept byte for byte because
-- event hashes are over the stored text. Text columns that are compared or sorted use
-- the "C" collation, so that they order by bytes as SQLite does, whatever the
-- database's locale.

CREATE TABLE tokens (
    name         TEXT COLLATE "C" PRIMARY KEY,
    token_hash   TEXT NOT NULL UNIQUE,     -- hex SHA-256 of the token; the token itself is never stored
    groups       TEXT NOT NULL,            -- JSON array of group names
    created_at   TEXT NOT NULL,
    expires_at   TEXT,
    revoked_at   TEXT,
    last_used_at TEXT
);

-- Marks: what each session showed (set, never cleared, as its events are stored).
CREATE TABLE sessions (
    id          TEXT COLLATE "C" PRIMARY KEY,  -- UUIDv7
    principal   TEXT COLLATE "C",              -- NULL when authentication failed
    target      TEXT COLLATE "C" NOT NULL,
    protocol    TEXT NOT NULL,
    client_addr TEXT NOT NULL,
    started_at  TEXT COLLATE "C" NOT NULL,
    ended_at    TEXT,
    denied      BOOLEAN NOT NULL DEFAULT false, -- a statement, request or call denied or refused
    held        BOOLEAN NOT NULL DEFAULT false, -- something held for approval
    masked      BOOLEAN NOT NULL DEFAULT false, -- something of a result masked
    error       BOOLEAN NOT NULL DEFAULT false  -- a failed statement, target or connection
);
-- Newest first, a page at a time, by (started_at, id).
CREATE INDEX sessions_started ON sessions(started_at, id);
CREATE INDEX sessions_principal ON sessions(principal, started_at, id);
CREATE INDEX sessions_target ON sessions(target, started_at, id);

-- One row per event, all sessions in one hash chain: `id` is the chain position,
-- `prev_hash` the previous row's `hash`, `hash` an HMAC over this row and `prev_hash`.
CREATE TABLE events (
    id         BIGINT PRIMARY KEY,
    session_id TEXT COLLATE "C" NOT NULL,
    seq        BIGINT NOT NULL,            -- position within the session, from 1
    at         TEXT NOT NULL,
    kind       TEXT NOT NULL,
    statement  TEXT,
    decision   TEXT,
    detail     TEXT NOT NULL,              -- JSON object, as hashed
    prev_hash  TEXT NOT NULL,
    hash       TEXT NOT NULL
);
CREATE INDEX events_session ON events(session_id, seq);

-- Recorder journal segments whose every record is stored in this database.
CREATE TABLE recorder_segments (
    segment     BIGINT PRIMARY KEY,
    ingested_at TEXT NOT NULL
);

-- Approval requests for held statements, used at most once ('approved' -> 'used').
CREATE TABLE approvals (
    id              TEXT COLLATE "C" PRIMARY KEY,  -- UUIDv7
    status          TEXT NOT NULL,         -- pending | approved | denied | expired | used
    session_id      TEXT NOT NULL,
    principal       TEXT NOT NULL,
    target          TEXT NOT NULL,
    protocol        TEXT NOT NULL,
    statement       TEXT NOT NULL,
    params          TEXT NOT NULL,         -- JSON array, as recorded
    digest          TEXT NOT NULL,         -- hex SHA-256 of the exact statement and parameters
    policy_version  TEXT NOT NULL,
    policies        TEXT NOT NULL,         -- JSON array of policy ids
    approver_group  TEXT NOT NULL,
    reason          TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    expires_at      TEXT COLLATE "C" NOT NULL,
    decided_by      TEXT,
    decided_at      TEXT,
    comment         TEXT,
    used_at         TEXT,
    used_in_session TEXT
);
CREATE INDEX approvals_lookup ON approvals(principal, target, digest, status);
CREATE INDEX approvals_status ON approvals(status, expires_at);

-- The encrypted secret store: AES-256-GCM sealed values, never in clear.
CREATE TABLE secrets (
    name       TEXT COLLATE "C" PRIMARY KEY,
    nonce      TEXT NOT NULL,              -- hex, 12 bytes
    ciphertext TEXT NOT NULL,              -- hex, value + 16-byte tag
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
-- `key_check`: a fixed marker sealed with the master key.
CREATE TABLE vault_meta (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- Pinned MCP tools: each tool's fingerprint as first listed, and the one listed last
-- when it differs (a change waiting for `airlock mcp tools accept`).
CREATE TABLE mcp_tools (
    target             TEXT COLLATE "C" NOT NULL,
    name               TEXT COLLATE "C" NOT NULL,
    pinned_digest      TEXT NOT NULL,
    pinned_description TEXT NOT NULL,
    listed_digest      TEXT,            -- NULL: the last listing matched the pin
    listed_description TEXT,
    first_seen         TEXT NOT NULL,
    changed_at         TEXT,
    accepted_at        TEXT,
    PRIMARY KEY (target, name)
);
