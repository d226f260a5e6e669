-- Per (norm_query, product): the maintained counts over every counted list (qp_counts.sql),
-- the best judged grade, and the inverse-propensity weight of its engagements (Joachims et al.
-- 2017, "Unbiased learning-to-rank with biased feedback"): 1/propensity(position) per engaged
-- list, each term clipped at $ips_max_weight (Strehl et al. 2010). Positions past the
-- estimated range use the last estimated propensity. The engagements are the judgments of
-- grade >= 1 (every engaged product of a counted list is judged), so the weights stay whole
-- after the lists' raw events are archived.
-- Caps, so no one actor can buy a pair or the whole training set: a session's engagements
-- with one (query, product) count once (its largest weight); a client's weight on one pair is
-- clipped at $ips_max_weight, as a single click's is; and a client's total weight over all
-- pairs is scaled down to $max_client_share of everyone's, or $min_client_lists clipped
-- engagements, whichever is more. Sums run in a fixed order, so the result does not depend on
-- the order the rows were stored in.
INSERT INTO query_product_stats
WITH last AS (SELECT max(position) AS position FROM propensities),
best AS (
    SELECT norm_query, product_id, max(grade) AS max_grade
    FROM judgments
    GROUP BY norm_query, product_id
),
per_session AS (
    SELECT l.client, l.session, j.norm_query, j.product_id,
           max(least(1.0 / p.propensity, $ips_max_weight)) AS weight
    FROM judgments AS j
    JOIN judged_lists AS l ON l.query_id = j.query_id
    CROSS JOIN last
    LEFT JOIN propensities AS p ON p.position = least(j.position, last.position)
    WHERE j.grade >= 1
    GROUP BY ALL
),
per_client AS (
    SELECT client, norm_query, product_id,
           least(sum(weight ORDER BY session), $ips_max_weight) AS weight
    FROM per_session
    GROUP BY ALL
),
client_total AS (
    SELECT client, sum(weight ORDER BY norm_query, product_id) AS total
    FROM per_client
    GROUP BY client
),
everyone AS (
    SELECT coalesce(sum(weight ORDER BY client, norm_query, product_id), 0) AS total
    FROM per_client
),
weights AS (
    SELECT pc.norm_query, pc.product_id,
           sum(pc.weight * least(1.0, greatest($max_client_share * e.total,
                                              $min_client_lists * $ips_max_weight) / ct.total)
               ORDER BY pc.client) AS ips_weight
    FROM per_client AS pc
    JOIN client_total AS ct USING (client)
    CROSS JOIN everyone AS e
    GROUP BY pc.norm_query, pc.product_id
)
SELECT c.norm_query,
       c.product_id,
       c.impressions,
       c.clicks,
       c.add_to_carts,
       c.purchases,
       b.max_grade,
       coalesce(w.ips_weight, 0.0) AS ips_weight
FROM qp_counts AS c
LEFT JOIN best AS b USING (norm_query, product_id)
LEFT JOIN weights AS w USING (norm_query, product_id);
