//! Authorization policy for authenticated callers: which tools a caller may see and call, and on which profiles,
//! decided from the roles (app-only tokens) and scopes (delegated tokens) in its token. Authentication has already
//! required the configured role or scope; the policy only narrows what an admitted caller can do. The MCP gate
//! (`mcp::gate`) is the one place that asks it.

use serde::Deserialize;

use crate::http::Caller;
use crate::tools::registry::{ALL_TOOL_NAMES, WRITE_TOOL_NAMES};

/// The role (or scope of the same name) that grants `execute_write` in the default policy.
pub const DEFAULT_WRITE_ROLE: &str = "MCP.Write";

/// Stands for every read-only tool in a grant's `tools`.
const ALL_READ_TOOLS: &str = "*";

/// The `[policy]` table of the config file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    /// Role or scope granting `execute_write` when no `grants` are written.
    #[serde(default)]
    pub write_role: Option<String>,
    /// Explicit grants; when present they replace the default policy entirely.
    #[serde(default)]
    pub grants: Vec<Grant>,
}

/// A caller holding any of `roles` or any of `scopes` may see and call `tools` on `profiles`. A grant with neither
/// roles nor scopes applies to every authenticated caller; a grant without `profiles` covers every profile.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Tool names, or `*` for every read-only tool. Write tools must be named.
    pub tools: Vec<String>,
    /// Profile names the tools are granted on; empty for every profile.
    #[serde(default)]
    pub profiles: Vec<String>,
}

impl Grant {
    fn applies_to(&self, caller: &Caller) -> bool {
        if self.roles.is_empty() && self.scopes.is_empty() {
            return true;
        }
        self.roles.iter().any(|role| caller.roles.contains(role))
            || self
                .scopes
                .iter()
                .any(|scope| caller.scopes.contains(scope))
    }

    /// `read_only`: the tool only reads, so `*` covers it.
    fn grants(&self, tool: &str, read_only: bool) -> bool {
        (self.tools.iter())
            .any(|granted| granted == tool || (granted == ALL_READ_TOOLS && read_only))
    }

    /// `None` is a tool that reaches no profile (`list_profiles`): any grant naming the tool covers it.
    fn covers(&self, profile: Option<&str>) -> bool {
        match profile {
            None => true,
            Some(profile) => self.profiles.is_empty() || self.profiles.iter().any(|p| p == profile),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    grants: Vec<Grant>,
    /// The curated tools `*` covers: those that only read. Empty until the server knows them, so a curated tool
    /// is never granted by `*` before its statement has been classified.
    curated_reads: Vec<String>,
}

impl Policy {
    /// The default: every admitted caller gets the read-only tools; `write_role` (as an app role or a delegated
    /// scope) additionally gets `execute_write`.
    pub fn default_with_write_role(write_role: &str) -> Policy {
        Policy {
            grants: vec![
                Grant {
                    roles: Vec::new(),
                    scopes: Vec::new(),
                    tools: vec![ALL_READ_TOOLS.to_string()],
                    profiles: Vec::new(),
                },
                Grant {
                    roles: vec![write_role.to_string()],
                    scopes: vec![write_role.to_string()],
                    tools: WRITE_TOOL_NAMES.iter().map(|t| t.to_string()).collect(),
                    profiles: Vec::new(),
                },
            ],
            curated_reads: Vec::new(),
        }
    }

    /// Builds the policy from the `[policy]` table and the `--write-role` override; errors name the setting.
    /// `curated` names the configured curated tools, which grants may name like built-in ones.
    pub fn from_file(
        file: &PolicyFile,
        write_role_override: Option<&str>,
        curated: &[String],
    ) -> anyhow::Result<Policy> {
        if file.grants.is_empty() {
            let write_role = write_role_override
                .or(file.write_role.as_deref())
                .unwrap_or(DEFAULT_WRITE_ROLE);
            if write_role.trim().is_empty() {
                anyhow::bail!(
                    "invalid `policy.write_role` / `--write-role`: empty — name the app role or scope that may run execute_write, e.g. {DEFAULT_WRITE_ROLE}"
                );
            }
            return Ok(Policy::default_with_write_role(write_role));
        }
        if write_role_override.is_some() || file.write_role.is_some() {
            anyhow::bail!(
                "`policy.write_role` / `--write-role` applies only to the default policy: with `[[policy.grants]]`, grant execute_write in a grant instead"
            );
        }
        for (index, grant) in file.grants.iter().enumerate() {
            if grant.tools.is_empty() {
                anyhow::bail!(
                    "invalid `policy.grants[{index}].tools`: empty — list tool names, or \"*\" for every read-only tool"
                );
            }
            for tool in &grant.tools {
                if tool != ALL_READ_TOOLS
                    && !ALL_TOOL_NAMES.contains(&tool.as_str())
                    && !curated.contains(tool)
                {
                    anyhow::bail!(
                        "invalid `policy.grants[{index}].tools`: unknown tool `{tool}` — use \"*\", a curated tool's name, or one of: {}",
                        ALL_TOOL_NAMES.join(", ")
                    );
                }
            }
        }
        Ok(Policy {
            grants: file.grants.clone(),
            curated_reads: Vec::new(),
        })
    }

    /// The curated tools that only read, which `*` then grants like the built-in read-only tools.
    pub fn with_curated_reads(self, curated_reads: Vec<String>) -> Policy {
        Policy {
            curated_reads,
            ..self
        }
    }

    /// A grant naming a profile the server does not expose is a start-up error, not a grant that silently never
    /// applies (a typo would otherwise lock a team out, or, worse, look like it restricted something).
    pub fn check_profiles(&self, exposed: &[String]) -> anyhow::Result<()> {
        for (index, grant) in self.grants.iter().enumerate() {
            if let Some(unknown) = grant.profiles.iter().find(|p| !exposed.contains(p)) {
                anyhow::bail!(
                    "invalid `policy.grants[{index}].profiles`: unknown profile `{unknown}` — use one of: {}",
                    exposed.join(", ")
                );
            }
        }
        Ok(())
    }

    /// Whether `caller` may use `tool` on `profile` (`None` for a tool that reaches no profile).
    pub fn may_use(&self, caller: &Caller, tool: &str, profile: Option<&str>) -> bool {
        let read_only = (ALL_TOOL_NAMES.contains(&tool) && !WRITE_TOOL_NAMES.contains(&tool))
            || self.curated_reads.iter().any(|name| name == tool);
        self.grants.iter().any(|grant| {
            grant.applies_to(caller) && grant.grants(tool, read_only) && grant.covers(profile)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(roles: &[&str], scopes: &[&str]) -> Caller {
        Caller {
            roles: roles.iter().map(|r| r.to_string()).collect(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            app_only: scopes.is_empty(),
            ..Caller::default()
        }
    }

    /// The tools `caller` may use on the profile `main`, in alphabetical order.
    fn visible(policy: &Policy, caller: &Caller) -> Vec<String> {
        let mut tools: Vec<String> = ALL_TOOL_NAMES
            .iter()
            .filter(|tool| policy.may_use(caller, tool, Some("main")))
            .map(|tool| tool.to_string())
            .collect();
        tools.sort();
        tools
    }

    #[test]
    fn default_policy_gives_read_tools_to_every_admitted_caller() {
        let policy = Policy::from_file(&PolicyFile::default(), None, &[]).unwrap();
        let tools = visible(&policy, &caller(&["MCP.Access"], &[]));
        assert!(tools.contains(&"execute_query".to_string()));
        assert!(tools.contains(&"list_tables".to_string()));
        assert!(!tools.contains(&"execute_write".to_string()));
        assert_eq!(tools.len(), ALL_TOOL_NAMES.len() - 1);
    }

    #[test]
    fn default_policy_needs_the_write_role_or_scope_for_writes() {
        let policy = Policy::from_file(&PolicyFile::default(), None, &[]).unwrap();
        let main = Some("main");
        assert!(policy.may_use(
            &caller(&["MCP.Access", "MCP.Write"], &[]),
            "execute_write",
            main
        ));
        assert!(policy.may_use(&caller(&[], &["MCP.Write"]), "execute_write", main));
        assert!(!policy.may_use(
            &caller(&["MCP.Writer"], &["mcp.write"]),
            "execute_write",
            main
        ));
    }

    #[test]
    fn write_role_is_configurable() {
        let policy = Policy::from_file(&PolicyFile::default(), Some("Db.Writer"), &[]).unwrap();
        assert!(policy.may_use(&caller(&["Db.Writer"], &[]), "execute_write", Some("main")));
        assert!(!policy.may_use(&caller(&["MCP.Write"], &[]), "execute_write", Some("main")));
    }

    #[test]
    fn explicit_grants_replace_the_default() {
        let file: PolicyFile = toml::from_str(
            r#"
            [[grants]]
            roles = ["Catalog.Read"]
            tools = ["list_schemas", "list_tables", "describe_table"]
            [[grants]]
            scopes = ["Data.Read"]
            tools = ["*"]
            [[grants]]
            roles = ["Data.Write"]
            tools = ["execute_write"]
            "#,
        )
        .unwrap();
        let policy = Policy::from_file(&file, None, &[]).unwrap();
        assert_eq!(
            visible(&policy, &caller(&["Catalog.Read"], &[])),
            vec!["describe_table", "list_schemas", "list_tables"]
        );
        assert!(visible(&policy, &caller(&["Other"], &[])).is_empty());
        let reader = visible(&policy, &caller(&[], &["Data.Read"]));
        assert!(reader.contains(&"execute_query".to_string()));
        assert!(!reader.contains(&"execute_write".to_string()));
        assert_eq!(
            visible(&policy, &caller(&["Data.Write"], &[])),
            vec!["execute_write"]
        );
    }

    #[test]
    fn star_never_grants_writes() {
        let file = PolicyFile {
            write_role: None,
            grants: vec![Grant {
                roles: Vec::new(),
                scopes: Vec::new(),
                tools: vec!["*".into()],
                profiles: Vec::new(),
            }],
        };
        let policy = Policy::from_file(&file, None, &[]).unwrap();
        assert!(!policy.may_use(&caller(&["MCP.Write"], &[]), "execute_write", Some("main")));
    }

    #[test]
    fn unknown_tools_and_empty_grants_are_start_up_errors() {
        let unknown = PolicyFile {
            write_role: None,
            grants: vec![Grant {
                roles: vec!["A".into()],
                scopes: Vec::new(),
                tools: vec!["drop_database".into()],
                profiles: Vec::new(),
            }],
        };
        let err = Policy::from_file(&unknown, None, &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("policy.grants[0].tools") && err.contains("drop_database"),
            "{err}"
        );
        let empty = PolicyFile {
            write_role: None,
            grants: vec![Grant {
                roles: vec!["A".into()],
                scopes: Vec::new(),
                tools: Vec::new(),
                profiles: Vec::new(),
            }],
        };
        let err = Policy::from_file(&empty, None, &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("policy.grants[0].tools") && err.contains("empty"),
            "{err}"
        );
        let both = PolicyFile {
            write_role: Some("X".into()),
            grants: unknown.grants.clone(),
        };
        let err = Policy::from_file(&both, None, &[]).unwrap_err().to_string();
        assert!(err.contains("applies only to the default policy"), "{err}");
    }

    #[test]
    fn grants_can_be_limited_to_profiles() {
        let file: PolicyFile = toml::from_str(
            r#"
            [[grants]]
            roles = ["Sales"]
            tools = ["*"]
            profiles = ["sales"]
            [[grants]]
            roles = ["Everyone"]
            tools = ["list_profiles"]
            "#,
        )
        .unwrap();
        let policy = Policy::from_file(&file, None, &[]).unwrap();
        let sales = caller(&["Sales"], &[]);
        assert!(policy.may_use(&sales, "describe_table", Some("sales")));
        assert!(!policy.may_use(&sales, "describe_table", Some("hr")));
        // A tool that reaches no profile is granted by any grant that names it, whatever its profiles.
        assert!(policy.may_use(&sales, "list_profiles", None));
        assert!(!policy.may_use(&caller(&["Everyone"], &[]), "describe_table", Some("sales")));
        policy
            .check_profiles(&["sales".to_string(), "hr".to_string()])
            .unwrap();
        let err = policy
            .check_profiles(&["hr".to_string()])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("policy.grants[0].profiles") && err.contains("`sales`"),
            "{err}"
        );
    }
}
