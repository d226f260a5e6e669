-- Which served lists count, and whose they are (see migration 007), for every session with a
-- new list (a list served earlier in time moves the later ones down): the client is the keyed
-- hash of the shopper's address recorded by encoder_server, else the session, else the list;
-- a session's lists beyond the first $max_lists_per_session by time, counting those of the
-- session already archived, are not counted. Only rows that differ from capped_lists are kept
-- (new lists, and those a list served earlier moved down).
CREATE OR REPLACE TEMP TABLE new_caps AS
WITH sessions AS (
    SELECT DISTINCT coalesce(session_id, query_id) AS session
    FROM queries
    WHERE seq > $watermark
),
ranked AS (
    SELECT q.query_id,
           coalesce(q.client_key, q.session_id, q.query_id) AS client,
           coalesce(a.lists, 0) + row_number() OVER (
               PARTITION BY s.session ORDER BY q.ts, q.query_id
           ) AS session_rank,
           session_rank <= $max_lists_per_session AS counted
    FROM queries AS q
    JOIN sessions AS s ON s.session = coalesce(q.session_id, q.query_id)
    LEFT JOIN session_archived AS a ON a.session = s.session
)
SELECT r.*
FROM ranked AS r
LEFT JOIN capped_lists AS c ON c.query_id = r.query_id
WHERE c.query_id IS NULL
   OR c.client <> r.client
   OR c.session_rank <> r.session_rank
   OR c.counted <> r.counted;
