-- Tables that feedback_ingest.store.derived rebuilds from the events in one transaction
-- (DELETE + INSERT, so readers of the file never see a half-built set).

CREATE TABLE propensities (
    position     INTEGER PRIMARY KEY CHECK (position >= 1),
    propensity   DOUBLE NOT NULL CHECK (propensity > 0 AND propensity <= 1),
    method       VARCHAR NOT NULL CHECK (method IN ('em', 'fallback')),
    observations BIGINT NOT NULL,
    estimated_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE judgments (
    query_id      VARCHAR NOT NULL,
    norm_query    VARCHAR NOT NULL,
    product_id    VARCHAR NOT NULL,
    grade         INTEGER NOT NULL CHECK (grade BETWEEN 0 AND 3),
    position      INTEGER,
    model_version VARCHAR NOT NULL,
    arm           VARCHAR NOT NULL,
    ts            TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (query_id, product_id)
);

CREATE TABLE query_product_stats (
    norm_query   VARCHAR NOT NULL,
    product_id   VARCHAR NOT NULL,
    impressions  BIGINT NOT NULL,
    clicks       BIGINT NOT NULL,
    add_to_carts BIGINT NOT NULL,
    purchases    BIGINT NOT NULL,
    max_grade    INTEGER,
    ips_weight   DOUBLE NOT NULL,
    PRIMARY KEY (norm_query, product_id)
);

CREATE TABLE training_pairs (
    norm_query  VARCHAR NOT NULL,
    positive_id VARCHAR NOT NULL,
    negative_id VARCHAR NOT NULL,
    grade       INTEGER NOT NULL,
    weight      DOUBLE NOT NULL,
    PRIMARY KEY (norm_query, positive_id, negative_id)
);

CREATE TABLE online_metrics (
    query_id      VARCHAR PRIMARY KEY,
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

CREATE TABLE online_metrics_by_arm (
    model_version    VARCHAR NOT NULL,
    arm              VARCHAR NOT NULL,
    lists            BIGINT NOT NULL,
    mean_ndcg_at_10  DOUBLE NOT NULL,
    ctr_at_10        DOUBLE NOT NULL,
    add_to_cart_rate DOUBLE NOT NULL,
    purchase_rate    DOUBLE NOT NULL,
    first_ts         TIMESTAMPTZ NOT NULL,
    last_ts          TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (model_version, arm)
);
