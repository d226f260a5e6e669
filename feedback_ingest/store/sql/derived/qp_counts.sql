-- Adds ($sign = 1) or removes ($sign = -1) the contributions to the per-(query, product)
-- counts: counted lists that showed the product, and lists with each bound action.
INSERT INTO qp_counts
SELECT norm_query,
       product_id,
       $sign * count(*),
       $sign * count(*) FILTER (WHERE clicked),
       $sign * count(*) FILTER (WHERE added_to_cart),
       $sign * count(*) FILTER (WHERE purchased)
FROM contributions
GROUP BY norm_query, product_id
ON CONFLICT (norm_query, product_id) DO UPDATE SET
    impressions = impressions + excluded.impressions,
    clicks = clicks + excluded.clicks,
    add_to_carts = add_to_carts + excluded.add_to_carts,
    purchases = purchases + excluded.purchases;
