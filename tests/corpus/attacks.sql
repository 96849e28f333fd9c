-- Statements the guard must reject in read-only mode.
-- Format: blocks separated by a line that is exactly `-- ----`; each block has a `-- why:` line saying what
-- it attacks. A `-- needs-db` line marks statements that pass the parse-only `check` and are rejected by
-- `check_volatility` (they call a VOLATILE function that is not allow-listed).
-- Fixtures: public.canary(id int primary key, note text), public.secrets(k text), public.bump() (volatile,
-- inserts into canary). After each attack the database must be unchanged.
-- ----
-- why: plain write
INSERT INTO canary VALUES (100, 'inserted')
-- ----
-- why: plain write
UPDATE canary SET note = 'updated'
-- ----
-- why: plain write
DELETE FROM canary
-- ----
-- why: MERGE is a write
MERGE INTO canary c USING (VALUES (101, 'merged')) AS v(id, note) ON c.id = v.id
WHEN NOT MATCHED THEN INSERT VALUES (v.id, v.note)
-- ----
-- why: upsert
INSERT INTO canary VALUES (1, 'x') ON CONFLICT (id) DO UPDATE SET note = excluded.note
-- ----
-- why: TRUNCATE
TRUNCATE canary
-- ----
-- why: DDL drop
DROP TABLE canary
-- ----
-- why: DDL alter
ALTER TABLE canary ADD COLUMN pwned int
-- ----
-- why: DDL create
CREATE TABLE pwned (id int)
-- ----
-- why: temp table creation
CREATE TEMP TABLE pwned_tmp AS SELECT * FROM secrets
-- ----
-- why: DDL index
CREATE INDEX ON canary (note)
-- ----
-- why: create a function that writes
CREATE FUNCTION pwn() RETURNS void LANGUAGE sql AS $$ DELETE FROM canary $$
-- ----
-- why: create a view
CREATE OR REPLACE VIEW pwned_view AS SELECT * FROM secrets
-- ----
-- why: COMMENT ON writes the catalog
COMMENT ON TABLE canary IS 'pwned'
-- ----
-- why: role change
ALTER ROLE CURRENT_USER SET default_transaction_read_only = off
-- ----
-- why: privilege change
GRANT SELECT ON secrets TO PUBLIC
-- ----
-- why: privilege change
REVOKE ALL ON canary FROM PUBLIC
-- ----
-- why: role creation
CREATE ROLE pwned LOGIN SUPERUSER
-- ----
-- why: escape the read-only transaction by ending it
COMMIT
-- ----
-- why: escape the read-only transaction by ending it
ROLLBACK
-- ----
-- why: transaction control
BEGIN
-- ----
-- why: start a read-write transaction
START TRANSACTION READ WRITE
-- ----
-- why: flip the current transaction to read-write
SET TRANSACTION READ WRITE
-- ----
-- why: flip later transactions to read-write
SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE
-- ----
-- why: flip read-only through set_config in the SELECT list
SELECT set_config('transaction_read_only', 'off', false)
-- ----
-- why: end the read-only transaction, then write
COMMIT; INSERT INTO canary VALUES (102, 'after commit')
-- ----
-- why: savepoint juggling
SAVEPOINT s1
-- ----
-- why: two-phase commit
PREPARE TRANSACTION 'pwn'
-- ----
-- why: session default change
SET default_transaction_read_only = off
-- ----
-- why: local setting change
SET LOCAL statement_timeout = 0
-- ----
-- why: reset session state
RESET ALL
-- ----
-- why: privilege escalation by role switch
SET ROLE postgres
-- ----
-- why: privilege escalation by session authorization
SET SESSION AUTHORIZATION postgres
-- ----
-- why: search_path hijack
SET search_path = pwned, public
-- ----
-- why: reset role
RESET ROLE
-- ----
-- why: discard session state
DISCARD ALL
-- ----
-- why: multi-statement payload
SELECT 1; DROP TABLE canary
-- ----
-- why: multi-statement payload with a write
SELECT * FROM canary; DELETE FROM canary
-- ----
-- why: comment tricks hiding a second statement
/* harmless */ SELECT 1; -- looks like the end
DELETE FROM canary
-- ----
-- why: nested block comments hiding a second statement
/* outer /* inner */ still a comment; */ SELECT 1; DELETE FROM canary
-- ----
-- why: semicolon inside a comment, real one after
SELECT 1 /* ; */ ; DELETE FROM canary
-- ----
-- why: line comment swallowing the rest of the line only
SELECT 1 -- ; harmless
; DELETE FROM canary
-- ----
-- why: dollar quoting tricks
SELECT $$ ; $$; DELETE FROM canary
-- ----
-- why: tagged dollar quote containing an untagged one
SELECT $a$ $$ ; $a$ ; DROP TABLE canary
-- ----
-- why: dollar quotes on both sides of a real statement
SELECT $q$ harmless $q$; DELETE FROM canary; SELECT $q$ also harmless $q$
-- ----
-- why: semicolon inside a string, real one after
SELECT 'a;'; DELETE FROM canary
-- ----
-- why: escape string ending in an escaped backslash
SELECT E'\\'; DELETE FROM canary
-- ----
-- why: data-modifying CTE (DELETE)
WITH d AS (DELETE FROM canary RETURNING *) SELECT * FROM d
-- ----
-- why: data-modifying CTE (INSERT), result unused
WITH i AS (INSERT INTO canary VALUES (103, 'cte') RETURNING id) SELECT 1
-- ----
-- why: data-modifying CTE (UPDATE)
WITH u AS (UPDATE canary SET note = 'cte' RETURNING 1) SELECT count(*) FROM u
-- ----
-- why: data-modifying CTE nested in a subquery
SELECT * FROM (WITH d AS (DELETE FROM canary RETURNING *) SELECT * FROM d) AS s
-- ----
-- why: WITH-wrapped INSERT
WITH x AS (SELECT 1) INSERT INTO canary SELECT 104, 'with' FROM x
-- ----
-- why: EXPLAIN ANALYZE executes the write
EXPLAIN ANALYZE DELETE FROM canary
-- ----
-- why: EXPLAIN ANALYZE with options executes the write
EXPLAIN (ANALYZE, FORMAT JSON) INSERT INTO canary VALUES (105, 'explain')
-- ----
-- why: EXPLAIN ANALYZE spelled as an option with a value
EXPLAIN (ANALYZE true) UPDATE canary SET note = 'explain'
-- ----
-- why: plain EXPLAIN of a write (rejected in read-only mode)
EXPLAIN DELETE FROM canary
-- ----
-- why: EXPLAIN ANALYZE of a data-modifying CTE
EXPLAIN ANALYZE WITH d AS (DELETE FROM canary RETURNING *) SELECT * FROM d
-- ----
-- why: EXPLAIN ANALYZE of a locking SELECT
EXPLAIN ANALYZE SELECT * FROM canary FOR UPDATE
-- ----
-- why: EXPLAIN ANALYZE of CREATE TABLE AS
EXPLAIN ANALYZE CREATE TABLE pwned AS SELECT 1
-- ----
-- why: EXPLAIN ANALYZE runs a denied function
EXPLAIN ANALYZE SELECT set_config('transaction_read_only', 'off', false)
-- ----
-- why: denied function in FROM
SELECT * FROM pg_read_file('/etc/passwd')
-- ----
-- why: denied function in WHERE
SELECT * FROM canary WHERE pg_sleep(5)::text IS NOT NULL
-- ----
-- why: denied function in a scalar subquery
SELECT (SELECT pg_terminate_backend(pg_backend_pid()))
-- ----
-- why: denied function in a CTE
WITH c AS (SELECT set_config('role', 'postgres', false)) SELECT * FROM c
-- ----
-- why: denied function in a LATERAL subquery
SELECT * FROM canary c, LATERAL (SELECT pg_advisory_lock(c.id)) AS l
-- ----
-- why: denied function as a LATERAL function
SELECT * FROM secrets s, LATERAL pg_read_file(s.k) AS f
-- ----
-- why: denied function in ORDER BY
SELECT * FROM canary ORDER BY pg_notify('pwn', note)
-- ----
-- why: schema-qualified, upper case
SELECT PG_CATALOG.SET_CONFIG('search_path', 'pwned', false)
-- ----
-- why: quoted identifier
SELECT "set_config"('application_name', 'pwned', false)
-- ----
-- why: quoted schema and function
SELECT "pg_catalog"."set_config"('application_name', 'pwned', false)
-- ----
-- why: quoted identifier in different case
SELECT "SET_CONFIG"('application_name', 'pwned', false)
-- ----
-- why: unicode escapes spelling set_config
SELECT U&"set\005fconfig"('application_name', 'pwned', false)
-- ----
-- why: unicode escapes with a custom escape character
SELECT U&"!0073et_config" UESCAPE '!'('application_name', 'pwned', false)
-- ----
-- why: denied function inside ROWS FROM
SELECT * FROM ROWS FROM (generate_series(1, 2), lo_import('/etc/passwd')) AS r(a, b)
-- ----
-- why: connection to another server
SELECT dblink_exec('dbname=postgres', 'DELETE FROM canary')
-- ----
-- why: runs SQL text the guard cannot see
SELECT query_to_xml('DELETE FROM canary RETURNING 1', true, true, '')
-- ----
-- why: tablefunc's crosstab runs the query text it is given (offered on Azure Database for PostgreSQL)
SELECT * FROM crosstab('SELECT pg_terminate_backend(1)::text, ''a''::text, ''b''::text') AS t(r text, a text)
-- ----
-- why: tablefunc's connectby writes its table and column arguments into the query it runs
SELECT * FROM connectby('canary', 'id', 'pg_terminate_backend(1)::text', '1', 0) AS t(k int, p int, l int)
-- ----
-- why: xml2's xpath_table writes its relation and criteria arguments into the query it runs
SELECT * FROM xpath_table('id', 'note', 'canary', '/a', 'pg_terminate_backend(1)') AS t(k int, a text)
-- ----
-- why: runs SQL text the guard cannot see
SELECT ts_stat('SELECT to_tsvector(note) FROM canary')
-- ----
-- why: sequence write
SELECT nextval('canary_seq')
-- ----
-- why: assigns a transaction id
SELECT txid_current()
-- ----
-- why: assigns a transaction id (new name)
SELECT pg_current_xact_id()
-- ----
-- why: denied function in an aggregate FILTER
SELECT count(*) FILTER (WHERE pg_try_advisory_lock(1)) FROM canary
-- ----
-- why: denied function in a window ORDER BY
SELECT row_number() OVER (ORDER BY pg_cancel_backend(1)) FROM canary
-- ----
-- why: denied function in an aggregate ORDER BY
SELECT string_agg(note, ',' ORDER BY pg_sleep(0)::text) FROM canary
-- ----
-- why: denied function in HAVING
SELECT note FROM canary GROUP BY note HAVING pg_reload_conf()
-- ----
-- why: denied function in an IN subquery
SELECT * FROM canary WHERE id IN (SELECT setval('canary_seq', 1))
-- ----
-- why: denied function in a VALUES list
VALUES (set_config('pwn.x', 'y', false))
-- ----
-- why: denied function under a cast
SELECT CAST(set_config('pwn.x', 'y', false) AS text)
-- ----
-- why: denied function in an ARRAY subquery
SELECT ARRAY(SELECT pg_ls_dir('.'))
-- ----
-- why: denied function in a CASE branch
SELECT CASE WHEN true THEN pg_sleep(1)::text END
-- ----
-- why: denied function with named arguments
SELECT set_config(setting_name => 'pwn.x', new_value => 'y', is_local => false)
-- ----
-- why: denied function inside a VARIADIC array
SELECT concat(VARIADIC ARRAY[set_config('pwn.x', 'y', false)])
-- ----
-- why: denied function inside xmlelement
SELECT xmlelement(name x, pg_read_file('/etc/passwd'))
-- ----
-- why: large object export writes a server file
SELECT lo_export(1, '/tmp/pwned')
-- ----
-- why: WAL and backup control
SELECT pg_switch_wal()
-- ----
-- why: writes to WAL from a read-only transaction
SELECT pg_logical_emit_message(true, 'pwn', 'x')
-- ----
-- why: COPY to a shell command
COPY canary TO PROGRAM 'touch /tmp/pwned'
-- ----
-- why: COPY from a server file
COPY canary FROM '/etc/passwd'
-- ----
-- why: COPY out is not a tool-level read either
COPY (SELECT * FROM secrets) TO STDOUT
-- ----
-- why: anonymous code block
DO $$ BEGIN DELETE FROM canary; END $$
-- ----
-- why: anonymous code block with a tagged dollar quote
DO $body$ BEGIN PERFORM set_config('transaction_read_only', 'off', false); END $body$
-- ----
-- why: procedure call
CALL pwn_proc()
-- ----
-- why: explicit lock
LOCK TABLE canary IN ACCESS EXCLUSIVE MODE
-- ----
-- why: maintenance
VACUUM canary
-- ----
-- why: maintenance
ANALYZE canary
-- ----
-- why: maintenance
CLUSTER canary USING canary_pkey
-- ----
-- why: maintenance
REINDEX TABLE canary
-- ----
-- why: async notifications
LISTEN pwn
-- ----
-- why: async notifications
NOTIFY pwn, 'x'
-- ----
-- why: async notifications
UNLISTEN *
-- ----
-- why: prepared statement hides a write
PREPARE p AS DELETE FROM canary
-- ----
-- why: executes a prepared statement
EXECUTE p
-- ----
-- why: prepared statement state
DEALLOCATE ALL
-- ----
-- why: cursor
DECLARE c CURSOR FOR SELECT * FROM canary
-- ----
-- why: cursor
FETCH ALL FROM c
-- ----
-- why: cursor
CLOSE c
-- ----
-- why: loads a shared library
LOAD 'plpgsql'
-- ----
-- why: server-wide operation
CHECKPOINT
-- ----
-- why: server configuration
ALTER SYSTEM SET work_mem = '1GB'
-- ----
-- why: extension installation
CREATE EXTENSION IF NOT EXISTS dblink
-- ----
-- why: materialized view refresh writes
REFRESH MATERIALIZED VIEW pwned_mv
-- ----
-- why: SELECT INTO creates a table
SELECT * INTO pwned_copy FROM secrets
-- ----
-- why: CREATE TABLE AS
CREATE TABLE pwned_copy AS SELECT * FROM secrets
-- ----
-- why: row locks
SELECT * FROM canary FOR UPDATE
-- ----
-- why: row locks
SELECT * FROM canary FOR SHARE
-- ----
-- why: row locks in a subquery
SELECT * FROM (SELECT * FROM canary FOR UPDATE) AS s
-- ----
-- why: row locks in a CTE
WITH l AS (SELECT * FROM canary FOR NO KEY UPDATE) SELECT * FROM l
-- ----
-- why: row locks with SKIP LOCKED
SELECT * FROM canary FOR KEY SHARE SKIP LOCKED
-- ----
-- why: foreign schema import
IMPORT FOREIGN SCHEMA public FROM SERVER pwned_server INTO public
-- ----
-- why: stores credentials
CREATE USER MAPPING FOR CURRENT_USER SERVER pwned_server OPTIONS (user 'x', password 'y')
-- ----
-- why: default privileges
ALTER DEFAULT PRIVILEGES GRANT ALL ON TABLES TO PUBLIC
-- ----
-- why: rule rewrites later reads into writes
CREATE RULE pwn AS ON SELECT TO canary DO INSTEAD SELECT * FROM secrets
-- ----
-- why: drops the fixture function
DROP FUNCTION bump()
-- ----
-- why: psql-only separator is not SQL
SELECT 1 \; DELETE FROM canary
-- ----
-- why: empty statement
;
-- ----
-- why: only a comment
/* nothing to run */
-- ----
-- why: volatile user function that writes, in the SELECT list
-- needs-db
SELECT bump()
-- ----
-- why: volatile user function, schema-qualified, in FROM
-- needs-db
SELECT * FROM public.bump()
-- ----
-- why: volatile user function in WHERE
-- needs-db
SELECT * FROM canary WHERE public.bump() IS NULL
-- ----
-- why: volatile user function in a CTE
-- needs-db
WITH b AS (SELECT bump()) SELECT * FROM b
-- ----
-- why: volatile user function in ORDER BY
-- needs-db
SELECT * FROM canary ORDER BY bump()
-- ----
-- why: setseed changes session state
-- needs-db
SELECT setseed(0.5)
-- ----
-- why: field selection is a call: (x).f is f(x), seen in the parse tree as an indirection, not a function call
SELECT (12345).pg_terminate_backend
-- ----
-- why: field selection on a subscript
SELECT (ARRAY[12345])[1].pg_cancel_backend
-- ----
-- why: field selection on a column of a FROM item
SELECT (v.p).pg_terminate_backend FROM (VALUES (12345)) v(p)
-- ----
-- why: signalling from a subquery
SELECT 1 WHERE EXISTS (SELECT pg_cancel_backend(12345))
-- ----
-- why: session advisory lock by field selection
SELECT (1::bigint).pg_advisory_lock
-- ----
-- why: advisory lock by field selection inside CASE
SELECT CASE WHEN true THEN (7::bigint).pg_advisory_lock END
-- ----
-- why: advisory lock by field selection on a scalar subquery
SELECT (SELECT 7::bigint).pg_advisory_lock
-- ----
-- why: advisory lock by field selection through a row constructor's field
SELECT (ROW(7::bigint)).f1.pg_advisory_lock
-- ----
-- why: advisory lock by field selection in WHERE
SELECT 1 WHERE (7::bigint).pg_try_advisory_lock
-- ----
-- why: server file read by field selection (a superuser role would return the content)
SELECT ('pg_hba.conf'::text).pg_read_file
-- ----
-- why: attribute notation on a row is a call: t.f is f(t)
SELECT c.pg_terminate_backend FROM (SELECT 12345) c
-- ----
-- why: EXPLAIN of a volatile user function: the explained statement is resolved too
-- needs-db
EXPLAIN SELECT * FROM canary WHERE id = (SELECT bump())
-- ----
-- why: EXPLAIN ANALYZE runs its statement
-- needs-db
EXPLAIN ANALYZE SELECT bump()
