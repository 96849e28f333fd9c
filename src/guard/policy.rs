//! What the guard lets through: access mode, DDL switch, the two function name lists, and the foreign tables
//! reads may read.

use crate::config::AccessMode;

/// The rules one `check` call enforces. Built once per profile and shared by every query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardPolicy {
    pub access_mode: AccessMode,
    /// Only meaningful with `AccessMode::ReadWrite`.
    pub allow_ddl: bool,
    /// Lower-case names, optionally `schema.name`; `*` matches any run of characters (`dblink*`, `pg_*advisory*`).
    pub denied_functions: Vec<String>,
    /// Volatile functions that may still be called in read-only mode; same pattern syntax as `denied_functions`.
    pub allowed_volatile_functions: Vec<String>,
    /// Foreign tables read-only calls may read (`schema.table`, same pattern syntax): reading one runs a query on
    /// another server, which no check here can see.
    pub allowed_foreign_tables: Vec<String>,
    /// Extensions DDL may create, update or drop (exact names). Empty: none.
    pub allowed_extensions: Vec<String>,
    /// Columns whose values never leave pgmcp unmasked.
    pub masks: Vec<super::masks::MaskRule>,
}

/// Functions that write outside a read-only transaction's reach, change session or server state, read server
/// files, talk to other servers, or run SQL text the guard never sees.
const DENIED_FUNCTIONS: &[&str] = &[
    // session and server configuration
    "set_config",
    "pg_reload_conf",
    "pg_rotate_logfile*",
    "pg_log_*",
    "pg_promote",
    "pg_wal_replay_*",
    "pg_switch_wal",
    "pg_switch_xlog",
    "pg_create_restore_point",
    "pg_start_backup",
    "pg_stop_backup",
    "pg_backup_*",
    "pg_import_system_collations",
    "pg_stop_making_pinned_objects",
    "pg_nextoid",
    "pg_extension_config_dump",
    "binary_upgrade_*",
    // other sessions
    "pg_terminate_backend",
    "pg_cancel_backend",
    // locks and waiting
    "pg_*advisory*",
    "pg_sleep*",
    // notifications, xids and sequences (each escapes or outlives a read-only transaction)
    "pg_notify",
    "txid_current",
    "pg_current_xact_id",
    "nextval",
    "setval",
    // replication
    "pg_logical_emit_message",
    "pg_logical_slot_*",
    "pg_replication_*",
    "pg_*_replication_slot*",
    // server files and large objects
    "pg_read_file",
    "pg_read_file_old",
    "pg_read_binary_file",
    "pg_ls_*",
    "pg_stat_file",
    "pg_file_*",
    "pg_logdir_ls",
    "lo_*",
    "loread",
    "lowrite",
    // other servers and background workers
    "dblink*",
    "postgres_fdw_disconnect*",
    "pg_background_*",
    "cron.schedule",
    "cron.schedule_in_database",
    "cron.unschedule",
    "cron.alter_job",
    // functions that run SQL text the guard cannot inspect
    "query_to_xml*",
    "cursor_to_xml*",
    "database_to_xml*",
    "schema_to_xml*",
    "table_to_xml*",
    "ts_stat",
    "ts_rewrite",
    // tablefunc: crosstab runs its query text, and connectby writes its table and column arguments into one; xml2's
    // xpath_table writes its relation and criteria arguments into the query it runs
    "crosstab*",
    "connectby",
    "xpath_table",
    // statistics, index and storage maintenance that writes
    "pg_stat_reset*",
    "pg_stat_statements_reset",
    "pg_restore_*_stats",
    "pg_clear_*_stats",
    "pg_set_*_stats",
    "brin_summarize_*",
    "brin_desummarize_range",
    "gin_clean_pending_list",
    "pg_truncate_visibility_map",
    "pg_buffercache_evict*",
    "heap_force_*",
    // hypothetical indexes live in the backend, outside any transaction and the session check: only pgmcp's
    // index_advice and explain_query create them, and reset them before the call ends
    "hypopg*",
];

/// Defaults that make sense only when nothing may write: a read-write profile may use sequences and xids.
const READ_ONLY_ONLY: &[&str] = &["nextval", "setval", "txid_current", "pg_current_xact_id"];

/// Volatile only because their result changes between calls or reflects live server state; none writes.
/// Catalog functions are schema-qualified so a same-named volatile function in another schema is not waved through.
const ALLOWED_VOLATILE_FUNCTIONS: &[&str] = &[
    "pg_catalog.random",
    "pg_catalog.random_normal",
    "pg_catalog.clock_timestamp",
    "pg_catalog.statement_timestamp",
    "pg_catalog.timeofday",
    "pg_catalog.gen_random_uuid",
    "pg_catalog.uuidv4",
    "pg_catalog.uuidv7",
    "uuid_generate_v4",
    "pg_catalog.currval",
    "pg_catalog.lastval",
    "pg_catalog.pg_database_size",
    "pg_catalog.pg_relation_size",
    "pg_catalog.pg_table_size",
    "pg_catalog.pg_indexes_size",
    "pg_catalog.pg_total_relation_size",
    "pg_catalog.pg_tablespace_size",
    "pg_catalog.pg_is_in_recovery",
    "pg_catalog.pg_is_wal_replay_paused",
    "pg_catalog.pg_current_wal_lsn",
    "pg_catalog.pg_current_wal_insert_lsn",
    "pg_catalog.pg_current_wal_flush_lsn",
    "pg_catalog.pg_last_wal_receive_lsn",
    "pg_catalog.pg_last_wal_replay_lsn",
    "pg_catalog.pg_last_xact_replay_timestamp",
    "pg_catalog.pg_blocking_pids",
    // Behind pg_locks, pg_prepared_xacts, pg_backend_memory_contexts and pg_shmem_allocations: views the server
    // resolves to these, which only read live state.
    "pg_catalog.pg_lock_status",
    "pg_catalog.pg_prepared_xact",
    "pg_catalog.pg_get_backend_memory_contexts",
    "pg_catalog.pg_get_shmem_allocations",
    "pg_catalog.pg_safe_snapshot_blocking_pids",
    "pg_catalog.pg_partition_tree",
    "pg_catalog.pg_partition_ancestors",
    "pg_catalog.pg_jit_available",
    "pg_catalog.pg_xact_status",
    "pg_catalog.txid_status",
];

impl GuardPolicy {
    pub fn default_denied_functions() -> Vec<String> {
        DENIED_FUNCTIONS
            .iter()
            .map(|name| name.to_string())
            .collect()
    }

    pub fn default_allowed_volatile_functions() -> Vec<String> {
        ALLOWED_VOLATILE_FUNCTIONS
            .iter()
            .map(|name| name.to_string())
            .collect()
    }

    /// The secure default: read-only, no DDL, default lists.
    pub fn read_only() -> Self {
        GuardPolicy {
            access_mode: AccessMode::ReadOnly,
            allow_ddl: false,
            denied_functions: Self::default_denied_functions(),
            allowed_volatile_functions: Self::default_allowed_volatile_functions(),
            allowed_foreign_tables: Vec::new(),
            allowed_extensions: Vec::new(),
            masks: Vec::new(),
        }
    }

    /// Read-write defaults: the deny-list minus sequence and xid functions, which are ordinary in writes.
    pub fn read_write(allow_ddl: bool) -> Self {
        GuardPolicy {
            access_mode: AccessMode::ReadWrite,
            allow_ddl,
            denied_functions: DENIED_FUNCTIONS
                .iter()
                .filter(|name| !READ_ONLY_ONLY.contains(name))
                .map(|name| name.to_string())
                .collect(),
            allowed_volatile_functions: Self::default_allowed_volatile_functions(),
            allowed_foreign_tables: Vec::new(),
            allowed_extensions: Vec::new(),
            masks: Vec::new(),
        }
    }

    /// The deny-list entry matching a call written as `schema.name` / `name`, if any.
    pub(crate) fn denied_entry(&self, schema: Option<&str>, name: &str) -> Option<&str> {
        let schema = schema.map(str::to_lowercase);
        let name = name.to_lowercase();
        self.denied_functions
            .iter()
            .find(|entry| deny_entry_matches(entry, schema.as_deref(), &name))
            .map(String::as_str)
    }

    /// Whether a resolved catalog function (`nspname`, `proname`) is on the volatile allow-list.
    pub(crate) fn volatile_allowed(&self, schema: &str, name: &str) -> bool {
        allowed_by(&self.allowed_volatile_functions, schema, name)
    }

    /// Whether the profile trusts reading the foreign table `schema.name` in read-only mode.
    pub(crate) fn foreign_table_allowed(&self, schema: &str, name: &str) -> bool {
        allowed_by(
            &self.allowed_foreign_tables,
            &schema.to_lowercase(),
            &name.to_lowercase(),
        )
    }
}

/// Whether an allow-list entry (`name` or `schema.name`, `*` as a wildcard) names `schema.name`.
fn allowed_by(entries: &[String], schema: &str, name: &str) -> bool {
    entries.iter().any(|entry| {
        let (entry_schema, entry_name) = split_entry(entry);
        glob_matches(entry_name, name) && entry_schema.is_none_or(|s| glob_matches(s, schema))
    })
}

fn split_entry(entry: &str) -> (Option<&str>, &str) {
    match entry.split_once('.') {
        Some((schema, name)) => (Some(schema), name),
        None => (None, entry),
    }
}

/// An unqualified call may resolve to any schema on the search_path, so a qualified entry also catches it by
/// name — unless the entry's name is a pattern, where that would deny far more than the entry's author meant.
fn deny_entry_matches(entry: &str, schema: Option<&str>, name: &str) -> bool {
    let (entry_schema, entry_name) = split_entry(entry);
    if !glob_matches(entry_name, name) {
        return false;
    }
    match (entry_schema, schema) {
        (None, _) => true,
        (Some(entry_schema), Some(schema)) => glob_matches(entry_schema, schema),
        (Some(_), None) => !entry_name.contains('*'),
    }
}

/// `*` matches any run of characters (including none); everything else matches itself.
pub(crate) fn glob_matches(pattern: &str, text: &str) -> bool {
    let pattern = pattern.as_bytes();
    let text = text.as_bytes();
    let (mut p, mut t) = (0, 0);
    // Position of the last `*` seen and the text position it is currently assumed to cover up to.
    let mut backtrack: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            backtrack = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some((star, covered)) = backtrack {
            p = star + 1;
            t = covered + 1;
            backtrack = Some((star, covered + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_handles_prefix_infix_and_exact_patterns() {
        assert!(glob_matches("dblink*", "dblink_exec"));
        assert!(glob_matches("dblink*", "dblink"));
        assert!(glob_matches("pg_*advisory*", "pg_try_advisory_xact_lock"));
        assert!(glob_matches(
            "pg_*_replication_slot*",
            "pg_create_logical_replication_slot"
        ));
        assert!(glob_matches("set_config", "set_config"));
        assert!(!glob_matches("set_config", "set_config2"));
        assert!(!glob_matches("lo_*", "lower"));
        assert!(!glob_matches("pg_sleep*", "pg_slee"));
        assert!(glob_matches("*", ""));
    }

    #[test]
    fn qualified_entries_match_qualified_and_unqualified_calls() {
        let policy = GuardPolicy {
            denied_functions: vec!["public.bump".into(), "cron.*".into()],
            ..GuardPolicy::read_only()
        };
        assert!(policy.denied_entry(Some("public"), "bump").is_some());
        assert!(policy.denied_entry(None, "bump").is_some());
        assert!(policy.denied_entry(Some("other"), "bump").is_none());
        assert!(policy.denied_entry(Some("cron"), "schedule").is_some());
        assert!(policy.denied_entry(None, "lower").is_none());
    }

    #[test]
    fn deny_matching_ignores_case_of_quoted_names() {
        let policy = GuardPolicy::read_only();
        assert_eq!(
            policy.denied_entry(Some("PG_CATALOG"), "Set_Config"),
            Some("set_config")
        );
    }

    #[test]
    fn read_write_defaults_allow_sequences() {
        let policy = GuardPolicy::read_write(false);
        assert!(policy.denied_entry(None, "nextval").is_none());
        assert!(policy.denied_entry(None, "set_config").is_some());
    }

    #[test]
    fn volatile_allow_list_respects_schema() {
        let policy = GuardPolicy::read_only();
        assert!(policy.volatile_allowed("pg_catalog", "random"));
        assert!(!policy.volatile_allowed("public", "random"));
        assert!(policy.volatile_allowed("extensions", "uuid_generate_v4"));
        assert!(!policy.volatile_allowed("public", "bump"));
    }
}
