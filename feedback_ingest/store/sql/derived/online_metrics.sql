-- Online quality of each served list whose attribution window has closed ($now >= ts + window).
-- Gains come from interactions inside the window: purchase 3, add_to_cart 2, click 1.
-- nDCG@10 = DCG@10 / IDCG@10 with DCG = sum gain_i / log2(i + 1) (Jarvelin & Kekalainen 2002);
-- the ideal ordering sorts the same list's gains, and a list without gains scores 0.
-- clicked: an engagement at positions 1..10; added_to_cart / purchased: any such action on the
-- list's query_id inside the window (a purchase counts as added to cart).
INSERT INTO online_metrics
WITH closed AS (
    SELECT * FROM queries WHERE ts + to_seconds($window_s) <= $now
),
gains AS (
    SELECT i.query_id, i.product_id,
           max(CASE i.action
                   WHEN 'purchase' THEN 3 WHEN 'add_to_cart' THEN 2 WHEN 'click' THEN 1 ELSE 0
               END) AS gain
    FROM interactions AS i
    JOIN closed AS q USING (query_id)
    WHERE i.ts <= q.ts + to_seconds($window_s)
    GROUP BY i.query_id, i.product_id
),
served AS (
    SELECT query_id, unnest(results) AS product_id, generate_subscripts(results, 1) AS position
    FROM closed
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
FROM closed AS q
LEFT JOIN per_list AS l USING (query_id)
LEFT JOIN actions AS a USING (query_id);
