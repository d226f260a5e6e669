-- Graded judgments per (query_id, product_id) of the affected counted lists, from implicit
-- feedback (Joachims et al. 2005, "Accurately interpreting clickthrough data as implicit
-- feedback"): an engaged product gets its grade (1..3); a product shown ABOVE the list's lowest
-- engaged position and not engaged is a skip, grade 0; products below the lowest engagement,
-- and lists without any, are unknown.
INSERT INTO judgments
WITH lowest AS (
    SELECT query_id, max(position) AS lowest_engaged
    FROM contributions
    WHERE grade >= 1
    GROUP BY query_id
)
SELECT c.query_id, c.norm_query, c.product_id, c.grade, c.position, c.model_version, c.arm, c.ts
FROM contributions AS c
JOIN lowest USING (query_id)
WHERE c.grade >= 1 OR c.position < lowest.lowest_engaged;
