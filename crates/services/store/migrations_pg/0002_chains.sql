-- Several recording gateways: each extends a chain of its own, which owns the event ids
-- [chain << 44, (chain + 1) << 44) (see src/chains.rs). Chain 0 is a single writer's
-- (or what was imported from SQLite); replicas are given 1, 2, … from this sequence.
CREATE SEQUENCE recorder_chains START 1;

-- The store's own settings: values every gateway using the store must agree on, such
-- as `audit_key_check` (a fixed text hashed with the audit key).
CREATE TABLE settings (
    name  TEXT COLLATE "C" PRIMARY KEY,
    value TEXT NOT NULL
);
