//! From `[[tools]]` to checked curated tools, before anything connects. Each problem fails the start with a
//! message naming the tool, the setting and the fix: a tool a team reviewed must either be offered as written or
//! not start at all.

use std::collections::BTreeSet;
use std::sync::{Arc, OnceLock};

use regex::Regex;
use serde_json::Number;

use super::params::{Constraints, ParamType, Parameter, Scalar, TYPE_NAMES};
use super::{CuratedTool, CuratedTools, Exposure};
use crate::config::AccessMode;
use crate::config::error::{ConfigError, quoted};
use crate::config::file::{CuratedToolFile, ParameterFile, ToolsExposedFile};
use crate::db::Database;
use crate::tools::registry::ALL_TOOL_NAMES;

/// MCP clients show and match tool names; these characters work in all of them.
const MAX_NAME_LEN: usize = 64;

/// Checks the declared tools against the served profiles. `file_profiles` are the profiles the config file
/// defines: a tool on one of them that this server does not serve is left out (a shared file with `--profile`),
/// a tool on a profile defined nowhere is a mistake. `exposure` is `(setting, value)`, from `--tools` or
/// `tools_exposed`.
pub fn load(
    declared: &[CuratedToolFile],
    file_profiles: &[String],
    databases: &[Arc<Database>],
    exposure: Option<(&str, &ToolsExposedFile)>,
) -> Result<CuratedTools, ConfigError> {
    let mut tools: Vec<CuratedTool> = Vec::new();
    for raw in declared {
        let setting = |key: &str| format!("tools.{}.{key}", raw.name);
        check_name(&raw.name)?;
        if tools.iter().any(|t| t.name == raw.name) {
            return Err(ConfigError::invalid(
                setting("name"),
                quoted(&raw.name),
                "two [[tools]] have this name",
                "give each curated tool its own name",
            ));
        }
        if raw.description.trim().is_empty() {
            return Err(ConfigError::invalid(
                setting("description"),
                "\"\"",
                "empty",
                "say what the tool returns and when to use it: the agent picks tools by their description",
            ));
        }
        let db = match &raw.profile {
            None => &databases[0],
            Some(name) => match databases.iter().find(|db| &db.profile.name == name) {
                Some(db) => db,
                None if file_profiles.contains(name) => {
                    tracing::info!(tool = %raw.name, profile = %name, "curated tool left out: its profile is not served");
                    continue;
                }
                None => {
                    return Err(ConfigError::invalid(
                        setting("profile"),
                        quoted(name),
                        "no profile of that name is defined",
                        format!(
                            "use one of {}, or leave `profile` out for the default profile",
                            databases
                                .iter()
                                .map(|db| db.profile.name.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    ));
                }
            },
        };
        let parameters = raw
            .parameters
            .iter()
            .enumerate()
            .map(|(index, p)| parameter(&raw.name, index, p))
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(twice) = parameters
            .iter()
            .enumerate()
            .find(|(i, p)| parameters[..*i].iter().any(|q| q.name == p.name))
        {
            return Err(ConfigError::invalid(
                setting("parameters"),
                quoted(&twice.1.name),
                "two parameters have this name",
                "give each parameter its own name",
            ));
        }
        let writes = check_statement(&raw.name, &raw.sql, db)?;
        check_placeholders(&raw.name, &raw.sql, &parameters)?;
        tools.push(CuratedTool {
            name: raw.name.clone(),
            description: raw.description.clone(),
            profile: db.profile.name.clone(),
            sql: raw.sql.clone(),
            parameters,
            writes,
            types_checked: OnceLock::new(),
        });
    }
    let exposure = match exposure {
        None => Exposure::All,
        Some((setting, value)) => exposure_of(setting, value, &tools)?,
    };
    Ok(CuratedTools { tools, exposure })
}

fn check_name(name: &str) -> Result<(), ConfigError> {
    let setting = format!("tools.{name}.name");
    if name.is_empty()
        || name.len() > MAX_NAME_LEN
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(ConfigError::invalid(
            setting,
            quoted(name),
            "not a tool name",
            format!(
                "use 1 to {MAX_NAME_LEN} letters, digits, `_` or `-`, e.g. \"orders_for_customer\""
            ),
        ));
    }
    if ALL_TOOL_NAMES.contains(&name) {
        return Err(ConfigError::invalid(
            setting,
            quoted(name),
            "a built-in tool has this name",
            "pick another name for the curated tool, e.g. with a prefix of your team's",
        ));
    }
    Ok(())
}

/// Whether the statement writes, once the profile's guard accepts it: read-only unless it can only run as a
/// write on a read_write profile.
fn check_statement(tool: &str, sql: &str, db: &Database) -> Result<bool, ConfigError> {
    let rejected = |reason: String, fix: &str| {
        ConfigError::invalid(
            format!("tools.{tool}.sql"),
            quoted(&abbreviated(sql)),
            format!(
                "rejected by the SQL guard of profile `{}`: {reason}",
                db.profile.name
            ),
            fix,
        )
    };
    let read_error = match db.guard.check(sql, AccessMode::ReadOnly) {
        Ok(_) => return Ok(false),
        Err(error) => error.reason,
    };
    if db.profile.access_mode == AccessMode::ReadOnly {
        return Err(rejected(
            read_error,
            "a curated tool runs under its profile's rules: make the statement read-only, or put the tool on a \
             profile with access_mode = \"read_write\" if it must write",
        ));
    }
    db.guard
        .check(sql, AccessMode::ReadWrite)
        .map(|_| true)
        .map_err(|error| {
            rejected(
                error.reason,
                "write one statement that the profile's guard accepts",
            )
        })
}

/// Every declared parameter has its placeholder and every placeholder its parameter, by position.
fn check_placeholders(tool: &str, sql: &str, parameters: &[Parameter]) -> Result<(), ConfigError> {
    let setting = format!("tools.{tool}.parameters");
    let used = placeholders(sql).map_err(|problem| {
        ConfigError::invalid(
            format!("tools.{tool}.sql"),
            quoted(&abbreviated(sql)),
            problem,
            "write one SQL statement",
        )
    })?;
    if let Some(beyond) = used.iter().find(|n| **n > parameters.len()) {
        return Err(ConfigError::invalid(
            setting,
            format!("{} parameter(s)", parameters.len()),
            format!("the statement uses ${beyond}, which has no declared parameter"),
            "declare one parameter per placeholder, in order: the first for $1, the second for $2, …",
        ));
    }
    if let Some(unused) = (1..=parameters.len()).find(|n| !used.contains(n)) {
        return Err(ConfigError::invalid(
            setting,
            quoted(&parameters[unused - 1].name),
            format!("declared as parameter {unused}, but the statement has no ${unused}"),
            "use every parameter in the statement, or remove it",
        ));
    }
    Ok(())
}

/// The placeholder numbers ($1, $2, …) the statement uses, read by PostgreSQL's own scanner.
fn placeholders(sql: &str) -> Result<BTreeSet<usize>, String> {
    let tokens = pg_query::scan_tokens(sql).map_err(|e| e.to_string())?;
    Ok(tokens
        .iter()
        .filter(|t| t.token == pg_query::protobuf::Token::Param as i32)
        .filter_map(|t| sql.get(t.start as usize..t.end as usize))
        .filter_map(|text| text.trim_start_matches('$').parse().ok())
        .collect())
}

fn parameter(tool: &str, index: usize, raw: &ParameterFile) -> Result<Parameter, ConfigError> {
    let setting = |key: &str| format!("tools.{tool}.parameters[{index}].{key}");
    let valid_name = !raw.name.is_empty()
        && raw
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
        && raw.name.len() <= MAX_NAME_LEN;
    if !valid_name {
        return Err(ConfigError::invalid(
            setting("name"),
            quoted(&raw.name),
            "not a parameter name",
            "use letters, digits and `_`, e.g. \"customer_id\"",
        ));
    }
    let ty = ParamType::parse(&raw.type_name).ok_or_else(|| {
        ConfigError::invalid(
            setting("type"),
            quoted(&raw.type_name),
            "not a parameter type",
            format!("use {TYPE_NAMES}"),
        )
    })?;
    let numeric = matches!(ty.scalar, Scalar::Integer | Scalar::Number);
    let textual = ty.scalar == Scalar::String;
    let only_for = |key: &str, applies: bool, kind: &str| {
        if applies {
            Ok(())
        } else {
            Err(ConfigError::invalid(
                setting(key),
                "(set)",
                format!(
                    "applies to {kind} parameters, and this one is {}",
                    ty.name()
                ),
                format!("remove `{key}`, or change the type"),
            ))
        }
    };
    for (key, set) in [
        ("minimum", raw.minimum.is_some()),
        ("maximum", raw.maximum.is_some()),
    ] {
        if set {
            only_for(key, numeric, "integer and number")?;
        }
    }
    for (key, set) in [
        ("enum", raw.allowed.is_some()),
        ("pattern", raw.pattern.is_some()),
        ("max_length", raw.max_length.is_some()),
    ] {
        if set {
            only_for(key, textual, "string")?;
        }
    }
    for (key, bound) in [("minimum", &raw.minimum), ("maximum", &raw.maximum)] {
        if let Some(bound) = bound
            && ty.scalar == Scalar::Integer
            && bound.as_i64().is_none()
        {
            return Err(ConfigError::invalid(
                setting(key),
                bound.to_string(),
                "not an integer, and the parameter is an integer",
                "write a whole number",
            ));
        }
    }
    if let (Some(min), Some(max)) = (&raw.minimum, &raw.maximum)
        && as_f64(min) > as_f64(max)
    {
        return Err(ConfigError::invalid(
            setting("minimum"),
            min.to_string(),
            format!("larger than maximum ({max})"),
            "lower minimum or raise maximum",
        ));
    }
    if let Some(allowed) = &raw.allowed
        && allowed.is_empty()
    {
        return Err(ConfigError::invalid(
            setting("enum"),
            "[]",
            "empty, so no value would be accepted",
            "list the accepted values, or remove `enum`",
        ));
    }
    let max_length = match raw.max_length {
        None => None,
        Some(n) => Some(crate::config::validate::count_in_range(
            &setting("max_length"),
            n,
            1,
            1 << 20,
            "set the most characters a value may have",
        )?),
    };
    let pattern = match &raw.pattern {
        None => None,
        Some(text) => Some(Regex::new(text).map_err(|error| {
            ConfigError::invalid(
                setting("pattern"),
                quoted(text),
                format!(
                    "not a regular expression ({})",
                    last_line(&error.to_string())
                ),
                "write a regular expression, anchored with ^…$ to match the whole value",
            )
        })?),
    };
    let parameter = Parameter {
        name: raw.name.clone(),
        ty,
        description: raw.description.clone(),
        constraints: Constraints {
            minimum: raw.minimum.clone(),
            maximum: raw.maximum.clone(),
            allowed: raw.allowed.clone(),
            pattern,
            max_length,
        },
        default: raw.default.clone(),
    };
    if let Some(default) = &parameter.default {
        parameter.check(default).map_err(|reason| {
            ConfigError::invalid(
                setting("default"),
                default.to_string(),
                format!("the default {reason}"),
                "give a default the parameter's own declaration accepts, or remove it to make the argument required",
            )
        })?;
    }
    Ok(parameter)
}

fn exposure_of(
    setting: &str,
    value: &ToolsExposedFile,
    tools: &[CuratedTool],
) -> Result<Exposure, ConfigError> {
    let exposure = match value {
        ToolsExposedFile::Set(set) => match set.as_str() {
            "all" => Exposure::All,
            "builtin" => Exposure::Builtin,
            "curated" => Exposure::Curated,
            other => {
                return Err(ConfigError::invalid(
                    setting,
                    quoted(other),
                    "not a tool set",
                    "use \"all\", \"builtin\", \"curated\", or a list of tool names",
                ));
            }
        },
        ToolsExposedFile::Names(names) => {
            let known = |name: &String| {
                ALL_TOOL_NAMES.contains(&name.as_str()) || tools.iter().any(|t| &t.name == name)
            };
            if let Some(unknown) = names.iter().find(|name| !known(name)) {
                return Err(ConfigError::invalid(
                    setting,
                    quoted(unknown),
                    "no tool has this name",
                    format!(
                        "list built-in tools ({}) or curated tools by name",
                        ALL_TOOL_NAMES.join(", ")
                    ),
                ));
            }
            Exposure::Named(names.clone())
        }
    };
    if exposure == Exposure::Curated && tools.is_empty() {
        return Err(ConfigError::invalid(
            setting,
            "\"curated\"",
            "no curated tools are configured, so the server would offer nothing",
            "declare tools in [[tools]] in the config file, or expose \"all\"",
        ));
    }
    Ok(exposure)
}

fn as_f64(n: &Number) -> f64 {
    n.as_f64().unwrap_or(f64::NAN)
}

/// regex reports the problem on its last line, under a drawing of the pattern.
fn last_line(text: &str) -> &str {
    text.lines().last().unwrap_or(text).trim()
}

/// The statement as it appears in an error: enough to recognise it.
fn abbreviated(sql: &str) -> String {
    const SHOWN: usize = 80;
    let flat: String = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    match flat.char_indices().nth(SHOWN) {
        Some((cut, _)) => format!("{}…", &flat[..cut]),
        None => flat,
    }
}

#[cfg(test)]
mod tests {
    use super::placeholders;

    #[test]
    fn placeholders_come_from_the_scanner_not_from_strings_or_comments() {
        let used = placeholders("SELECT '$3', $1 /* $4 */, $2::int -- $5").unwrap();
        assert_eq!(used.into_iter().collect::<Vec<_>>(), vec![1, 2]);
    }
}
