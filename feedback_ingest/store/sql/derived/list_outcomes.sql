-- Online outcome of each touched list, whether or not its attribution window has closed (the
-- online stage filters on $now). Gains come from bound interactions inside the window (on a
-- product of the list, at the position served): purchase 3, add_to_cart 2, click 1.
-- nDCG@10 = DCG@10 / IDCG@10 with DCG = sum gain_i / log2(i + 1) (Jarvelin & Kekalainen 2002),
-- i the position in the served page; the ideal ordering sorts the same list's gains, and a
-- list without gains scores 0. clicked: an engagement at positions 1..10; added_to_cart /
-- purchased: such an action on a product of the list (a purchase counts as added to cart).
-- Team-draft interleaving credit (Chapelle et al. 2012), for interleaved lists whose teams
-- parallel the results and that name their control: each served product with an engagement
-- inside the window counts once for the team that contributed it (queries.teams).
-- control_version is NULL for every other list.
INSERT INTO list_outcomes
WITH listed AS (
    SELECT query_id, ts, model_version, arm, norm_query, results, teams, control_version,
           arm = 'interleaved'
               AND teams IS NOT NULL
               AND control_version IS NOT NULL
               AND len(teams) = len(results) AS creditable
    FROM queries
    WHERE query_id IN (SELECT query_id FROM touched)
),
gains AS (
    SELECT query_id, product_id, window_gain AS gain
    FROM list_facts
    WHERE window_gain IS NOT NULL AND query_id IN (SELECT query_id FROM touched)
),
served AS (
    SELECT query_id, unnest(results) AS product_id, generate_subscripts(results, 1) AS position
    FROM listed
),
ranked AS (
    SELECT s.query_id, s.position, coalesce(g.gain, 0) AS gain,
           row_number() OVER (
               PARTITION BY s.query_id ORDER BY coalesce(g.gain, 0) DESC, s.position
           ) AS ideal
    FROM served AS s
    LEFT JOIN gains AS g USING (query_id, product_id)
),
per_list AS (
    SELECT query_id,
           coalesce(sum(gain / log2(position + 1) ORDER BY position)
                        FILTER (WHERE position <= 10), 0) AS dcg,
           coalesce(sum(gain / log2(ideal + 1) ORDER BY ideal)
                        FILTER (WHERE ideal <= 10), 0) AS idcg,
           coalesce(bool_or(gain >= 1 AND position <= 10), false) AS clicked
    FROM ranked
    GROUP BY query_id
),
actions AS (
    SELECT query_id, max(gain) AS best_gain FROM gains GROUP BY query_id
),
teams AS (
    SELECT query_id, model_version, control_version,
           unnest(results) AS product_id, unnest(teams) AS team
    FROM listed
    WHERE creditable
),
credit AS (
    SELECT t.query_id,
           count(*) FILTER (WHERE g.gain >= 1 AND t.team = t.model_version) AS treatment,
           count(*) FILTER (WHERE g.gain >= 1 AND t.team = t.control_version) AS control
    FROM teams AS t
    LEFT JOIN gains AS g USING (query_id, product_id)
    GROUP BY t.query_id
)
SELECT l.query_id,
       l.ts,
       l.model_version,
       l.arm,
       l.norm_query,
       len(l.results),
       CASE WHEN coalesce(p.idcg, 0) > 0 THEN p.dcg / p.idcg ELSE 0.0 END,
       coalesce(p.clicked, false),
       coalesce(a.best_gain >= 2, false),
       coalesce(a.best_gain = 3, false),
       CASE WHEN l.creditable THEN l.control_version END,
       CASE WHEN l.creditable THEN coalesce(c.treatment, 0) END,
       CASE WHEN l.creditable THEN coalesce(c.control, 0) END
FROM listed AS l
LEFT JOIN per_list AS p USING (query_id)
LEFT JOIN actions AS a USING (query_id)
LEFT JOIN credit AS c USING (query_id);
