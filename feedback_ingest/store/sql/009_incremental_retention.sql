-- Incremental derived tables and retention of raw events (see feedback_ingest/store/derived.py
-- and retention.py).
--
-- seq: the order in which the store took each event (one sequence over both tables). The
-- derived tables remember the highest seq they have folded in (derived_state.watermark), so a
-- refresh reads only the lists with newer events. Existing rows are numbered by the ALTER.
--
-- Per-list state of the lists still in the hot store (deleted with the list by retention):
--   list_facts     served product of a list: absolute position, grade of its strongest bound
--                  action, and the gain of its bound actions inside the attribution window;
--   list_outcomes  a list's online nDCG@10 and actions inside the window, and its interleaving
--                  credit per team (control_version NULL: not a creditable interleaved list);
--   capped_lists   (007) whose list it is and whether its session counts it.
-- Kept across retention, so the training data never depends on the raw events still being hot:
--   judgments (002), judged_lists (client and session of each judged list, for the IPS caps),
--   qp_counts and click_counts (additive counts per query and product, and per position on
--   first pages, over every counted list ever), session_archived (lists of a session already
--   archived, so its later lists keep their rank).
-- Archive bookkeeping: archive_plan holds the rows of a retention batch between choosing them
-- and deleting them (empty unless a batch was interrupted); archive_files lists the Parquet
-- files whose rows have left the hot store (committed with the delete); archived_offsets keeps
-- the highest Kafka offset per partition that was archived.

CREATE SEQUENCE event_seq START 1;
ALTER TABLE queries ADD COLUMN seq BIGINT DEFAULT nextval('event_seq');
ALTER TABLE interactions ADD COLUMN seq BIGINT DEFAULT nextval('event_seq');

CREATE TABLE derived_state (
    id                INTEGER PRIMARY KEY CHECK (id = 1),
    store_id          VARCHAR NOT NULL,
    watermark         BIGINT NOT NULL,
    list_settings     VARCHAR,
    training_settings VARCHAR,  -- NULL: the training tables are behind the per-list rows
    online_since      TIMESTAMPTZ
);
INSERT INTO derived_state VALUES (1, gen_random_uuid()::VARCHAR, 0, NULL, NULL, NULL);

CREATE TABLE list_facts (
    query_id      VARCHAR NOT NULL,
    product_id    VARCHAR NOT NULL,
    position      INTEGER NOT NULL,
    grade         INTEGER NOT NULL,
    clicked       BOOLEAN NOT NULL,
    added_to_cart BOOLEAN NOT NULL,
    purchased     BOOLEAN NOT NULL,
    window_gain   INTEGER
);

CREATE TABLE list_outcomes (
    query_id        VARCHAR NOT NULL,
    ts              TIMESTAMPTZ NOT NULL,
    model_version   VARCHAR NOT NULL,
    arm             VARCHAR NOT NULL,
    norm_query      VARCHAR NOT NULL,
    n_results       INTEGER NOT NULL,
    ndcg_at_10      DOUBLE NOT NULL,
    clicked         BOOLEAN NOT NULL,
    added_to_cart   BOOLEAN NOT NULL,
    purchased       BOOLEAN NOT NULL,
    control_version VARCHAR,
    treatment       INTEGER,
    control         INTEGER
);

CREATE TABLE judged_lists (
    query_id VARCHAR PRIMARY KEY,
    client   VARCHAR NOT NULL,
    session  VARCHAR NOT NULL
);

CREATE TABLE qp_counts (
    norm_query   VARCHAR NOT NULL,
    product_id   VARCHAR NOT NULL,
    impressions  BIGINT NOT NULL,
    clicks       BIGINT NOT NULL,
    add_to_carts BIGINT NOT NULL,
    purchases    BIGINT NOT NULL,
    PRIMARY KEY (norm_query, product_id)
);

CREATE TABLE click_counts (
    norm_query VARCHAR NOT NULL,
    product_id VARCHAR NOT NULL,
    position   INTEGER NOT NULL,
    shown      BIGINT NOT NULL,
    engaged    BIGINT NOT NULL,
    PRIMARY KEY (norm_query, product_id, position)
);

CREATE TABLE session_archived (
    session VARCHAR PRIMARY KEY,
    lists   BIGINT NOT NULL
);

CREATE SEQUENCE archive_batches START 1;

CREATE TABLE archive_plan (
    tbl     VARCHAR NOT NULL,
    key     VARCHAR NOT NULL,
    day     DATE NOT NULL,
    batch   BIGINT NOT NULL,
    horizon TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (tbl, key)
);

CREATE TABLE archive_files (
    path        VARCHAR PRIMARY KEY,
    tbl         VARCHAR NOT NULL,
    day         DATE NOT NULL,
    batch       BIGINT NOT NULL,
    rows        BIGINT NOT NULL,
    min_ts      TIMESTAMPTZ,
    max_ts      TIMESTAMPTZ,
    archived_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp
);

CREATE TABLE archived_offsets (
    source_partition INTEGER PRIMARY KEY,
    max_offset       BIGINT NOT NULL
);

-- list_products now reads the materialised facts of the hot lists, not the raw events.
DROP VIEW list_products;

CREATE VIEW list_products AS
SELECT q.query_id,
       q.norm_query,
       q.model_version,
       q.arm,
       q.page,
       q.ts,
       q.session_id,
       c.client,
       f.product_id,
       f.position,
       f.grade,
       f.clicked,
       f.added_to_cart,
       f.purchased
FROM list_facts AS f
JOIN queries AS q ON q.query_id = f.query_id
JOIN capped_lists AS c ON c.query_id = f.query_id AND c.counted;

-- Derived rows of the old full rebuild: the first refresh derives everything again (watermark 0).
DELETE FROM capped_lists;
DELETE FROM judgments;

-- The tables a refresh rewrites whole lose their primary keys (their rows are unique by
-- construction): DuckDB keeps an ART index per key, and deleting every row of an indexed table
-- then inserting the same keys cost five times the refresh itself at COMMIT (22 s against 4 s
-- on 25,000 lists). The columns and checks are those of migrations 002, 004 and 005.
DROP TABLE propensities;
CREATE TABLE propensities (
    position     INTEGER NOT NULL CHECK (position >= 1),
    propensity   DOUBLE NOT NULL CHECK (propensity > 0 AND propensity <= 1),
    method       VARCHAR NOT NULL CHECK (method IN ('em', 'fallback')),
    observations BIGINT NOT NULL,
    estimated_at TIMESTAMPTZ NOT NULL
);

DROP TABLE query_product_stats;
CREATE TABLE query_product_stats (
    norm_query   VARCHAR NOT NULL,
    product_id   VARCHAR NOT NULL,
    impressions  BIGINT NOT NULL,
    clicks       BIGINT NOT NULL,
    add_to_carts BIGINT NOT NULL,
    purchases    BIGINT NOT NULL,
    max_grade    INTEGER,
    ips_weight   DOUBLE NOT NULL
);

DROP TABLE training_pairs;
CREATE TABLE training_pairs (
    norm_query  VARCHAR NOT NULL,
    positive_id VARCHAR NOT NULL,
    negative_id VARCHAR NOT NULL,
    grade       INTEGER NOT NULL,
    weight      DOUBLE NOT NULL
);

DROP TABLE online_metrics;
CREATE TABLE online_metrics (
    query_id      VARCHAR NOT NULL,
    ts            TIMESTAMPTZ NOT NULL,
    model_version VARCHAR NOT NULL,
    arm           VARCHAR NOT NULL,
    norm_query    VARCHAR NOT NULL,
    n_results     INTEGER NOT NULL,
    ndcg_at_10    DOUBLE NOT NULL,
    clicked       BOOLEAN NOT NULL,
    added_to_cart BOOLEAN NOT NULL,
    purchased     BOOLEAN NOT NULL
);

DROP TABLE online_metrics_by_arm;
CREATE TABLE online_metrics_by_arm (
    model_version          VARCHAR NOT NULL,
    arm                    VARCHAR NOT NULL,
    lists                  BIGINT NOT NULL,
    mean_ndcg_at_10        DOUBLE NOT NULL,
    ndcg_at_10_stderr      DOUBLE,
    ndcg_at_10_lower       DOUBLE,
    ndcg_at_10_upper       DOUBLE,
    ctr_at_10              DOUBLE NOT NULL,
    ctr_at_10_lower        DOUBLE NOT NULL,
    ctr_at_10_upper        DOUBLE NOT NULL,
    add_to_cart_rate       DOUBLE NOT NULL,
    add_to_cart_rate_lower DOUBLE NOT NULL,
    add_to_cart_rate_upper DOUBLE NOT NULL,
    purchase_rate          DOUBLE NOT NULL,
    purchase_rate_lower    DOUBLE NOT NULL,
    purchase_rate_upper    DOUBLE NOT NULL,
    first_ts               TIMESTAMPTZ NOT NULL,
    last_ts                TIMESTAMPTZ NOT NULL
);

DROP TABLE interleaving_wins;
CREATE TABLE interleaving_wins (
    model_version   VARCHAR NOT NULL,
    control_version VARCHAR NOT NULL,
    lists           BIGINT NOT NULL,
    engaged_lists   BIGINT NOT NULL,
    wins            BIGINT NOT NULL,
    losses          BIGINT NOT NULL,
    ties            BIGINT NOT NULL,
    first_ts        TIMESTAMPTZ NOT NULL,
    last_ts         TIMESTAMPTZ NOT NULL,
    CHECK (wins + losses + ties = engaged_lists AND engaged_lists <= lists)
);
