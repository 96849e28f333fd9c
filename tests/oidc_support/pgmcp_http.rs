//! `pgmcp serve --http` as a child process on a free loopback port, with an audit log to observe tool calls.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use super::*;

pub struct PgmcpHttp {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    pub audit: PathBuf,
    _dir: tempfile::TempDir,
}

impl PgmcpHttp {
    /// Starts pgmcp in Entra mode trusting `provider_base` as authority (v1 issuers keep their own host, the
    /// default `https://sts.windows.net`, as in the stand-in's tokens); the tenant, client id,
    /// App ID URI, role, scope and client app come from the command-line flags, the loopback endpoints from the
    /// config file (they have no flags: only tests and sovereign clouds change them).
    pub fn start_entra(database_url: &str, provider_base: &str, extra_args: &[&str]) -> PgmcpHttp {
        PgmcpHttp::start_entra_with_env(database_url, provider_base, extra_args, &[])
    }

    /// Like `start_entra` with extra environment variables for the server (e.g. the Azure ones).
    pub fn start_entra_with_env(
        database_url: &str,
        provider_base: &str,
        extra_args: &[&str],
        env: &[(&str, String)],
    ) -> PgmcpHttp {
        let config = format!(
            "[auth]\nentra_authority = \"{provider_base}\"\nunknown_kid_cooldown_seconds = 30\n"
        );
        let mut args = vec![
            "--auth-mode",
            "entra",
            "--entra-tenant-id",
            TENANT,
            "--entra-client-id",
            CLIENT_ID,
            "--entra-app-id-uri",
            APP_ID_URI,
            "--required-role",
            ROLE,
            "--required-scope",
            "user_impersonation",
            "--allowed-client-app",
            AGENT_APP,
        ];
        args.extend_from_slice(extra_args);
        PgmcpHttp::launch("127.0.0.1:0", database_url, &config, &args, env)
    }

    pub fn start(database_url: &str, config: &str, args: &[&str]) -> PgmcpHttp {
        PgmcpHttp::start_listening("127.0.0.1:0", database_url, config, args)
    }

    /// Like `start` on a given address (when the resource URL must be known before start, e.g. as audience).
    pub fn start_listening(
        listen: &str,
        database_url: &str,
        config: &str,
        args: &[&str],
    ) -> PgmcpHttp {
        PgmcpHttp::launch(listen, database_url, config, args, &[])
    }

    /// Like `start_listening` with extra environment variables for the server.
    pub fn start_listening_with_env(
        listen: &str,
        database_url: &str,
        config: &str,
        args: &[&str],
        env: &[(&str, String)],
    ) -> PgmcpHttp {
        PgmcpHttp::launch(listen, database_url, config, args, env)
    }

    fn launch(
        listen: &str,
        database_url: &str,
        config: &str,
        args: &[&str],
        env: &[(&str, String)],
    ) -> PgmcpHttp {
        let dir = tempfile::tempdir().expect("temp dir");
        let config_path = dir.path().join("pgmcp.toml");
        std::fs::write(&config_path, config).expect("write config");
        let audit = dir.path().join("audit.jsonl");
        let mut command = Command::new(env!("CARGO_BIN_EXE_pgmcp"));
        command
            .args(["serve", "--http", listen])
            // Empty: the profiles come from the config file alone.
            .args(
                Some(["--database-url", database_url])
                    .filter(|_| !database_url.is_empty())
                    .into_iter()
                    .flatten(),
            )
            .arg("--config")
            .arg(&config_path)
            .arg("--audit-log")
            .arg(&audit)
            .args(args)
            .env("PGMCP_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (key, _) in std::env::vars() {
            if key.starts_with("PG") && key != "PGMCP_LOG" || key == "DATABASE_URL" {
                command.env_remove(key);
            }
        }
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("spawn pgmcp serve --http");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        // The log's first lines say why a server did not start (a port taken, a setting refused); a failure that
        // only happens on another machine must carry them, since nobody can rerun it there with the log on.
        let early_log = Arc::new(Mutex::new(Vec::<String>::new()));
        let early_log_writer = Arc::clone(&early_log);
        let reader = std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if std::env::var_os("PGMCP_TEST_SERVER_LOG").is_some() {
                    eprintln!("pgmcp: {line}");
                }
                if !sent && let Ok(mut early) = early_log_writer.lock() {
                    early.push(line.clone());
                }
                if !sent && let Some(at) = line.find("listening on http://") {
                    let address = line[at + "listening on ".len()..]
                        .split_whitespace()
                        .next()
                        .unwrap_or_default();
                    let _ = tx.send(address.to_string());
                    sent = true;
                }
            }
        });
        let base = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(base) => base,
            Err(_) => {
                let (status, log) = kill_for_its_log(&mut child, reader, &early_log);
                panic!(
                    "pgmcp serve --http on {listen} exited or did not report its address within 60 s ({status}); its log:\n{log}"
                );
            }
        };
        PgmcpHttp {
            child,
            base,
            audit,
            _dir: dir,
        }
    }

    pub fn mcp_url(&self) -> String {
        format!("{}/mcp", self.base)
    }

    pub fn metadata_url(&self) -> String {
        format!("{}/.well-known/oauth-protected-resource/mcp", self.base)
    }

    /// The audit log's lines that mention `marker` (tool calls whose SQL carried it).
    pub fn audit_lines_with(&self, marker: &str) -> Vec<String> {
        std::fs::read_to_string(&self.audit)
            .unwrap_or_default()
            .lines()
            .filter(|line| line.contains(marker))
            .map(str::to_string)
            .collect()
    }
}

impl Drop for PgmcpHttp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
