//! How a turn looks in a terminal: each step as it happens, SQL highlighted and results as a compact table when
//! the output is a terminal, plain text otherwise (so `--ask` output reads well in a log or a pipe).

use std::io::Write;

use serde_json::Value;

use crate::chat::agent::Event;

/// Rows of a result printed in the terminal; the model may have read more (or fewer).
const SHOWN_ROWS: usize = 10;
const CELL_WIDTH: usize = 32;

#[derive(Clone, Copy)]
pub struct Style {
    pub color: bool,
}

impl Style {
    fn paint(&self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }

    pub fn dim(&self, text: &str) -> String {
        self.paint("2", text)
    }

    fn bold(&self, text: &str) -> String {
        self.paint("1", text)
    }

    fn red(&self, text: &str) -> String {
        self.paint("31", text)
    }

    fn yellow(&self, text: &str) -> String {
        self.paint("33", text)
    }
}

/// Prints one event. `at_line_start` tracks whether streamed text left the cursor mid-line.
pub fn event(out: &mut dyn Write, style: Style, event: &Event, at_line_start: &mut bool) {
    let mut line = |out: &mut dyn Write, text: String| {
        if !*at_line_start {
            let _ = writeln!(out);
        }
        let _ = writeln!(out, "{text}");
        *at_line_start = true;
    };
    match event {
        Event::Text { delta } => {
            let _ = write!(out, "{delta}");
            *at_line_start = delta.ends_with('\n');
        }
        Event::ToolCall {
            name, arguments, ..
        } => {
            let mut text = format!("{} {}", style.paint("36", "▸"), style.bold(name));
            match arguments.get("sql").and_then(Value::as_str) {
                Some(sql) => {
                    text.push('\n');
                    text.push_str(&indent(&highlight(sql, style)));
                    if let Some(params) = arguments
                        .get("params")
                        .filter(|p| p.as_array().is_some_and(|a| !a.is_empty()))
                    {
                        text.push_str(&style.dim(&format!("\n    params: {params}")));
                    }
                }
                None if arguments.as_object().is_some_and(|o| !o.is_empty()) => {
                    text.push(' ');
                    text.push_str(&style.dim(&arguments.to_string()));
                }
                None => {}
            }
            line(out, text);
        }
        Event::ToolResult {
            name,
            is_error,
            result,
            cut_for_model,
            ..
        } => {
            if *is_error {
                let message = result
                    .get("error")
                    .and_then(Value::as_str)
                    .or_else(|| result.get("message").and_then(Value::as_str))
                    .map(str::to_string)
                    .unwrap_or_else(|| result.to_string());
                line(out, format!("  {} {}", style.red("✗"), style.red(&message)));
                return;
            }
            let mut text = summary(name, result, style);
            if *cut_for_model {
                text.push_str(&style.yellow(" (the model read only part of it)"));
            }
            line(out, text);
        }
        Event::Budget {
            budget,
            limit,
            used,
        } => line(
            out,
            style.yellow(&format!(
                "! budget: {used} {} used of {limit}; {}",
                budget.replace('_', " "),
                if *budget == "tokens" {
                    "the answer stops here"
                } else {
                    "the model answers with what it has"
                }
            )),
        ),
        Event::Answer {
            sql,
            usage,
            tool_calls,
            ..
        } => {
            let mut text = String::new();
            if let Some(last) = sql.last() {
                text.push_str(&style.bold("SQL that produced the answer:\n"));
                text.push_str(&indent(&highlight(last, style)));
                text.push('\n');
            }
            let tokens = match usage.total_tokens {
                0 => String::new(),
                n => format!(", {n} tokens"),
            };
            text.push_str(&style.dim(&format!(
                "({tool_calls} tool call{}{tokens})",
                if *tool_calls == 1 { "" } else { "s" }
            )));
            line(out, String::new());
            line(out, text);
        }
        Event::Error { message } => line(out, style.red(&format!("error: {message}"))),
        Event::Stopped => line(
            out,
            style.yellow("■ stopped (ask again, or Ctrl-D to leave)"),
        ),
    }
    let _ = out.flush();
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A one-line account of a result, followed by a table for row results.
fn summary(name: &str, result: &Value, style: Style) -> String {
    let tick = style.paint("32", "✓");
    if let (Some(columns), Some(rows)) = (
        result.get("columns").and_then(Value::as_array),
        result.get("rows").and_then(Value::as_array),
    ) {
        let count = result
            .get("row_count")
            .and_then(Value::as_u64)
            .unwrap_or(rows.len() as u64);
        let mut text = format!("  {tick} {count} row{}", if count == 1 { "" } else { "s" });
        if result.get("truncated") == Some(&Value::Bool(true)) {
            text.push_str(&style.yellow(" (truncated: more rows exist)"));
        }
        text.push('\n');
        text.push_str(&table(columns, rows, style));
        return text;
    }
    let count = |key: &str| result.get(key).and_then(Value::as_array).map(Vec::len);
    let what = match name {
        "list_tables" => count("tables").map(|n| format!("{n} tables")),
        "describe_table" => count("columns").map(|n| format!("{n} columns")),
        "search_tables" => count("matches").map(|n| format!("{n} matches")),
        "explain_query" => Some("plan".to_string()),
        _ => None,
    };
    format!("  {tick} {}", what.unwrap_or_else(|| "done".into()))
}

fn cell(value: &Value) -> String {
    let text = match value {
        Value::Null => "NULL".to_string(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let text = text.replace(['\n', '\r', '\t'], " ");
    // Terminal control sequences in data must not reach the terminal.
    let text: String = text.chars().filter(|c| !c.is_control()).collect();
    if text.chars().count() > CELL_WIDTH {
        format!("{}…", text.chars().take(CELL_WIDTH - 1).collect::<String>())
    } else {
        text
    }
}

fn table(columns: &[Value], rows: &[Value], style: Style) -> String {
    let names: Vec<String> = columns
        .iter()
        .map(|c| cell(c.get("name").unwrap_or(c)))
        .collect();
    let body: Vec<Vec<String>> = rows
        .iter()
        .take(SHOWN_ROWS)
        .map(|row| match row {
            Value::Array(values) => values.iter().map(cell).collect(),
            Value::Object(map) => map.values().map(cell).collect(),
            other => vec![cell(other)],
        })
        .collect();
    let mut widths: Vec<usize> = names.iter().map(|n| n.chars().count()).collect();
    for row in &body {
        for (i, value) in row.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(value.chars().count());
            }
        }
    }
    let format_row = |values: &[String]| {
        let cells: Vec<String> = values
            .iter()
            .zip(&widths)
            .map(|(v, w)| format!("{v}{}", " ".repeat(w.saturating_sub(v.chars().count()))))
            .collect();
        format!("    {}", cells.join(" │ ")).trim_end().to_string()
    };
    let mut lines = vec![style.bold(&format_row(&names))];
    lines.push(style.dim(&format!(
        "    {}",
        widths.iter().map(|w| "─".repeat(*w)).collect::<Vec<_>>().join("─┼─")
    )));
    lines.extend(body.iter().map(|row| format_row(row)));
    if rows.len() > SHOWN_ROWS {
        lines.push(style.dim(&format!("    … {} more rows", rows.len() - SHOWN_ROWS)));
    }
    lines.join("\n")
}

const KEYWORDS: &[&str] = &[
    "select",
    "from",
    "where",
    "group",
    "by",
    "order",
    "having",
    "limit",
    "offset",
    "join",
    "left",
    "right",
    "inner",
    "outer",
    "full",
    "cross",
    "on",
    "as",
    "and",
    "or",
    "not",
    "in",
    "is",
    "null",
    "case",
    "when",
    "then",
    "else",
    "end",
    "with",
    "union",
    "all",
    "distinct",
    "desc",
    "asc",
    "count",
    "avg",
    "sum",
    "min",
    "max",
    "round",
    "insert",
    "into",
    "values",
    "update",
    "set",
    "delete",
    "returning",
    "like",
    "ilike",
    "between",
    "exists",
    "over",
    "partition",
    "filter",
    "cast",
    "nulls",
    "first",
    "last",
    "true",
    "false",
    "using",
    "lateral",
];

/// Keywords bold blue, strings green, numbers magenta; plain text without color.
pub fn highlight(sql: &str, style: Style) -> String {
    if !style.color {
        return sql.to_string();
    }
    let mut out = String::new();
    let chars: Vec<char> = sql.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\'' {
            let start = i;
            i += 1;
            while i < chars.len() && chars[i] != '\'' {
                i += 1;
            }
            i = (i + 1).min(chars.len());
            out.push_str(&style.paint("32", &chars[start..i].iter().collect::<String>()));
        } else if c.is_ascii_digit() {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                i += 1;
            }
            out.push_str(&style.paint("35", &chars[start..i].iter().collect::<String>()));
        } else if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            if KEYWORDS.contains(&word.to_ascii_lowercase().as_str()) {
                out.push_str(&style.paint("1;34", &word));
            } else {
                out.push_str(&word);
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keywords_strings_and_numbers_are_colored_only_on_a_terminal() {
        let sql = "SELECT name FROM t WHERE city = 'Paris' LIMIT 5";
        assert_eq!(highlight(sql, Style { color: false }), sql);
        let colored = highlight(sql, Style { color: true });
        assert!(colored.contains("\x1b[1;34mSELECT\x1b[0m"));
        assert!(colored.contains("\x1b[32m'Paris'\x1b[0m"));
        assert!(colored.contains("\x1b[35m5\x1b[0m"));
    }

    #[test]
    fn a_row_result_prints_its_count_and_a_table_without_control_characters() {
        let result = json!({"columns": [{"name": "cuisine", "type": "text"}, {"name": "avg", "type": "numeric"}],
            "rows": [["Thai\x1b[2J", 4.5], ["Italian", 4.25]], "row_count": 2, "truncated": true});
        let mut out = Vec::new();
        let mut start = true;
        let event = Event::ToolResult {
            id: "c".into(),
            name: "execute_query".into(),
            is_error: false,
            result,
            cut_for_model: false,
        };
        super::event(&mut out, Style { color: false }, &event, &mut start);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("2 rows (truncated: more rows exist)"),
            "{text}"
        );
        assert!(text.contains("Italian │ 4.25"), "{text}");
        assert!(!text.contains('\x1b'), "{text}");
    }
}
