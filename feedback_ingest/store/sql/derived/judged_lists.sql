-- Whose each judged list is: the IPS caps weigh engagements per client and session, and must
-- still do so once the list's raw events are archived.
INSERT INTO judged_lists
SELECT DISTINCT query_id, client, session
FROM contributions
WHERE grade >= 1;
