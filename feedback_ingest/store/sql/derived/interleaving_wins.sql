-- Team-draft interleaving outcomes per (canary model_version, control_version), counted on
-- interleaved lists whose attribution window has closed ($now >= ts + window), as
-- online_metrics does. Credit (Chapelle et al. 2012): each served product with any engagement
-- (click, add_to_cart or purchase) inside the window counts once for the team that contributed
-- it (queries.teams, parallel to results). A list is a win for model_version when its team
-- has more credit, a loss when fewer, a tie when both have equal non-zero credit; lists without
-- engagement count in lists only (lists - engaged_lists of them).
INSERT INTO interleaving_wins BY NAME
WITH closed AS (
    SELECT query_id, ts, model_version, control_version, results, teams
    FROM queries
    WHERE arm = 'interleaved'
      AND teams IS NOT NULL
      AND control_version IS NOT NULL
      AND len(teams) = len(results)
      AND ts + to_seconds($window_s) <= $now
),
served AS (
    SELECT query_id, unnest(results) AS product_id, unnest(teams) AS team
    FROM closed
),
engaged AS (
    SELECT DISTINCT i.query_id, i.product_id
    FROM interactions AS i
    JOIN closed AS q USING (query_id)
    WHERE i.action IN ('click', 'add_to_cart', 'purchase')
      AND i.ts <= q.ts + to_seconds($window_s)
),
credit AS (
    SELECT q.query_id,
           count(e.product_id) FILTER (WHERE s.team = q.model_version) AS treatment,
           count(e.product_id) FILTER (WHERE s.team = q.control_version) AS control
    FROM closed AS q
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
FROM closed AS q
JOIN credit AS c USING (query_id)
GROUP BY q.model_version, q.control_version;
