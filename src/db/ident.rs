/// Quotes an SQL identifier the way PostgreSQL's `quote_ident` does when quoting is needed, always quoting so
/// that keywords and mixed case survive. The one place in pgmcp that puts a name into SQL text.
pub fn quote_ident(name: &str) -> String {
    let mut quoted = String::with_capacity(name.len() + 2);
    quoted.push('"');
    for ch in name.chars() {
        if ch == '"' {
            quoted.push('"');
        }
        quoted.push(ch);
    }
    quoted.push('"');
    quoted
}

#[cfg(test)]
mod tests {
    use super::quote_ident;

    #[test]
    fn doubles_embedded_quotes() {
        assert_eq!(quote_ident(r#"we"ird"#), r#""we""ird""#);
        assert_eq!(quote_ident("Order"), r#""Order""#);
    }
}
