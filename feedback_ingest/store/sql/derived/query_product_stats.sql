-- Per (norm_query, product): lists that showed it, lists with each action, the best judged
-- grade, and the inverse-propensity weight of its engagements (Joachims et al. 2017, "Unbiased
-- learning-to-rank with biased feedback"): sum over engaged lists of 1/propensity(position),
-- each term clipped at $ips_max_weight (Strehl et al. 2010). Positions past the estimated range
-- use the last estimated propensity.
INSERT INTO query_product_stats
WITH last AS (SELECT max(position) AS position FROM propensities),
best AS (
    SELECT norm_query, product_id, max(grade) AS max_grade
    FROM judgments
    GROUP BY norm_query, product_id
)
SELECT lp.norm_query,
       lp.product_id,
       count(*) AS impressions,
       count(*) FILTER (WHERE lp.clicked) AS clicks,
       count(*) FILTER (WHERE lp.added_to_cart) AS add_to_carts,
       count(*) FILTER (WHERE lp.purchased) AS purchases,
       any_value(best.max_grade) AS max_grade,
       coalesce(sum(least(1.0 / p.propensity, $ips_max_weight)) FILTER (WHERE lp.grade >= 1), 0.0)
           AS ips_weight
FROM list_products AS lp
CROSS JOIN last
LEFT JOIN propensities AS p ON p.position = least(lp.position, last.position)
LEFT JOIN best USING (norm_query, product_id)
GROUP BY lp.norm_query, lp.product_id;
