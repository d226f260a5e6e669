-- Feedback counts only where the server can vouch for it, and no actor weighs more than a cap.
--
-- served_positions: every product of every served list at its absolute position
-- (result_offset + index), the only places an interaction may bind to.
-- bound_interactions: interactions on a product of the list served under their query_id, at
-- the position the server recorded. A click on a product that was never served, or at a
-- position the client made up, is not evidence of anything and binds nowhere.
-- capped_lists (derived, rebuilt first): the client of each list (the keyed hash of its
-- address, else its session, else the list itself) and whether it counts: a session's lists
-- beyond the first max_lists_per_session are not counted.
-- list_products: now served products only, of counted lists, with bound actions only.

CREATE TABLE capped_lists (
    query_id     VARCHAR PRIMARY KEY,
    client       VARCHAR NOT NULL,
    session_rank BIGINT NOT NULL,
    counted      BOOLEAN NOT NULL
);

CREATE VIEW served_positions AS
SELECT query_id, product_id, min(position) AS position
FROM (
    SELECT query_id,
           unnest(results) AS product_id,
           coalesce(result_offset, 0) + generate_subscripts(results, 1) AS position
    FROM queries
)
GROUP BY query_id, product_id;

CREATE VIEW bound_interactions AS
SELECT i.*
FROM interactions AS i
JOIN served_positions AS s
  ON s.query_id = i.query_id AND s.product_id = i.product_id AND s.position = i.position;

DROP VIEW list_products;

CREATE VIEW list_products AS
WITH acted AS (
    SELECT query_id,
           product_id,
           max(CASE action
                   WHEN 'purchase' THEN 3
                   WHEN 'add_to_cart' THEN 2
                   WHEN 'click' THEN 1
                   ELSE 0
               END) AS grade,
           bool_or(action = 'click') AS clicked,
           bool_or(action = 'add_to_cart') AS added_to_cart,
           bool_or(action = 'purchase') AS purchased
    FROM bound_interactions
    GROUP BY query_id, product_id
)
SELECT q.query_id,
       q.norm_query,
       q.model_version,
       q.arm,
       q.page,
       q.ts,
       q.session_id,
       c.client,
       s.product_id,
       s.position,
       coalesce(a.grade, 0) AS grade,
       coalesce(a.clicked, false) AS clicked,
       coalesce(a.added_to_cart, false) AS added_to_cart,
       coalesce(a.purchased, false) AS purchased
FROM served_positions AS s
JOIN queries AS q ON q.query_id = s.query_id
JOIN capped_lists AS c ON c.query_id = s.query_id AND c.counted
LEFT JOIN acted AS a ON a.query_id = s.query_id AND a.product_id = s.product_id;
