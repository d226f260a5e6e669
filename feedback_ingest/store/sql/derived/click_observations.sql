-- Exposure observations for the position-based click model, aggregated per
-- (norm_query, product, position): how often shown there and how often engaged.
-- First result pages only: on later pages position k was not the k-th thing the shopper saw.
SELECT dense_rank() OVER (ORDER BY norm_query, product_id) - 1 AS pair_id,
       position,
       shown,
       engaged
FROM (
    SELECT norm_query, product_id, position,
           count(*) AS shown,
           count(*) FILTER (WHERE grade >= 1) AS engaged
    FROM list_products
    WHERE page = 1 AND position <= $max_position
    GROUP BY norm_query, product_id, position
)
ORDER BY pair_id, position;
