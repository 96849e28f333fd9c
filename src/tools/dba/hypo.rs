//! Hypothetical indexes through hypopg, for index_advice and explain_query's `hypothetical_indexes`.
//!
//! hypopg keeps its indexes in the backend's memory: a rollback does not remove them and the session check
//! (`db::session::LEFTOVERS_SQL`) cannot list them, because plain SQL cannot call a function that may not exist.
//! So the guarantee is made here, with a marker the session check does see: before creating any, the call takes
//! a session-level advisory lock on (HYPO_MARK, its pid), and releases it only after `hypopg_reset()` succeeded.
//! A call that fails before the reset, or is abandoned mid-way, leaves the lock, and the session check then
//! closes the connection, taking the hypothetical indexes with it.
//! While the marker is held, the session's reads leave it alone (`Session::keep_advisory_locks`): the check a
//! read sends in its own flight releases the session's advisory locks.
//!
//! hypopg's functions are VOLATILE, so execute_query's volatility gate refuses them, and `hypopg*` is on the
//! default deny-list for read-write profiles: only pgmcp's own code calls them, on the call's session.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::db::quote_ident;
use crate::db::session::Session;
use crate::tools::ToolError;

/// "pgmH": the advisory-lock key that marks a session holding hypothetical indexes.
const HYPO_MARK: i32 = 0x7067_6d48;

pub const HYPOPG_SETUP: &str = "hypopg is not installed in this database. To enable it: install the hypopg package on the server \
(Debian/Ubuntu: postgresql-<major>-hypopg; it needs no restart), then run CREATE EXTENSION hypopg; in this database. \
On Azure Database for PostgreSQL flexible server, add HYPOPG to the azure.extensions server parameter, then CREATE EXTENSION hypopg.";

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum IndexMethod {
    #[default]
    Btree,
    Hash,
    Brin,
    Gin,
    Gist,
}

impl IndexMethod {
    fn sql(self) -> &'static str {
        match self {
            IndexMethod::Btree => "btree",
            IndexMethod::Hash => "hash",
            IndexMethod::Brin => "brin",
            IndexMethod::Gin => "gin",
            IndexMethod::Gist => "gist",
        }
    }
}

/// An index to plan with as if it existed: plain columns only, so creating it runs nothing of the caller's.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HypotheticalIndex {
    /// Table: name (on the search_path) or schema.name.
    pub table: String,
    /// Key columns in order.
    pub columns: Vec<String>,
    #[serde(default)]
    pub method: IndexMethod,
}

/// An index definition checked against the catalog: the table exists and has these columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexDef {
    /// The table as `schema.table`, quoted.
    pub table: String,
    pub columns: Vec<String>,
    pub method: IndexMethod,
}

impl IndexDef {
    fn column_list(&self) -> String {
        self.columns
            .iter()
            .map(|c| quote_ident(c))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn using(&self) -> String {
        match self.method {
            IndexMethod::Btree => String::new(),
            other => format!(" USING {}", other.sql()),
        }
    }

    pub fn create_sql(&self) -> String {
        format!(
            "CREATE INDEX ON {}{} ({})",
            self.table,
            self.using(),
            self.column_list()
        )
    }

    /// What a person runs to build it without blocking writes.
    pub fn create_concurrently_sql(&self) -> String {
        format!(
            "CREATE INDEX CONCURRENTLY ON {}{} ({});",
            self.table,
            self.using(),
            self.column_list()
        )
    }
}

/// Checks a requested index against the catalog.
pub async fn resolve(
    session: &mut Session,
    index: &HypotheticalIndex,
) -> Result<IndexDef, ToolError> {
    if index.columns.is_empty() {
        return Err(ToolError::invalid(
            "a hypothetical index needs at least one column",
        ));
    }
    let name = match index.table.split_once('.') {
        Some((schema, table)) => format!("{}.{}", quote_ident(schema), quote_ident(table)),
        None => quote_ident(&index.table),
    };
    let txn = session.build_transaction().read_only(true).start().await?;
    let row = txn
        .query_opt(
            "SELECT format('%I.%I', n.nspname, c.relname), \
             array(SELECT a.attname::text FROM pg_catalog.pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 \
                   AND NOT a.attisdropped ORDER BY a.attnum) \
             FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.oid = pg_catalog.to_regclass($1) AND c.relkind IN ('r', 'm')",
            &[&name],
        )
        .await?;
    let Some(row) = row else {
        return Err(ToolError::invalid(format!(
            "table `{}` does not exist or is not a plain table; call list_tables to see the tables",
            index.table
        )));
    };
    let known: Vec<String> = row.get(1);
    if let Some(missing) = index.columns.iter().find(|c| !known.contains(c)) {
        return Err(ToolError::invalid(format!(
            "column `{missing}` does not exist in {}; its columns are: {}",
            index.table,
            known.join(", ")
        )));
    }
    Ok(IndexDef {
        table: row.get(0),
        columns: index.columns.clone(),
        method: index.method,
    })
}

/// hypopg on one call's session, with the marker taken. Every path that has one must end with [`Hypo::close`].
pub struct Hypo {
    schema: String,
}

/// A hypothetical index hypopg created.
#[derive(Debug, Clone)]
pub struct Created {
    pub oid: u32,
    /// hypopg's name for it, as plans show it ("<13456>btree_orders_customer_id").
    pub name: String,
}

impl Hypo {
    /// `None` when hypopg is not installed in this database.
    pub async fn open(session: &mut Session) -> Result<Option<Hypo>, ToolError> {
        let txn = session.build_transaction().read_only(true).start().await?;
        let Some(schema) = super::extension_schema(&*txn, "hypopg").await? else {
            return Ok(None);
        };
        let marked: bool = txn
            .query_one(
                "SELECT pg_catalog.pg_try_advisory_lock($1, pg_catalog.pg_backend_pid())",
                &[&HYPO_MARK],
            )
            .await?
            .get(0);
        if !marked {
            return Err(ToolError::Unavailable {
                message: "could not mark the session for hypothetical indexes; try again".into(),
            });
        }
        // Indexes another call left would distort the costs (none should exist: see the module comment).
        txn.batch_execute(&format!("SELECT {schema}.hypopg_reset()"))
            .await?;
        drop(txn);
        session.keep_advisory_locks(true);
        Ok(Some(Hypo { schema }))
    }

    pub async fn create(
        &self,
        session: &mut Session,
        index: &IndexDef,
    ) -> Result<Created, ToolError> {
        let txn = session.build_transaction().read_only(true).start().await?;
        let row = txn
            .query_one(
                &format!(
                    "SELECT indexrelid, indexname FROM {}.hypopg_create_index($1)",
                    self.schema
                ),
                &[&index.create_sql()],
            )
            .await?;
        Ok(Created {
            oid: row.get(0),
            name: row.get(1),
        })
    }

    /// The estimated size of a hypothetical index, in bytes.
    pub async fn size(&self, session: &mut Session, index: &Created) -> Result<i64, ToolError> {
        let txn = session.build_transaction().read_only(true).start().await?;
        let row = txn
            .query_one(
                &format!("SELECT {}.hypopg_relation_size($1)", self.schema),
                &[&index.oid],
            )
            .await?;
        Ok(row.get(0))
    }

    pub async fn drop_index(
        &self,
        session: &mut Session,
        index: &Created,
    ) -> Result<(), ToolError> {
        let txn = session.build_transaction().read_only(true).start().await?;
        txn.query_one(
            &format!("SELECT {}.hypopg_drop_index($1)", self.schema),
            &[&index.oid],
        )
        .await?;
        Ok(())
    }

    /// Removes every hypothetical index, then the marker. When the reset fails the marker stays, so the
    /// session check closes the connection.
    pub async fn close(self, session: &mut Session) -> Result<(), ToolError> {
        let txn = session.build_transaction().read_only(true).start().await?;
        txn.batch_execute(&format!("SELECT {}.hypopg_reset()", self.schema))
            .await?;
        txn.query_one(
            "SELECT pg_catalog.pg_advisory_unlock($1, pg_catalog.pg_backend_pid())",
            &[&HYPO_MARK],
        )
        .await?;
        drop(txn);
        session.keep_advisory_locks(false);
        Ok(())
    }
}

/// Closes hypopg after the work that used it, whatever that work returned; the work's error wins.
pub async fn finish<T>(
    hypo: Hypo,
    session: &mut Session,
    result: Result<T, ToolError>,
) -> Result<T, ToolError> {
    let closed = hypo.close(session).await;
    let value = result?;
    closed?;
    Ok(value)
}
