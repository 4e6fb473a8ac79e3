-- What each session showed, for the console's and the CLI's filters: set (never
-- cleared) as its events are stored, so that "sessions with a denial" is a lookup, not
-- a scan of every event. 0 or 1.
ALTER TABLE sessions ADD COLUMN denied INTEGER NOT NULL DEFAULT 0;  -- a statement, request or call denied or refused
ALTER TABLE sessions ADD COLUMN held   INTEGER NOT NULL DEFAULT 0;  -- something held for approval
ALTER TABLE sessions ADD COLUMN masked INTEGER NOT NULL DEFAULT 0;  -- something of a result masked
ALTER TABLE sessions ADD COLUMN error  INTEGER NOT NULL DEFAULT 0;  -- a failed statement, target or connection

-- Sessions recorded before this migration, from their events.
UPDATE sessions SET
    denied = EXISTS (SELECT 1 FROM events e WHERE e.session_id = sessions.id
                     AND (e.decision = 'deny' OR e.kind IN ('refused', 'auth_failure'))),
    held   = EXISTS (SELECT 1 FROM events e WHERE e.session_id = sessions.id
                     AND (e.decision = 'hold' OR e.kind = 'approval')),
    masked = EXISTS (SELECT 1 FROM events e WHERE e.session_id = sessions.id
                     AND e.kind IN ('result', 'message', 'disconnect')
                     AND json_type(e.detail, '$.masked') = 'object'
                     AND json_extract(e.detail, '$.masked') != '{}'),
    error  = EXISTS (SELECT 1 FROM events e WHERE e.session_id = sessions.id
                     AND (e.kind = 'connect_failure'
                          OR (e.kind IN ('result', 'message', 'disconnect')
                              AND json_type(e.detail, '$.error') IS NOT NULL
                              AND json_type(e.detail, '$.error') NOT IN ('false', 'null'))
                          OR (e.kind = 'result' AND json_extract(e.detail, '$.status') >= 500)));

-- Newest first, a page at a time: the console's lists seek these indexes by
-- (started_at, id) instead of counting rows.
DROP INDEX sessions_started_at;
CREATE INDEX sessions_started ON sessions(started_at, id);
CREATE INDEX sessions_principal ON sessions(principal, started_at, id);
CREATE INDEX sessions_target ON sessions(target, started_at, id);
