-- The web console's state, shared by every gateway on the store so that a person
-- signed in through one replica is signed in on all of them. Both tables are
-- ephemeral (hours, minutes): `airlock store export` leaves them out.
--
-- Signed-in browsers, by the hex SHA-256 of their cookie (the cookie itself is never
-- stored, and the sign-in's CSRF token is derived from the cookie, so it is not
-- stored either).
CREATE TABLE console_signins (
    key_hash       TEXT COLLATE "C" PRIMARY KEY,
    principal_name TEXT COLLATE "C" NOT NULL,
    principal      TEXT NOT NULL,          -- JSON: name, groups, source, expires_at
    created_at     TEXT COLLATE "C" NOT NULL,
    expires_at     TEXT COLLATE "C" NOT NULL
);
CREATE INDEX console_signins_expiry ON console_signins(expires_at);
CREATE INDEX console_signins_principal ON console_signins(principal_name, created_at);

-- OIDC sign-ins in progress, by the hex SHA-256 of their `state`, used once. The
-- PKCE verifier stays in the browser's flow cookie: only its S256 challenge (which
-- the provider was sent anyway) is kept, to check the cookie's verifier against.
CREATE TABLE console_flows (
    key_hash   TEXT COLLATE "C" PRIMARY KEY,
    nonce      TEXT NOT NULL,
    challenge  TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT COLLATE "C" NOT NULL
);
CREATE INDEX console_flows_expiry ON console_flows(expires_at);
