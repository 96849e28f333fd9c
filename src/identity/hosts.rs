//! Where an Entra token may be sent. A PostgreSQL password travels to the server in the clear inside TLS, so
//! a token must only go to a server that is provably the intended one: an Azure Database for PostgreSQL host
//! (or an explicitly allowed one) over TLS with `verify-full`.

use crate::config::conninfo::is_azure_host;
use crate::config::{ConnSettings, SslMode};

/// Whether `host` is on the allow-list: an exact name, or a `.suffix` entry.
fn allowed(host: &str, allow: &[String]) -> bool {
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    allow.iter().any(|entry| {
        let entry = entry.trim().to_ascii_lowercase();
        if entry.starts_with('.') {
            // The entry's leading dot is the label boundary: `.corp.example` never matches `evilcorp.example`.
            host.ends_with(&entry)
        } else {
            host == entry.trim_start_matches('[').trim_end_matches(']')
        }
    })
}

/// `Ok` when every host may receive a token; otherwise the reason and the fix.
pub fn check_token_hosts(conn: &ConnSettings, allow: &[String]) -> Result<(), String> {
    let hosts: Vec<&str> = if conn.hosts.is_empty() {
        vec![crate::config::conninfo::DEFAULT_HOST]
    } else {
        conn.hosts.iter().map(String::as_str).collect()
    };
    for host in hosts {
        if host.starts_with('/') {
            return Err(format!(
                "an Entra token cannot be sent over the Unix socket {host:?}: use the server's TLS host name"
            ));
        }
        if !is_azure_host(host) && !allowed(host, allow) {
            return Err(format!(
                "host {host:?} is not an Azure Database for PostgreSQL host (*.postgres.database.azure.com and the \
                 sovereign-cloud suffixes), so pgmcp will not send it an Entra token — if it is meant to receive one, \
                 add --token-host-allow {host}"
            ));
        }
    }
    let mode = conn.effective_sslmode();
    if mode != SslMode::VerifyFull {
        return Err(format!(
            "Entra tokens are only sent over TLS with sslmode=verify-full, but the connection uses sslmode={mode} — \
             drop the sslmode setting for Azure hosts, or set sslmode=verify-full with the server's CA in sslrootcert"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(text: &str) -> ConnSettings {
        ConnSettings::parse(text).unwrap()
    }

    #[test]
    fn azure_hosts_pass_with_default_sslmode() {
        assert!(check_token_hosts(&conn("host=srv.postgres.database.azure.com"), &[]).is_ok());
        assert!(
            check_token_hosts(&conn("host=srv.postgres.database.chinacloudapi.cn"), &[]).is_ok()
        );
    }

    #[test]
    fn other_hosts_need_the_allow_list_and_verify_full() {
        let local = conn("host=127.0.0.1 sslmode=verify-full");
        let error = check_token_hosts(&local, &[]).unwrap_err();
        assert!(error.contains("--token-host-allow 127.0.0.1"), "{error}");
        assert!(check_token_hosts(&local, &["127.0.0.1".into()]).is_ok());
        assert!(
            check_token_hosts(
                &conn("host=db.corp.example sslmode=verify-full"),
                &[".corp.example".into()]
            )
            .is_ok()
        );
        let weak = conn("host=srv.postgres.database.azure.com sslmode=require");
        assert!(
            check_token_hosts(&weak, &[])
                .unwrap_err()
                .contains("verify-full")
        );
        let evil = conn("host=srv.postgres.database.azure.com.evil.example sslmode=verify-full");
        assert!(check_token_hosts(&evil, &[]).is_err());
    }

    #[test]
    fn suffix_entries_match_on_a_label_boundary() {
        let corp = [
            ".corp.example".to_string(),
            "db.partner.example".to_string(),
        ];
        assert!(allowed("db.corp.example", &corp));
        assert!(allowed("DB.Corp.Example", &corp));
        assert!(allowed("db.partner.example", &corp));
        for evil in [
            "evilcorp.example",
            "db.evilcorp.example",
            "corp.example.evil.example",
            "xdb.partner.example",
            "sub.db.partner.example",
        ] {
            assert!(!allowed(evil, &corp), "{evil}");
        }
        assert!(
            check_token_hosts(
                &conn("host=srv.evilpostgres.database.azure.com sslmode=verify-full"),
                &[]
            )
            .is_err()
        );
    }
}
