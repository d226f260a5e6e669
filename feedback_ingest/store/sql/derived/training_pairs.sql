-- (query, positive, hard negative) triples per normalised query. Positives: products whose
-- best grade is >= 1; hard negatives: products skipped above an engagement (grade 0) and never
-- engaged for that query. weight = ips_weight(positive) * grade(positive): the debiased count
-- of engagements, scaled by the same linear gain the online nDCG uses (click 1, cart 2,
-- purchase 3). The $max_pairs heaviest pairs per query are kept, ties broken by how often the
-- negative was skipped, then by ids.
INSERT INTO training_pairs
WITH positives AS (
    SELECT norm_query, product_id AS positive_id, max_grade AS grade, ips_weight
    FROM query_product_stats
    WHERE max_grade >= 1
),
negatives AS (
    SELECT norm_query, product_id AS negative_id, count(*) AS skips
    FROM judgments
    GROUP BY norm_query, product_id
    HAVING max(grade) = 0
)
SELECT norm_query, positive_id, negative_id, grade, weight
FROM (
    SELECT p.norm_query, p.positive_id, n.negative_id, p.grade,
           p.ips_weight * p.grade AS weight,
           row_number() OVER (
               PARTITION BY p.norm_query
               ORDER BY p.ips_weight * p.grade DESC, n.skips DESC, p.positive_id, n.negative_id
           ) AS rank
    FROM positives AS p
    JOIN negatives AS n USING (norm_query)
)
WHERE rank <= $max_pairs;
