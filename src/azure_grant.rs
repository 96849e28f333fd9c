//! `pgmcp azure grant`: the SQL a Microsoft Entra administrator of an Azure Database for PostgreSQL server runs
//! once so that an Entra principal (pgmcp's managed identity, a person, a group) can log in with a token, with
//! only the privileges its access mode needs. The output is a psql script (`\connect` switches databases), so it
//! can be read, then piped to psql; `pgmcp check` as that principal confirms the result.

use std::fmt::Write as _;

use clap::{Args, Subcommand, ValueEnum};

use crate::config::AccessMode;
use crate::db::ident::quote_ident;

#[derive(Debug, Subcommand)]
pub enum AzureCommand {
    /// Print the SQL that creates the PostgreSQL role of an Entra principal (pgaadauth_create_principal_with_oid)
    /// and grants it least privilege for a read-only or read-write pgmcp. Pipe it to psql as an Entra admin.
    Grant(GrantArgs),
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
pgmcp azure grant --name aca-pgmcp --object-id <managed identity principal id> --database app\n  \
pgmcp azure grant --name analysts --object-id <group object id> --type group --access-mode read_write \\\n    \
--schema sales --owner app_owner | psql \"host=myserver.postgres.database.azure.com user=admin@contoso.com dbname=postgres\"")]
pub struct GrantArgs {
    /// The PostgreSQL role name: a managed identity's display name, a user's UPN or a group's display name (the
    /// name pgmcp logs in with: --db-user).
    #[arg(long, value_name = "NAME")]
    pub name: String,

    /// The principal's Entra object id (for a managed identity: its principal id).
    #[arg(long, value_name = "UUID")]
    pub object_id: String,

    /// What kind of principal it is.
    #[arg(long = "type", value_enum, default_value_t = PrincipalType::Service)]
    pub principal_type: PrincipalType,

    /// The database pgmcp serves.
    #[arg(long, default_value = "postgres", value_name = "DB")]
    pub database: String,

    /// Schemas whose tables pgmcp may read (repeatable).
    #[arg(
        long = "schema",
        value_delimiter = ',',
        default_value = "public",
        value_name = "SCHEMA"
    )]
    pub schemas: Vec<String>,

    /// read_only grants SELECT; read_write adds INSERT, UPDATE, DELETE and sequence use (for execute_write).
    #[arg(long, value_parser = crate::cli::parse_access_mode, default_value = "read_only")]
    pub access_mode: AccessMode,

    /// The role that creates the tables later (migrations): its future tables get the same grants. Default: the
    /// administrator running the script.
    #[arg(long, value_name = "ROLE")]
    pub owner: Option<String>,

    /// The server's host name, to print the `pgmcp check` command that confirms the grants.
    #[arg(long, value_name = "HOST")]
    pub server: Option<String>,
}

/// `objectType` of pgaadauth_create_principal_with_oid.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum PrincipalType {
    /// A managed identity or an application's service principal.
    Service,
    User,
    Group,
}

impl PrincipalType {
    fn describe(self) -> &'static str {
        match self {
            PrincipalType::Service => "service principal (managed identity or application)",
            PrincipalType::User => "user",
            PrincipalType::Group => "group",
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            PrincipalType::Service => "service",
            PrincipalType::User => "user",
            PrincipalType::Group => "group",
        }
    }
}

pub fn run(command: AzureCommand) -> anyhow::Result<()> {
    match command {
        AzureCommand::Grant(args) => {
            print!("{}", grant_script(&args)?);
            Ok(())
        }
    }
}

/// The psql script; every name is quoted by the one identifier quoting function, the object id is checked.
pub fn grant_script(args: &GrantArgs) -> anyhow::Result<String> {
    if args.name.trim().is_empty() || args.name.contains('\0') {
        anyhow::bail!("invalid `--name`: give the principal's display name (or a user's UPN)");
    }
    if !is_uuid(&args.object_id) {
        anyhow::bail!(
            "invalid `--object-id` = {:?}: not a UUID — use the principal's object id (a managed identity's \
             principalId, `az ad user show --id <upn> --query id`, `az ad group show --group <name> --query id`)",
            args.object_id
        );
    }
    if args.schemas.iter().any(|schema| schema.trim().is_empty()) {
        anyhow::bail!("invalid `--schema`: a schema name is empty");
    }
    let role = quote_ident(&args.name);
    let database = quote_ident(&args.database);
    let writes = args.access_mode == AccessMode::ReadWrite;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "-- pgmcp azure grant: PostgreSQL role {role} for the Entra {} {}, {}.\n\
         -- Run as a Microsoft Entra administrator of the server, e.g. piped to\n\
         --   psql \"host=<server>.postgres.database.azure.com user=<admin> dbname=postgres sslmode=require\"\n\
         \\set ON_ERROR_STOP on\n\
         -- Entra principals are created from the postgres database.\n\
         \\connect postgres\n\
         SELECT * FROM pgaadauth_create_principal_with_oid({}, {}, {}, false, false);\n\
         \\connect {}\n\
         GRANT CONNECT ON DATABASE {database} TO {role};",
        args.principal_type.describe(),
        args.object_id,
        if writes {
            "read and write"
        } else {
            "read only"
        },
        quote_literal(&args.name),
        quote_literal(&args.object_id),
        quote_literal(args.principal_type.as_str()),
        psql_arg(&args.database),
    );
    let table_privileges = if writes {
        "SELECT, INSERT, UPDATE, DELETE"
    } else {
        "SELECT"
    };
    let future = match &args.owner {
        Some(owner) => format!("ALTER DEFAULT PRIVILEGES FOR ROLE {} ", quote_ident(owner)),
        None => "ALTER DEFAULT PRIVILEGES ".to_string(),
    };
    for schema in &args.schemas {
        let schema = quote_ident(schema.trim());
        let _ = writeln!(
            out,
            "GRANT USAGE ON SCHEMA {schema} TO {role};\n\
             GRANT {table_privileges} ON ALL TABLES IN SCHEMA {schema} TO {role};\n\
             {future}IN SCHEMA {schema} GRANT {table_privileges} ON TABLES TO {role};"
        );
        if writes {
            // Inserts into serial and identity columns draw from sequences.
            let _ = writeln!(
                out,
                "GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {schema} TO {role};\n\
                 {future}IN SCHEMA {schema} GRANT USAGE, SELECT ON SEQUENCES TO {role};"
            );
        }
    }
    let _ = writeln!(
        out,
        "-- Confirm from where pgmcp runs (it reports the login and warns about any privilege beyond these):\n\
         --   pgmcp check --database-url \"postgresql://{}/{}\" --db-auth entra --db-user '{}'{}",
        args.server
            .as_deref()
            .unwrap_or("<server>.postgres.database.azure.com"),
        args.database,
        args.name.replace('\'', "'\\''"),
        if writes {
            " --access-mode read_write"
        } else {
            ""
        }
    );
    Ok(out)
}

/// An SQL string literal (standard_conforming_strings is on everywhere pgaadauth exists).
fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// A psql meta-command argument: single-quoted, `'` doubled and `\` escaped as psql reads them.
fn psql_arg(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "''"))
}

fn is_uuid(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(group, len)| group.len() == len && group.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(name: &str, object_id: &str) -> GrantArgs {
        GrantArgs {
            name: name.into(),
            object_id: object_id.into(),
            principal_type: PrincipalType::Service,
            database: "app".into(),
            schemas: vec!["public".into()],
            access_mode: AccessMode::ReadOnly,
            owner: None,
            server: None,
        }
    }

    #[test]
    fn names_are_quoted_and_the_object_id_checked() {
        let script = grant_script(&args(
            "o'brien \"x\"",
            "11111111-2222-3333-4444-555555555555",
        ))
        .unwrap();
        assert!(script.contains(
            "pgaadauth_create_principal_with_oid('o''brien \"x\"', '11111111-2222-3333-4444-555555555555', 'service', false, false)"
        ));
        assert!(script.contains("TO \"o'brien \"\"x\"\"\";"), "{script}");
        let error = grant_script(&args("pgmcp", "1; DROP ROLE x"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("not a UUID"), "{error}");
    }

    #[test]
    fn read_only_grants_no_writes() {
        let script = grant_script(&args("pgmcp", "11111111-2222-3333-4444-555555555555")).unwrap();
        assert!(
            !script.contains("INSERT") && !script.contains("SEQUENCES"),
            "{script}"
        );
        assert!(!script.contains("--access-mode read_write"));
    }
}
