-- Approval requests for held statements. An approval is bound to principal, target,
-- digest and policy version, and is used at most once (status 'approved' -> 'used').
CREATE TABLE approvals (
    id              TEXT PRIMARY KEY,      -- UUIDv7
    status          TEXT NOT NULL,         -- pending | approved | denied | expired | used
    session_id      TEXT NOT NULL,
    principal       TEXT NOT NULL,
    target          TEXT NOT NULL,
    protocol        TEXT NOT NULL,
    statement       TEXT NOT NULL,         -- as recorded (masked where the session masks)
    params          TEXT NOT NULL,         -- JSON array, as recorded
    digest          TEXT NOT NULL,         -- hex SHA-256 of the exact statement and parameters
    policy_version  TEXT NOT NULL,
    policies        TEXT NOT NULL,         -- JSON array of policy ids
    approver_group  TEXT NOT NULL,
    reason          TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    expires_at      TEXT NOT NULL,
    decided_by      TEXT,
    decided_at      TEXT,
    comment         TEXT,
    used_at         TEXT,
    used_in_session TEXT
);
CREATE INDEX approvals_lookup ON approvals(principal, target, digest, status);
CREATE INDEX approvals_status ON approvals(status, expires_at);
