-- The store's own settings: values every gateway using the store must agree on, such
-- as `audit_key_check` (a fixed text hashed with the audit key, so that a gateway whose
-- key differs from the one the chain was recorded with is refused at start).
CREATE TABLE settings (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
