//! Shrinks the JSON Schemas that schemars generates to what tells a client or a model something. Every client
//! downloads `tools/list` and most hand its input schemas to a model on every turn, so each word in them costs on
//! every request; what is removed here restates something else (the dialect, the Rust type) or nothing at all.
//!
//! Both kinds of schema lose `$schema` (2020-12 is MCP's default dialect), titles (Rust type names), numeric
//! `format`s (`int64`, `uint32`, `double`: Rust types, not JSON Schema vocabulary), bounds that only restate a Rust
//! integer type's range, `"default": null`, `"items": true`, the line breaks doc comments put in descriptions, and
//! `$defs` (each definition is written where it is used, without its Rust type's doc comment; a schema that refers
//! to itself keeps its definition).
//!
//! Output schemas describe the answer's top level: every field with its JSON type, nullability and enum values, and
//! which fields are always present. What is inside a field that is an object or an array (a table's columns, a
//! check's findings) is not described, and output schemas carry no descriptions: what the fields hold is in the
//! tool's description, the part a model reads. The answer still validates against the schema, which is what clients
//! check. Describing every nested field as well cost about 13 KB for pgmcp's tools even without a word of
//! description, four fifths of the 16 KB the whole list may take (BENCHMARKS.md, "The tool list").

use rmcp::model::JsonObject;
use serde_json::{Map, Value};

/// An input schema as a model should see it: descriptions, defaults, bounds and enums kept.
pub fn compact_input(schema: &JsonObject) -> JsonObject {
    let mut schema = inline_definitions(schema);
    for key in ["$schema", "title", "description"] {
        schema.remove(key);
    }
    // A tool without arguments still says so: some clients read `properties` without checking it is there.
    schema
        .entry("properties")
        .or_insert_with(|| Value::Object(Map::new()));
    let mut value = Value::Object(schema);
    drop_restatements(&mut value);
    into_object(value)
}

/// An output schema reduced to the answer's top-level fields (see the module comment).
pub fn compact_output(schema: &JsonObject) -> JsonObject {
    let mut schema = inline_definitions(schema);
    for key in ["$schema", "title", "description"] {
        schema.remove(key);
    }
    let mut value = Value::Object(schema);
    drop_restatements(&mut value);
    drop_descriptions(&mut value);
    if let Some(Value::Object(properties)) = value.get_mut("properties") {
        for property in properties.values_mut() {
            keep_only_the_field_itself(property);
        }
    }
    into_object(value)
}

fn into_object(value: Value) -> JsonObject {
    match value {
        Value::Object(object) => object,
        _ => unreachable!("a schema object stays an object"),
    }
}

/// Writes every `$ref` to `#/$defs/NAME` in place: the definition, with the referring site's own keywords
/// (its description, its default) taking precedence. A definition that refers to itself, directly or not, stays
/// in `$defs` and is referred to.
fn inline_definitions(schema: &JsonObject) -> JsonObject {
    let definitions = match schema.get("$defs") {
        Some(Value::Object(definitions)) => definitions.clone(),
        _ => return schema.clone(),
    };
    let mut kept = Map::new();
    let mut root = schema.clone();
    root.remove("$defs");
    let mut value = Value::Object(root);
    inline(&mut value, &definitions, &mut Vec::new(), &mut kept);
    let mut root = into_object(value);
    // A kept definition may itself refer to others: inline them inside it, keeping what recurses.
    let mut pending: Vec<String> = kept.keys().cloned().collect();
    while let Some(name) = pending.pop() {
        let mut definition = kept[&name].clone();
        let before: Vec<String> = kept.keys().cloned().collect();
        inline(
            &mut definition,
            &definitions,
            &mut vec![name.clone()],
            &mut kept,
        );
        kept.insert(name, definition);
        pending.extend(kept.keys().filter(|k| !before.contains(k)).cloned());
    }
    if !kept.is_empty() {
        root.insert("$defs".into(), Value::Object(kept));
    }
    root
}

fn inline(
    value: &mut Value,
    definitions: &Map<String, Value>,
    expanding: &mut Vec<String>,
    kept: &mut Map<String, Value>,
) {
    match value {
        Value::Object(object) => {
            let name = match object.get("$ref") {
                Some(Value::String(reference)) => reference.strip_prefix("#/$defs/"),
                _ => None,
            };
            if let Some(name) = name.map(str::to_string)
                && let Some(Value::Object(definition)) = definitions.get(&name)
            {
                if expanding.contains(&name) {
                    kept.entry(name)
                        .or_insert(Value::Object(definition.clone()));
                    return;
                }
                object.remove("$ref");
                let mut expanded = definition.clone();
                // The definition's own description is its Rust type's doc comment; the use site says what the
                // value is for.
                expanded.remove("description");
                expanded.extend(std::mem::take(object));
                *object = expanded;
                expanding.push(name);
                for child in object.values_mut() {
                    inline(child, definitions, expanding, kept);
                }
                expanding.pop();
                return;
            }
            for child in object.values_mut() {
                inline(child, definitions, expanding, kept);
            }
        }
        Value::Array(items) => {
            for item in items {
                inline(item, definitions, expanding, kept);
            }
        }
        _ => {}
    }
}

/// The ranges of the Rust integer types schemars writes as `format`, which its `minimum`/`maximum` then restate.
fn integer_range(format: &str) -> Option<(i128, i128)> {
    Some(match format {
        "int8" => (i8::MIN.into(), i8::MAX.into()),
        "int16" => (i16::MIN.into(), i16::MAX.into()),
        "int32" => (i32::MIN.into(), i32::MAX.into()),
        "int64" => (i64::MIN.into(), i64::MAX.into()),
        "uint8" => (0, u8::MAX.into()),
        "uint16" => (0, u16::MAX.into()),
        "uint32" => (0, u32::MAX.into()),
        "uint" | "uint64" => (0, u64::MAX.into()),
        _ => return None,
    })
}

/// Numeric `format`s name Rust types; a bound equal to that type's own limit says nothing more. Strings keep their
/// formats (`date`, `uuid`): those are JSON Schema's and constrain the value.
fn drop_restatements(value: &mut Value) {
    match value {
        Value::Object(object) => {
            let numeric = match object.get("type") {
                Some(Value::String(kind)) => kind == "integer" || kind == "number",
                Some(Value::Array(kinds)) => kinds
                    .iter()
                    .any(|kind| kind == "integer" || kind == "number"),
                _ => false,
            };
            if numeric && let Some(Value::String(format)) = object.get("format") {
                if let Some((low, high)) = integer_range(format) {
                    let restates = |bound: Option<&Value>, limit: i128| {
                        bound
                            .and_then(Value::as_number)
                            .and_then(|n| n.as_i128())
                            .is_some_and(|n| n == limit)
                    };
                    if restates(object.get("minimum"), low) {
                        object.remove("minimum");
                    }
                    if restates(object.get("maximum"), high) {
                        object.remove("maximum");
                    }
                }
                object.remove("format");
            }
            if object.get("default") == Some(&Value::Null) {
                object.remove("default");
            }
            // Any item is already allowed without it.
            if object.get("items") == Some(&Value::Bool(true)) {
                object.remove("items");
            }
            // Doc comments wrap at the source's line width; the line breaks are not the author's meaning.
            if let Some(Value::String(description)) = object.get_mut("description") {
                *description = description.replace('\n', " ");
            }
            object.remove("title");
            for_each_subschema(object, drop_restatements);
        }
        Value::Array(items) => items.iter_mut().for_each(drop_restatements),
        _ => {}
    }
}

/// The schemas inside a schema object: keyword values, and the values of the keywords that map names to schemas
/// (a property called `title` or `description` is not a keyword). Values that are data (`default`, `enum`,
/// `const`, `examples`) or names (`required`) are left alone.
fn for_each_subschema(object: &mut JsonObject, mut visit: impl FnMut(&mut Value)) {
    for (key, child) in object.iter_mut() {
        match key.as_str() {
            "default" | "enum" | "const" | "examples" | "required" => {}
            "properties" | "patternProperties" | "$defs" => {
                if let Value::Object(named) = child {
                    named.values_mut().for_each(&mut visit);
                }
            }
            _ => visit(child),
        }
    }
}

fn drop_descriptions(value: &mut Value) {
    match value {
        Value::Object(object) => {
            object.remove("description");
            for_each_subschema(object, drop_descriptions);
        }
        Value::Array(items) => items.iter_mut().for_each(drop_descriptions),
        _ => {}
    }
}

/// One top-level field of an answer keeps its own JSON type, nullability and enum values; what is inside an object
/// or an array (a table's columns, a check's findings) is not described. A nullable written as `anyOf: [S, null]`
/// becomes S with `null` among its types.
fn keep_only_the_field_itself(value: &mut Value) {
    let Value::Object(object) = value else {
        return;
    };
    if is_object_schema(object) {
        let nullable = matches!(object.get("type"), Some(Value::Array(kinds)) if kinds.contains(&Value::from("null")));
        object.clear();
        object.insert(
            "type".into(),
            if nullable {
                Value::from(vec!["object", "null"])
            } else {
                Value::from("object")
            },
        );
        return;
    }
    for contents in ["items", "prefixItems", "contains"] {
        object.remove(contents);
    }
    for keyword in ["anyOf", "oneOf"] {
        if let Some(Value::Array(branches)) = object.get_mut(keyword) {
            branches.iter_mut().for_each(keep_only_the_field_itself);
        }
    }
    fold_nullable(object);
}

fn is_object_schema(object: &JsonObject) -> bool {
    let typed_object = match object.get("type") {
        Some(Value::String(kind)) => kind == "object",
        Some(Value::Array(kinds)) => kinds.contains(&Value::from("object")),
        _ => false,
    };
    typed_object || object.contains_key("properties")
}

/// `{"anyOf": [S, {"type": "null"}], ...}` with S a single-typed schema without combinators is S whose type also
/// admits null (and, for an enum, whose values include null): the same values, in fewer words.
fn fold_nullable(object: &mut JsonObject) {
    let Some(Value::Array(branches)) = object.get("anyOf") else {
        return;
    };
    let null = serde_json::json!({"type": "null"});
    if branches.len() != 2 || !branches.contains(&null) {
        return;
    }
    let Some(Value::Object(other)) = branches.iter().find(|branch| **branch != null) else {
        return;
    };
    let Some(Value::String(kind)) = other.get("type") else {
        return;
    };
    if other
        .keys()
        .any(|key| key.ends_with("Of") || key == "const")
    {
        return;
    }
    let mut folded = other.clone();
    folded.insert("type".into(), Value::from(vec![kind.as_str(), "null"]));
    if let Some(Value::Array(values)) = folded.get_mut("enum") {
        values.push(Value::Null);
    }
    object.remove("anyOf");
    folded.extend(std::mem::take(object));
    *object = folded;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(value: Value) -> JsonObject {
        into_object(value)
    }

    #[test]
    fn input_keeps_meaning_and_drops_rust_restatements() {
        let schema = object(json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": "Params",
            "type": "object",
            "properties": {
                "limit": {"description": "Rows\nper page.", "type": ["integer", "null"], "format": "uint64",
                          "minimum": 1, "maximum": 5000, "default": null},
                "offset": {"type": "integer", "format": "uint64", "minimum": 0, "default": 0},
                "position": {"type": "integer", "format": "int16", "minimum": -32768, "maximum": 32767},
                "ratio": {"type": "number", "format": "double"},
                "values": {"type": "array", "items": true},
                "day": {"type": "string", "format": "date"},
                "title": {"type": "string", "description": "A property named like a keyword."},
                "kind": {"$ref": "#/$defs/Kind", "description": "Which kind.", "default": "a"},
                "kinds": {"type": "array", "items": {"$ref": "#/$defs/Kind"}}
            },
            "required": ["day"],
            "$defs": {"Kind": {"description": "A kind.", "type": "string", "enum": ["a", "b"]}}
        }));
        assert_eq!(
            Value::Object(compact_input(&schema)),
            json!({
                "type": "object",
                "properties": {
                    "limit": {"description": "Rows per page.", "type": ["integer", "null"],
                              "minimum": 1, "maximum": 5000},
                    "offset": {"type": "integer", "default": 0},
                    "position": {"type": "integer"},
                    "ratio": {"type": "number"},
                    "values": {"type": "array"},
                    "day": {"type": "string", "format": "date"},
                    "title": {"type": "string", "description": "A property named like a keyword."},
                    "kind": {"description": "Which kind.", "type": "string", "enum": ["a", "b"], "default": "a"},
                    "kinds": {"type": "array", "items": {"type": "string", "enum": ["a", "b"]}}
                },
                "required": ["day"]
            })
        );
    }

    #[test]
    fn output_keeps_the_top_level_contract() {
        let schema = object(json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "properties": {
                "rows": {"type": "array", "items": {"$ref": "#/$defs/Row"}},
                "names": {"type": ["array", "null"], "items": {"type": "string"}},
                "sizes": {"description": "Null for views.", "anyOf": [{"$ref": "#/$defs/Row"}, {"type": "null"}]},
                "order": {"anyOf": [{"$ref": "#/$defs/Order"}, {"type": "null"}]},
                "count": {"description": "How many.", "type": ["integer", "null"], "format": "int64"},
                "plan": {"description": "Any JSON."}
            },
            "required": ["rows", "sizes", "count"],
            "$defs": {
                "Row": {"type": "object", "properties": {"id": {"type": "integer"}}, "required": ["id"]},
                "Order": {"type": "string", "enum": ["calls", "rows"]}
            }
        }));
        assert_eq!(
            Value::Object(compact_output(&schema)),
            json!({
                "type": "object",
                "properties": {
                    "rows": {"type": "array"},
                    "names": {"type": ["array", "null"]},
                    "sizes": {"type": ["object", "null"]},
                    "order": {"type": ["string", "null"], "enum": ["calls", "rows", null]},
                    "count": {"type": ["integer", "null"]},
                    "plan": {}
                },
                "required": ["rows", "sizes", "count"]
            })
        );
    }

    #[test]
    fn a_definition_that_refers_to_itself_is_kept() {
        let schema = object(json!({
            "type": "object",
            "properties": {"tree": {"$ref": "#/$defs/Node"}},
            "$defs": {"Node": {"type": "object", "properties": {
                "children": {"type": "array", "items": {"$ref": "#/$defs/Node"}}}}}
        }));
        let compact = compact_input(&schema);
        assert_eq!(
            compact["properties"]["tree"]["properties"]["children"]["items"],
            json!({"$ref": "#/$defs/Node"})
        );
        assert_eq!(
            compact["$defs"]["Node"]["properties"]["children"]["items"],
            json!({"$ref": "#/$defs/Node"})
        );
    }
}
