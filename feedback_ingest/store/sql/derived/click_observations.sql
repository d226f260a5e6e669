-- Exposure observations for the position-based click model from the maintained counts
-- (click_counts.sql), per (norm_query, product, position) up to $max_position.
SELECT dense_rank() OVER (ORDER BY norm_query, product_id) - 1 AS pair_id,
       position,
       shown,
       engaged
FROM click_counts
WHERE position <= $max_position AND shown > 0
ORDER BY pair_id, position;
