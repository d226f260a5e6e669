-- Team-draft interleaving outcomes per (canary model_version, control_version), counted on
-- interleaved lists whose attribution window has closed ($now >= ts + window), as
-- online_metrics does, with the same caps: counted lists only, and no client more than
-- $max_client_share of a pair's lists or $min_client_lists, whichever is more.
-- Credit (Chapelle et al. 2012): each served product with any bound engagement (click,
-- add_to_cart or purchase on the product, at its served position) inside the window counts
-- once for the team that contributed it (queries.teams, parallel to results). A list is a win
-- for model_version when its team has more credit, a loss when fewer, a tie when both have
-- equal non-zero credit; lists without engagement count in lists only.
INSERT INTO interleaving_wins BY NAME
WITH closed AS (
    SELECT q.query_id, q.ts, q.model_version, q.control_version, q.results, q.teams, c.client
    FROM queries AS q
    JOIN capped_lists AS c ON c.query_id = q.query_id AND c.counted
    WHERE q.arm = 'interleaved'
      AND q.teams IS NOT NULL
      AND q.control_version IS NOT NULL
      AND len(q.teams) = len(q.results)
      AND q.ts + to_seconds($window_s) <= $now
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
),
served AS (
    SELECT query_id, unnest(results) AS product_id, unnest(teams) AS team
    FROM capped
),
engaged AS (
    SELECT DISTINCT i.query_id, i.product_id
    FROM bound_interactions AS i
    JOIN capped AS q USING (query_id)
    WHERE i.action IN ('click', 'add_to_cart', 'purchase')
      AND i.ts <= q.ts + to_seconds($window_s)
),
credit AS (
    SELECT q.query_id,
           count(e.product_id) FILTER (WHERE s.team = q.model_version) AS treatment,
           count(e.product_id) FILTER (WHERE s.team = q.control_version) AS control
    FROM capped AS q
    LEFT JOIN served AS s USING (query_id)
    LEFT JOIN engaged AS e ON e.query_id = s.query_id AND e.product_id = s.product_id
    GROUP BY q.query_id
)
SELECT q.model_version, q.control_version,
       count(*) AS lists,
       count(*) FILTER (WHERE c.treatment + c.control > 0) AS engaged_lists,
       count(*) FILTER (WHERE c.treatment > c.control) AS wins,
       count(*) FILTER (WHERE c.treatment < c.control) AS losses,
       count(*) FILTER (WHERE c.treatment = c.control AND c.treatment > 0) AS ties,
       min(q.ts) AS first_ts,
       max(q.ts) AS last_ts
FROM capped AS q
JOIN credit AS c USING (query_id)
GROUP BY q.model_version, q.control_version;
