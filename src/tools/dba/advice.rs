//! index_advice: indexes measured, not guessed. Candidate column lists come from the statements' filters, joins
//! and orderings; each is created as a hypothetical index (hypopg) and the statements are planned again. A
//! greedy search keeps, round by round, the candidate that lowers the workload's cost most, as long as it lowers
//! some statement's cost by at least a tenth and the planner uses it.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::candidates::{assign, column_sets, statement_columns};
use super::hypo::{HYPOPG_SETUP, Hypo, IndexDef, IndexMethod, finish};
use crate::db::Database;
use crate::db::session::Session;
use crate::tools::ToolError;
use crate::tools::query::{explain_plan, plan_total_cost, plan_uses_index};

pub const INDEX_ADVICE_DESCRIPTION: &str = "Propose up to 3 indexes for read-only statements: candidates from their \
filters, joins and orderings, each measured as a hypothetical index (hypopg); kept only if the planner uses it and \
it cuts a statement's cost by 10%+. Answers CREATE INDEX CONCURRENTLY statements (never run) with estimated size \
and costs before and after.";

const MAX_STATEMENTS: usize = 10;
const MAX_CANDIDATES: usize = 20;
const MAX_INDEXES: usize = 3;
/// A candidate must cut some statement's plan cost by at least this fraction.
const MIN_GAIN: f64 = 0.10;

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IndexAdviceParams {
    /// Up to 10 read-only statements, with literal values (no $n). Default: the 10 most time-consuming in
    /// pg_stat_statements.
    #[serde(default)]
    pub statements: Option<Vec<String>>,
    /// Database profile to use (see list_profiles); default: the first profile.
    #[serde(default)]
    pub profile: Option<String>,
}

#[derive(Debug, Default, Serialize, JsonSchema)]
pub struct IndexAdvice {
    /// How to enable hypopg, when it is not installed (nothing was measured).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub setup: Option<String>,
    /// In the order they were chosen; each measured with the ones before it in place.
    pub recommendations: Vec<Recommendation>,
    /// Each statement's plan cost without and with all recommended indexes.
    pub statements: Vec<StatementCost>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct Recommendation {
    /// Run this to build it; pgmcp never does.
    pub sql: String,
    pub table: String,
    pub columns: Vec<String>,
    /// hypopg's size estimate.
    pub estimated_size_bytes: i64,
    /// Sum of the statements' plan costs before and after adding this index.
    pub workload_cost_before: f64,
    pub workload_cost_after: f64,
    /// 1-based positions in `statements` of the statements it speeds up.
    pub helps: Vec<usize>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct StatementCost {
    /// The statement's first 200 characters.
    pub statement: String,
    pub cost_before: f64,
    pub cost_after: f64,
}

struct Candidate {
    def: IndexDef,
    /// Positions of the statements that name its table.
    statements: Vec<usize>,
}

pub async fn index_advice(
    db: &Database,
    session: &mut Session,
    params: IndexAdviceParams,
    cancel: &CancellationToken,
) -> Result<IndexAdvice, ToolError> {
    let mut advice = IndexAdvice::default();
    let generic = server_version(session).await? >= 160000;
    let statements = match params.statements {
        Some(list) if list.is_empty() => return Err(ToolError::invalid("`statements` is empty")),
        Some(list) if list.len() > MAX_STATEMENTS => {
            return Err(ToolError::invalid(format!(
                "at most {MAX_STATEMENTS} statements per call"
            )));
        }
        Some(list) => list,
        None => workload(session, generic, &mut advice.notes).await?,
    };
    if statements.is_empty() {
        return Ok(advice);
    }
    let Some(hypo) = Hypo::open(session).await? else {
        advice.setup = Some(HYPOPG_SETUP.to_string());
        return Ok(advice);
    };
    let result = measure(
        db,
        session,
        &hypo,
        &statements,
        generic,
        cancel,
        &mut advice,
    )
    .await;
    finish(hypo, session, result).await?;
    Ok(advice)
}

async fn measure(
    db: &Database,
    session: &mut Session,
    hypo: &Hypo,
    statements: &[String],
    generic: bool,
    cancel: &CancellationToken,
    advice: &mut IndexAdvice,
) -> Result<(), ToolError> {
    let options = if generic {
        "GENERIC_PLAN, FORMAT JSON"
    } else {
        "FORMAT JSON"
    };
    let mut baseline = Vec::with_capacity(statements.len());
    for sql in statements {
        let plan = explain_plan(db, session, sql, options, &[], cancel).await?;
        baseline.push(plan_total_cost(&plan));
    }
    let mut candidates = candidates(session, statements).await?;
    let mut current = baseline.clone();
    for _ in 0..MAX_INDEXES {
        let mut best: Option<(usize, Vec<f64>)> = None;
        for (at, candidate) in candidates.iter().enumerate() {
            let costs = costs_with(
                db, session, hypo, candidate, statements, options, &current, cancel,
            )
            .await?;
            let helps = costs
                .iter()
                .zip(&current)
                .any(|(new, old)| *new <= old * (1.0 - MIN_GAIN));
            let gain: f64 = current.iter().zip(&costs).map(|(old, new)| old - new).sum();
            let better = best.as_ref().is_none_or(|(_, b)| {
                gain > current
                    .iter()
                    .zip(b)
                    .map(|(old, new)| old - new)
                    .sum::<f64>()
            });
            if helps && better {
                best = Some((at, costs));
            }
        }
        let Some((at, costs)) = best else { break };
        let chosen = candidates.remove(at);
        // Kept in place, so the next round measures what else helps on top of it.
        let created = hypo.create(session, &chosen.def).await?;
        let size = hypo.size(session, &created).await?;
        let helps = costs
            .iter()
            .zip(&current)
            .enumerate()
            .filter(|(_, (new, old))| **new <= *old * (1.0 - MIN_GAIN))
            .map(|(i, _)| i + 1)
            .collect();
        advice.recommendations.push(Recommendation {
            sql: chosen.def.create_concurrently_sql(),
            table: chosen.def.table.clone(),
            columns: chosen.def.columns.clone(),
            estimated_size_bytes: size,
            workload_cost_before: round2(current.iter().sum()),
            workload_cost_after: round2(costs.iter().sum()),
            helps,
        });
        current = costs;
    }
    advice.statements = statements
        .iter()
        .zip(baseline.iter().zip(&current))
        .map(|(sql, (before, after))| StatementCost {
            statement: sql.chars().take(200).collect(),
            cost_before: round2(*before),
            cost_after: round2(*after),
        })
        .collect();
    if advice.recommendations.is_empty() {
        advice.notes.push(
            "no candidate index lowered a statement's plan cost by 10% or more; the existing indexes serve these statements"
                .into(),
        );
    }
    Ok(())
}

/// The statements' costs with one more hypothetical index; a statement whose plan does not use it keeps its cost.
#[allow(clippy::too_many_arguments)]
async fn costs_with(
    db: &Database,
    session: &mut Session,
    hypo: &Hypo,
    candidate: &Candidate,
    statements: &[String],
    options: &str,
    current: &[f64],
    cancel: &CancellationToken,
) -> Result<Vec<f64>, ToolError> {
    let created = hypo.create(session, &candidate.def).await?;
    let mut costs = current.to_vec();
    let mut outcome = Ok(());
    for &i in &candidate.statements {
        match explain_plan(db, session, &statements[i], options, &[], cancel).await {
            Ok(plan) if plan_uses_index(&plan, &created.name) => {
                costs[i] = plan_total_cost(&plan).min(current[i]);
            }
            Ok(_) => {}
            Err(error) => {
                outcome = Err(error);
                break;
            }
        }
    }
    hypo.drop_index(session, &created).await?;
    outcome.map(|()| costs)
}

/// Candidate indexes over every statement, without the ones an existing valid index already leads with.
async fn candidates(
    session: &mut Session,
    statements: &[String],
) -> Result<Vec<Candidate>, ToolError> {
    let txn = session.build_transaction().read_only(true).start().await?;
    let mut out: Vec<Candidate> = Vec::new();
    for (position, sql) in statements.iter().enumerate() {
        let Ok(named) = statement_columns(sql) else {
            continue;
        };
        let mut tables = Vec::with_capacity(named.tables.len());
        let mut columns = Vec::with_capacity(named.tables.len());
        for (schema, name, _) in &named.tables {
            let qualified = match schema {
                Some(schema) => format!(
                    "{}.{}",
                    crate::db::quote_ident(schema),
                    crate::db::quote_ident(name)
                ),
                None => crate::db::quote_ident(name),
            };
            let row = txn
                .query_opt(
                    "SELECT format('%I.%I', n.nspname, c.relname), \
                     array(SELECT a.attname::text FROM pg_catalog.pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 \
                       AND NOT a.attisdropped ORDER BY a.attnum), \
                     array(SELECT array_to_string(array(SELECT a.attname FROM unnest(i.indkey::int2[]) WITH ORDINALITY k(attnum, ord) \
                       JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum ORDER BY k.ord), ',') \
                       FROM pg_catalog.pg_index i WHERE i.indrelid = c.oid AND i.indisvalid AND i.indexprs IS NULL) \
                     FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                     WHERE c.oid = pg_catalog.to_regclass($1) AND c.relkind IN ('r', 'm') \
                     AND n.nspname NOT IN ('pg_catalog', 'information_schema')",
                    &[&qualified],
                )
                .await?;
            match row {
                Some(row) => {
                    tables.push(Some((
                        row.get::<_, String>(0),
                        row.get::<_, Vec<String>>(2),
                    )));
                    columns.push(Some(row.get::<_, Vec<String>>(1)));
                }
                None => {
                    tables.push(None);
                    columns.push(None);
                }
            }
        }
        for (table_at, (filters, orderings)) in assign(&named, &columns) {
            let Some((table, existing)) = &tables[table_at] else {
                continue;
            };
            for set in column_sets(&filters, &orderings) {
                let joined = set.join(",");
                // An index whose leading columns are these already serves the same lookups.
                if existing
                    .iter()
                    .any(|e| *e == joined || e.starts_with(&format!("{joined},")))
                {
                    continue;
                }
                let def = IndexDef {
                    table: table.clone(),
                    columns: set,
                    method: IndexMethod::Btree,
                };
                match out.iter_mut().find(|c| c.def == def) {
                    Some(known) => {
                        if !known.statements.contains(&position) {
                            known.statements.push(position);
                        }
                    }
                    None => {
                        if out.len() < MAX_CANDIDATES {
                            out.push(Candidate {
                                def,
                                statements: vec![position],
                            });
                        }
                    }
                }
            }
        }
    }
    Ok(out)
}

/// The most time-consuming statements of this database in pg_stat_statements. Before PostgreSQL 16, EXPLAIN
/// cannot plan a statement with $n placeholders without values, so those are left out, and said so.
async fn workload(
    session: &mut Session,
    generic: bool,
    notes: &mut Vec<String>,
) -> Result<Vec<String>, ToolError> {
    let txn = session.build_transaction().read_only(true).start().await?;
    let Some(schema) = super::extension_schema(&*txn, "pg_stat_statements").await? else {
        return Err(ToolError::invalid(format!(
            "pass `statements`, or enable pg_stat_statements: {}",
            super::top_queries::PG_STAT_STATEMENTS_SETUP
        )));
    };
    let rows = txn
        .query(
            &format!(
                "SELECT query FROM {schema}.pg_stat_statements \
                 WHERE dbid = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database()) \
                 AND query ~* '^\\s*(select|with)\\s' AND query !~ 'pg_catalog\\.' ORDER BY total_exec_time DESC LIMIT 50"
            ),
            &[],
        )
        .await?;
    let mut statements = Vec::new();
    let mut skipped = 0;
    for row in rows {
        let sql: String = row.get(0);
        if !generic && has_placeholders(&sql) {
            skipped += 1;
            continue;
        }
        if statements.len() < MAX_STATEMENTS {
            statements.push(sql);
        }
    }
    if skipped > 0 {
        notes.push(format!(
            "{skipped} top statement(s) have $n placeholders, which PostgreSQL before 16 cannot plan without values; \
             pass them in `statements` with typical literal values"
        ));
    }
    if statements.is_empty() {
        notes.push("pg_stat_statements holds no statement this tool can plan yet".into());
    }
    Ok(statements)
}

fn has_placeholders(sql: &str) -> bool {
    pg_query::parse(sql, pg_query::ParserOptions::DEFAULT).is_ok_and(|parsed| {
        parsed
            .protobuf
            .nodes()
            .iter()
            .any(|(node, _, _, _)| matches!(node, pg_query::NodeRef::ParamRef(_)))
    })
}

async fn server_version(session: &mut Session) -> Result<i32, ToolError> {
    let txn = session.build_transaction().read_only(true).start().await?;
    let row = txn
        .query_one("SELECT current_setting('server_version_num')::int", &[])
        .await?;
    Ok(row.get(0))
}

fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}
