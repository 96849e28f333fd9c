//! `pgmcp check --pii`: which columns look like personal data, and the masks to add for them.
//!
//! Two signals: the column's name, and a small sample of its values read in a read-only transaction that is rolled
//! back. Values are classified in memory and never printed, logged or kept.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::OnceLock;

use regex::Regex;

use crate::config::Profile;
use crate::db::connect::PgConnector;
use crate::db::quote_ident;

use super::CheckReport;

/// Values read per column.
const SAMPLE: i64 = 20;
/// Columns sampled at most, so a schema with thousands of tables stays a quick check.
const MAX_COLUMNS: usize = 500;
/// The share of sampled values that must look like one kind for the column to count as that kind.
const MAJORITY: f64 = 0.6;

/// Kinds of personal data, with what gives each away in a column's name.
const NAME_SIGNS: &[(&str, &str)] = &[
    ("email", r"(^|_)e?_?mail(_|$)|email"),
    ("phone", r"phone|mobile|(^|_)tel(_|$)|(^|_)fax(_|$)|msisdn"),
    (
        "national id",
        r"ssn|social_security|national_id|(^|_)nin(_|$)|passport|tax_id|(^|_)tin(_|$)|id_number",
    ),
    (
        "payment card",
        r"card_number|credit_card|(^|_)cc_num|(^|_)pan(_|$)|iban|account_number",
    ),
    ("birth date", r"birth|(^|_)dob(_|$)"),
    (
        "address",
        r"address|street|postcode|postal_code|zip_code|(^|_)zip(_|$)",
    ),
    (
        "name",
        r"(^|_)(first|last|full|given|family|sur)_?name(_|$)",
    ),
];

fn name_kind(column: &str) -> Option<&'static str> {
    static SIGNS: OnceLock<Vec<(&'static str, Regex)>> = OnceLock::new();
    let signs = SIGNS.get_or_init(|| {
        NAME_SIGNS
            .iter()
            .map(|(kind, pattern)| (*kind, Regex::new(pattern).expect("valid pattern")))
            .collect()
    });
    let lower = column.to_lowercase();
    signs
        .iter()
        .find(|(_, pattern)| pattern.is_match(&lower))
        .map(|(kind, _)| *kind)
}

/// What one value looks like, if it looks like personal data.
fn value_kind(value: &str) -> Option<&'static str> {
    static EMAIL: OnceLock<Regex> = OnceLock::new();
    static SSN: OnceLock<Regex> = OnceLock::new();
    static PHONE: OnceLock<Regex> = OnceLock::new();
    let value = value.trim();
    let email =
        EMAIL.get_or_init(|| Regex::new(r"^[^@\s]+@[^@\s]+\.[A-Za-z]{2,}$").expect("valid"));
    let ssn = SSN.get_or_init(|| Regex::new(r"^\d{3}-\d{2}-\d{4}$").expect("valid"));
    let phone = PHONE.get_or_init(|| Regex::new(r"^\+?[0-9(][0-9 ().-]{5,}[0-9]$").expect("valid"));
    let digits: String = value.chars().filter(char::is_ascii_digit).collect();
    if email.is_match(value) {
        Some("email")
    } else if ssn.is_match(value) {
        Some("national id")
    } else if (13..=19).contains(&digits.len())
        && value
            .chars()
            .all(|c| c.is_ascii_digit() || c == ' ' || c == '-')
        && luhn(&digits)
    {
        Some("payment card")
    } else if phone.is_match(value) && (7..=15).contains(&digits.len()) && !looks_like_a_date(value)
    {
        Some("phone")
    } else {
        None
    }
}

/// `2024-01-01`, `2024-01-01 12:00:00`: digits and dashes that are not a phone number.
fn looks_like_a_date(value: &str) -> bool {
    let bytes = value.as_bytes();
    bytes.len() >= 10
        && bytes[..4].iter().all(u8::is_ascii_digit)
        && bytes[4] == b'-'
        && bytes[5..7].iter().all(u8::is_ascii_digit)
        && bytes[7] == b'-'
        && bytes[8..10].iter().all(u8::is_ascii_digit)
}

/// The Luhn checksum of payment card numbers.
fn luhn(digits: &str) -> bool {
    let mut sum = 0;
    for (index, digit) in digits
        .chars()
        .rev()
        .filter_map(|c| c.to_digit(10))
        .enumerate()
    {
        sum += if index % 2 == 1 {
            let doubled = digit * 2;
            if doubled > 9 { doubled - 9 } else { doubled }
        } else {
            digit
        };
    }
    sum % 10 == 0
}

/// A column found, and why.
struct Finding {
    kind: &'static str,
    by_name: bool,
    by_values: bool,
}

const COLUMNS_SQL: &str = "\
SELECT n.nspname::text, c.relname::text, a.attname::text,
       pg_catalog.format_type(a.atttypid, a.atttypmod),
       t.typcategory = 'S' AS is_text
FROM pg_catalog.pg_attribute a
JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p', 'm', 'f')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast|temp_)'
  AND pg_catalog.has_column_privilege(c.oid, a.attnum, 'SELECT')
ORDER BY 1, 2, a.attnum";

pub async fn run(profile: &Profile) -> CheckReport {
    let mut text = String::new();
    match scan(profile).await {
        Ok(found) => {
            write_report(&mut text, profile, &found);
            CheckReport { ok: true, text }
        }
        Err(error) => {
            let _ = writeln!(text, "personal data:  could not check: {error}");
            CheckReport { ok: false, text }
        }
    }
}

type Found = BTreeMap<(String, String), Vec<(String, Finding)>>;

async fn scan(profile: &Profile) -> Result<Found, String> {
    let connector = PgConnector::new(profile).map_err(|e| e.to_string())?;
    let mut client = connector.connect().await.map_err(|e| {
        e.as_db_error()
            .map_or_else(|| e.to_string(), |db| db.message().to_owned())
    })?;
    // Read-only and rolled back, like every read pgmcp makes; the session's statement_timeout bounds each sample.
    let txn = client
        .build_transaction()
        .read_only(true)
        .start()
        .await
        .map_err(|e| e.to_string())?;
    let columns = txn
        .query(COLUMNS_SQL, &[])
        .await
        .map_err(|e| e.to_string())?;
    let mut found: Found = BTreeMap::new();
    for row in columns.iter().take(MAX_COLUMNS) {
        let (schema, table, column): (String, String, String) =
            (row.get(0), row.get(1), row.get(2));
        let is_text: bool = row.get(4);
        let by_name = name_kind(&column);
        let mut by_values = None;
        if is_text {
            let sql = format!(
                "SELECT {col}::text FROM {}.{} WHERE {col} IS NOT NULL LIMIT {SAMPLE}",
                quote_ident(&schema),
                quote_ident(&table),
                col = quote_ident(&column),
            );
            txn.batch_execute("SAVEPOINT sample")
                .await
                .map_err(|e| e.to_string())?;
            match txn.query(&sql, &[]).await {
                Ok(values) if !values.is_empty() => {
                    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
                    for value in &values {
                        let value: String = value.get(0);
                        if let Some(kind) = value_kind(&value) {
                            *counts.entry(kind).or_default() += 1;
                        }
                    }
                    by_values = counts
                        .into_iter()
                        .max_by_key(|(_, count)| *count)
                        .filter(|(_, count)| *count as f64 >= MAJORITY * values.len() as f64)
                        .map(|(kind, _)| kind);
                    txn.batch_execute("RELEASE SAVEPOINT sample")
                        .await
                        .map_err(|e| e.to_string())?;
                }
                // A column the role may not sample (row-level security, a failing foreign table) is judged by name.
                _ => {
                    txn.batch_execute("ROLLBACK TO SAVEPOINT sample")
                        .await
                        .map_err(|e| e.to_string())?;
                }
            }
        }
        if let Some(kind) = by_values.or(by_name) {
            found.entry((schema, table)).or_default().push((
                column,
                Finding {
                    kind,
                    by_name: by_name.is_some(),
                    by_values: by_values.is_some(),
                },
            ));
        }
    }
    drop(txn);
    Ok(found)
}

fn write_report(text: &mut String, profile: &Profile, found: &Found) {
    if found.is_empty() {
        let _ = writeln!(
            text,
            "personal data:  none found by column names or sampled values"
        );
        return;
    }
    let _ = writeln!(
        text,
        "personal data:  columns that look like it (by name, and by up to {SAMPLE} sampled values, never shown):"
    );
    for ((schema, table), columns) in found {
        for (column, finding) in columns {
            let why = match (finding.by_name, finding.by_values) {
                (true, true) => "name and values",
                (true, false) => "name",
                _ => "values",
            };
            let _ = writeln!(
                text,
                "  {schema}.{table}.{column}: {} ({why})",
                finding.kind
            );
        }
    }
    let _ = writeln!(
        text,
        "\nmasks to add to pgmcp.toml (mode: redact, null, hash or partial):"
    );
    for ((schema, table), columns) in found {
        let names: Vec<String> = columns
            .iter()
            .map(|(column, _)| format!("{column:?}"))
            .collect();
        let _ = writeln!(text, "\n[[profiles.{}.masks]]", profile.name);
        let _ = writeln!(text, "table = \"{schema}.{table}\"");
        let _ = writeln!(text, "columns = [{}]", names.join(", "));
        let _ = writeln!(text, "mode = \"partial\"");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_recognised_by_their_shape() {
        assert_eq!(value_kind("alice@example.com"), Some("email"));
        assert_eq!(value_kind("+44 20 7946 0958"), Some("phone"));
        assert_eq!(value_kind("(555) 123-4567"), Some("phone"));
        assert_eq!(value_kind("4111 1111 1111 1111"), Some("payment card"));
        assert_eq!(
            value_kind("4111 1111 1111 1112"),
            None,
            "fails the Luhn check"
        );
        assert_eq!(value_kind("078-05-1120"), Some("national id"));
        assert_eq!(value_kind("Margherita"), None);
        assert_eq!(value_kind("2024-01-01"), None);
        assert_eq!(value_kind("42"), None);
    }

    #[test]
    fn names_give_kinds_away() {
        assert_eq!(name_kind("email"), Some("email"));
        assert_eq!(name_kind("contact_email"), Some("email"));
        assert_eq!(name_kind("mobile_number"), Some("phone"));
        assert_eq!(name_kind("date_of_birth"), Some("birth date"));
        assert_eq!(name_kind("last_name"), Some("name"));
        assert_eq!(name_kind("street_address"), Some("address"));
        assert_eq!(name_kind("rating"), None);
        assert_eq!(name_kind("hotel"), None);
        assert_eq!(name_kind("cuisine"), None);
    }
}
