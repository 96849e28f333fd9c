-- Statements the guard must allow in read-only mode (and that PostgreSQL runs against the fixtures).
-- Same format as attacks.sql: blocks separated by `-- ----`, each with a `-- why:` line.
-- ----
-- why: simplest select
SELECT 1
-- ----
-- why: filter, order, limit
SELECT id, note FROM canary WHERE id > 0 ORDER BY id LIMIT 10
-- ----
-- why: join
SELECT c.id, s.k FROM canary c JOIN secrets s ON s.k = c.note
-- ----
-- why: outer join and aggregate
SELECT c.note, count(s.k) FROM canary c LEFT JOIN secrets s ON s.k = c.note GROUP BY c.note
-- ----
-- why: read-only CTE
WITH x AS (SELECT id FROM canary) SELECT count(*) FROM x
-- ----
-- why: recursive CTE
WITH RECURSIVE t(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM t WHERE n < 5) SELECT sum(n) FROM t
-- ----
-- why: window functions with a named window
SELECT id, row_number() OVER (ORDER BY id), sum(id) OVER w FROM canary WINDOW w AS (PARTITION BY note)
-- ----
-- why: LATERAL subquery
SELECT c.id, l.len FROM canary c, LATERAL (SELECT length(c.note) AS len) AS l
-- ----
-- why: LATERAL set-returning function
SELECT c.id, g FROM canary c CROSS JOIN LATERAL generate_series(1, 3) AS g
-- ----
-- why: VALUES
VALUES (1, 'a'), (2, 'b')
-- ----
-- why: VALUES with ORDER BY
VALUES (3), (1), (2) ORDER BY 1
-- ----
-- why: TABLE
TABLE canary
-- ----
-- why: SHOW
SHOW search_path
-- ----
-- why: SHOW ALL
SHOW ALL
-- ----
-- why: plain EXPLAIN
EXPLAIN SELECT * FROM canary
-- ----
-- why: EXPLAIN with options
EXPLAIN (FORMAT JSON) SELECT * FROM canary WHERE id = 1
-- ----
-- why: EXPLAIN ANALYZE of a read
EXPLAIN ANALYZE SELECT count(*) FROM canary
-- ----
-- why: EXPLAIN with ANALYZE explicitly off
EXPLAIN (ANALYZE false, COSTS off) SELECT 1
-- ----
-- why: allow-listed volatile and stable time functions
SELECT random(), now(), clock_timestamp(), statement_timestamp(), gen_random_uuid()
-- ----
-- why: current_setting is stable and harmless
SELECT current_setting('search_path')
-- ----
-- why: set-returning function in FROM
SELECT * FROM generate_series(1, 10) AS g
-- ----
-- why: '--' and ';' inside string literals are data, not syntax
SELECT 'a -- not a comment; DROP TABLE canary' AS s, ';' AS semi, replace('x;y', ';', '--') AS r
-- ----
-- why: dollar-quoted string containing SQL
SELECT $$ ; DROP TABLE canary; $$ AS dollar
-- ----
-- why: text that merely looks like a denied call
SELECT 'set_config(''transaction_read_only'', ''off'', false)' AS looks_scary
-- ----
-- why: escaped quotes
SELECT E'it\'s; -- fine' AS escaped
-- ----
-- why: a semicolon at the end of a single statement
SELECT 1;
-- ----
-- why: comments around a single statement
/* leading comment */ SELECT 1 -- trailing comment
-- ----
-- why: set operations
SELECT id FROM canary UNION SELECT 1 INTERSECT SELECT 1 EXCEPT SELECT 2
-- ----
-- why: EXISTS subquery
SELECT * FROM canary c WHERE EXISTS (SELECT 1 FROM secrets s WHERE s.k = c.note)
-- ----
-- why: FILTER and ROLLUP
SELECT note, count(*) FILTER (WHERE id > 1) FROM canary GROUP BY ROLLUP (note)
-- ----
-- why: allow-listed volatile size functions
SELECT pg_database_size(current_database()), pg_size_pretty(pg_total_relation_size('public.canary'))
-- ----
-- why: system views
SELECT pid, state FROM pg_stat_activity
-- ----
-- why: information_schema
SELECT count(*) FROM information_schema.tables
-- ----
-- why: json operators
SELECT jsonb_build_object('a', 1) -> 'a'
-- ----
-- why: quoted function name of a harmless function
SELECT "lower"('ABC')
-- ----
-- why: identifier that is a keyword
SELECT note AS "DELETE" FROM canary
-- ----
-- why: session information
SELECT current_user, session_user, current_database(), version(), pg_backend_pid()
-- ----
-- why: array parameter
SELECT * FROM canary WHERE id = ANY ('{1,2}'::int[])
-- ----
-- why: LIKE with a semicolon
SELECT lower(note) FROM canary WHERE note LIKE '%;%'
-- ----
-- why: system views over live state resolve to volatile functions that only read (pg_lock_status)
SELECT locktype, mode, granted FROM pg_locks WHERE pid = pg_backend_pid()
-- ----
-- why: prepared transactions view (pg_prepared_xact)
SELECT count(*) FROM pg_prepared_xacts
