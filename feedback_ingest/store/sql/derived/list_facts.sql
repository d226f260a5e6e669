-- Per served product of each touched list (binding as in migration 007): its absolute position
-- (result_offset + index; the first when a product is served twice), the grade of its strongest
-- bound action (purchase 3, add_to_cart 2, click 1, none 0), which actions it had, and the
-- highest gain of its bound actions inside the attribution window (NULL: none there).
INSERT INTO list_facts
WITH listed AS (
    SELECT query_id, ts, results, coalesce(result_offset, 0) AS result_offset
    FROM queries
    WHERE query_id IN (SELECT query_id FROM touched)
),
served AS (
    SELECT query_id, product_id, min(position) AS position
    FROM (
        SELECT query_id,
               unnest(results) AS product_id,
               result_offset + generate_subscripts(results, 1) AS position
        FROM listed
    )
    GROUP BY query_id, product_id
),
acted AS (
    SELECT i.query_id,
           i.product_id,
           max(CASE i.action
                   WHEN 'purchase' THEN 3 WHEN 'add_to_cart' THEN 2 WHEN 'click' THEN 1 ELSE 0
               END) AS grade,
           bool_or(i.action = 'click') AS clicked,
           bool_or(i.action = 'add_to_cart') AS added_to_cart,
           bool_or(i.action = 'purchase') AS purchased,
           max(CASE i.action
                   WHEN 'purchase' THEN 3 WHEN 'add_to_cart' THEN 2 WHEN 'click' THEN 1 ELSE 0
               END) FILTER (WHERE i.ts <= l.ts + to_seconds($window_s)) AS window_gain
    FROM interactions AS i
    JOIN served AS s
      ON s.query_id = i.query_id AND s.product_id = i.product_id AND s.position = i.position
    JOIN listed AS l ON l.query_id = i.query_id
    GROUP BY i.query_id, i.product_id
)
SELECT s.query_id,
       s.product_id,
       s.position,
       coalesce(a.grade, 0),
       coalesce(a.clicked, false),
       coalesce(a.added_to_cart, false),
       coalesce(a.purchased, false),
       a.window_gain
FROM served AS s
LEFT JOIN acted AS a USING (query_id, product_id);
