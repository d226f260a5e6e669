-- Adds ($sign = 1) or removes ($sign = -1) the contributions to the exposure counts of the
-- position-based click model: per (norm_query, product, position) how often shown there and how
-- often engaged. First result pages only: on later pages position k was not the k-th thing the
-- shopper saw.
INSERT INTO click_counts
SELECT norm_query,
       product_id,
       position,
       $sign * count(*),
       $sign * count(*) FILTER (WHERE grade >= 1)
FROM contributions
WHERE page = 1
GROUP BY norm_query, product_id, position
ON CONFLICT (norm_query, product_id, position) DO UPDATE SET
    shown = shown + excluded.shown,
    engaged = engaged + excluded.engaged;
