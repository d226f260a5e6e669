-- Team-draft interleaving outcomes per (canary model_version, control_version), counted on
-- creditable interleaved hot lists whose attribution window has closed ($now >= ts + window)
-- and served at or after $since, as online_metrics does, with the same caps: counted lists
-- only, and no client more than $max_client_share of a pair's lists or $min_client_lists,
-- whichever is more. The credit of each list is in list_outcomes (list_outcomes.sql). A list
-- is a win for model_version when its team has more credit, a loss when fewer, a tie when both
-- have equal non-zero credit; lists without engagement count in lists only.
INSERT INTO interleaving_wins BY NAME
WITH closed AS (
    SELECT o.query_id, o.ts, o.model_version, o.control_version, o.treatment, o.control,
           c.client
    FROM list_outcomes AS o
    JOIN capped_lists AS c ON c.query_id = o.query_id AND c.counted
    WHERE o.arm = 'interleaved'
      AND o.control_version IS NOT NULL
      AND o.ts + to_seconds($window_s) <= $now
      AND o.ts >= coalesce(CAST($since AS TIMESTAMPTZ), '-infinity'::TIMESTAMPTZ)
),
ranked AS (
    SELECT *,
           row_number() OVER (
               PARTITION BY model_version, control_version, client ORDER BY ts, query_id
           ) AS client_rank,
           count(*) OVER (PARTITION BY model_version, control_version) AS pair_lists
    FROM closed
),
capped AS (
    SELECT * FROM ranked
    WHERE client_rank <= greatest($min_client_lists, $max_client_share * pair_lists)
)
SELECT model_version, control_version,
       count(*) AS lists,
       count(*) FILTER (WHERE treatment + control > 0) AS engaged_lists,
       count(*) FILTER (WHERE treatment > control) AS wins,
       count(*) FILTER (WHERE treatment < control) AS losses,
       count(*) FILTER (WHERE treatment = control AND treatment > 0) AS ties,
       min(ts) AS first_ts,
       max(ts) AS last_ts
FROM capped
GROUP BY model_version, control_version;
