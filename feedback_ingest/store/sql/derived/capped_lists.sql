-- Which served lists count, and whose they are (see migration 007): the client is the keyed
-- hash of the shopper's address recorded by encoder_server, else the session, else the list;
-- a session's lists beyond the first $max_lists_per_session (by time) are not counted.
INSERT INTO capped_lists
SELECT query_id,
       coalesce(client_key, session_id, query_id) AS client,
       row_number() OVER (
           PARTITION BY coalesce(session_id, query_id) ORDER BY ts, query_id
       ) AS session_rank,
       session_rank <= $max_lists_per_session AS counted
FROM queries;
