//! Checks a tool's answer against the output schema the server declared for it, as a validating client (the
//! Python SDK) does. Only the JSON Schema keywords pgmcp's tool lists use are understood; any other keyword fails
//! the check instead of being skipped, so a schema this cannot judge never passes.

use serde_json::{Map, Value};

/// `Ok` when `value` is valid under `schema`; otherwise where and why not.
pub fn validate(value: &Value, schema: &Value) -> Result<(), String> {
    check(value, schema, "$")
}

fn check(value: &Value, schema: &Value, at: &str) -> Result<(), String> {
    let schema = match schema {
        Value::Bool(true) => return Ok(()),
        Value::Bool(false) => return Err(format!("{at}: no value is allowed")),
        Value::Object(schema) => schema,
        other => return Err(format!("{at}: not a schema: {other}")),
    };
    for (keyword, rule) in schema {
        match keyword.as_str() {
            "description" | "title" | "default" | "format" | "$schema" => {}
            "type" => check_type(value, rule, at)?,
            "enum" => {
                let allowed = rule.as_array().ok_or(format!("{at}: enum is not a list"))?;
                if !allowed.contains(value) {
                    return Err(format!("{at}: {value} is not one of {rule}"));
                }
            }
            "const" if rule != value => return Err(format!("{at}: {value} is not {rule}")),
            "const" => {}
            "properties" => {
                if let Value::Object(object) = value {
                    for (name, property) in rule.as_object().into_iter().flatten() {
                        if let Some(field) = object.get(name) {
                            check(field, property, &format!("{at}.{name}"))?;
                        }
                    }
                }
            }
            "required" => {
                if let Value::Object(object) = value {
                    for name in rule.as_array().into_iter().flatten() {
                        let name = name.as_str().unwrap_or_default();
                        if !object.contains_key(name) {
                            return Err(format!("{at}: required field `{name}` is missing"));
                        }
                    }
                }
            }
            "additionalProperties" => {
                if let Value::Object(object) = value {
                    let declared = schema.get("properties").and_then(Value::as_object);
                    for (name, field) in object {
                        if !declared.is_some_and(|d| d.contains_key(name)) {
                            check(field, rule, &format!("{at}.{name}"))?;
                        }
                    }
                }
            }
            "items" => {
                if let Value::Array(items) = value {
                    for (index, item) in items.iter().enumerate() {
                        check(item, rule, &format!("{at}[{index}]"))?;
                    }
                }
            }
            "anyOf" | "oneOf" => {
                let branches = rule
                    .as_array()
                    .ok_or(format!("{at}: {keyword} is not a list"))?;
                let valid = branches
                    .iter()
                    .filter(|branch| check(value, branch, at).is_ok())
                    .count();
                let fits = if keyword == "anyOf" {
                    valid >= 1
                } else {
                    valid == 1
                };
                if !fits {
                    return Err(format!(
                        "{at}: {value} matches {valid} branches of {keyword}"
                    ));
                }
            }
            "minimum" | "maximum" => {
                if let (Some(number), Some(bound)) = (value.as_f64(), rule.as_f64()) {
                    let within = if keyword == "minimum" {
                        number >= bound
                    } else {
                        number <= bound
                    };
                    if !within {
                        return Err(format!("{at}: {number} is outside {keyword} {bound}"));
                    }
                }
            }
            other => {
                return Err(format!(
                    "{at}: the check does not know the keyword `{other}`"
                ));
            }
        }
    }
    Ok(())
}

fn check_type(value: &Value, rule: &Value, at: &str) -> Result<(), String> {
    let allowed: Vec<&str> = match rule {
        Value::String(kind) => vec![kind.as_str()],
        Value::Array(kinds) => kinds.iter().filter_map(Value::as_str).collect(),
        other => return Err(format!("{at}: type is {other}")),
    };
    let fits = |kind: &str| match kind {
        "null" => value.is_null(),
        "boolean" => value.is_boolean(),
        "string" => value.is_string(),
        "number" => value.is_number(),
        "integer" => value.is_i64() || value.is_u64(),
        "array" => value.is_array(),
        "object" => value.is_object(),
        _ => false,
    };
    if allowed.iter().any(|kind| fits(kind)) {
        Ok(())
    } else {
        Err(format!("{at}: {value} is not of type {rule}"))
    }
}

/// The output schema of `tool` in a tools/list answer.
pub fn output_schema(tools: &[rmcp::model::Tool], tool: &str) -> Option<Value> {
    let tool = tools.iter().find(|t| t.name == tool)?;
    let schema: &Map<String, Value> = tool.output_schema.as_deref()?;
    Some(Value::Object(schema.clone()))
}
