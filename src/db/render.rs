//! Rows to JSON: how pgmcp shows a PostgreSQL value to an agent.
//!
//! Results arrive in PostgreSQL's BINARY wire format and are decoded here from raw bytes, so nothing is
//! re-parsed from text and no precision is lost on the way. A column whose type pgmcp cannot decode
//! ([`can_decode`] is false) is cast to `::text` on the server by the caller and shown as a JSON string.
//!
//! | PostgreSQL type | JSON |
//! |---|---|
//! | NULL | `null` |
//! | `bool` | `true` / `false` |
//! | `int2`, `int4`, `int8`, `oid` | number (`int8` is exact: 64-bit integers are kept as integers) |
//! | `float4`, `float8` | number, shortest form that reads back the same value (`1.1::float4` → `1.1`); `NaN`, `Infinity`, `-Infinity` → the strings `"NaN"`, `"Infinity"`, `"-Infinity"` |
//! | `numeric` | string with the exact decimal, as PostgreSQL prints it, scale kept (`1.50` → `"1.50"`); `"NaN"`, `"Infinity"`, `"-Infinity"` |
//! | `text`, `varchar`, `bpchar`, `name`, `"char"`, `xml`, `unknown` | string |
//! | `json`, `jsonb` | the JSON value itself; if it cannot be parsed (e.g. a number beyond `f64`, nesting deeper than 128), its text as a string. Numbers in JSON documents go through `f64`, like in most JSON tools |
//! | `bytea` | string in PostgreSQL's hex form: `"\x48656c6c6f"` (backslash, `x`, lowercase hex) |
//! | `uuid` | `"550e8400-e29b-41d4-a716-446655440000"` |
//! | `date` | `"2024-02-29"` |
//! | `time` | `"13:45:06.5"` (fraction only when non-zero, trailing zeros dropped) |
//! | `timetz` | `"13:45:06+02:00"` (`+05:30:15` when the offset has seconds) |
//! | `timestamp` | `"2024-02-29T13:45:06.123456"` (ISO 8601, `T` separator, fraction trimmed) |
//! | `timestamptz` | in UTC with `Z`: `"2024-02-29T11:45:06.123456Z"` |
//! | infinite `date`, `timestamp`, `timestamptz`, `interval` | `"infinity"` / `"-infinity"` |
//! | `interval` | ISO 8601 duration: `"P1Y2M3DT4H5M6.5S"`, zero → `"PT0S"`, each negative component carries its sign: `"P-1DT-2H"` |
//! | `inet`, `cidr` | `"192.168.0.1"` for a host `inet`; `"10.0.0.0/8"` for `cidr` and for `inet` with a shorter mask; IPv6 in compressed form (`"2001:db8::1"`) |
//! | `macaddr`, `macaddr8` | `"08:00:2b:01:02:03"`, `"08:00:2b:01:02:03:04:05"` |
//! | `bit`, `varbit` | `"0101"` |
//! | arrays | nested JSON arrays, multi-dimensional too (`'{{1,2},{3,4}}'` → `[[1,2],[3,4]]`); empty → `[]`; NULL elements → `null`; lower bounds are not shown |
//! | enums | the label as a string |
//! | domains | as their base type |
//! | composite types | object keyed by field name, fields in declaration order |
//! | ranges | `{"lower": …, "upper": …, "lower_inclusive": bool, "upper_inclusive": bool}`, an infinite bound is `null`; an empty range is `{"empty": true}` |
//! | multiranges (built-in) | array of ranges as above |
//! | everything else | the server's own text output, as a string: `money` (its text depends on `lc_monetary`), geometric types, `tsvector`/`tsquery`, `reg*` types (`regclass` shows the name), `pg_lsn`, `int2vector`, `oidvector`, `txid_snapshot`, anonymous `record`, extension types such as `citext`, and any array, domain, composite or range that contains one of them |
//!
//! Dates and timestamps use the proleptic Gregorian calendar and ISO 8601 years: 1 BC is year `0000`,
//! so PostgreSQL's `'0044-03-15 BC'` is `"-0043-03-15"`; years after 9999 carry a `+` (`"+10000-01-01"`).

mod container;
mod datetime;
mod numeric;
mod scalar;
mod wire;

use std::borrow::Cow;
use std::error::Error;

use postgres_protocol::message::backend::DataRowBody;
use serde_json::Value;
use tokio_postgres::fallible_iterator::FallibleIterator;
use tokio_postgres::types::{FromSql, Kind, Type};
use tokio_postgres::{Column, Row};

/// A cell's raw bytes, for any type: use as `row.try_get::<_, RawCell>(idx)` (accepts every type; NULL → None).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawCell<'a>(pub Option<&'a [u8]>);

impl<'a> FromSql<'a> for RawCell<'a> {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn Error + Sync + Send>> {
        Ok(RawCell(Some(raw)))
    }

    fn from_sql_null(_: &Type) -> Result<Self, Box<dyn Error + Sync + Send>> {
        Ok(RawCell(None))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

/// A value could not be rendered: its bytes are not a valid binary form of its type, or the type is one
/// pgmcp does not decode (the caller should have cast it to text; see [`can_decode`]).
#[derive(Debug, thiserror::Error)]
#[error("cannot render {}a value of type {type_name}: {reason}", column_phrase(.column))]
pub struct RenderError {
    type_name: String,
    column: Option<String>,
    reason: Cow<'static, str>,
}

fn column_phrase(column: &Option<String>) -> String {
    match column {
        Some(name) => format!("column \"{name}\", "),
        None => String::new(),
    }
}

impl RenderError {
    fn new(ty: &Type, reason: impl Into<Cow<'static, str>>) -> Self {
        RenderError {
            type_name: type_display_name(ty),
            column: None,
            reason: reason.into(),
        }
    }

    fn in_column(mut self, name: &str) -> Self {
        self.column = Some(name.to_owned());
        self
    }

    /// The display name of the type whose value failed (the innermost one for arrays and composites).
    pub fn type_name(&self) -> &str {
        &self.type_name
    }

    /// The result column, when the error came from [`row_to_json`].
    pub fn column(&self) -> Option<&str> {
        self.column.as_deref()
    }
}

/// Why bytes could not be decoded; the dispatcher attaches the type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Malformed(pub &'static str);

mod oid {
    pub const BOOL: u32 = 16;
    pub const BYTEA: u32 = 17;
    pub const CHAR: u32 = 18;
    pub const NAME: u32 = 19;
    pub const INT8: u32 = 20;
    pub const INT2: u32 = 21;
    pub const INT2VECTOR: u32 = 22;
    pub const INT4: u32 = 23;
    pub const TEXT: u32 = 25;
    pub const OID: u32 = 26;
    pub const OIDVECTOR: u32 = 30;
    pub const JSON: u32 = 114;
    pub const XML: u32 = 142;
    pub const CIDR: u32 = 650;
    pub const FLOAT4: u32 = 700;
    pub const FLOAT8: u32 = 701;
    pub const UNKNOWN: u32 = 705;
    pub const MACADDR8: u32 = 774;
    pub const MACADDR: u32 = 829;
    pub const INET: u32 = 869;
    pub const BPCHAR: u32 = 1042;
    pub const VARCHAR: u32 = 1043;
    pub const DATE: u32 = 1082;
    pub const TIME: u32 = 1083;
    pub const TIMESTAMP: u32 = 1114;
    pub const TIMESTAMPTZ: u32 = 1184;
    pub const INTERVAL: u32 = 1186;
    pub const TIMETZ: u32 = 1266;
    pub const BIT: u32 = 1560;
    pub const VARBIT: u32 = 1562;
    pub const NUMERIC: u32 = 1700;
    pub const UUID: u32 = 2950;
    pub const JSONB: u32 = 3802;
}

fn is_decodable_simple(type_oid: u32) -> bool {
    use oid::*;
    matches!(
        type_oid,
        BOOL | BYTEA
            | CHAR
            | NAME
            | INT8
            | INT2
            | INT4
            | TEXT
            | OID
            | JSON
            | XML
            | CIDR
            | FLOAT4
            | FLOAT8
            | UNKNOWN
            | MACADDR8
            | MACADDR
            | INET
            | BPCHAR
            | VARCHAR
            | DATE
            | TIME
            | TIMESTAMP
            | TIMESTAMPTZ
            | INTERVAL
            | TIMETZ
            | BIT
            | VARBIT
            | NUMERIC
            | UUID
            | JSONB
    )
}

/// Whether pgmcp can decode this type's binary form. When false, the caller casts the column to `::text` on
/// the server and renders it as a JSON string. Exactly the set of types [`value_to_json`] decodes, recursively.
pub fn can_decode(ty: &Type) -> bool {
    if is_vector(ty) {
        return false;
    }
    match ty.kind() {
        Kind::Simple => is_decodable_simple(ty.oid()),
        Kind::Enum(_) => true,
        Kind::Array(element) => can_decode(element),
        Kind::Domain(base) => can_decode(base),
        Kind::Range(subtype) | Kind::Multirange(subtype) => can_decode(subtype),
        Kind::Composite(fields) => fields.iter().all(|field| can_decode(field.type_())),
        // Pseudo-types (anonymous `record` among them) carry no decodable structure; future kinds are unknown.
        _ => false,
    }
}

/// Renders one value. `raw = None` (SQL NULL) → `Value::Null`. Errors only on malformed bytes or a type
/// [`can_decode`] rejects; never panics.
pub fn value_to_json(ty: &Type, raw: Option<&[u8]>) -> Result<Value, RenderError> {
    let Some(raw) = raw else {
        return Ok(Value::Null);
    };
    if is_vector(ty) {
        return Err(undecodable(ty));
    }
    match ty.kind() {
        Kind::Simple => {
            simple_to_json(ty.oid(), raw).map_err(|Malformed(why)| RenderError::new(ty, why))
        }
        Kind::Enum(_) => scalar::text(raw).map_err(|Malformed(why)| RenderError::new(ty, why)),
        Kind::Domain(base) => value_to_json(base, Some(raw)),
        Kind::Array(element) => container::array(ty, element, raw),
        Kind::Composite(fields) => container::composite(ty, fields, raw),
        Kind::Range(subtype) => container::range(ty, subtype, raw),
        Kind::Multirange(subtype) => container::multirange(ty, subtype, raw),
        _ => Err(undecodable(ty)),
    }
}

/// `int2vector` and `oidvector` travel as arrays but are system-catalog internals whose server text form
/// (`"1 2"`) is what catalog users expect, so they are left to the server like other special types.
fn is_vector(ty: &Type) -> bool {
    matches!(ty.oid(), oid::INT2VECTOR | oid::OIDVECTOR)
}

fn undecodable(ty: &Type) -> RenderError {
    RenderError::new(
        ty,
        "pgmcp does not decode this type's binary form; cast it to text",
    )
}

fn simple_to_json(type_oid: u32, raw: &[u8]) -> Result<Value, Malformed> {
    use oid::*;
    match type_oid {
        BOOL => scalar::boolean(raw),
        INT2 => scalar::int2(raw),
        INT4 => scalar::int4(raw),
        INT8 => scalar::int8(raw),
        OID => scalar::oid(raw),
        FLOAT4 => scalar::float4(raw),
        FLOAT8 => scalar::float8(raw),
        NUMERIC => numeric::numeric_to_string(raw).map(Value::String),
        TEXT | VARCHAR | BPCHAR | NAME | XML | UNKNOWN => scalar::text(raw),
        CHAR => Ok(scalar::single_char(raw)),
        JSON => scalar::json(raw),
        JSONB => scalar::jsonb(raw),
        BYTEA => Ok(scalar::bytea(raw)),
        UUID => scalar::uuid(raw),
        DATE => datetime::date(raw).map(Value::String),
        TIME => datetime::time(raw).map(Value::String),
        TIMETZ => datetime::timetz(raw).map(Value::String),
        TIMESTAMP => datetime::timestamp(raw, false).map(Value::String),
        TIMESTAMPTZ => datetime::timestamp(raw, true).map(Value::String),
        INTERVAL => datetime::interval(raw).map(Value::String),
        INET => scalar::inet(raw, false),
        CIDR => scalar::inet(raw, true),
        MACADDR => scalar::macaddr(raw, 6),
        MACADDR8 => scalar::macaddr(raw, 8),
        BIT | VARBIT => scalar::bits(raw),
        _ => Err(Malformed(
            "pgmcp does not decode this type's binary form; cast it to text",
        )),
    }
}

/// Renders a whole row as a JSON array in column order.
pub fn row_to_json(row: &Row) -> Result<Vec<Value>, RenderError> {
    render_cells(row.columns(), |index| {
        row.try_get::<_, RawCell>(index)
            .map(|RawCell(raw)| raw)
            .map_err(|err| err.to_string())
    })
}

/// Renders a row as it came off the wire (binary format), in the order of `columns`, the statement's.
pub fn data_row_to_json(columns: &[Column], row: &DataRowBody) -> Result<Vec<Value>, RenderError> {
    let buffer = row.buffer();
    let mut ranges = row.ranges();
    render_cells(columns, |_| match ranges.next() {
        Ok(Some(range)) => Ok(range.map(|range| &buffer[range])),
        Ok(None) => Err("the row has fewer values than columns".into()),
        Err(err) => Err(err.to_string()),
    })
}

/// Renders each column's raw cell, `cell(index)` giving its bytes (None for NULL); an error names the column.
fn render_cells<'a>(
    columns: &[Column],
    mut cell: impl FnMut(usize) -> Result<Option<&'a [u8]>, String>,
) -> Result<Vec<Value>, RenderError> {
    let mut values = Vec::with_capacity(columns.len());
    for (index, column) in columns.iter().enumerate() {
        let ty = column.type_();
        let raw = cell(index).map_err(|err| RenderError::new(ty, err).in_column(column.name()))?;
        values.push(value_to_json(ty, raw).map_err(|err| err.in_column(column.name()))?);
    }
    Ok(values)
}

/// A short, readable type name for column metadata: `int4`, `numeric`, `text[]`, `timestamptz`; other types by
/// name, schema-qualified (`billing.currency`) unless they live in `public` or `pg_catalog`.
pub fn type_display_name(ty: &Type) -> String {
    if let Kind::Array(element) = ty.kind() {
        let mut name = type_display_name(element);
        name.push_str("[]");
        return name;
    }
    match ty.schema() {
        "public" | "pg_catalog" | "" => ty.name().to_owned(),
        schema => {
            let mut name = String::with_capacity(schema.len() + 1 + ty.name().len());
            name.push_str(schema);
            name.push('.');
            name.push_str(ty.name());
            name
        }
    }
}

#[cfg(test)]
mod tests;
