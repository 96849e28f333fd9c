//! A curated tool's parameters: the declared types, the JSON Schema clients see, the check of a call's arguments
//! against that schema (before anything reaches the database), and which PostgreSQL types each declared type
//! accepts. Values are sent as bind parameters in PostgreSQL's text form, never written into the SQL.

use chrono::{DateTime, NaiveDate, NaiveDateTime};
use regex::Regex;
use rmcp::model::JsonObject;
use serde_json::{Map, Number, Value, json};
use tokio_postgres::types::{Kind, Type};

use crate::tools::ToolError;

/// A scalar type a parameter can be declared with; arrays are written `"<scalar>[]"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scalar {
    Integer,
    Number,
    String,
    Boolean,
    Date,
    Timestamp,
    Timestamptz,
    Uuid,
}

pub const TYPE_NAMES: &str = "integer, number, string, boolean, date, timestamp, timestamptz, uuid, or one of them followed by [] for an array";

impl Scalar {
    fn parse(name: &str) -> Option<Scalar> {
        Some(match name {
            "integer" => Scalar::Integer,
            "number" => Scalar::Number,
            "string" => Scalar::String,
            "boolean" => Scalar::Boolean,
            "date" => Scalar::Date,
            "timestamp" => Scalar::Timestamp,
            "timestamptz" => Scalar::Timestamptz,
            "uuid" => Scalar::Uuid,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Scalar::Integer => "integer",
            Scalar::Number => "number",
            Scalar::String => "string",
            Scalar::Boolean => "boolean",
            Scalar::Date => "date",
            Scalar::Timestamp => "timestamp",
            Scalar::Timestamptz => "timestamptz",
            Scalar::Uuid => "uuid",
        }
    }

    /// The PostgreSQL types a value of this kind can be bound to without losing or reinterpreting it.
    fn accepts(self, ty: &Type) -> bool {
        let accepted: &[Type] = match self {
            Scalar::Integer => &[Type::INT2, Type::INT4, Type::INT8, Type::NUMERIC],
            Scalar::Number => &[Type::NUMERIC, Type::FLOAT4, Type::FLOAT8],
            Scalar::String => &[Type::TEXT, Type::VARCHAR, Type::BPCHAR, Type::NAME],
            Scalar::Boolean => &[Type::BOOL],
            Scalar::Date => &[Type::DATE],
            Scalar::Timestamp => &[Type::TIMESTAMP],
            Scalar::Timestamptz => &[Type::TIMESTAMPTZ],
            Scalar::Uuid => &[Type::UUID],
        };
        // citext is an extension type: its OID differs per database, its name does not.
        accepted.contains(ty) || (self == Scalar::String && ty.name() == "citext")
    }

    /// What PostgreSQL type to cast a placeholder to when it cannot infer one, for the start-up message.
    fn cast(self) -> &'static str {
        match self {
            Scalar::Integer => "integer",
            Scalar::Number => "numeric",
            Scalar::String => "text",
            Scalar::Boolean => "boolean",
            Scalar::Date => "date",
            Scalar::Timestamp => "timestamp",
            Scalar::Timestamptz => "timestamptz",
            Scalar::Uuid => "uuid",
        }
    }

    fn schema(self) -> Map<String, Value> {
        let (ty, format) = match self {
            Scalar::Integer => ("integer", None),
            Scalar::Number => ("number", None),
            Scalar::String => ("string", None),
            Scalar::Boolean => ("boolean", None),
            Scalar::Date => ("string", Some("date")),
            Scalar::Timestamp | Scalar::Timestamptz => ("string", Some("date-time")),
            Scalar::Uuid => ("string", Some("uuid")),
        };
        let mut schema = Map::new();
        schema.insert("type".into(), json!(ty));
        if let Some(format) = format {
            schema.insert("format".into(), json!(format));
        }
        schema
    }
}

/// A declared parameter type: one value, or an array of values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParamType {
    pub scalar: Scalar,
    pub array: bool,
}

impl ParamType {
    pub fn parse(name: &str) -> Option<ParamType> {
        match name.strip_suffix("[]") {
            Some(item) => Scalar::parse(item).map(|scalar| ParamType {
                scalar,
                array: true,
            }),
            None => Scalar::parse(name).map(|scalar| ParamType {
                scalar,
                array: false,
            }),
        }
    }

    pub fn name(self) -> String {
        if self.array {
            format!("{}[]", self.scalar.name())
        } else {
            self.scalar.name().to_string()
        }
    }

    /// Whether PostgreSQL's inferred type for the placeholder takes this parameter's values as they are.
    pub fn accepts(self, ty: &Type) -> bool {
        match (self.array, ty.kind()) {
            (true, Kind::Array(element)) => self.scalar.accepts(element),
            (false, Kind::Array(_)) | (true, _) => false,
            (false, _) => self.scalar.accepts(ty),
        }
    }

    /// How to write the placeholder so PostgreSQL infers this type, e.g. `$2::integer[]`.
    pub fn cast(self, position: usize) -> String {
        let brackets = if self.array { "[]" } else { "" };
        format!("${position}::{}{brackets}", self.scalar.cast())
    }
}

/// What one value may be, beyond its type (for arrays: each element).
#[derive(Debug, Clone, Default)]
pub struct Constraints {
    pub minimum: Option<Number>,
    pub maximum: Option<Number>,
    pub allowed: Option<Vec<String>>,
    pub pattern: Option<Regex>,
    pub max_length: Option<usize>,
}

#[derive(Debug, Clone)]
pub struct Parameter {
    pub name: String,
    pub ty: ParamType,
    pub description: Option<String>,
    pub constraints: Constraints,
    /// Used when the call leaves the argument out; a parameter without one is required.
    pub default: Option<Value>,
}

impl Parameter {
    fn schema(&self) -> Value {
        let mut value = self.ty.scalar.schema();
        let c = &self.constraints;
        if let Some(min) = &c.minimum {
            value.insert("minimum".into(), Value::Number(min.clone()));
        }
        if let Some(max) = &c.maximum {
            value.insert("maximum".into(), Value::Number(max.clone()));
        }
        if let Some(allowed) = &c.allowed {
            value.insert("enum".into(), json!(allowed));
        }
        if let Some(pattern) = &c.pattern {
            value.insert("pattern".into(), json!(pattern.as_str()));
        }
        if let Some(max_length) = c.max_length {
            value.insert("maxLength".into(), json!(max_length));
        }
        let mut schema = if self.ty.array {
            let mut array = Map::new();
            array.insert("type".into(), json!("array"));
            array.insert("items".into(), Value::Object(value));
            array
        } else {
            value
        };
        if let Some(description) = &self.description {
            schema.insert("description".into(), json!(description));
        }
        if let Some(default) = &self.default {
            schema.insert("default".into(), default.clone());
        }
        Value::Object(schema)
    }

    /// The reason `value` is not a valid argument for this parameter, phrased for the caller.
    pub fn check(&self, value: &Value) -> Result<(), String> {
        if !self.ty.array {
            return self.check_one(value);
        }
        let Value::Array(items) = value else {
            return Err(format!(
                "must be an array of {}s, got {}",
                self.ty.scalar.name(),
                kind_of(value)
            ));
        };
        for (index, item) in items.iter().enumerate() {
            self.check_one(item)
                .map_err(|reason| format!("element {index} {reason}"))?;
        }
        Ok(())
    }

    fn check_one(&self, value: &Value) -> Result<(), String> {
        let scalar = self.ty.scalar;
        let wrong = || format!("must be {}, got {}", expected(scalar), kind_of(value));
        match (scalar, value) {
            (Scalar::Integer, Value::Number(n)) => {
                if n.as_i64().is_none() {
                    return Err(wrong());
                }
                self.check_range(n)
            }
            (Scalar::Number, Value::Number(n)) => self.check_range(n),
            (Scalar::Boolean, Value::Bool(_)) => Ok(()),
            (Scalar::String, Value::String(s)) => self.check_text(s),
            (Scalar::Date, Value::String(s)) => NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .map(drop)
                .map_err(|_| format!("must be a date written YYYY-MM-DD, got {s:?}")),
            (Scalar::Timestamp, Value::String(s)) => naive_timestamp(s).ok_or_else(|| {
                format!("must be a timestamp written YYYY-MM-DDTHH:MM:SS[.fraction], got {s:?}")
            }),
            (Scalar::Timestamptz, Value::String(s)) => DateTime::parse_from_rfc3339(s)
                .map(drop)
                .map_err(|_| {
                    format!(
                        "must be an RFC 3339 timestamp with its offset, e.g. 2024-05-01T12:00:00Z, got {s:?}"
                    )
                }),
            (Scalar::Uuid, Value::String(s)) if is_uuid(s) => Ok(()),
            (Scalar::Uuid, Value::String(s)) => Err(format!(
                "must be a UUID written 8-4-4-4-12 hex digits, got {s:?}"
            )),
            _ => Err(wrong()),
        }
    }

    fn check_range(&self, n: &Number) -> Result<(), String> {
        let c = &self.constraints;
        if let Some(min) = &c.minimum
            && compare(n, min).is_lt()
        {
            return Err(format!("must be at least {min}, got {n}"));
        }
        if let Some(max) = &c.maximum
            && compare(n, max).is_gt()
        {
            return Err(format!("must be at most {max}, got {n}"));
        }
        Ok(())
    }

    fn check_text(&self, s: &str) -> Result<(), String> {
        let c = &self.constraints;
        if let Some(allowed) = &c.allowed
            && !allowed.iter().any(|a| a == s)
        {
            return Err(format!("must be one of {}, got {s:?}", allowed.join(", ")));
        }
        if let Some(max) = c.max_length
            && s.chars().count() > max
        {
            return Err(format!(
                "must be at most {max} characters long, got {}",
                s.chars().count()
            ));
        }
        if let Some(pattern) = &c.pattern
            && !pattern.is_match(s)
        {
            return Err(format!(
                "must match the pattern {:?}, got {s:?}",
                pattern.as_str()
            ));
        }
        Ok(())
    }
}

/// Integers compare exactly; anything else as f64, which is as precise as a JSON number read by serde_json.
fn compare(a: &Number, b: &Number) -> std::cmp::Ordering {
    match (a.as_i64(), b.as_i64()) {
        (Some(a), Some(b)) => a.cmp(&b),
        _ => {
            let (a, b) = (
                a.as_f64().unwrap_or(f64::NAN),
                b.as_f64().unwrap_or(f64::NAN),
            );
            a.partial_cmp(&b).unwrap_or(std::cmp::Ordering::Equal)
        }
    }
}

fn naive_timestamp(s: &str) -> Option<()> {
    ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"]
        .iter()
        .find_map(|format| NaiveDateTime::parse_from_str(s, format).ok())
        .map(drop)
}

fn is_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(group, len)| group.len() == len && group.chars().all(|c| c.is_ascii_hexdigit()))
}

fn expected(scalar: Scalar) -> &'static str {
    match scalar {
        Scalar::Integer => "an integer",
        Scalar::Number => "a number",
        Scalar::Boolean => "true or false",
        _ => "a string",
    }
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.as_i64().is_some() => "an integer",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The tool's input schema: one property per parameter, in declaration order; those without a default required.
pub fn input_schema(parameters: &[Parameter]) -> JsonObject {
    let properties: Map<String, Value> = parameters
        .iter()
        .map(|p| (p.name.clone(), p.schema()))
        .collect();
    let required: Vec<&str> = parameters
        .iter()
        .filter(|p| p.default.is_none())
        .map(|p| p.name.as_str())
        .collect();
    let mut schema = JsonObject::new();
    schema.insert("type".into(), json!("object"));
    schema.insert("properties".into(), Value::Object(properties));
    if !required.is_empty() {
        schema.insert("required".into(), json!(required));
    }
    schema.insert("additionalProperties".into(), json!(false));
    schema
}

/// The values for $1, $2, … in order: each argument checked against its declaration, defaults filled in.
/// Nothing here touches the database.
pub fn bind_values(
    parameters: &[Parameter],
    arguments: &JsonObject,
) -> Result<Vec<Value>, ToolError> {
    if let Some(unknown) = arguments
        .keys()
        .find(|key| !parameters.iter().any(|p| &p.name == *key))
    {
        let names: Vec<&str> = parameters.iter().map(|p| p.name.as_str()).collect();
        return Err(ToolError::invalid(if names.is_empty() {
            format!("unknown argument `{unknown}`; this tool takes no arguments")
        } else {
            format!(
                "unknown argument `{unknown}`; this tool takes: {}",
                names.join(", ")
            )
        }));
    }
    parameters
        .iter()
        .map(|p| match (arguments.get(&p.name), &p.default) {
            (Some(value), _) => p
                .check(value)
                .map(|()| value.clone())
                .map_err(|reason| ToolError::invalid(format!("`{}` {reason}", p.name))),
            (None, Some(default)) => Ok(default.clone()),
            (None, None) => Err(ToolError::invalid(format!(
                "missing required argument `{}`",
                p.name
            ))),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn param(ty: &str, constraints: Constraints) -> Parameter {
        Parameter {
            name: "p".into(),
            ty: ParamType::parse(ty).unwrap(),
            description: None,
            constraints,
            default: None,
        }
    }

    #[test]
    fn values_are_checked_against_type_and_constraints() {
        let limit = param(
            "integer",
            Constraints {
                minimum: Some(1.into()),
                maximum: Some(200.into()),
                ..Constraints::default()
            },
        );
        assert!(limit.check(&json!(5)).is_ok());
        assert_eq!(
            limit.check(&json!(0)).unwrap_err(),
            "must be at least 1, got 0"
        );
        assert_eq!(
            limit.check(&json!(201)).unwrap_err(),
            "must be at most 200, got 201"
        );
        assert_eq!(
            limit.check(&json!(1.5)).unwrap_err(),
            "must be an integer, got a number"
        );
        assert_eq!(
            limit.check(&json!("5")).unwrap_err(),
            "must be an integer, got a string"
        );
        let ids = param("uuid[]", Constraints::default());
        assert!(
            ids.check(&json!(["0f8fad5b-d9cb-469f-a165-70867728950e"]))
                .is_ok()
        );
        assert!(
            ids.check(&json!(["nope"]))
                .unwrap_err()
                .starts_with("element 0 must be a UUID")
        );
        assert!(
            param("date", Constraints::default())
                .check(&json!("2024-02-30"))
                .is_err()
        );
        assert!(
            param("timestamp", Constraints::default())
                .check(&json!("2024-02-03T10:00:00"))
                .is_ok()
        );
        assert!(
            param("timestamptz", Constraints::default())
                .check(&json!("2024-02-03T10:00:00"))
                .is_err()
        );
    }

    #[test]
    fn array_types_match_array_placeholders_only() {
        let ints = ParamType::parse("integer[]").unwrap();
        assert!(ints.accepts(&Type::INT4_ARRAY));
        assert!(!ints.accepts(&Type::INT4));
        assert!(
            !ParamType::parse("integer")
                .unwrap()
                .accepts(&Type::INT4_ARRAY)
        );
        assert!(!ParamType::parse("number").unwrap().accepts(&Type::INT4));
        assert_eq!(ints.cast(2), "$2::integer[]");
        assert!(ParamType::parse("integer[][]").is_none());
    }
}
