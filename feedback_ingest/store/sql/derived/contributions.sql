-- What the affected lists contribute, as the list_products view would show them: one row per
-- served product of a counted list. Taken before the lists are derived again (to subtract)
-- and after (to add).
CREATE OR REPLACE TEMP TABLE contributions AS
SELECT q.query_id,
       q.norm_query,
       q.model_version,
       q.arm,
       q.page,
       q.ts,
       coalesce(q.session_id, q.query_id) AS session,
       c.client,
       f.product_id,
       f.position,
       f.grade,
       f.clicked,
       f.added_to_cart,
       f.purchased
FROM affected AS a
JOIN capped_lists AS c ON c.query_id = a.query_id AND c.counted
JOIN list_facts AS f ON f.query_id = a.query_id
JOIN queries AS q ON q.query_id = a.query_id;
