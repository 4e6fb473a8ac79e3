-- Recorder journal segments whose every record is durable in this database; the
-- gateway deletes a segment's file right after recording it here.
CREATE TABLE recorder_segments (
    segment     INTEGER PRIMARY KEY,
    ingested_at TEXT NOT NULL
);
