//! Decoding from hand-built bytes; the end-to-end checks against a real server live in tests/types.rs.

use serde_json::{Value, json};
use tokio_postgres::types::{Field, Kind, Type};

use super::*;

fn render(ty: &Type, raw: &[u8]) -> Value {
    value_to_json(ty, Some(raw)).expect("valid value")
}

fn datum(bytes: &[u8]) -> Vec<u8> {
    let mut out = (bytes.len() as i32).to_be_bytes().to_vec();
    out.extend_from_slice(bytes);
    out
}

fn array_bytes(dims: &[i32], element_oid: u32, elements: &[Option<&[u8]>]) -> Vec<u8> {
    let mut raw = Vec::new();
    raw.extend_from_slice(&(dims.len() as i32).to_be_bytes());
    raw.extend_from_slice(&i32::from(elements.iter().any(Option::is_none)).to_be_bytes());
    raw.extend_from_slice(&element_oid.to_be_bytes());
    for &len in dims {
        raw.extend_from_slice(&len.to_be_bytes());
        raw.extend_from_slice(&1i32.to_be_bytes());
    }
    for element in elements {
        match element {
            Some(bytes) => raw.extend_from_slice(&datum(bytes)),
            None => raw.extend_from_slice(&(-1i32).to_be_bytes()),
        }
    }
    raw
}

#[test]
fn null_is_null_for_every_type() {
    for ty in [Type::INT4, Type::POINT, Type::RECORD, Type::TEXT_ARRAY] {
        assert_eq!(value_to_json(&ty, None).expect("null"), Value::Null);
    }
}

#[test]
fn scalars() {
    assert_eq!(render(&Type::BOOL, &[1]), json!(true));
    assert_eq!(render(&Type::INT2, &(-7i16).to_be_bytes()), json!(-7));
    assert_eq!(
        render(&Type::INT8, &i64::MAX.to_be_bytes()),
        json!(i64::MAX)
    );
    assert_eq!(render(&Type::OID, &u32::MAX.to_be_bytes()), json!(u32::MAX));
    assert_eq!(
        render(&Type::FLOAT4, &1.1f32.to_be_bytes()).to_string(),
        "1.1"
    );
    assert_eq!(
        render(&Type::FLOAT4, &f32::MIN_POSITIVE.to_be_bytes()).to_string(),
        "1.1754944e-38"
    );
    assert_eq!(
        render(&Type::FLOAT4, &f32::NEG_INFINITY.to_be_bytes()),
        json!("-Infinity")
    );
    assert_eq!(render(&Type::FLOAT8, &f64::NAN.to_be_bytes()), json!("NaN"));
    assert_eq!(
        render(&Type::FLOAT8, &0.1f64.to_be_bytes()).to_string(),
        "0.1"
    );
    assert_eq!(render(&Type::BYTEA, b"Hello"), json!("\\x48656c6c6f"));
    assert_eq!(
        render(&Type::JSONB, b"\x01{\"a\": [1, null]}"),
        json!({"a": [1, null]})
    );
    assert_eq!(render(&Type::JSON, b"{oops"), json!("{oops"));
    assert_eq!(render(&Type::CHAR, b"x"), json!("x"));
    assert_eq!(render(&Type::CHAR, &[0o351]), json!("\\351"));
    assert_eq!(
        render(&Type::VARBIT, &[0, 0, 0, 4, 0b0101_0000]),
        json!("0101")
    );
    assert_eq!(
        render(&Type::MACADDR, &[8, 0, 0x2b, 1, 2, 3]),
        json!("08:00:2b:01:02:03")
    );
    assert_eq!(
        render(&Type::INET, &[2, 32, 0, 4, 192, 168, 0, 1]),
        json!("192.168.0.1")
    );
    assert_eq!(
        render(&Type::INET, &[2, 24, 0, 4, 192, 168, 0, 1]),
        json!("192.168.0.1/24")
    );
    assert_eq!(
        render(&Type::CIDR, &[2, 8, 1, 4, 10, 0, 0, 0]),
        json!("10.0.0.0/8")
    );
    let mut v6 = vec![3, 128, 0, 16, 0x20, 0x01, 0x0d, 0xb8];
    v6.extend_from_slice(&[0; 11]);
    v6.push(1);
    assert_eq!(render(&Type::INET, &v6), json!("2001:db8::1"));
}

#[test]
fn malformed_scalars_are_errors_not_panics() {
    let cases: &[(Type, &[u8])] = &[
        (Type::BOOL, &[2]),
        (Type::INT4, &[0, 0, 1]),
        (Type::UUID, &[0; 15]),
        (Type::TEXT, &[0xff, 0xfe]),
        (Type::JSONB, &[2, b'1']),
        (Type::JSONB, &[]),
        (Type::INET, &[2, 33, 0, 4, 1, 2, 3, 4]),
        (Type::INET, &[9, 8, 0, 4, 1, 2, 3, 4]),
        (Type::VARBIT, &[0, 0, 0, 9, 0]),
        (Type::VARBIT, &[0xff, 0xff, 0xff, 0xff]),
        (Type::MACADDR8, &[0; 6]),
        (Type::TIMETZ, &[0; 8]),
    ];
    for (ty, raw) in cases {
        let err = value_to_json(ty, Some(raw)).expect_err("malformed");
        assert_eq!(err.type_name(), type_display_name(ty));
        assert!(err.to_string().contains(ty.name()), "{err}");
    }
}

#[test]
fn arrays_nest_by_dimension() {
    let one = 1i32.to_be_bytes();
    let two = 2i32.to_be_bytes();
    let three = 3i32.to_be_bytes();
    let four = 4i32.to_be_bytes();
    let square = array_bytes(
        &[2, 2],
        23,
        &[Some(&one), Some(&two), Some(&three), Some(&four)],
    );
    assert_eq!(render(&Type::INT4_ARRAY, &square), json!([[1, 2], [3, 4]]));
    let with_null = array_bytes(&[3], 23, &[Some(&one), None, Some(&three)]);
    assert_eq!(render(&Type::INT4_ARRAY, &with_null), json!([1, null, 3]));
    assert_eq!(
        render(&Type::INT4_ARRAY, &array_bytes(&[], 23, &[])),
        json!([])
    );
    assert_eq!(
        render(&Type::TEXT_ARRAY, &array_bytes(&[1], 25, &[Some(b"a")])),
        json!(["a"])
    );
}

#[test]
fn malformed_arrays_are_errors() {
    let one = 1i32.to_be_bytes();
    let mut short = array_bytes(&[2], 23, &[Some(&one), Some(&one)]);
    short.truncate(short.len() - 1);
    let huge_count = array_bytes(&[i32::MAX, i32::MAX], 23, &[]);
    let too_deep = array_bytes(&[1; 7], 23, &[Some(&one)]);
    let negative = array_bytes(&[-1], 23, &[]);
    let bad_element = array_bytes(&[1], 23, &[Some(&[1, 2])]);
    for raw in [short, huge_count, too_deep, negative, bad_element] {
        assert!(value_to_json(&Type::INT4_ARRAY, Some(&raw)).is_err());
    }
    let err = value_to_json(
        &Type::INT4_ARRAY,
        Some(&array_bytes(&[1], 23, &[Some(&[1])])),
    )
    .expect_err("bad element");
    assert_eq!(err.type_name(), "int4");
}

#[test]
fn ranges_and_multiranges() {
    let mut closed = vec![0x02];
    closed.extend_from_slice(&datum(&1i32.to_be_bytes()));
    closed.extend_from_slice(&datum(&5i32.to_be_bytes()));
    assert_eq!(
        render(&Type::INT4_RANGE, &closed),
        json!({"lower": 1, "upper": 5, "lower_inclusive": true, "upper_inclusive": false})
    );
    let mut unbounded_above = vec![0x02 | 0x10];
    unbounded_above.extend_from_slice(&datum(&1i32.to_be_bytes()));
    assert_eq!(
        render(&Type::INT4_RANGE, &unbounded_above),
        json!({"lower": 1, "upper": null, "lower_inclusive": true, "upper_inclusive": false})
    );
    assert_eq!(render(&Type::INT4_RANGE, &[0x01]), json!({"empty": true}));
    let mut multi = 2i32.to_be_bytes().to_vec();
    multi.extend_from_slice(&datum(&closed));
    multi.extend_from_slice(&datum(&[0x01]));
    let listed = render(&Type::INT4MULTI_RANGE, &multi);
    assert_eq!(listed.as_array().map(Vec::len), Some(2));
    assert!(value_to_json(&Type::INT4MULTI_RANGE, Some(&i32::MAX.to_be_bytes())).is_err());
    assert!(value_to_json(&Type::INT4_RANGE, Some(&[0x02])).is_err());
}

fn custom(name: &str, kind: Kind, schema: &str) -> Type {
    Type::new(name.to_owned(), 90_000, kind, schema.to_owned())
}

#[test]
fn composites_are_objects_in_field_order() {
    let pair = custom(
        "pair",
        Kind::Composite(vec![
            Field::new("b".to_owned(), Type::INT4),
            Field::new("a".to_owned(), Type::TEXT),
        ]),
        "public",
    );
    let mut raw = 2i32.to_be_bytes().to_vec();
    raw.extend_from_slice(&23u32.to_be_bytes());
    raw.extend_from_slice(&datum(&7i32.to_be_bytes()));
    raw.extend_from_slice(&25u32.to_be_bytes());
    raw.extend_from_slice(&(-1i32).to_be_bytes());
    assert_eq!(render(&pair, &raw).to_string(), r#"{"b":7,"a":null}"#);
    raw[7] = 20;
    assert!(
        value_to_json(&pair, Some(&raw)).is_err(),
        "field oid changed"
    );
}

#[test]
fn can_decode_follows_structure() {
    let decodable = [
        Type::INT4,
        Type::NUMERIC,
        Type::TEXT_ARRAY,
        Type::TSTZ_RANGE,
        Type::NUMMULTI_RANGE,
    ];
    for ty in decodable {
        assert!(can_decode(&ty), "{ty}");
    }
    let undecodable = [
        Type::MONEY,
        Type::POINT,
        Type::REGCLASS,
        Type::TS_VECTOR,
        Type::RECORD,
        Type::RECORD_ARRAY,
        Type::POINT_ARRAY,
        Type::PG_LSN,
        Type::INT2_VECTOR,
        Type::OID_VECTOR,
        Type::TXID_SNAPSHOT,
    ];
    for ty in undecodable {
        assert!(!can_decode(&ty), "{ty}");
        assert!(value_to_json(&ty, Some(&[0; 16])).is_err());
    }
    let citext = custom("citext", Kind::Simple, "public");
    assert!(!can_decode(&citext));
    let with_point = custom(
        "spot",
        Kind::Composite(vec![Field::new("at".to_owned(), Type::POINT)]),
        "geo",
    );
    assert!(!can_decode(&with_point));
    let domain_over_citext = custom("email", Kind::Domain(citext), "public");
    assert!(!can_decode(&domain_over_citext));
    assert!(can_decode(&custom(
        "mood",
        Kind::Enum(vec!["ok".to_owned()]),
        "public"
    )));
}

#[test]
fn display_names() {
    assert_eq!(type_display_name(&Type::INT4), "int4");
    assert_eq!(type_display_name(&Type::TEXT_ARRAY), "text[]");
    assert_eq!(type_display_name(&Type::TIMESTAMPTZ), "timestamptz");
    let currency = custom("currency", Kind::Enum(vec![]), "billing");
    assert_eq!(type_display_name(&currency), "billing.currency");
    let currencies = custom("_currency", Kind::Array(currency), "billing");
    assert_eq!(type_display_name(&currencies), "billing.currency[]");
    assert_eq!(
        type_display_name(&custom("citext", Kind::Simple, "public")),
        "citext"
    );
}
