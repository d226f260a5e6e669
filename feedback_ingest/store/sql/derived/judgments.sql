-- Graded judgments per (query_id, product_id) from implicit feedback (Joachims et al. 2005,
-- "Accurately interpreting clickthrough data as implicit feedback"): an engaged product gets
-- its grade (1..3); a product shown ABOVE the list's lowest engaged position and not engaged
-- is a skip, grade 0; products below the lowest engagement, and lists without any, are unknown.
INSERT INTO judgments
WITH lowest AS (
    SELECT query_id, max(position) AS lowest_engaged
    FROM list_products
    WHERE grade >= 1
    GROUP BY query_id
)
SELECT lp.query_id, lp.norm_query, lp.product_id, lp.grade, lp.position,
       lp.model_version, lp.arm, lp.ts
FROM list_products AS lp
JOIN lowest USING (query_id)
WHERE lp.grade >= 1 OR lp.position < lowest.lowest_engaged;
