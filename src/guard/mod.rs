//! The SQL guard: what a statement may do, decided by the real PostgreSQL parser.
//!
//! Two stages. `check` needs only the SQL text: it parses once with pg_query, classifies the single statement,
//! and walks the whole tree once to apply the function deny-list to every call it can name. `resolved` needs the
//! database: PostgreSQL parses the statement and shows every function it resolved it to, whatever the syntax
//! (field selection, operators, casts, views), and each is checked against the deny-list and, in read-only mode,
//! the volatility gate. The read-only transaction the caller runs the statement in is the third layer, and the
//! session check after each call the fourth; none relies on another.

mod cache;
mod classify;
pub mod corpus;
pub mod masks;
mod policy;
pub mod resolved;
pub mod tree;
mod walk;

#[cfg(test)]
mod resolved_tests;

use std::fmt;

pub use cache::{CACHEABLE_SQL_BYTES, CONFIRMATION_TTL, CachedGuard, OutputMasks};
pub use policy::GuardPolicy;

/// What kind of statement passed the guard; the caller picks the transaction mode from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatementClass {
    /// SELECT, VALUES, TABLE, read-only WITH.
    Read,
    /// EXPLAIN of an allowed statement; `analyze` means the statement is executed.
    Explain {
        analyze: bool,
    },
    Show,
    /// INSERT/UPDATE/DELETE/MERGE (possibly WITH-wrapped), SELECT ... FOR UPDATE. Read-write mode only.
    Write,
    /// Schema changes. Read-write mode with `allow_ddl` only.
    Ddl,
}

/// A function call as written in the statement, for catalog lookup: unquoted names are lower-cased by the
/// parser, quoted names keep their case.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FunctionRef {
    pub schema: Option<String>,
    pub name: String,
}

impl fmt::Display for FunctionRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.schema {
            Some(schema) => write!(f, "{schema}.{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// The guard's decision for an accepted statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub class: StatementClass,
    /// Deduplicated, every function call anywhere in the tree (none of them on the deny-list).
    pub functions: Vec<FunctionRef>,
    /// Where the statement itself lies in the checked text: without a trailing semicolon, and up to the end of
    /// the text when nothing follows it but a comment (so a wrapper must close on a new line).
    pub span: std::ops::Range<usize>,
}

impl Verdict {
    pub(crate) fn new(class: StatementClass, functions: Vec<FunctionRef>) -> Verdict {
        Verdict {
            class,
            functions,
            span: 0..0,
        }
    }
}

/// Why a statement was rejected, phrased for the agent that sent it: what was found and what is allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct GuardError {
    pub reason: String,
}

impl GuardError {
    pub(crate) fn new(reason: impl Into<String>) -> Self {
        GuardError {
            reason: reason.into(),
        }
    }
}

/// Which statement PostgreSQL must resolve so that the guard sees every function a call will run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToResolve {
    /// The statement itself (queries and writes).
    Itself,
    /// A statement inside a utility statement, which PostgreSQL analyses only when it runs: the query of
    /// EXPLAIN and of CREATE TABLE AS / SELECT INTO / CREATE MATERIALIZED VIEW, as PostgreSQL's own deparser
    /// writes it.
    Inner(String),
    /// Nothing runs that could call a function (SHOW), or only DDL the profile allows as a whole.
    Nothing,
}

/// What must be resolved before `sql`, already accepted as `class`, may run.
pub fn statement_that_runs(sql: &str, class: StatementClass) -> Result<ToResolve, GuardError> {
    match class {
        StatementClass::Read | StatementClass::Write => Ok(ToResolve::Itself),
        StatementClass::Show => Ok(ToResolve::Nothing),
        StatementClass::Explain { .. } | StatementClass::Ddl => {
            let inner = match parse_single_statement(sql)?.0 {
                pg_query::NodeEnum::ExplainStmt(explain) => explain.query,
                pg_query::NodeEnum::CreateTableAsStmt(create) => create.query,
                // SELECT INTO is CREATE TABLE AS written as a query: its query is the SELECT without INTO.
                pg_query::NodeEnum::SelectStmt(mut select) if select.into_clause.is_some() => {
                    select.into_clause = None;
                    Some(Box::new(pg_query::Node {
                        node: Some(pg_query::NodeEnum::SelectStmt(select)),
                    }))
                }
                _ => None,
            };
            match inner.and_then(|node| node.node) {
                Some(node) => deparse(node).map(ToResolve::Inner),
                None if class == StatementClass::Ddl => Ok(ToResolve::Nothing),
                None => Err(GuardError::new("EXPLAIN without a statement")),
            }
        }
    }
}

/// The relations a statement names, as written: schema (when given) and name. On a profile with masks, DDL may
/// not name a table with masked columns (see [`masks::refuse_ddl_on_masked`]).
pub fn named_relations(sql: &str) -> Result<Vec<(Option<String>, String)>, GuardError> {
    let (statement, _) = parse_single_statement(sql)?;
    Ok(statement
        .nodes()
        .into_iter()
        .filter_map(|(node, ..)| match node {
            pg_query::NodeRef::RangeVar(range) => Some((
                (!range.schemaname.is_empty()).then(|| range.schemaname.clone()),
                range.relname.clone(),
            )),
            _ => None,
        })
        .collect())
}

fn deparse(node: pg_query::NodeEnum) -> Result<String, GuardError> {
    std::panic::catch_unwind(|| node.deparse(pg_query::DeparseOptions::default()))
        .map_err(|_| GuardError::new("could not restate the inner statement: the deparser failed"))?
        .map_err(|error| GuardError::new(format!("could not restate the inner statement: {error}")))
}

/// First stage: decide from the parse tree alone whether `sql` (exactly one statement) may run under `policy`.
pub fn check(sql: &str, policy: &GuardPolicy) -> Result<Verdict, GuardError> {
    let (statement, span) = parse_single_statement(sql)?;
    let mut verdict = classify::classify(&statement, policy)?;
    verdict.span = span;
    Ok(verdict)
}

fn parse_single_statement(
    sql: &str,
) -> Result<(pg_query::NodeEnum, std::ops::Range<usize>), GuardError> {
    // pg_query post-processes the tree in Rust with a few indexing operations; a bug there must become a
    // rejection, not a crashed server.
    let parsed =
        std::panic::catch_unwind(|| pg_query::parse(sql, pg_query::ParserOptions::DEFAULT))
            .map_err(|_| GuardError::new("could not parse SQL: the parser failed on this input"))?
            .map_err(parse_error)?;
    let mut statements = parsed.protobuf.stmts.into_iter().filter_map(|raw| {
        let span = statement_span(sql, raw.stmt_location, raw.stmt_len);
        raw.stmt.and_then(|node| node.node).map(|node| (node, span))
    });
    match (statements.next(), statements.next()) {
        (None, _) => Err(GuardError::new(
            "empty statement: send exactly one SQL statement",
        )),
        (Some(statement), None) => Ok(statement),
        (Some(_), Some(_)) => Err(GuardError::new(format!(
            "exactly one statement per call: found {}",
            2 + statements.count()
        ))),
    }
}

/// The one statement in `sql` without what surrounds it (leading comments, a trailing semicolon), as
/// PostgreSQL's parser delimits it; a comment after it stays, so a wrapper must close on a new line.
pub fn statement_text(sql: &str) -> Result<&str, GuardError> {
    let (_, span) = parse_single_statement(sql)?;
    sql.get(span)
        .ok_or_else(|| GuardError::new("could not delimit the statement"))
}

/// PostgreSQL's bounds of one statement (a length of 0 means "to the end"), trimmed of trailing blanks and
/// semicolons.
fn statement_span(sql: &str, location: i32, len: i32) -> std::ops::Range<usize> {
    let start = usize::try_from(location).unwrap_or(0).min(sql.len());
    let end = match usize::try_from(len) {
        Ok(len) if len > 0 => (start + len).min(sql.len()),
        _ => sql.len(),
    };
    let text = sql.get(start..end).unwrap_or_default();
    let trimmed = text.trim_end_matches(|c: char| c.is_whitespace() || c == ';');
    start..start + trimmed.len()
}

fn parse_error(error: pg_query::Error) -> GuardError {
    match error {
        pg_query::Error::Parse(message) => {
            GuardError::new(format!("could not parse SQL: {message}"))
        }
        pg_query::Error::Conversion(_) => {
            GuardError::new("could not parse SQL: it contains a NUL character")
        }
        // prost refuses trees deeper than its recursion limit (100 messages). PostgreSQL accepts deeper ones,
        // but lifting the limit would let a long `a || b || ...` chain overflow the stack and abort the process.
        pg_query::Error::Decode(_) => GuardError::new(
            "statement is nested too deeply for the guard to check (about 50 chained operators or 100 UNION \
             branches at most): simplify it, e.g. with concat(...), VALUES or arrays",
        ),
        other => GuardError::new(format!("could not parse SQL: {other}")),
    }
}
