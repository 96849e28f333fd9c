//! PostgreSQL's printed node trees (`nodeToString`, as `debug_print_rewritten` sends them), read back into a tree.
//!
//! The reader follows PostgreSQL's own (`pg_strtok`, `nodeRead`): tokens split at unescaped white space and at
//! unescaped `(){}`, a backslash makes the next character ordinary, and a field is a `:name` token whose value is
//! the next token or bracketed group whatever it looks like. That last rule is what keeps text a caller wrote
//! (an alias spelled `:funcid`) from being read as structure: PostgreSQL escapes every character that could end or
//! open a token, so an identifier is always exactly one value token.

/// A value in a printed tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// `{NAME :field value …}`.
    Node(Node),
    /// `(…)`: nodes, strings, or, after a leading `o`, `i` or `b`, OIDs, integers or bitmap members.
    List(Vec<Value>),
    /// `<>`.
    Null,
    /// Anything else: numbers, booleans, identifiers, `"strings"`.
    Token(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub name: String,
    pub fields: Vec<(String, Value)>,
}

impl Node {
    pub fn field(&self, name: &str) -> Option<&Value> {
        self.fields
            .iter()
            .find(|(field, _)| field == name)
            .map(|(_, value)| value)
    }

    /// A numeric field (OIDs, indexes, enumerations); `None` when absent or not a number.
    pub fn number(&self, name: &str) -> Option<i64> {
        match self.field(name)? {
            Value::Token(token) => token.parse().ok(),
            _ => None,
        }
    }

    pub fn node(&self, name: &str) -> Option<&Node> {
        match self.field(name)? {
            Value::Node(node) => Some(node),
            _ => None,
        }
    }

    /// The nodes of a list field (empty when the field is `<>` or absent).
    pub fn nodes(&self, name: &str) -> Vec<&Node> {
        match self.field(name) {
            Some(Value::List(items)) => items
                .iter()
                .filter_map(|item| match item {
                    Value::Node(node) => Some(node),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        }
    }

    pub fn is_true(&self, name: &str) -> bool {
        matches!(self.field(name), Some(Value::Token(token)) if token == "true")
    }
}

impl Value {
    /// Every node in this value, depth first, this one included.
    pub fn walk<'a>(&'a self, visit: &mut dyn FnMut(&'a Node)) {
        match self {
            Value::Node(node) => {
                visit(node);
                for (_, value) in &node.fields {
                    value.walk(visit);
                }
            }
            Value::List(items) => {
                for item in items {
                    item.walk(visit);
                }
            }
            Value::Null | Value::Token(_) => {}
        }
    }
}

/// Why a printed tree could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable(pub &'static str);

/// Reads one printed tree (usually a list of Query nodes). Nesting is bounded by PostgreSQL's own stack depth
/// limit on the server side; the reader recurses no deeper than the text's brackets.
pub fn parse(text: &str) -> Result<Value, Unreadable> {
    let tokens = tokenize(text);
    let mut reader = Reader { tokens, index: 0 };
    let value = reader.value(0)?;
    if reader.index != reader.tokens.len() {
        return Err(Unreadable("text after the tree"));
    }
    Ok(value)
}

/// Far deeper than any statement PostgreSQL accepts (its own limit is its stack depth), low enough that reading
/// cannot exhaust pgmcp's stack.
const MAX_DEPTH: usize = 1_000;

struct Reader<'t> {
    tokens: Vec<&'t str>,
    index: usize,
}

impl Reader<'_> {
    fn next(&mut self) -> Option<&str> {
        let token = self.tokens.get(self.index).copied();
        self.index += 1;
        token
    }

    fn peek(&self) -> Option<&str> {
        self.tokens.get(self.index).copied()
    }

    fn value(&mut self, depth: usize) -> Result<Value, Unreadable> {
        if depth > MAX_DEPTH {
            return Err(Unreadable("tree nested too deeply"));
        }
        match self.next() {
            Some("{") => self.node(depth).map(Value::Node),
            Some("(") => self.list(depth).map(Value::List),
            Some("<>") => Ok(Value::Null),
            Some(")") | Some("}") => Err(Unreadable("a closing bracket where a value belongs")),
            Some(token) => Ok(Value::Token(token.to_owned())),
            None => Err(Unreadable("the tree ends early")),
        }
    }

    fn node(&mut self, depth: usize) -> Result<Node, Unreadable> {
        let name = match self.next() {
            Some(token) if !matches!(token, "{" | "}" | "(" | ")") => token.to_owned(),
            _ => return Err(Unreadable("a node without a name")),
        };
        let mut fields = Vec::new();
        loop {
            match self.next() {
                Some("}") => return Ok(Node { name, fields }),
                Some(token) if token.starts_with(':') => {
                    let field = token[1..].to_owned();
                    let value = self.value(depth + 1)?;
                    fields.push((field, value));
                    // A datum prints as its length and then `[ bytes ]`: the bytes belong to the field before.
                    if self.peek() == Some("[") {
                        while let Some(token) = self.next() {
                            if token == "]" {
                                break;
                            }
                        }
                    }
                }
                Some(_) => return Err(Unreadable("a value where a field name belongs")),
                None => return Err(Unreadable("the tree ends inside a node")),
            }
        }
    }

    fn list(&mut self, depth: usize) -> Result<Vec<Value>, Unreadable> {
        let mut items = Vec::new();
        loop {
            match self.peek() {
                Some(")") => {
                    self.index += 1;
                    return Ok(items);
                }
                None => return Err(Unreadable("the tree ends inside a list")),
                _ => items.push(self.value(depth + 1)?),
            }
        }
    }
}

/// PostgreSQL's `pg_strtok` rules: white space separates tokens, `(`, `)`, `{`, `}` are tokens of their own, and
/// a backslash makes the next character an ordinary one.
fn tokenize(text: &str) -> Vec<&str> {
    let bytes = text.as_bytes();
    let mut tokens = Vec::new();
    let mut index = 0;
    while index < bytes.len() {
        let byte = bytes[index];
        if byte.is_ascii_whitespace() {
            index += 1;
            continue;
        }
        if matches!(byte, b'(' | b')' | b'{' | b'}') {
            tokens.push(&text[index..index + 1]);
            index += 1;
            continue;
        }
        let start = index;
        while index < bytes.len() {
            let byte = bytes[index];
            if byte == b'\\' {
                index = (index + 2).min(bytes.len());
                continue;
            }
            if byte.is_ascii_whitespace() || matches!(byte, b'(' | b')' | b'{' | b'}') {
                break;
            }
            index += 1;
        }
        // Token boundaries are ASCII bytes, so the slice falls on character boundaries; a backslash before a
        // multi-byte character skips only its first byte, and the loop walks its rest.
        if let Some(token) = text.get(start..index) {
            tokens.push(token);
        }
    }
    tokens
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_nodes_lists_datums_and_escaped_identifiers() {
        let text = r#"({QUERY :commandType 1 :targetList ({TARGETENTRY :expr {CONST :consttype 23 :constvalue 4 [ 1 0 0 0 0 0 0 0 ]} :resname \:funcid\ 1 :resjunk false}) :rtable <> :cols (o 23 25)})"#;
        let Value::List(queries) = parse(text).expect("readable") else {
            panic!("a list")
        };
        let Value::Node(query) = &queries[0] else {
            panic!("a node")
        };
        assert_eq!(query.name, "QUERY");
        assert_eq!(query.number("commandType"), Some(1));
        let entry = query.nodes("targetList")[0];
        assert_eq!(
            entry.field("resname"),
            Some(&Value::Token(r"\:funcid\ 1".into()))
        );
        assert_eq!(
            entry.node("expr").and_then(|c| c.number("consttype")),
            Some(23)
        );
        assert_eq!(query.field("rtable"), Some(&Value::Null));
        assert!(!entry.is_true("resjunk"));
    }

    #[test]
    fn a_field_value_is_one_token_even_when_it_looks_like_a_field() {
        // An alias that is exactly `:funcid`: PostgreSQL does not escape a leading colon, and the value rule
        // keeps it a value.
        let text = "{ALIAS :aliasname :funcid :colnames <>}";
        let Value::Node(alias) = parse(text).expect("readable") else {
            panic!("a node")
        };
        assert_eq!(
            alias.field("aliasname"),
            Some(&Value::Token(":funcid".into()))
        );
        assert_eq!(alias.field("colnames"), Some(&Value::Null));
        assert_eq!(alias.fields.len(), 2);
    }

    #[test]
    fn malformed_text_is_refused() {
        for text in [
            "{QUERY :a",
            "({QUERY :a 1}",
            "{QUERY 1}",
            "{QUERY :a 1}}",
            "{:a 1}",
        ] {
            assert!(parse(text).is_err(), "{text}");
        }
        let deep = format!("{}{}", "(".repeat(MAX_DEPTH + 5), ")".repeat(MAX_DEPTH + 5));
        assert!(parse(&deep).is_err());
    }
}
