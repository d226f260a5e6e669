-- Online metrics per (model_version, arm): the canary controller's and Grafana's view.
INSERT INTO online_metrics_by_arm
SELECT model_version, arm,
       count(*) AS lists,
       avg(ndcg_at_10) AS mean_ndcg_at_10,
       avg(clicked::DOUBLE) AS ctr_at_10,
       avg(added_to_cart::DOUBLE) AS add_to_cart_rate,
       avg(purchased::DOUBLE) AS purchase_rate,
       min(ts) AS first_ts,
       max(ts) AS last_ts
FROM online_metrics
GROUP BY model_version, arm;
