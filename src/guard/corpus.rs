//! Reader for the guard's statement corpora (tests/corpus/attacks.sql, tests/corpus/allowed.sql), shared by the
//! guard's own tests and end-to-end tests that replay the same statements against a database.
//!
//! Format: blocks separated by a line that is exactly `-- ----`. In each block, a line starting with `-- why:`
//! says what the statement exercises and a line that is exactly `-- needs-db` marks a statement only the
//! database-backed volatility check rejects. Everything else is the statement text (other comments included,
//! since comment tricks are part of what is tested). Blocks without a `-- why:` line (the file header) are skipped.

/// The separator line between corpus blocks.
pub const SEPARATOR: &str = "-- ----";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorpusEntry {
    /// 1-based line of the block's `-- why:` line, for failure messages.
    pub line: usize,
    pub why: String,
    /// Rejected only by `check_volatility`, not by `check`.
    pub needs_db: bool,
    pub sql: String,
}

pub fn parse_corpus(text: &str) -> Vec<CorpusEntry> {
    let mut entries = Vec::new();
    let mut block: Vec<(usize, &str)> = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line == SEPARATOR {
            entries.extend(entry_from_block(&block));
            block.clear();
        } else {
            block.push((index + 1, line));
        }
    }
    entries.extend(entry_from_block(&block));
    entries
}

fn entry_from_block(block: &[(usize, &str)]) -> Option<CorpusEntry> {
    let (line, why) = block.iter().find_map(|(number, line)| {
        line.strip_prefix("-- why:")
            .map(|why| (*number, why.trim().to_string()))
    })?;
    let needs_db = block
        .iter()
        .any(|(_, line)| line.trim_end() == "-- needs-db");
    let sql_lines: Vec<&str> = block
        .iter()
        .map(|(_, line)| *line)
        .filter(|line| !line.starts_with("-- why:") && line.trim_end() != "-- needs-db")
        .collect();
    Some(CorpusEntry {
        line,
        why,
        needs_db,
        sql: sql_lines.join("\n").trim().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_become_entries_and_the_header_is_skipped() {
        let text = "-- header\n-- ----\n-- why: first\nSELECT 1\n-- ----\n-- why: second\n-- needs-db\nSELECT 2 -- note\n;\n";
        let entries = parse_corpus(text);
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].why, "first");
        assert_eq!(entries[0].line, 3);
        assert_eq!(entries[0].sql, "SELECT 1");
        assert!(!entries[0].needs_db);
        assert!(entries[1].needs_db);
        assert_eq!(entries[1].sql, "SELECT 2 -- note\n;");
    }
}
