-- online_metrics_by_arm gains 95% intervals: a normal interval (mean +- 1.96 standard errors)
-- for mean nDCG@10, NULL below two lists, and Wilson score intervals for the three rates.
-- The table is derived (rebuilt on every refresh), so it is recreated rather than altered.

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
    last_ts                TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (model_version, arm)
);
