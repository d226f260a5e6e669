-- Team-draft interleaved lists (arm 'interleaved'): the model version that contributed each
-- served result (parallel to results) and the production version the canary was compared with.
-- Both are NULL for lists served by one model. interleaving_wins is derived (see
-- sql/derived/interleaving_wins.sql).

ALTER TABLE queries ADD COLUMN teams VARCHAR[];
ALTER TABLE queries ADD COLUMN control_version VARCHAR;

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
    PRIMARY KEY (model_version, control_version),
    CHECK (wins + losses + ties = engaged_lists AND engaged_lists <= lists)
);
