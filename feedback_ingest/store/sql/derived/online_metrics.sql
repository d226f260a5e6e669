-- Online quality of each counted served list whose attribution window has closed
-- ($now >= ts + window). Gains come from bound interactions inside the window (on a product of
-- the list, at the position served): purchase 3, add_to_cart 2, click 1.
-- nDCG@10 = DCG@10 / IDCG@10 with DCG = sum gain_i / log2(i + 1) (Jarvelin & Kekalainen 2002);
-- the ideal ordering sorts the same list's gains, and a list without gains scores 0.
-- clicked: an engagement at positions 1..10; added_to_cart / purchased: such an action on a
-- product of the list inside the window (a purchase counts as added to cart).
-- Caps: only counted lists (capped_lists), and no client more than $max_client_share of a
-- (model_version, arm)'s lists, or $min_client_lists, whichever is more (its earliest lists).
INSERT INTO online_metrics
WITH closed AS (
    SELECT q.*, c.client
    FROM queries AS q
    JOIN capped_lists AS c ON c.query_id = q.query_id AND c.counted
    WHERE q.ts + to_seconds($window_s) <= $now
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
),
gains AS (
    SELECT i.query_id, i.product_id,
           max(CASE i.action
                   WHEN 'purchase' THEN 3 WHEN 'add_to_cart' THEN 2 WHEN 'click' THEN 1 ELSE 0
               END) AS gain
    FROM bound_interactions AS i
    JOIN capped AS q USING (query_id)
    WHERE i.ts <= q.ts + to_seconds($window_s)
    GROUP BY i.query_id, i.product_id
),
served AS (
    SELECT query_id, unnest(results) AS product_id, generate_subscripts(results, 1) AS position
    FROM capped
),
listed AS (
    SELECT s.query_id, s.position, coalesce(g.gain, 0) AS gain,
           row_number() OVER (PARTITION BY s.query_id ORDER BY coalesce(g.gain, 0) DESC) AS ideal
    FROM served AS s
    LEFT JOIN gains AS g USING (query_id, product_id)
),
per_list AS (
    SELECT query_id,
           coalesce(sum(gain / log2(position + 1)) FILTER (WHERE position <= 10), 0) AS dcg,
           coalesce(sum(gain / log2(ideal + 1)) FILTER (WHERE ideal <= 10), 0) AS idcg,
           coalesce(bool_or(gain >= 1 AND position <= 10), false) AS clicked
    FROM listed
    GROUP BY query_id
),
actions AS (
    SELECT query_id, max(gain) AS best_gain FROM gains GROUP BY query_id
)
SELECT q.query_id, q.ts, q.model_version, q.arm, q.norm_query,
       len(q.results) AS n_results,
       CASE WHEN coalesce(l.idcg, 0) > 0 THEN l.dcg / l.idcg ELSE 0.0 END AS ndcg_at_10,
       coalesce(l.clicked, false) AS clicked,
       coalesce(a.best_gain >= 2, false) AS added_to_cart,
       coalesce(a.best_gain = 3, false) AS purchased
FROM capped AS q
LEFT JOIN per_list AS l USING (query_id)
LEFT JOIN actions AS a USING (query_id);
