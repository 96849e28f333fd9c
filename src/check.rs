//! `pgmcp check`: connect once and tell the user what psql's \conninfo would, plus whether the role is a safe one
//! to hand to an AI agent.

pub mod pii;

use std::fmt::Write as _;

use crate::config::{AccessMode, Profile};
use crate::db::connect::PgConnector;
use crate::identity::DbIdentity;
use crate::identity::obo::OnBehalfOf;

pub struct CheckReport {
    pub ok: bool,
    pub text: String,
}

pub async fn run(profile: &Profile) -> CheckReport {
    let mut text = String::new();
    let _ = writeln!(text, "profile:        {}", profile.name);
    let _ = writeln!(text, "connection:     {}", profile.conn.redacted());
    if profile.identity.db_identity == DbIdentity::OnBehalfOf {
        // Callers log in as themselves only inside `serve --http`; here the exchange's own settings are checked,
        // and the login below is pgmcp's own credential.
        match OnBehalfOf::from_env(profile, &|name| std::env::var(name).ok()) {
            Ok(exchange) => {
                let _ = writeln!(
                    text,
                    "db identity:    each signed-in HTTP caller, by {}; the login below is pgmcp's own",
                    exchange.describe()
                );
            }
            Err(error) => {
                let _ = writeln!(text, "db identity:    on_behalf_of cannot work: {error}");
                let _ = writeln!(
                    text,
                    "status:         FAILED: db_identity = on_behalf_of is not configured"
                );
                return CheckReport { ok: false, text };
            }
        }
    }
    match inspect(profile, &mut text).await {
        Ok(()) => CheckReport { ok: true, text },
        Err(err) => {
            let _ = writeln!(text, "status:         FAILED: {err}");
            CheckReport { ok: false, text }
        }
    }
}

async fn inspect(profile: &Profile, out: &mut String) -> Result<(), String> {
    let connector = PgConnector::new(profile).map_err(|e| e.to_string())?;
    let connected = connector.connect().await;
    report_credential(&connector, &connected, out);
    let client = connected.map_err(|e| describe_error(&e))?;
    let row = client
        .query_one(
            "SELECT version(), current_setting('server_version'), current_user::text, session_user::text, \
                    current_database()::text, coalesce(host(inet_server_addr()), 'unix socket'), \
                    coalesce(inet_server_port(), 0), \
                    coalesce((SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()), false), \
                    (SELECT version FROM pg_stat_ssl WHERE pid = pg_backend_pid()), \
                    (SELECT cipher FROM pg_stat_ssl WHERE pid = pg_backend_pid()), \
                    current_setting('statement_timeout'), pg_is_in_recovery()",
            &[],
        )
        .await
        .map_err(|e| describe_error(&e))?;
    let ssl: bool = row.get(7);
    let _ = writeln!(out, "status:         connected");
    let _ = writeln!(
        out,
        "server:         PostgreSQL {} ({})",
        row.get::<_, String>(1),
        row.get::<_, String>(0)
    );
    let _ = writeln!(
        out,
        "user:           {} (session user {})",
        row.get::<_, String>(2),
        row.get::<_, String>(3)
    );
    let _ = writeln!(out, "database:       {}", row.get::<_, String>(4));
    let _ = writeln!(
        out,
        "server address: {}:{}",
        row.get::<_, String>(5),
        row.get::<_, i32>(6)
    );
    if ssl {
        let _ = writeln!(
            out,
            "ssl:            yes ({}, cipher {}), sslmode {}",
            row.get::<_, Option<String>>(8).unwrap_or_default(),
            row.get::<_, Option<String>>(9).unwrap_or_default(),
            profile.conn.effective_sslmode().as_str()
        );
    } else {
        let _ = writeln!(
            out,
            "ssl:            no (sslmode {})",
            profile.conn.effective_sslmode().as_str()
        );
    }
    let _ = writeln!(
        out,
        "read replica:   {}",
        if row.get::<_, bool>(11) { "yes" } else { "no" }
    );
    let _ = writeln!(out, "statement_timeout: {}", row.get::<_, String>(10));
    let _ = writeln!(out, "access mode:    {}", profile.access_mode.as_str());
    audit_privileges(&client, profile.access_mode, out)
        .await
        .map_err(|e| describe_error(&e))
}

/// Warns about privileges a read-only agent does not need, so users learn to give pgmcp a least-privilege role.
async fn audit_privileges(
    client: &tokio_postgres::Client,
    access_mode: AccessMode,
    out: &mut String,
) -> Result<(), tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT r.rolsuper, r.rolcreaterole, r.rolcreatedb, r.rolbypassrls, \
                    (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                      WHERE c.relowner = r.oid AND n.nspname NOT IN ('pg_catalog','information_schema') \
                        AND n.nspname NOT LIKE 'pg\\_%'), \
                    (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                      WHERE c.relkind IN ('r','p') AND n.nspname NOT IN ('pg_catalog','information_schema') \
                        AND n.nspname NOT LIKE 'pg\\_%' \
                        AND has_table_privilege(c.oid, 'INSERT, UPDATE, DELETE, TRUNCATE')), \
                    ARRAY(SELECT g.rolname::text FROM pg_roles g \
                          WHERE g.rolname IN ('pg_write_all_data','pg_read_server_files','pg_write_server_files', \
                                              'pg_execute_server_program','pg_signal_backend') \
                            AND pg_has_role(r.oid, g.oid, 'USAGE') ORDER BY 1) \
             FROM pg_roles r WHERE r.rolname = current_user",
            &[],
        )
        .await?;
    let superuser: bool = row.get(0);
    let owned: i64 = row.get(4);
    let writable: i64 = row.get(5);
    let powerful: Vec<String> = row.get(6);
    let mut warnings = Vec::new();
    if superuser {
        warnings.push("the role is a SUPERUSER: it bypasses every permission check. Give pgmcp a dedicated role with only CONNECT, USAGE and SELECT.".to_string());
    }
    if row.get::<_, bool>(1) || row.get::<_, bool>(2) {
        warnings.push(
            "the role can create roles or databases (CREATEROLE/CREATEDB); pgmcp needs neither."
                .to_string(),
        );
    }
    if row.get::<_, bool>(3) {
        warnings.push("the role bypasses row-level security (BYPASSRLS).".to_string());
    }
    if owned > 0 {
        warnings.push(format!("the role owns {owned} table(s)/view(s)/sequence(s): owners can alter and drop them. Use a role that owns nothing."));
    }
    if writable > 0 && access_mode == AccessMode::ReadOnly {
        warnings.push(format!("the role can write to {writable} table(s); pgmcp is read-only, so the role does not need INSERT/UPDATE/DELETE/TRUNCATE."));
    }
    for role in powerful {
        warnings.push(format!("the role is a member of {role}."));
    }
    if warnings.is_empty() {
        let _ = writeln!(
            out,
            "privileges:     ok (no superuser, owns nothing, no write privileges beyond the access mode)"
        );
    } else {
        for warning in warnings {
            let _ = writeln!(out, "warning:        {warning}");
        }
    }
    Ok(())
}

/// Which credential logged in, the identity behind the token (its claims, never the token), and for Entra
/// logins whether the server accepted it.
fn report_credential(
    connector: &PgConnector,
    connected: &Result<tokio_postgres::Client, tokio_postgres::Error>,
    out: &mut String,
) {
    let Some(credentials) = connector.credentials() else {
        let _ = writeln!(
            out,
            "credential:     password (connection settings, PGPASSWORD or ~/.pgpass)"
        );
        return;
    };
    let _ = writeln!(out, "credential:     {}", credentials.source());
    if let Some(claims) = credentials.identity() {
        let _ = writeln!(out, "identity:       {}", claims.summary());
    }
    if credentials.is_entra() {
        let verdict = match connected {
            Ok(_) => "accepted by the server".to_string(),
            Err(error) if crate::db::connect::is_authentication_failure(error) => {
                format!("REJECTED by the server: {}", describe_error(error))
            }
            Err(error) if crate::db::connect::credential_failure_of(error).is_some() => {
                "not attempted: no token could be obtained".to_string()
            }
            Err(_) => "not known: the connection failed before authentication".to_string(),
        };
        let _ = writeln!(out, "entra login:    {verdict}");
    }
}

/// Database errors with their SQLSTATE; connection errors as tokio-postgres words them (no password is ever in them).
fn describe_error(err: &tokio_postgres::Error) -> String {
    if let Some(failure) = crate::db::connect::credential_failure_of(err) {
        return failure.to_string();
    }
    match err.as_db_error() {
        Some(db) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
        None => {
            let mut message = err.to_string();
            let mut source = std::error::Error::source(err);
            while let Some(inner) = source {
                message.push_str(": ");
                message.push_str(&inner.to_string());
                source = inner.source();
            }
            message
        }
    }
}
