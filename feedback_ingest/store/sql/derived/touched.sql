-- Hot lists with an event newer than the watermark: the only lists whose per-list rows are
-- derived again. An interaction whose query is not in the hot store (it never arrived, or
-- its list was archived) touches nothing.
CREATE OR REPLACE TEMP TABLE touched AS
SELECT query_id FROM queries WHERE seq > $watermark
UNION
SELECT query_id FROM interactions
WHERE seq > $watermark AND query_id IN (SELECT query_id FROM queries);
