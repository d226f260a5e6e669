-- Online quality of each counted hot list whose attribution window has closed
-- ($now >= ts + window) and that was served at or after $since (the retention horizon; NULL:
-- every list). The per-list figures are in list_outcomes (list_outcomes.sql).
-- Caps: only counted lists (capped_lists), and no client more than $max_client_share of a
-- (model_version, arm)'s lists, or $min_client_lists, whichever is more (its earliest lists).
INSERT INTO online_metrics
WITH closed AS (
    SELECT o.*, c.client
    FROM list_outcomes AS o
    JOIN capped_lists AS c ON c.query_id = o.query_id AND c.counted
    WHERE o.ts + to_seconds($window_s) <= $now
      AND o.ts >= coalesce(CAST($since AS TIMESTAMPTZ), '-infinity'::TIMESTAMPTZ)
),
ranked AS (
    SELECT *,
           row_number() OVER (
               PARTITION BY model_version, arm, client ORDER BY ts, query_id
           ) AS client_rank,
           count(*) OVER (PARTITION BY model_version, arm) AS arm_lists
    FROM closed
),
capped AS (
    SELECT * FROM ranked
    WHERE client_rank <= greatest($min_client_lists, $max_client_share * arm_lists)
)
SELECT query_id, ts, model_version, arm, norm_query, n_results, ndcg_at_10, clicked,
       added_to_cart, purchased
FROM capped
ORDER BY query_id;
