-- Records the ingest could not read because its stored offset was outside the partition's log:
-- behind the log start (retention deleted them), past the log end (the log was truncated or
-- the broker lost it), or in a topic that was deleted and created again (a new topic id).
-- The ingest resumes at the log start; records_lost is what is known to be gone: exact behind
-- the log start, otherwise a lower bound or NULL when unknown. topic_ids remembers the id
-- each topic had when it was read.

CREATE SEQUENCE offset_gap_ids START 1;

CREATE TABLE offset_gaps (
    id             BIGINT PRIMARY KEY DEFAULT nextval('offset_gap_ids'),
    topic          VARCHAR NOT NULL,
    partition      INTEGER NOT NULL,
    stored_offset  BIGINT NOT NULL,
    log_start      BIGINT,
    log_end        BIGINT,
    kind           VARCHAR NOT NULL
                   CHECK (kind IN ('behind_log_start', 'past_log_end', 'topic_recreated')),
    records_lost   BIGINT CHECK (records_lost >= 0),
    resumed_at     BIGINT NOT NULL CHECK (resumed_at >= 0),
    detected_at    TIMESTAMPTZ NOT NULL DEFAULT current_timestamp
);

CREATE TABLE topic_ids (
    topic      VARCHAR PRIMARY KEY,
    topic_id   VARCHAR NOT NULL,
    seen_at    TIMESTAMPTZ NOT NULL DEFAULT current_timestamp
);
