-- Per (norm_query, product): counted lists that showed it, lists with each bound action, the
-- best judged grade, and the inverse-propensity weight of its engagements (Joachims et al.
-- 2017, "Unbiased learning-to-rank with biased feedback"): 1/propensity(position) per engaged
-- list, each term clipped at $ips_max_weight (Strehl et al. 2010). Positions past the
-- estimated range use the last estimated propensity.
-- Caps, so no one actor can buy a pair or the whole training set: a session's engagements
-- with one (query, product) count once (its largest weight); a client's weight on one pair is
-- clipped at $ips_max_weight, as a single click's is; and a client's total weight over all
-- pairs is scaled down to $max_client_share of everyone's, or $min_client_lists clipped
-- engagements, whichever is more.
INSERT INTO query_product_stats
WITH last AS (SELECT max(position) AS position FROM propensities),
best AS (
    SELECT norm_query, product_id, max(grade) AS max_grade
    FROM judgments
    GROUP BY norm_query, product_id
),
per_session AS (
    SELECT lp.client, coalesce(lp.session_id, lp.query_id) AS session, lp.norm_query,
           lp.product_id, max(least(1.0 / p.propensity, $ips_max_weight)) AS weight
    FROM list_products AS lp
    CROSS JOIN last
    LEFT JOIN propensities AS p ON p.position = least(lp.position, last.position)
    WHERE lp.grade >= 1
    GROUP BY ALL
),
per_client AS (
    SELECT client, norm_query, product_id, least(sum(weight), $ips_max_weight) AS weight
    FROM per_session
    GROUP BY ALL
),
client_total AS (
    SELECT client, sum(weight) AS total FROM per_client GROUP BY client
),
everyone AS (SELECT coalesce(sum(weight), 0) AS total FROM per_client),
weights AS (
    SELECT pc.norm_query, pc.product_id,
           sum(pc.weight * least(1.0, greatest($max_client_share * e.total,
                                              $min_client_lists * $ips_max_weight) / ct.total))
               AS ips_weight
    FROM per_client AS pc
    JOIN client_total AS ct USING (client)
    CROSS JOIN everyone AS e
    GROUP BY pc.norm_query, pc.product_id
)
SELECT lp.norm_query,
       lp.product_id,
       count(*) AS impressions,
       count(*) FILTER (WHERE lp.clicked) AS clicks,
       count(*) FILTER (WHERE lp.added_to_cart) AS add_to_carts,
       count(*) FILTER (WHERE lp.purchased) AS purchases,
       any_value(best.max_grade) AS max_grade,
       coalesce(any_value(w.ips_weight), 0.0) AS ips_weight
FROM list_products AS lp
LEFT JOIN best USING (norm_query, product_id)
LEFT JOIN weights AS w USING (norm_query, product_id)
GROUP BY lp.norm_query, lp.product_id;
