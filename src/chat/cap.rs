//! What the model reads of a tool's result: at most so many rows and bytes, with the cut said in the result
//! itself, so the model neither drowns in a large result nor mistakes a cut one for the whole.

use serde_json::{Value, json};

/// The text passed to the model, and whether anything was cut.
pub fn for_model(value: &Value, max_rows: usize, max_bytes: usize) -> (String, bool) {
    let mut value = value.clone();
    let mut cut = false;
    if let Some(rows) = value.get_mut("rows").and_then(Value::as_array_mut) {
        let total = rows.len();
        let mut keep = total.min(max_rows);
        rows.truncate(keep);
        // Halve until the rows fit, leaving room for the note; the byte cut below is the last resort.
        while keep > 0 && value.to_string().len() + 160 > max_bytes {
            keep /= 2;
            if let Some(rows) = value.get_mut("rows").and_then(Value::as_array_mut) {
                rows.truncate(keep);
            }
        }
        if keep < total {
            cut = true;
            value["pgmcp_note"] = json!(format!(
                "only the first {keep} of {total} rows are shown here; aggregate or filter in SQL rather than reading rows"
            ));
        }
    }
    let text = value.to_string();
    if text.len() <= max_bytes {
        return (text, cut);
    }
    let mut end = max_bytes.saturating_sub(120);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    (
        format!(
            "{}… [pgmcp: result cut at {end} of {} bytes; ask for fewer columns or rows]",
            &text[..end],
            text.len()
        ),
        true,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_beyond_the_cap_are_cut_and_the_cut_is_said() {
        let rows: Vec<Value> = (0..100).map(|i| json!({"id": i})).collect();
        let value = json!({"columns": [{"name": "id"}], "rows": rows, "row_count": 100});
        let (text, cut) = for_model(&value, 10, 100_000);
        assert!(cut);
        let parsed: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed["rows"].as_array().unwrap().len(), 10);
        assert!(
            parsed["pgmcp_note"]
                .as_str()
                .unwrap()
                .contains("first 10 of 100 rows")
        );

        let (text, cut) = for_model(&value, 100, 300);
        assert!(cut && text.len() <= 300, "{text}");
        let (text, cut) = for_model(&json!({"rows": [1, 2]}), 10, 1000);
        assert!(!cut && !text.contains("pgmcp_note"));
    }

    #[test]
    fn a_large_value_without_rows_is_cut_at_a_character_boundary() {
        let value = json!({"text": "é".repeat(1000)});
        let (text, cut) = for_model(&value, 10, 400);
        assert!(cut && text.len() <= 400 && text.contains("result cut at"));
    }
}
