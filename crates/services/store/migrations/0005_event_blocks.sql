-- Events move into blocks: one row per session per recorder ingest batch, holding that
-- session's events of the batch as a JSON array of objects with the old columns'
-- names (`session_id` is the block's). One row per event cost the gateway a sixth of
-- its CPU under load; see docs/performance.md. `events`, now a view, still shows one
-- row per event:  SELECT * FROM events WHERE session_id = '...' ORDER BY id;
-- Every event of a block has an id in [first_id, first_id + 65536).
CREATE TABLE event_blocks (
    first_id   INTEGER PRIMARY KEY,        -- chain position of the block's first event
    last_id    INTEGER NOT NULL,           -- and of its last
    session_id TEXT NOT NULL,
    events     TEXT NOT NULL               -- JSON array: {id, seq, at, kind, statement, decision, detail, prev_hash, hash}
);
CREATE INDEX event_blocks_session ON event_blocks(session_id, first_id);

INSERT INTO event_blocks (first_id, last_id, session_id, events)
SELECT id, id, session_id,
       json_array(json_object('id', id, 'seq', seq, 'at', at, 'kind', kind,
                              'statement', statement, 'decision', decision,
                              'detail', detail, 'prev_hash', prev_hash, 'hash', hash))
FROM events ORDER BY id;

DROP TABLE events;

CREATE VIEW events AS
SELECT json_extract(e.value, '$.id')        AS id,
       b.session_id                         AS session_id,
       json_extract(e.value, '$.seq')       AS seq,
       json_extract(e.value, '$.at')        AS at,
       json_extract(e.value, '$.kind')      AS kind,
       json_extract(e.value, '$.statement') AS statement,
       json_extract(e.value, '$.decision')  AS decision,
       json_extract(e.value, '$.detail')    AS detail,
       json_extract(e.value, '$.prev_hash') AS prev_hash,
       json_extract(e.value, '$.hash')      AS hash
FROM event_blocks AS b, json_each(b.events) AS e;
