//! A plain-words reading of an EXPLAIN plan: the few patterns that explain most slow plans, each pointing at
//! the node (numbered in pre-order, as the lines of the text tree) where it shows.

use std::collections::HashMap;

use schemars::JsonSchema;
use serde::Serialize;
use serde_json::Value;

/// A table with at least this many rows is worth an index for a selective filter.
const LARGE_TABLE_ROWS: f64 = 10_000.0;
/// An outer side this large makes a nested loop run its inner side that many times.
const MANY_LOOPS: f64 = 10_000.0;
const MISESTIMATE_FACTOR: f64 = 10.0;

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct PlanNote {
    /// Position of the node in pre-order (1 = the top node), as the lines of `text`.
    pub node: usize,
    /// The node as the text tree shows it, e.g. "Seq Scan on orders".
    pub at: String,
    pub note: String,
}

/// "Seq Scan on orders", "Index Scan using orders_pkey on orders o", "Hash Join".
pub fn node_label(node: &Value) -> String {
    let text = |key: &str| node.get(key).and_then(Value::as_str);
    let kind = text("Node Type").unwrap_or("?");
    let mut label = match text("Strategy").filter(|s| *s != "Plain") {
        Some(strategy) => format!("{strategy} {kind}"),
        None => kind.to_string(),
    };
    if let Some(index) = text("Index Name") {
        label.push_str(&format!(" using {index}"));
    }
    if let Some(relation) = text("Relation Name") {
        match text("Alias").filter(|a| *a != relation) {
            Some(alias) => label.push_str(&format!(" on {relation} {alias}")),
            None => label.push_str(&format!(" on {relation}")),
        }
    }
    label
}

/// Reads a plan (EXPLAIN's top-level JSON object). `table_rows` holds the estimated row count of the tables the
/// plan scans, by name.
pub fn read_plan(plan: &Value, table_rows: &HashMap<String, f64>) -> Vec<PlanNote> {
    let mut notes = Vec::new();
    if let Some(root) = plan.get("Plan") {
        let mut counter = 0;
        visit(root, table_rows, &mut counter, &mut notes);
    }
    notes
}

/// The relation names a plan scans, for looking up their sizes.
pub fn scanned_relations(plan: &Value) -> Vec<String> {
    fn walk(node: &Value, out: &mut Vec<String>) {
        if let Some(name) = node.get("Relation Name").and_then(Value::as_str)
            && !out.iter().any(|n| n == name)
        {
            out.push(name.to_string());
        }
        for child in children(node) {
            walk(child, out);
        }
    }
    let mut out = Vec::new();
    if let Some(root) = plan.get("Plan") {
        walk(root, &mut out);
    }
    out
}

fn children(node: &Value) -> impl Iterator<Item = &Value> {
    node.get("Plans")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

fn num(node: &Value, key: &str) -> Option<f64> {
    node.get(key).and_then(Value::as_f64)
}

/// Rows a node produced in all its loops when analyzed, else the planner's estimate.
fn rows_out(node: &Value) -> f64 {
    match (num(node, "Actual Rows"), num(node, "Actual Loops")) {
        (Some(rows), Some(loops)) => rows * loops,
        _ => num(node, "Plan Rows").unwrap_or(0.0),
    }
}

fn visit(
    node: &Value,
    table_rows: &HashMap<String, f64>,
    counter: &mut usize,
    notes: &mut Vec<PlanNote>,
) {
    *counter += 1;
    let number = *counter;
    let mut say = |note: String| {
        notes.push(PlanNote {
            node: number,
            at: node_label(node),
            note,
        })
    };
    let kind = node.get("Node Type").and_then(Value::as_str).unwrap_or("");
    let relation = node.get("Relation Name").and_then(Value::as_str);

    if kind == "Seq Scan"
        && let Some(relation) = relation
        && let Some(&total) = table_rows.get(relation)
        && total >= LARGE_TABLE_ROWS
    {
        match node.get("Filter").and_then(Value::as_str) {
            Some(filter) => say(format!(
                "reads all ~{total:.0} rows of {relation} to keep ~{:.0} (Filter: {filter}); an index on the filtered columns \
                 would read only those (index_advice measures one)",
                rows_out(node)
            )),
            None => say(format!("reads all ~{total:.0} rows of {relation}")),
        }
    }

    if let (Some(actual), Some(loops), Some(planned)) = (
        num(node, "Actual Rows"),
        num(node, "Actual Loops"),
        num(node, "Plan Rows"),
    ) && loops > 0.0
    {
        let (high, low) = (actual.max(planned), actual.min(planned).max(1.0));
        if high >= 100.0 && high / low > MISESTIMATE_FACTOR {
            say(format!(
                "the planner expected {planned:.0} rows per loop and got {actual:.0} ({:.0}x off): statistics are stale \
                 (ANALYZE{}) or the columns are correlated (CREATE STATISTICS)",
                high / low,
                relation.map(|r| format!(" {r}")).unwrap_or_default()
            ));
        }
    }

    let sort_on_disk = node.get("Sort Space Type").and_then(Value::as_str) == Some("Disk");
    if kind == "Sort" && sort_on_disk {
        say(format!(
            "the sort spilled {:.0} kB to disk ({}); more work_mem, or an index that returns rows in this order, avoids it",
            num(node, "Sort Space Used").unwrap_or(0.0),
            node.get("Sort Method")
                .and_then(Value::as_str)
                .unwrap_or("external")
        ));
    }
    if kind == "Hash" && num(node, "Hash Batches").is_some_and(|b| b > 1.0) {
        say(format!(
            "the hash table did not fit in work_mem and was split into {:.0} batches written to disk; more work_mem avoids it",
            num(node, "Hash Batches").unwrap_or(0.0)
        ));
    }
    if kind == "Aggregate" && num(node, "HashAgg Batches").is_some_and(|b| b > 1.0) {
        say(format!(
            "the hash aggregate spilled {:.0} kB to disk; more work_mem (or hash_mem_multiplier) avoids it",
            num(node, "Disk Usage").unwrap_or(0.0)
        ));
    }

    if kind == "Nested Loop" {
        let mut sides = children(node);
        if let (Some(outer), Some(inner)) = (sides.next(), sides.next()) {
            let outer_rows = rows_out(outer);
            if outer_rows >= MANY_LOOPS {
                say(format!(
                    "runs its inner side once per outer row, ~{outer_rows:.0} times; a hash or merge join, or an index on the \
                     inner join column, is usually cheaper at this size"
                ));
            }
            let scanned = if inner.get("Node Type").and_then(Value::as_str) == Some("Materialize") {
                children(inner).next().unwrap_or(inner)
            } else {
                inner
            };
            if scanned.get("Node Type").and_then(Value::as_str) == Some("Seq Scan")
                && outer_rows > 1.0
                && let Some(table) = scanned.get("Relation Name").and_then(Value::as_str)
            {
                let condition = node
                    .get("Join Filter")
                    .or_else(|| scanned.get("Filter"))
                    .and_then(Value::as_str)
                    .unwrap_or("the join condition");
                say(format!(
                    "joins by scanning {table} for each outer row ({condition}): {table} has no usable index on its join column"
                ));
            }
        }
    }

    for child in children(node) {
        visit(child, table_rows, counter, notes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sizes() -> HashMap<String, f64> {
        HashMap::from([
            ("orders".to_string(), 1_000_000.0),
            ("small".to_string(), 50.0),
        ])
    }

    #[test]
    fn names_a_filtered_seq_scan_of_a_large_table_and_not_of_a_small_one() {
        let plan = json!({"Plan": {"Node Type": "Append", "Plans": [
            {"Node Type": "Seq Scan", "Relation Name": "orders", "Plan Rows": 12, "Filter": "(customer_id = 7)"},
            {"Node Type": "Seq Scan", "Relation Name": "small", "Plan Rows": 5, "Filter": "(x = 1)"}]}});
        let notes = read_plan(&plan, &sizes());
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert_eq!(notes[0].node, 2);
        assert_eq!(notes[0].at, "Seq Scan on orders");
        assert!(
            notes[0]
                .note
                .contains("reads all ~1000000 rows of orders to keep ~12"),
            "{}",
            notes[0].note
        );
    }

    #[test]
    fn names_misestimates_spills_and_loops() {
        let plan = json!({"Plan": {"Node Type": "Nested Loop", "Plan Rows": 10, "Actual Rows": 50000, "Actual Loops": 1,
        "Join Filter": "(o.id = s.order_id)",
        "Plans": [
            {"Node Type": "Sort", "Plan Rows": 20000, "Actual Rows": 20000, "Actual Loops": 1,
             "Sort Method": "external merge", "Sort Space Type": "Disk", "Sort Space Used": 4096},
            {"Node Type": "Materialize", "Plan Rows": 3, "Actual Rows": 3, "Actual Loops": 20000, "Plans": [
                {"Node Type": "Seq Scan", "Relation Name": "small", "Plan Rows": 3, "Actual Rows": 3, "Actual Loops": 1}]},
            ]}});
        let notes = read_plan(&plan, &sizes());
        let at = |n: usize| {
            notes
                .iter()
                .filter(|x| x.node == n)
                .map(|x| x.note.as_str())
                .collect::<Vec<_>>()
        };
        let top = at(1);
        assert!(
            top.iter()
                .any(|n| n.contains("expected 10 rows per loop and got 50000 (5000x off)")),
            "{top:?}"
        );
        assert!(top.iter().any(|n| n.contains("~20000 times")), "{top:?}");
        assert!(
            top.iter()
                .any(|n| n.contains("scanning small for each outer row ((o.id = s.order_id))")),
            "{top:?}"
        );
        assert!(
            at(2)[0].contains("spilled 4096 kB to disk (external merge)"),
            "{notes:?}"
        );
        assert!(at(3).is_empty() && at(4).is_empty(), "{notes:?}");
    }

    #[test]
    fn a_good_plan_reads_as_nothing() {
        let plan = json!({"Plan": {"Node Type": "Index Scan", "Index Name": "orders_pkey", "Relation Name": "orders",
            "Plan Rows": 1, "Actual Rows": 1, "Actual Loops": 1}});
        assert!(read_plan(&plan, &sizes()).is_empty());
        assert_eq!(
            node_label(&plan["Plan"]),
            "Index Scan using orders_pkey on orders"
        );
    }
}
