//! Candidate indexes for a statement: the columns its predicates, join conditions and orderings name, parsed
//! with pg_query and matched to the tables of its FROM lists.

use std::collections::BTreeMap;

use pg_query::NodeRef;

/// A column reference as written: optional qualifier (table name or alias) and column name.
pub type ColumnUse = (Option<String>, String);

/// What one statement names: its tables (as `(schema, name, alias)`) and the columns it filters, joins and
/// orders by, in that order of interest.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct StatementColumns {
    pub tables: Vec<(Option<String>, String, Option<String>)>,
    pub filters: Vec<ColumnUse>,
    pub orderings: Vec<ColumnUse>,
}

pub fn statement_columns(sql: &str) -> Result<StatementColumns, String> {
    let parsed =
        pg_query::parse(sql, pg_query::ParserOptions::DEFAULT).map_err(|e| e.to_string())?;
    let mut out = StatementColumns {
        filters: parsed.filter_columns.clone(),
        ..StatementColumns::default()
    };
    for (node, _, _, _) in parsed.protobuf.nodes() {
        match node {
            NodeRef::RangeVar(v) => {
                if v.schemaname.is_empty() && parsed.cte_names.contains(&v.relname) {
                    continue;
                }
                let entry = (
                    (!v.schemaname.is_empty()).then(|| v.schemaname.clone()),
                    v.relname.clone(),
                    v.alias.as_ref().map(|a| a.aliasname.clone()),
                );
                if !out.tables.contains(&entry) {
                    out.tables.push(entry);
                }
            }
            // pg_query's filter columns cover WHERE; a JOIN's ON condition is read here.
            NodeRef::JoinExpr(join) => {
                if let Some(quals) = join.quals.as_ref().and_then(|q| q.node.as_ref()) {
                    for (inner, _, _, _) in quals.nodes() {
                        if let NodeRef::ColumnRef(column) = inner
                            && let Some(use_) = column_use(column)
                            && !out.filters.contains(&use_)
                        {
                            out.filters.push(use_);
                        }
                    }
                }
            }
            NodeRef::SortBy(sort) => {
                if let Some(pg_query::NodeEnum::ColumnRef(column)) =
                    sort.node.as_ref().and_then(|n| n.node.as_ref())
                    && let Some(use_) = column_use(column)
                {
                    out.orderings.push(use_);
                }
            }
            _ => {}
        }
    }
    // pg_query collects filter columns in a set; a stable order keeps the advice deterministic.
    out.filters.sort();
    Ok(out)
}

fn column_use(column: &pg_query::protobuf::ColumnRef) -> Option<ColumnUse> {
    let names: Vec<String> = column
        .fields
        .iter()
        .filter_map(|f| match f.node.as_ref() {
            Some(pg_query::NodeEnum::String(s)) => Some(s.sval.clone()),
            _ => None,
        })
        .collect();
    let (column, qualifier) = names.split_last()?;
    Some((qualifier.last().cloned(), column.clone()))
}

/// Column uses grouped by the table they belong to: `table_columns[i]` are the columns of `tables[i]`, given
/// each table's column names (None for tables that are not plain tables).
pub fn assign(
    statement: &StatementColumns,
    table_columns: &[Option<Vec<String>>],
) -> BTreeMap<usize, (Vec<String>, Vec<String>)> {
    let owner = |(qualifier, column): &ColumnUse| -> Option<usize> {
        let matches: Vec<usize> = statement
            .tables
            .iter()
            .enumerate()
            .filter(|(i, (_, name, alias))| {
                let named = match qualifier {
                    Some(q) => {
                        alias.as_deref() == Some(q.as_str()) || (alias.is_none() && name == q)
                    }
                    None => true,
                };
                named
                    && table_columns[*i]
                        .as_ref()
                        .is_some_and(|cols| cols.contains(column))
            })
            .map(|(i, _)| i)
            .collect();
        // An unqualified name that two tables have is ambiguous to PostgreSQL too.
        (matches.len() == 1).then(|| matches[0])
    };
    let mut by_table: BTreeMap<usize, (Vec<String>, Vec<String>)> = BTreeMap::new();
    for use_ in &statement.filters {
        if let Some(i) = owner(use_) {
            let filters = &mut by_table.entry(i).or_default().0;
            if !filters.contains(&use_.1) {
                filters.push(use_.1.clone());
            }
        }
    }
    for use_ in &statement.orderings {
        if let Some(i) = owner(use_) {
            let orderings = &mut by_table.entry(i).or_default().1;
            if !orderings.contains(&use_.1) {
                orderings.push(use_.1.clone());
            }
        }
    }
    by_table
}

/// The column lists worth measuring for one table of one statement: each filtered column alone, all of them
/// together, and the filters followed by the ordering (or the ordering alone).
pub fn column_sets(filters: &[String], orderings: &[String]) -> Vec<Vec<String>> {
    let mut sets: Vec<Vec<String>> = filters.iter().map(|c| vec![c.clone()]).collect();
    if filters.len() > 1 {
        sets.push(filters.to_vec());
    }
    if !orderings.is_empty() {
        let mut with_order = filters.to_vec();
        with_order.extend(orderings.iter().filter(|c| !filters.contains(c)).cloned());
        sets.push(with_order);
    }
    sets.retain(|s| !s.is_empty());
    sets.dedup();
    sets
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_filtered_joined_and_ordered_columns_with_their_tables() {
        let parsed = statement_columns(
            "SELECT o.id FROM shop.orders o JOIN customers c ON c.id = o.customer_id \
             WHERE o.status = 'open' AND c.country = $1 ORDER BY o.created_at DESC",
        )
        .expect("parses");
        assert_eq!(
            parsed.tables,
            vec![
                (Some("shop".into()), "orders".into(), Some("o".into())),
                (None, "customers".into(), Some("c".into())),
            ]
        );
        let columns = [
            Some(vec![
                "id".into(),
                "customer_id".into(),
                "status".into(),
                "created_at".into(),
            ]),
            Some(vec!["id".into(), "country".into()]),
        ];
        let assigned = assign(&parsed, &columns);
        assert_eq!(
            assigned[&0],
            (
                vec!["customer_id".to_string(), "status".to_string()],
                vec!["created_at".to_string()]
            )
        );
        assert_eq!(
            assigned[&1],
            (vec!["country".to_string(), "id".to_string()], vec![])
        );
        assert_eq!(
            column_sets(&assigned[&0].0, &assigned[&0].1),
            vec![
                vec!["customer_id".to_string()],
                vec!["status".to_string()],
                vec!["customer_id".to_string(), "status".to_string()],
                vec![
                    "customer_id".to_string(),
                    "status".to_string(),
                    "created_at".to_string()
                ],
            ]
        );
    }

    #[test]
    fn ambiguous_and_cte_names_are_not_guessed() {
        let parsed = statement_columns(
            "WITH recent AS (SELECT * FROM a) SELECT * FROM recent, b, c WHERE x = 1",
        )
        .expect("parses");
        let mut names: Vec<&str> = parsed.tables.iter().map(|t| t.1.as_str()).collect();
        names.sort();
        assert_eq!(names, ["a", "b", "c"], "the CTE is not a table");
        // `a` lacks x; b and c both have it, so an unqualified x belongs to neither.
        let columns: Vec<Option<Vec<String>>> = parsed
            .tables
            .iter()
            .map(|t| (t.1 != "a").then(|| vec!["x".to_string()]))
            .collect();
        assert!(assign(&parsed, &columns).is_empty());
    }
}
