-- One row per (served list, product) that the shopper saw or acted on: the product's position
-- in the list and the grade of its strongest action (purchase 3, add_to_cart 2, click 1, none 0).
-- The served list (queries.results) is authoritative for positions; a product only known from
-- interactions takes the smallest position its events report. Interactions whose query event
-- never arrived have no query text and are left out.

CREATE VIEW list_products AS
WITH served AS (
    SELECT query_id, product_id, min(position) AS position
    FROM (
        SELECT query_id,
               unnest(results) AS product_id,
               generate_subscripts(results, 1) AS position
        FROM queries
    )
    GROUP BY query_id, product_id
),
acted AS (
    SELECT query_id,
           product_id,
           min(position) AS position,
           max(CASE action
                   WHEN 'purchase' THEN 3
                   WHEN 'add_to_cart' THEN 2
                   WHEN 'click' THEN 1
                   ELSE 0
               END) AS grade,
           bool_or(action = 'click') AS clicked,
           bool_or(action = 'add_to_cart') AS added_to_cart,
           bool_or(action = 'purchase') AS purchased
    FROM interactions
    GROUP BY query_id, product_id
)
SELECT q.query_id,
       q.norm_query,
       q.model_version,
       q.arm,
       q.page,
       q.ts,
       coalesce(s.product_id, a.product_id) AS product_id,
       coalesce(s.position, a.position) AS position,
       coalesce(a.grade, 0) AS grade,
       coalesce(a.clicked, false) AS clicked,
       coalesce(a.added_to_cart, false) AS added_to_cart,
       coalesce(a.purchased, false) AS purchased
FROM served AS s
FULL OUTER JOIN acted AS a ON a.query_id = s.query_id AND a.product_id = s.product_id
JOIN queries AS q ON q.query_id = coalesce(s.query_id, a.query_id);
