-- Pinned MCP tools: the fingerprint (description and schemas) of each tool of an MCP
-- target as first listed, and the one listed last when it differs (a change waiting
-- for `airlock mcp tools accept`).
CREATE TABLE mcp_tools (
    target             TEXT NOT NULL,
    name               TEXT NOT NULL,
    pinned_digest      TEXT NOT NULL,
    pinned_description TEXT NOT NULL,
    listed_digest      TEXT,            -- NULL: the last listing matched the pin
    listed_description TEXT,
    first_seen         TEXT NOT NULL,
    changed_at         TEXT,            -- when the pending change was first seen
    accepted_at        TEXT,            -- when a change was last accepted
    PRIMARY KEY (target, name)
);
