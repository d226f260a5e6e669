-- Online metrics per (model_version, arm): the canary controller's and Grafana's view, with
-- 95% intervals (z = 1.959963984540054). Means run in a fixed order (by list), so the result
-- does not depend on the order the rows were stored in.
-- mean nDCG@10: mean +- z * stddev_samp / sqrt(lists) (normal approximation); NULL below two
-- lists, where the spread is unknown.
-- Rates (CTR@10, add-to-cart, purchase): the Wilson score interval (Wilson 1927), which stays
-- inside [0, 1] and is not degenerate at 0 or 1:
--   (p + z^2/2n -+ z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n)
INSERT INTO online_metrics_by_arm BY NAME
WITH per_arm AS (
    SELECT model_version, arm,
           count(*) AS n,
           avg(ndcg_at_10 ORDER BY query_id) AS mean_ndcg,
           CASE WHEN count(*) >= 2
                THEN stddev_samp(ndcg_at_10 ORDER BY query_id) / sqrt(count(*)) END AS se,
           avg(clicked::DOUBLE) AS ctr,
           avg(added_to_cart::DOUBLE) AS cart,
           avg(purchased::DOUBLE) AS buy,
           min(ts) AS first_ts,
           max(ts) AS last_ts
    FROM online_metrics
    GROUP BY model_version, arm
),
rates AS (
    SELECT *, 1.959963984540054 AS z, 1.959963984540054 ^ 2 AS z2 FROM per_arm
)
SELECT model_version, arm,
       n AS lists,
       mean_ndcg AS mean_ndcg_at_10,
       se AS ndcg_at_10_stderr,
       mean_ndcg - z * se AS ndcg_at_10_lower,
       mean_ndcg + z * se AS ndcg_at_10_upper,
       ctr AS ctr_at_10,
       greatest(0.0, (ctr + z2 / (2 * n) - z * sqrt(ctr * (1 - ctr) / n + z2 / (4 * n * n)))
                     / (1 + z2 / n)) AS ctr_at_10_lower,
       least(1.0, (ctr + z2 / (2 * n) + z * sqrt(ctr * (1 - ctr) / n + z2 / (4 * n * n)))
                  / (1 + z2 / n)) AS ctr_at_10_upper,
       cart AS add_to_cart_rate,
       greatest(0.0, (cart + z2 / (2 * n) - z * sqrt(cart * (1 - cart) / n + z2 / (4 * n * n)))
                     / (1 + z2 / n)) AS add_to_cart_rate_lower,
       least(1.0, (cart + z2 / (2 * n) + z * sqrt(cart * (1 - cart) / n + z2 / (4 * n * n)))
                  / (1 + z2 / n)) AS add_to_cart_rate_upper,
       buy AS purchase_rate,
       greatest(0.0, (buy + z2 / (2 * n) - z * sqrt(buy * (1 - buy) / n + z2 / (4 * n * n)))
                     / (1 + z2 / n)) AS purchase_rate_lower,
       least(1.0, (buy + z2 / (2 * n) + z * sqrt(buy * (1 - buy) / n + z2 / (4 * n * n)))
                  / (1 + z2 / n)) AS purchase_rate_upper,
       first_ts,
       last_ts
FROM rates;
