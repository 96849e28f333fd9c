//! The SQL of each health check. Every query answers rows of (object, status, evidence, fix): status is `ok`,
//! `warning` or `critical`; the fix is SQL or a setting for a person to run, never run by pgmcp. `$1`, where a
//! query has it, is the duration threshold in seconds.

/// Schemas of user objects: not the catalogs, TOAST or other sessions' temporary schemas.
macro_rules! user_schema {
    ($n:literal) => {
        concat!(
            $n,
            ".nspname NOT IN ('pg_catalog', 'information_schema') AND ",
            $n,
            ".nspname !~ '^pg_(toast|temp_)'"
        )
    };
}

pub struct CheckSql {
    pub name: &'static str,
    /// What `ok` means, when the query returns no row.
    pub ok: &'static str,
    pub sql: &'static str,
    /// Whether `$1` (the duration threshold) is bound.
    pub timed: bool,
    /// Reads other sessions from pg_stat_activity, which hides their state without pg_read_all_stats.
    pub needs_stats: bool,
    /// Counts the objects this role could not judge; a non-zero count is reported with the grant that helps.
    pub unseen_sql: Option<(&'static str, &'static str)>,
}

const fn check(name: &'static str, ok: &'static str, sql: &'static str) -> CheckSql {
    CheckSql {
        name,
        ok,
        sql,
        timed: false,
        needs_stats: false,
        unseen_sql: None,
    }
}

const fn sessions(name: &'static str, ok: &'static str, sql: &'static str) -> CheckSql {
    CheckSql {
        name,
        ok,
        sql,
        timed: true,
        needs_stats: true,
        unseen_sql: None,
    }
}

pub const CHECKS: &[CheckSql] = &[
    check(
        "invalid_indexes",
        "no invalid index",
        concat!(
            "SELECT format('%I.%I', n.nspname, ci.relname), 'critical', \
             format('invalid index on %s (%s): left by a failed CREATE INDEX CONCURRENTLY (or one still running); \
             writes maintain it, queries never use it', i.indrelid::regclass, pg_size_pretty(pg_relation_size(ci.oid))), \
             format('REINDEX INDEX CONCURRENTLY %I.%I; -- or DROP INDEX CONCURRENTLY %I.%I;', n.nspname, ci.relname, n.nspname, ci.relname) \
             FROM pg_index i JOIN pg_class ci ON ci.oid = i.indexrelid JOIN pg_namespace n ON n.oid = ci.relnamespace \
             WHERE NOT i.indisvalid AND ",
            user_schema!("n"),
            " ORDER BY 1"
        ),
    ),
    check(
        "duplicate_indexes",
        "no duplicate or overlapping index",
        concat!(
            "WITH idx AS (SELECT i.indexrelid, i.indrelid, i.indkey::text AS keys, i.indclass::text AS classes, \
             i.indoption::text AS options, i.indcollation::text AS colls, c.relam, i.indisunique AS uniq, \
             coalesce(pg_get_expr(i.indexprs, i.indrelid), '') AS exprs, coalesce(pg_get_expr(i.indpred, i.indrelid), '') AS pred, \
             EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid) AS constr, format('%I.%I', n.nspname, c.relname) AS name \
             FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE i.indisvalid AND ",
            user_schema!("n"),
            ") SELECT DISTINCT ON (a.name) a.name, 'warning', \
             CASE WHEN a.keys = b.keys THEN format('same definition as %s on %s; %s maintained on every write for nothing', b.name, a.indrelid::regclass, pg_size_pretty(pg_relation_size(a.indexrelid))) \
             ELSE format('its columns lead %s on %s, which serves the same lookups; %s', b.name, a.indrelid::regclass, pg_size_pretty(pg_relation_size(a.indexrelid))) END, \
             format('DROP INDEX CONCURRENTLY %s;', a.name) \
             FROM idx a JOIN idx b ON a.indrelid = b.indrelid AND a.indexrelid <> b.indexrelid AND a.relam = b.relam AND a.pred = b.pred \
             WHERE NOT a.constr AND ((a.keys = b.keys AND a.classes = b.classes AND a.options = b.options AND a.colls = b.colls AND a.exprs = b.exprs \
               AND (b.constr OR (b.uniq AND NOT a.uniq) OR (b.uniq = a.uniq AND a.indexrelid > b.indexrelid))) \
             OR (a.exprs = '' AND b.exprs = '' AND NOT a.uniq AND a.relam = (SELECT oid FROM pg_am WHERE amname = 'btree') \
               AND b.keys LIKE a.keys || ' %' AND b.classes LIKE a.classes || ' %' AND b.options LIKE a.options || ' %')) \
             ORDER BY a.name, (a.keys = b.keys) DESC"
        ),
    ),
    check(
        "unused_indexes",
        "no index over 1 MB unused for 7 days of statistics",
        "WITH w AS (SELECT extract(epoch FROM now() - coalesce((SELECT stats_reset FROM pg_stat_database \
         WHERE datname = current_database()), pg_postmaster_start_time())) AS secs) \
         SELECT format('%I.%I', s.schemaname, s.indexrelname), 'warning', \
         format('no index scan in %s days of statistics; %s on %I.%I', round(w.secs / 86400), \
         pg_size_pretty(pg_relation_size(s.indexrelid)), s.schemaname, s.relname), \
         format('DROP INDEX CONCURRENTLY %I.%I; -- once replicas and rare jobs are known not to use it', s.schemaname, s.indexrelname) \
         FROM pg_stat_user_indexes s JOIN pg_index i ON i.indexrelid = s.indexrelid, w \
         WHERE s.idx_scan = 0 AND i.indisvalid AND NOT i.indisunique AND w.secs >= 7 * 86400 \
         AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = s.indexrelid) \
         AND pg_relation_size(s.indexrelid) >= 1048576 ORDER BY pg_relation_size(s.indexrelid) DESC",
    ),
    CheckSql {
        unseen_sql: Some((
            concat!(
                "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE c.relkind IN ('r', 'm') AND c.relpages >= 128 AND ",
                user_schema!("n"),
                " AND NOT EXISTS (SELECT 1 FROM pg_stats s WHERE s.schemaname = n.nspname AND s.tablename = c.relname)"
            ),
            "tables over 1 MB without column statistics this role can read (never analyzed, or not readable: \
             GRANT SELECT on them, or pg_read_all_data); their bloat is not estimated",
        )),
        ..check(
            "bloat",
            "no table or btree index estimated more than half bloated (8 MB or more)",
            concat!(
                "WITH t AS (SELECT c.oid, n.nspname, c.relname, c.relpages::float8 AS pages, greatest(c.reltuples, 0)::float8 AS tuples, \
                 coalesce((SELECT substring(o FROM 'fillfactor=(\\d+)')::int FROM unnest(c.reloptions) o WHERE o LIKE 'fillfactor=%'), 100) AS ff, \
                 (SELECT sum((1 - s.null_frac) * s.avg_width) FROM pg_stats s WHERE s.schemaname = n.nspname AND s.tablename = c.relname AND NOT s.inherited) AS width, \
                 (SELECT count(*) FROM pg_stats s WHERE s.schemaname = n.nspname AND s.tablename = c.relname AND NOT s.inherited) AS with_stats, \
                 (SELECT count(*) FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped) AS cols \
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE c.relkind IN ('r', 'm') AND c.relpages >= 128 AND ",
                user_schema!("n"),
                "), est AS ( \
                 SELECT format('%I.%I', nspname, relname) AS name, 'table' AS kind, pages, \
                 ceil(tuples * (28 + width) / ((current_setting('block_size')::float8 - 24) * ff / 100)) AS expected \
                 FROM t WHERE with_stats = cols \
                 UNION ALL \
                 SELECT format('%I.%I', t.nspname, ci.relname), 'index', ci.relpages, \
                 ceil(ci.reltuples * (12 + k.width) / ((current_setting('block_size')::float8 - 24) * 0.9)) \
                 FROM t JOIN pg_index i ON i.indrelid = t.oid JOIN pg_class ci ON ci.oid = i.indexrelid \
                 JOIN pg_am am ON am.oid = ci.relam AND am.amname = 'btree' \
                 CROSS JOIN LATERAL (SELECT sum(s.avg_width) AS width, count(*) AS n FROM unnest(i.indkey::int2[]) col \
                   JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = col \
                   JOIN pg_stats s ON s.schemaname = t.nspname AND s.tablename = t.relname AND s.attname = a.attname AND NOT s.inherited) k \
                 WHERE i.indexprs IS NULL AND k.n = i.indnatts AND ci.relpages >= 128) \
                 SELECT name, CASE WHEN (pages - expected) / pages > 0.8 THEN 'critical' ELSE 'warning' END, \
                 format('%s of %s: about %s%% of its %s pages are empty space (%s)', kind, name, round((100 * (pages - expected) / pages)::numeric), pages, \
                 pg_size_pretty(((pages - expected) * current_setting('block_size')::int)::bigint)), \
                 CASE kind WHEN 'index' THEN format('REINDEX INDEX CONCURRENTLY %s;', name) \
                 ELSE format('VACUUM (FULL, ANALYZE) %s; -- rewrites under an ACCESS EXCLUSIVE lock; pg_repack avoids the lock', name) END \
                 FROM est WHERE pages - expected >= 1024 AND (pages - expected) / pages > 0.5 ORDER BY pages - expected DESC"
            ),
        )
    },
    check(
        "vacuum",
        "no table with many dead tuples, stale statistics or autovacuum turned off",
        "SELECT 'server', 'critical', 'autovacuum is off for the whole server', \
         'ALTER SYSTEM SET autovacuum = on; SELECT pg_reload_conf();' WHERE current_setting('autovacuum') = 'off' \
         UNION ALL \
         SELECT format('%I.%I', s.schemaname, s.relname), \
         CASE WHEN f.av_off AND f.many_dead THEN 'critical' ELSE 'warning' END, \
         concat_ws('; ', format('%s dead and %s live tuples', s.n_dead_tup, s.n_live_tup), \
           CASE WHEN f.av_off THEN 'autovacuum is disabled on this table' END, \
           format('last vacuum %s', coalesce(date_trunc('second', greatest(s.last_vacuum, s.last_autovacuum))::text, 'never')), \
           CASE WHEN f.stale THEN format('%s rows changed since the last analyze (%s)', s.n_mod_since_analyze, \
             coalesce(date_trunc('second', greatest(s.last_analyze, s.last_autoanalyze))::text, 'never')) END), \
         concat_ws(' ', CASE WHEN f.av_off THEN format('ALTER TABLE %I.%I RESET (autovacuum_enabled);', s.schemaname, s.relname) END, \
           format('VACUUM (ANALYZE) %I.%I;', s.schemaname, s.relname)) \
         FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid, \
         LATERAL (SELECT EXISTS (SELECT 1 FROM unnest(c.reloptions) o WHERE lower(o) IN ('autovacuum_enabled=false', \
           'autovacuum_enabled=off', 'autovacuum_enabled=0', 'autovacuum_enabled=no', 'autovacuum_enabled=f')) AS av_off, \
           s.n_dead_tup >= 1000 AND s.n_dead_tup > 0.2 * (s.n_live_tup + s.n_dead_tup) AS many_dead, \
           s.n_mod_since_analyze >= 1000 AND s.n_mod_since_analyze > 0.2 * greatest(s.n_live_tup, 1) AS stale) f \
         WHERE f.av_off OR f.many_dead OR f.stale",
    ),
    check(
        "wraparound",
        "every database is far from transaction ID and multixact wraparound",
        "SELECT format('database %I', datname), \
         CASE WHEN greatest(age(datfrozenxid), mxid_age(datminmxid)) > 1500000000 THEN 'critical' ELSE 'warning' END, \
         format('transaction ID age %s and multixact age %s, of about 2 billion before PostgreSQL stops writes; autovacuum_freeze_max_age is %s', \
           age(datfrozenxid), mxid_age(datminmxid), current_setting('autovacuum_freeze_max_age')), \
         'in that database: VACUUM (FREEZE) the oldest tables (ORDER BY age(relfrozenxid) DESC); end old transactions and drop unused replication slots that hold the horizon back' \
         FROM pg_database WHERE datallowconn AND greatest(age(datfrozenxid), mxid_age(datminmxid)) > 500000000",
    ),
    CheckSql {
        unseen_sql: Some((
            "SELECT count(*) FROM pg_sequences WHERE NOT has_sequence_privilege(format('%I.%I', schemaname, sequencename), 'SELECT') \
             AND NOT has_sequence_privilege(format('%I.%I', schemaname, sequencename), 'USAGE')",
            "sequences this role may not read (GRANT SELECT ON SEQUENCE, or pg_read_all_data)",
        )),
        ..check(
            "sequences",
            "no sequence past 75% of its range",
            "SELECT format('%I.%I', s.schemaname, s.sequencename), CASE WHEN s.used >= 0.9 THEN 'critical' ELSE 'warning' END, \
             format('%s%% used: last value %s of %s (%s)', round(s.used * 100, 1), s.last_value, \
               CASE WHEN s.increment_by > 0 THEN s.max_value ELSE s.min_value END, s.data_type), \
             CASE WHEN s.data_type <> 'bigint'::regtype THEN concat( \
               (SELECT string_agg(format('ALTER TABLE %s ALTER COLUMN %I TYPE bigint; ', d.refobjid::regclass, a.attname), '') \
                FROM pg_depend d JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid \
                WHERE d.classid = 'pg_class'::regclass AND d.objid = format('%I.%I', s.schemaname, s.sequencename)::regclass AND d.deptype IN ('a', 'i')), \
               format('ALTER SEQUENCE %I.%I AS bigint;', s.schemaname, s.sequencename)) \
             ELSE format('ALTER SEQUENCE %I.%I MAXVALUE <higher>; -- or move to a wider key', s.schemaname, s.sequencename) END \
             FROM (SELECT *, CASE WHEN increment_by > 0 THEN (last_value - min_value)::numeric / nullif(max_value - min_value, 0) \
               ELSE (max_value - last_value)::numeric / nullif(max_value - min_value, 0) END AS used \
               FROM pg_sequences WHERE last_value IS NOT NULL AND NOT cycle) s \
             WHERE s.used >= 0.75 ORDER BY s.used DESC",
        )
    },
    CheckSql {
        timed: false,
        ..sessions(
            "connections",
            "",
            "SELECT 'server', CASE WHEN c.n >= 0.95 * c.usable THEN 'critical' WHEN c.n >= 0.8 * c.usable THEN 'warning' ELSE 'ok' END, \
             format('%s of %s usable connections in use (max_connections %s, %s reserved): %s', c.n, c.usable, \
               current_setting('max_connections'), current_setting('superuser_reserved_connections'), c.states), \
             'put a connection pooler (PgBouncer) in front, end idle clients, or raise max_connections (restart needed)' \
             FROM (SELECT count(*) AS n, current_setting('max_connections')::int - current_setting('superuser_reserved_connections')::int AS usable, \
               (SELECT string_agg(format('%s %s', k, v), ', ' ORDER BY v DESC) FROM (SELECT coalesce(state, 'not visible') AS k, count(*) AS v \
                 FROM pg_stat_activity WHERE (backend_type = 'client backend' OR (backend_type IS NULL AND usesysid IS NOT NULL)) GROUP BY 1) s) AS states \
               FROM pg_stat_activity WHERE (backend_type = 'client backend' OR (backend_type IS NULL AND usesysid IS NOT NULL))) c",
        )
    },
    sessions(
        "idle_in_transaction",
        "no session idle in a transaction beyond the threshold",
        "SELECT format('pid %s', pid), CASE WHEN now() - state_change > make_interval(secs => 10 * $1::float8) THEN 'critical' ELSE 'warning' END, \
         format('%s (user %s, application %s) has been idle in its transaction for %s, transaction open for %s, holding its locks and the vacuum horizon; last statement: %s', \
           state, usename, nullif(application_name, ''), date_trunc('second', now() - state_change), date_trunc('second', now() - xact_start), left(query, 200)), \
         format('SELECT pg_terminate_backend(%s); -- and set idle_in_transaction_session_timeout', pid) \
         FROM pg_stat_activity WHERE state LIKE 'idle in transaction%' AND now() - state_change > make_interval(secs => $1::float8) \
         AND pid <> pg_backend_pid() ORDER BY state_change",
    ),
    sessions(
        "long_running",
        "no query or transaction running beyond the threshold",
        "SELECT format('pid %s', pid), CASE WHEN now() - coalesce(query_start, xact_start) > make_interval(secs => 10 * $1::float8) THEN 'critical' ELSE 'warning' END, \
         format('query running for %s (transaction open %s, user %s, wait %s): %s', date_trunc('second', now() - query_start), \
           date_trunc('second', now() - xact_start), usename, coalesce(wait_event_type || '/' || wait_event, 'none'), left(query, 200)), \
         format('SELECT pg_cancel_backend(%s); -- or set statement_timeout for this role', pid) \
         FROM pg_stat_activity WHERE state = 'active' AND backend_type = 'client backend' AND pid <> pg_backend_pid() \
         AND now() - query_start > make_interval(secs => $1::float8) ORDER BY query_start",
    ),
    sessions(
        "lock_waits",
        "no session waiting on a lock beyond the threshold",
        "SELECT format('pid %s', a.pid), CASE WHEN now() - a.query_start > make_interval(secs => 10 * $1::float8) THEN 'critical' ELSE 'warning' END, \
         format('waiting %s for a %s lock (%s), blocked by %s; its query: %s', date_trunc('second', now() - a.query_start), \
           a.wait_event, coalesce(a.wait_event_type, '?'), \
           (SELECT string_agg(format('pid %s (user %s, %s, transaction open %s: %s)', b.pid, b.usename, coalesce(b.state, 'state not visible'), \
             date_trunc('second', now() - b.xact_start), left(b.query, 120)), '; ') FROM pg_stat_activity b WHERE b.pid = ANY (pg_blocking_pids(a.pid))), \
           left(a.query, 200)), \
         format('end the blocker: SELECT pg_terminate_backend(%s); -- or cancel the waiter: SELECT pg_cancel_backend(%s);', \
           (pg_blocking_pids(a.pid))[1], a.pid) \
         FROM pg_stat_activity a WHERE cardinality(pg_blocking_pids(a.pid)) > 0 AND now() - a.query_start > make_interval(secs => $1::float8) \
         ORDER BY a.query_start",
    ),
    CheckSql {
        timed: false,
        ..sessions(
            "replication",
            "no inactive replication slot, no slot retaining over 1 GB of WAL, no replica lagging over a minute",
            "SELECT format('slot %s', slot_name), CASE WHEN retained > 10737418240 THEN 'critical' ELSE 'warning' END, \
             format('%s slot, %s, retains %s of WAL%s', slot_type, CASE WHEN active THEN 'active' ELSE 'inactive' END, \
               coalesce(pg_size_pretty(retained), 'unknown'), coalesce(', wal_status ' || wal_status, '')), \
             format('SELECT pg_drop_replication_slot(%L); -- if its consumer is gone for good', slot_name) \
             FROM (SELECT *, CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn) END AS retained \
               FROM pg_replication_slots) s WHERE NOT active OR retained > 1073741824 \
             UNION ALL \
             SELECT format('replica %s', coalesce(nullif(application_name, ''), client_addr::text, pid::text)), \
             CASE WHEN replay_lag > interval '5 minutes' THEN 'critical' ELSE 'warning' END, \
             format('replay lag %s, %s of WAL behind', replay_lag, pg_size_pretty(pg_wal_lsn_diff(sent_lsn, replay_lsn))), \
             'look at the replica''s I/O and long queries (hot_standby_feedback, max_standby_streaming_delay) and the network' \
             FROM pg_stat_replication WHERE replay_lag > interval '1 minute'",
        )
    },
    check(
        "cache_hit_ratio",
        "",
        "SELECT format('database %I', datname), CASE WHEN blks_hit + blks_read < 100000 THEN 'ok' \
         WHEN ratio < 0.9 THEN 'critical' WHEN ratio < 0.95 THEN 'warning' ELSE 'ok' END, \
         CASE WHEN blks_hit + blks_read < 100000 THEN format('too few block reads (%s) to judge the cache yet', blks_hit + blks_read) \
         ELSE format('%s%% of %s block reads came from shared buffers (since %s)', round((ratio * 100)::numeric, 2), blks_hit + blks_read, \
           coalesce(date_trunc('second', stats_reset)::text, 'statistics began')) END, \
         format('raise shared_buffers (now %s; restart needed) or memory; find the large sequential scans with top_queries', current_setting('shared_buffers')) \
         FROM (SELECT *, blks_hit::float8 / nullif(blks_hit + blks_read, 0) AS ratio FROM pg_stat_database WHERE datname = current_database()) d",
    ),
    check(
        "unvalidated_constraints",
        "every constraint is validated",
        concat!(
            "SELECT format('%I on %s', k.conname, k.conrelid::regclass), 'warning', \
             format('%s constraint added NOT VALID: rows that existed before it were never checked', \
               CASE k.contype WHEN 'f' THEN 'foreign key' WHEN 'c' THEN 'check' WHEN 'n' THEN 'not-null' ELSE k.contype::text END), \
             format('ALTER TABLE %s VALIDATE CONSTRAINT %I;', k.conrelid::regclass, k.conname) \
             FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE NOT k.convalidated AND ",
            user_schema!("n"),
            " ORDER BY 1"
        ),
    ),
    check(
        "missing_primary_keys",
        "every table has a primary key",
        concat!(
            "SELECT format('%I.%I', n.nspname, c.relname), 'warning', \
             format('no primary key (about %s rows): rows cannot be addressed reliably and logical replication cannot carry its updates and deletes', \
               greatest(c.reltuples, 0)::bigint), \
             coalesce((SELECT format('ALTER TABLE %I.%I ADD CONSTRAINT %I PRIMARY KEY USING INDEX %I;', n.nspname, c.relname, ci.relname, ci.relname) \
               FROM pg_index i JOIN pg_class ci ON ci.oid = i.indexrelid WHERE i.indrelid = c.oid AND i.indisunique AND i.indisvalid \
               AND i.indexprs IS NULL AND i.indpred IS NULL AND NOT EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid \
               AND a.attnum = ANY (i.indkey::int2[]) AND NOT a.attnotnull) ORDER BY i.indnatts LIMIT 1), \
               format('ALTER TABLE %I.%I ADD PRIMARY KEY (<unique not-null columns>); -- or ADD COLUMN id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY', n.nspname, c.relname)) \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND ",
            user_schema!("n"),
            " AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conrelid = c.oid AND k.contype = 'p') \
             AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e') \
             ORDER BY 1"
        ),
    ),
];
