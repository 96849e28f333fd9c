-- The objects the guard fuzzer composes into statements. Loaded by a superuser into the `fuzz` database; the
-- fuzzed calls run as `prober`, a plain role that may signal its own backends (any role may) and read everything.
CREATE ROLE prober LOGIN;
GRANT CONNECT ON DATABASE fuzz TO prober;
CREATE EXTENSION IF NOT EXISTS dblink;
-- tablefunc's crosstab runs the query text it is given (Azure Database for PostgreSQL offers the extension).
CREATE EXTENSION IF NOT EXISTS tablefunc;
-- xml2's xpath_table writes its criteria argument into the query it runs.
CREATE EXTENSION IF NOT EXISTS xml2;

-- What an accepted statement must never change.
CREATE TABLE public.canary (id serial PRIMARY KEY, note text NOT NULL);
INSERT INTO public.canary (note) VALUES ('seed');
CREATE SEQUENCE public.fuzz_seq;
SELECT nextval('public.fuzz_seq');

-- Rows to call functions on by attribute notation: `t.kill_target` is `kill_target(t)`. pid is the victim's,
-- kept current by the harness.
CREATE TABLE public.targets (pid int NOT NULL, k bigint NOT NULL);
INSERT INTO public.targets VALUES (0, 4242);
-- A composite with a column pgmcp cannot decode in binary (point), so a result of this type is cast to text.
CREATE TABLE public.places (k bigint NOT NULL, at point NOT NULL);
INSERT INTO public.places VALUES (4242, point(1, 2));

-- A user-defined VOLATILE function that writes, and VOLATILE ones that reach other sessions or the session.
CREATE FUNCTION public.write_canary() RETURNS int LANGUAGE sql VOLATILE
    AS $$ INSERT INTO public.canary (note) VALUES ('written') RETURNING id $$;
CREATE FUNCTION public.write_canary_with(n int) RETURNS int LANGUAGE sql VOLATILE
    AS $$ INSERT INTO public.canary (note) VALUES ('written ' || n) RETURNING id $$;
CREATE FUNCTION public.lock_key(k bigint) RETURNS bool LANGUAGE sql VOLATILE
    AS $$ SELECT pg_catalog.pg_try_advisory_lock(k) $$;
CREATE FUNCTION public.kill_target(t public.targets) RETURNS bool LANGUAGE sql VOLATILE
    AS $$ SELECT pg_catalog.pg_terminate_backend(t.pid) $$;
CREATE FUNCTION public.lock_target(t public.targets) RETURNS bool LANGUAGE sql VOLATILE
    AS $$ SELECT pg_catalog.pg_try_advisory_lock(t.k) $$;
CREATE FUNCTION public.lock_many(VARIADIC keys bigint[]) RETURNS bool LANGUAGE sql VOLATILE
    AS $$ SELECT bool_and(pg_catalog.pg_try_advisory_lock(k)) FROM unnest(keys) k $$;
CREATE FUNCTION public.kill_setof(p int) RETURNS SETOF bool LANGUAGE sql VOLATILE
    AS $$ SELECT pg_catalog.pg_terminate_backend(p) $$;

-- Functions declared STABLE whose bodies do what a STABLE function must not: the guard trusts the declaration.
CREATE FUNCTION public.stable_writer(n int) RETURNS int LANGUAGE plpgsql STABLE
    AS $$ BEGIN RETURN public.write_canary_with(n); END $$;
CREATE FUNCTION public.stable_locker(k bigint) RETURNS bool LANGUAGE plpgsql STABLE
    AS $$ BEGIN RETURN pg_catalog.pg_try_advisory_lock(k); END $$;
CREATE FUNCTION public.stable_killer(p int) RETURNS bool LANGUAGE plpgsql STABLE
    AS $$ BEGIN RETURN pg_catalog.pg_terminate_backend(p); END $$;
CREATE FUNCTION public.stable_setter(v text) RETURNS text LANGUAGE plpgsql STABLE
    AS $$ BEGIN RETURN pg_catalog.set_config('fuzz.flag', v, false); END $$;
CREATE FUNCTION public.stable_listener(v text) RETURNS text LANGUAGE plpgsql STABLE
    AS $$ BEGIN EXECUTE 'LISTEN fuzz_leak'; RETURN v; END $$;
-- Writes through another connection, which commits on its own (dblink needs a superuser caller here).
CREATE FUNCTION public.stable_remote_writer(conn text) RETURNS text LANGUAGE plpgsql STABLE
    AS $$ BEGIN
        RETURN public.dblink_exec(conn, 'INSERT INTO public.canary (note) VALUES (''remote'')');
    END $$;

-- Calls hidden behind catalog objects: an operator, a domain constraint, casts, a view, a default argument, an
-- aggregate's transition function, an operator class, a cast to json.
CREATE FUNCTION public.lock_op(a bigint, b bigint) RETURNS bool LANGUAGE sql VOLATILE
    AS $$ SELECT pg_catalog.pg_try_advisory_lock(a + b) $$;
CREATE OPERATOR public.### (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = public.lock_op);
CREATE DOMAIN public.locked_key AS bigint CHECK (public.lock_key(VALUE));
CREATE TYPE public.pair AS (a bigint, b bigint);
CREATE FUNCTION public.pair_of(k bigint) RETURNS public.pair LANGUAGE sql VOLATILE
    AS $$ SELECT ROW(k, k)::public.pair FROM (SELECT pg_catalog.pg_try_advisory_lock(k)) l $$;
CREATE CAST (bigint AS public.pair) WITH FUNCTION public.pair_of(bigint);
CREATE FUNCTION public.places_text(p public.places) RETURNS text LANGUAGE sql VOLATILE
    AS $$ SELECT pg_catalog.pg_try_advisory_lock(p.k)::text
                 || pg_catalog.pg_terminate_backend((SELECT pid FROM public.targets))::text $$;
CREATE CAST (public.places AS text) WITH FUNCTION public.places_text(public.places);
CREATE VIEW public.writer_view AS SELECT public.write_canary() AS w;
CREATE VIEW public.locker_view AS SELECT public.lock_key(4242) AS l;
CREATE FUNCTION public.with_default(k bigint DEFAULT (CASE WHEN public.lock_key(4242) THEN 1 ELSE 0 END))
    RETURNS bigint LANGUAGE sql STABLE AS $$ SELECT k $$;
CREATE FUNCTION public.lock_sfunc(acc bigint, k bigint) RETURNS bigint LANGUAGE sql VOLATILE
    AS $$ SELECT CASE WHEN pg_catalog.pg_try_advisory_lock(k) THEN acc ELSE acc END $$;
CREATE AGGREGATE public.lock_agg(bigint) (SFUNC = public.lock_sfunc, STYPE = bigint, INITCOND = '0');
-- A type whose default operator class compares with a function that locks and signals: PostgreSQL calls it by
-- the type (GREATEST, array comparisons and searches), and no statement names it.
CREATE TYPE public.ordered_key AS (k bigint);
CREATE FUNCTION public.ordered_key_cmp(a public.ordered_key, b public.ordered_key) RETURNS int
    LANGUAGE sql VOLATILE
    AS $$ SELECT pg_catalog.btint8cmp(a.k, b.k)
                 + 0 * (pg_catalog.pg_try_advisory_lock(a.k)::int
                        + pg_catalog.pg_terminate_backend((SELECT pid FROM public.targets))::int) $$;
CREATE FUNCTION public.ordered_key_lt(a public.ordered_key, b public.ordered_key) RETURNS bool
    LANGUAGE sql IMMUTABLE AS $$ SELECT a.k < b.k $$;
CREATE FUNCTION public.ordered_key_le(a public.ordered_key, b public.ordered_key) RETURNS bool
    LANGUAGE sql IMMUTABLE AS $$ SELECT a.k <= b.k $$;
CREATE FUNCTION public.ordered_key_eq(a public.ordered_key, b public.ordered_key) RETURNS bool
    LANGUAGE sql VOLATILE AS $$ SELECT public.ordered_key_cmp(a, b) = 0 $$;
CREATE FUNCTION public.ordered_key_ge(a public.ordered_key, b public.ordered_key) RETURNS bool
    LANGUAGE sql IMMUTABLE AS $$ SELECT a.k >= b.k $$;
CREATE FUNCTION public.ordered_key_gt(a public.ordered_key, b public.ordered_key) RETURNS bool
    LANGUAGE sql IMMUTABLE AS $$ SELECT a.k > b.k $$;
CREATE OPERATOR public.< (LEFTARG = public.ordered_key, RIGHTARG = public.ordered_key,
    FUNCTION = public.ordered_key_lt);
CREATE OPERATOR public.<= (LEFTARG = public.ordered_key, RIGHTARG = public.ordered_key,
    FUNCTION = public.ordered_key_le);
CREATE OPERATOR public.= (LEFTARG = public.ordered_key, RIGHTARG = public.ordered_key,
    FUNCTION = public.ordered_key_eq);
CREATE OPERATOR public.>= (LEFTARG = public.ordered_key, RIGHTARG = public.ordered_key,
    FUNCTION = public.ordered_key_ge);
CREATE OPERATOR public.> (LEFTARG = public.ordered_key, RIGHTARG = public.ordered_key,
    FUNCTION = public.ordered_key_gt);
CREATE OPERATOR CLASS public.ordered_key_ops DEFAULT FOR TYPE public.ordered_key USING btree AS
    OPERATOR 1 public.<, OPERATOR 2 public.<=, OPERATOR 3 public.=, OPERATOR 4 public.>=, OPERATOR 5 public.>,
    FUNCTION 1 public.ordered_key_cmp(public.ordered_key, public.ordered_key);
-- A type whose cast to json locks and signals: the JSON functions look it up by the type, and no statement names it.
CREATE TYPE public.json_key AS ENUM ('4242');
CREATE FUNCTION public.json_key_json(k public.json_key) RETURNS json LANGUAGE sql VOLATILE
    AS $$ SELECT pg_catalog.to_json(k::text || CASE WHEN s.locked OR s.signalled THEN '' ELSE '' END)
          FROM (SELECT pg_catalog.pg_try_advisory_lock(4242) AS locked,
                       pg_catalog.pg_terminate_backend((SELECT pid FROM public.targets)) AS signalled) AS s $$;
CREATE CAST (public.json_key AS json) WITH FUNCTION public.json_key_json(public.json_key);
-- Operators whose own functions are PostgreSQL's, with a negator and a commutator that lock and signal: the
-- planner runs the negator in the operator's place (`NOT (a #=# b)`) and the commutator to estimate `3 #<# column`
-- on the column's histogram. No tree names either.
CREATE FUNCTION public.negator_ne(a bigint, b bigint) RETURNS bool LANGUAGE sql VOLATILE
    AS $$ SELECT CASE WHEN s.locked OR s.signalled THEN a <> b ELSE a <> b END
          FROM (SELECT pg_catalog.pg_try_advisory_lock(4242) AS locked,
                       pg_catalog.pg_terminate_backend((SELECT pid FROM public.targets)) AS signalled) AS s $$;
CREATE OPERATOR public.#<># (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = public.negator_ne);
CREATE OPERATOR public.#=# (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = pg_catalog.int8eq,
    NEGATOR = OPERATOR(public.#<>#), RESTRICT = eqsel);
CREATE FUNCTION public.commutator_gt(a bigint, b bigint) RETURNS bool LANGUAGE sql VOLATILE
    AS $$ SELECT CASE WHEN s.locked OR s.signalled THEN a > b ELSE a > b END
          FROM (SELECT pg_catalog.pg_try_advisory_lock(4242) AS locked,
                       pg_catalog.pg_terminate_backend((SELECT pid FROM public.targets)) AS signalled) AS s $$;
CREATE OPERATOR public.#># (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = public.commutator_gt);
CREATE OPERATOR public.#<# (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = pg_catalog.int8lt,
    COMMUTATOR = OPERATOR(public.#>#), RESTRICT = scalarltsel);
CREATE TABLE public.spread (v bigint NOT NULL);
INSERT INTO public.spread SELECT g FROM pg_catalog.generate_series(1, 200) AS g;
ANALYZE public.spread;
-- An IMMUTABLE function written in the database that locks and signals, in a CHECK constraint of a table that
-- inherits from another, and in an index expression: the planner simplifies both while it plans a read, which
-- calls the function, and no tree of the statement names it.
CREATE FUNCTION public.planner_key() RETURNS bigint LANGUAGE plpgsql IMMUTABLE
    AS $$ BEGIN
        PERFORM pg_catalog.pg_try_advisory_lock(4242);
        PERFORM pg_catalog.pg_terminate_backend((SELECT pid FROM public.targets));
        RETURN 0;
    END $$;
CREATE TABLE public.planned_parent (v bigint NOT NULL);
CREATE TABLE public.planned_child (CHECK (v + public.planner_key() >= 0)) INHERITS (public.planned_parent);
CREATE TABLE public.planned_indexed (v bigint NOT NULL);
CREATE INDEX planned_indexed_shifted ON public.planned_indexed ((v + public.planner_key()));
-- A table partitioned by a public.ordered_key: PostgreSQL sorts the partitions' bounds with the key's operator
-- class (whose comparison locks and signals) when it loads the table, whatever the statement compares.
CREATE TABLE public.planned_listed (key public.ordered_key NOT NULL) PARTITION BY LIST (key);
CREATE TABLE public.planned_listed_low PARTITION OF public.planned_listed FOR VALUES IN ('(1)', '(3)');
CREATE TABLE public.planned_listed_high PARTITION OF public.planned_listed FOR VALUES IN ('(2)', '(4)');

GRANT SELECT ON ALL TABLES IN SCHEMA public TO prober;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO prober;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA public TO prober;
