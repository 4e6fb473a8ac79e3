-- Airlock's encrypted secret store (`secret:NAME` references). Values are AES-256-GCM
-- sealed with the master key, with the name as associated data; never stored in clear.
CREATE TABLE secrets (
    name       TEXT PRIMARY KEY,
    nonce      TEXT NOT NULL,              -- hex, 12 bytes
    ciphertext TEXT NOT NULL,              -- hex, value + 16-byte tag
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
-- `key_check`: a fixed marker sealed with the master key, so that a wrong key is told
-- apart from a damaged value even when no secret is stored yet.
CREATE TABLE vault_meta (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
