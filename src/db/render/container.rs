//! Types built from other types: arrays, composites, ranges and multiranges. Elements render recursively
//! through [`value_to_json`], so an element error names the element's type.

use serde_json::{Map, Value};
use tokio_postgres::types::{Field, Type};

use super::wire::Reader;
use super::{Malformed, RenderError, value_to_json};

/// PostgreSQL's MAXDIM.
const MAX_DIMENSIONS: usize = 6;

/// Every element carries at least a 4-byte length, so a count larger than that is rejected before allocating.
fn plausible_count(count: usize, reader: &Reader<'_>) -> Result<(), Malformed> {
    if count > reader.remaining() / 4 {
        Err(Malformed("element count exceeds the bytes present"))
    } else {
        Ok(())
    }
}

/// Wire layout (array_send): int32 ndim, int32 has-nulls flag, element oid, (int32 length, int32 lower bound)
/// per dimension, then every element as a length-prefixed datum in row-major order.
pub(crate) fn array(ty: &Type, element: &Type, raw: &[u8]) -> Result<Value, RenderError> {
    let structure = |Malformed(why)| RenderError::new(ty, why);
    let mut reader = Reader::new(raw);
    let ndim = reader.i32().map_err(structure)?;
    reader.i32().map_err(structure)?;
    reader.u32().map_err(structure)?;
    let ndim = usize::try_from(ndim)
        .ok()
        .filter(|&n| n <= MAX_DIMENSIONS)
        .ok_or_else(|| RenderError::new(ty, "invalid number of dimensions"))?;
    let mut dims = [0usize; MAX_DIMENSIONS];
    let mut total: usize = 1;
    for dim in &mut dims[..ndim] {
        let len = reader.i32().map_err(structure)?;
        reader.i32().map_err(structure)?;
        *dim =
            usize::try_from(len).map_err(|_| RenderError::new(ty, "negative dimension length"))?;
        total = total
            .checked_mul(*dim)
            .ok_or_else(|| RenderError::new(ty, "too many elements"))?;
    }
    // Like array_recv, an array with no elements is the empty array whatever its declared dimensions.
    if ndim == 0 || total == 0 {
        reader.finish().map_err(structure)?;
        return Ok(Value::Array(Vec::new()));
    }
    plausible_count(total, &reader).map_err(structure)?;
    let nested = nest(ty, element, &dims[..ndim], &mut reader)?;
    reader.finish().map_err(structure)?;
    Ok(nested)
}

fn nest(
    ty: &Type,
    element: &Type,
    dims: &[usize],
    reader: &mut Reader<'_>,
) -> Result<Value, RenderError> {
    let Some((&len, inner)) = dims.split_first() else {
        return Ok(Value::Array(Vec::new()));
    };
    let mut items = Vec::with_capacity(len);
    for _ in 0..len {
        let item = if inner.is_empty() {
            let datum = reader
                .datum()
                .map_err(|Malformed(why)| RenderError::new(ty, why))?;
            value_to_json(element, datum)?
        } else {
            nest(ty, element, inner, reader)?
        };
        items.push(item);
    }
    Ok(Value::Array(items))
}

/// Wire layout (record_send): int32 field count, then per field its type oid and a length-prefixed datum.
pub(crate) fn composite(ty: &Type, fields: &[Field], raw: &[u8]) -> Result<Value, RenderError> {
    let structure = |Malformed(why)| RenderError::new(ty, why);
    let mut reader = Reader::new(raw);
    let count = reader.i32().map_err(structure)?;
    // The field list is cached per connection; a mismatch means the type was altered since then.
    if usize::try_from(count).ok() != Some(fields.len()) {
        return Err(RenderError::new(
            ty,
            "field count differs from the type's definition",
        ));
    }
    let mut object = Map::with_capacity(fields.len());
    for field in fields {
        let field_oid = reader.u32().map_err(structure)?;
        if field_oid != field.type_().oid() {
            return Err(RenderError::new(
                ty,
                "field type differs from the type's definition",
            ));
        }
        let datum = reader.datum().map_err(structure)?;
        object.insert(
            field.name().to_owned(),
            value_to_json(field.type_(), datum)?,
        );
    }
    reader.finish().map_err(structure)?;
    Ok(Value::Object(object))
}

const RANGE_EMPTY: u8 = 0x01;
const RANGE_LOWER_INCLUSIVE: u8 = 0x02;
const RANGE_UPPER_INCLUSIVE: u8 = 0x04;
const RANGE_LOWER_INFINITE: u8 = 0x08;
const RANGE_UPPER_INFINITE: u8 = 0x10;
const RANGE_LOWER_NULL: u8 = 0x20;
const RANGE_UPPER_NULL: u8 = 0x40;

/// Wire layout (range_send): a flags byte, then each finite bound as a length-prefixed datum.
pub(crate) fn range(ty: &Type, subtype: &Type, raw: &[u8]) -> Result<Value, RenderError> {
    let structure = |Malformed(why)| RenderError::new(ty, why);
    let mut reader = Reader::new(raw);
    let flags = reader.u8().map_err(structure)?;
    let mut object = Map::with_capacity(4);
    if flags & RANGE_EMPTY != 0 {
        reader.finish().map_err(structure)?;
        object.insert("empty".to_owned(), Value::Bool(true));
        return Ok(Value::Object(object));
    }
    let mut bound = |absent: u8| -> Result<Value, RenderError> {
        if flags & absent != 0 {
            return Ok(Value::Null);
        }
        let datum = reader.datum().map_err(structure)?;
        value_to_json(subtype, datum)
    };
    let lower = bound(RANGE_LOWER_INFINITE | RANGE_LOWER_NULL)?;
    let upper = bound(RANGE_UPPER_INFINITE | RANGE_UPPER_NULL)?;
    reader.finish().map_err(structure)?;
    object.insert("lower".to_owned(), lower);
    object.insert("upper".to_owned(), upper);
    object.insert(
        "lower_inclusive".to_owned(),
        Value::Bool(flags & RANGE_LOWER_INCLUSIVE != 0),
    );
    object.insert(
        "upper_inclusive".to_owned(),
        Value::Bool(flags & RANGE_UPPER_INCLUSIVE != 0),
    );
    Ok(Value::Object(object))
}

/// Wire layout (multirange_send): int32 range count, then each range as a length-prefixed range value.
pub(crate) fn multirange(ty: &Type, subtype: &Type, raw: &[u8]) -> Result<Value, RenderError> {
    let structure = |Malformed(why)| RenderError::new(ty, why);
    let mut reader = Reader::new(raw);
    let count = usize::try_from(reader.i32().map_err(structure)?)
        .map_err(|_| RenderError::new(ty, "negative range count"))?;
    plausible_count(count, &reader).map_err(structure)?;
    let mut ranges = Vec::with_capacity(count);
    for _ in 0..count {
        let datum = reader
            .datum()
            .map_err(structure)?
            .ok_or_else(|| RenderError::new(ty, "NULL range inside a multirange"))?;
        ranges.push(range(ty, subtype, datum)?);
    }
    reader.finish().map_err(structure)?;
    Ok(Value::Array(ranges))
}
