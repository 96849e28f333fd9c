//! Bind parameters from JSON. Every parameter is sent in PostgreSQL's text format, so the server's own input
//! function parses it for whatever type the statement expects: no client-side guess about types can be wrong.

use bytes::BytesMut;
use serde_json::Value;
use tokio_postgres::types::{Format, IsNull, Kind, ToSql, Type, to_sql_checked};

#[derive(Debug)]
pub struct TextParam(Option<String>);

impl TextParam {
    /// Converts a JSON argument for a parameter of type `ty`. JSON arrays become PostgreSQL array literals when the
    /// parameter is an array, and JSON text otherwise (for `json`/`jsonb` parameters).
    pub fn from_json(value: &Value, ty: &Type) -> TextParam {
        match value {
            Value::Null => TextParam(None),
            Value::String(s) => TextParam(Some(s.clone())),
            Value::Array(items) if matches!(ty.kind(), Kind::Array(_)) => {
                TextParam(Some(array_literal(items)))
            }
            other => TextParam(Some(other.to_string())),
        }
    }
}

impl TextParam {
    /// The value in PostgreSQL's text format; `None` for SQL NULL.
    pub fn as_text(&self) -> Option<&[u8]> {
        self.0.as_deref().map(str::as_bytes)
    }
}

fn array_literal(items: &[Value]) -> String {
    let mut out = String::from("{");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        match item {
            Value::Null => out.push_str("NULL"),
            Value::Array(inner) => out.push_str(&array_literal(inner)),
            Value::String(s) => push_quoted_element(&mut out, s),
            other => push_quoted_element(&mut out, &other.to_string()),
        }
    }
    out.push('}');
    out
}

fn push_quoted_element(out: &mut String, element: &str) {
    out.push('"');
    for ch in element.chars() {
        if ch == '"' || ch == '\\' {
            out.push('\\');
        }
        out.push(ch);
    }
    out.push('"');
}

impl ToSql for TextParam {
    fn to_sql(
        &self,
        _ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match &self.0 {
            None => Ok(IsNull::Yes),
            Some(text) => {
                out.extend_from_slice(text.as_bytes());
                Ok(IsNull::No)
            }
        }
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }

    fn encode_format(&self, _ty: &Type) -> Format {
        Format::Text
    }

    to_sql_checked!();
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nested_arrays_become_quoted_array_literals() {
        assert_eq!(
            array_literal(json!([[1, 2], [null, "a\"b"]]).as_array().unwrap()),
            r#"{{"1","2"},{NULL,"a\"b"}}"#
        );
    }
}
