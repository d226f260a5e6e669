-- Lists whose contribution to judgments, counts and IPS weights may change: the touched ones,
-- and those a new list of their session moved across the cap.
CREATE OR REPLACE TEMP TABLE affected AS
SELECT query_id FROM touched
UNION
SELECT n.query_id
FROM new_caps AS n
LEFT JOIN capped_lists AS c ON c.query_id = n.query_id
WHERE c.counted IS DISTINCT FROM n.counted;
