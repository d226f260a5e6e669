-- Raw events as consumed from Kafka, dead letters and the consumer's offsets.
-- Timestamps are TIMESTAMPTZ; the store's connections run with TimeZone = 'UTC'.

CREATE TABLE queries (
    query_id         VARCHAR PRIMARY KEY,
    ts               TIMESTAMPTZ NOT NULL,
    user_query       VARCHAR NOT NULL,
    norm_query       VARCHAR NOT NULL,
    session_id       VARCHAR,
    client_id        VARCHAR,
    model_version    VARCHAR NOT NULL,
    arm              VARCHAR NOT NULL,
    mode             VARCHAR NOT NULL,
    page             INTEGER NOT NULL,
    filters          JSON,
    results          VARCHAR[] NOT NULL,
    source_partition INTEGER,
    source_offset    BIGINT,
    ingested_at      TIMESTAMPTZ NOT NULL DEFAULT current_timestamp
);

CREATE TABLE interactions (
    event_id         VARCHAR PRIMARY KEY,
    query_id         VARCHAR NOT NULL,
    action           VARCHAR NOT NULL
                     CHECK (action IN ('impression', 'click', 'add_to_cart', 'purchase')),
    product_id       VARCHAR NOT NULL,
    position         INTEGER CHECK (position >= 1),
    session_id       VARCHAR,
    client_id        VARCHAR,
    ts               TIMESTAMPTZ NOT NULL,
    model_version    VARCHAR,
    arm              VARCHAR,
    source_partition INTEGER,
    source_offset    BIGINT,
    ingested_at      TIMESTAMPTZ NOT NULL DEFAULT current_timestamp
);

CREATE SEQUENCE dead_letter_ids START 1;

CREATE TABLE dead_letters (
    id               BIGINT PRIMARY KEY DEFAULT nextval('dead_letter_ids'),
    topic            VARCHAR NOT NULL,
    source_partition INTEGER,
    source_offset    BIGINT,
    reason_code      VARCHAR NOT NULL,
    reason           VARCHAR NOT NULL,
    raw              BLOB,
    raw_truncated    BOOLEAN NOT NULL DEFAULT false,
    received_at      TIMESTAMPTZ NOT NULL,
    UNIQUE (topic, source_partition, source_offset)
);

CREATE TABLE consumer_offsets (
    topic       VARCHAR NOT NULL,
    partition   INTEGER NOT NULL,
    next_offset BIGINT NOT NULL CHECK (next_offset >= 0),
    updated_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (topic, partition)
);
