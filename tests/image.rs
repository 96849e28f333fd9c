//! The runtime container image, run as a container would run it: `scripts/ci-image.sh` builds it with
//! `scripts/image.sh`; this test mounts its root filesystem (`buildah mount`) and runs the image's entrypoint in it
//! with `chroot` as the image's user — `--version`, then `serve --http` against a throwaway PostgreSQL with Entra
//! authentication (keys from a loopback issuer), `/healthz`, `/readyz`, the image's own health check command, and
//! an authenticated `tools/list` and query. (`podman run` fails in this sandbox on resource limits; the
//! mount-and-chroot run exercises the same files, user and entrypoint.)
//!
//! Ignored in the ordinary suite, which builds no image: `scripts/ci-image.sh` runs it with `--ignored`;
//! `PGMCP_IMAGE` names the image (default `pgmcp:local`), and `PGMCP_IMAGE_PROFILE=debug` says it wraps a debug
//! binary, whose size is not the image's target.

mod common;
mod deploy_support;
mod http_support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use common::free_port;
use deploy_support::{Issuer, ROLE, json_rpc};
use http_support::{http, mcp_post};
/// The image must stay small (issue 18's target).
const MAX_IMAGE_BYTES: u64 = 40 * 1024 * 1024;

fn buildah(args: &[&str]) -> String {
    let output = Command::new("buildah")
        .args(args)
        .output()
        .expect("run buildah");
    assert!(
        output.status.success(),
        "buildah {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_string()
}

/// A working container of the image with its root filesystem mounted; removed on drop.
struct Mounted {
    container: String,
    root: PathBuf,
    config: Value,
}

impl Mounted {
    fn new(image: &str) -> Mounted {
        let name = format!("pgmcp-image-test-{}", std::process::id());
        let container = buildah(&["from", "--pull-never", "--name", &name, image]);
        let root = PathBuf::from(buildah(&["mount", &container]));
        let inspect: Value =
            serde_json::from_str(&buildah(&["inspect", "--type", "image", image])).unwrap();
        let config = inspect["Docker"]["config"].clone();
        Mounted {
            container,
            root,
            config,
        }
    }

    fn entrypoint(&self) -> String {
        self.config["Entrypoint"][0].as_str().unwrap().to_string()
    }

    fn user(&self) -> String {
        self.config["User"].as_str().unwrap().to_string()
    }

    /// `chroot --userspec=<image user> <root> <entrypoint> args…` with only the image's environment and `env`.
    fn command(&self, args: &[&str], env: &[(&str, &str)]) -> Command {
        // Found on this process's PATH: the child's environment is the image's, which has none.
        let chroot = std::env::var_os("PATH")
            .and_then(|path| {
                std::env::split_paths(&path)
                    .map(|dir| dir.join("chroot"))
                    .find(|file| file.is_file())
            })
            .expect("chroot on PATH");
        let mut command = Command::new(chroot);
        command
            .arg(format!("--userspec={}", self.user()))
            .arg(&self.root)
            .arg(self.entrypoint())
            .args(args)
            .env_clear();
        for pair in self.config["Env"].as_array().into_iter().flatten() {
            let (key, value) = pair.as_str().unwrap().split_once('=').unwrap();
            command.env(key, value);
        }
        for (key, value) in env {
            command.env(key, value);
        }
        command
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args, &[]).output().expect("run chroot")
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("buildah")
            .args(["rm", &self.container])
            .output();
    }
}

/// Every file under `root`, with its size (symbolic links not followed).
fn files(root: &Path) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let meta = entry.path().symlink_metadata().unwrap();
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                let path = entry.path();
                let relative = path.strip_prefix(root).unwrap().to_string_lossy();
                out.push((format!("/{relative}"), meta.len()));
            }
        }
    }
    out.sort();
    out
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the runtime image: run by scripts/ci-image.sh"]
async fn the_image_serves_mcp_as_its_non_root_user() {
    let image = std::env::var("PGMCP_IMAGE").unwrap_or_else(|_| "pgmcp:local".into());
    let mounted = Mounted::new(&image);

    // What the image declares.
    let config = &mounted.config;
    assert_eq!(config["User"], "65532:65532", "{config}");
    assert_eq!(config["Entrypoint"], json!(["/usr/local/bin/pgmcp"]));
    assert_eq!(config["Cmd"], json!(["serve", "--http", "0.0.0.0:8080"]));
    assert!(config["ExposedPorts"].get("8080/tcp").is_some(), "{config}");
    assert_eq!(
        config["Healthcheck"]["Test"],
        json!(["CMD", "/usr/local/bin/pgmcp", "health"])
    );

    // What it holds: pgmcp, its libraries, CA certificates, passwd/group — no shell, nothing else.
    let files = files(&mounted.root);
    let names: Vec<&str> = files.iter().map(|(name, _)| name.as_str()).collect();
    for expected in [
        "/usr/local/bin/pgmcp",
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/passwd",
        "/etc/group",
    ] {
        assert!(names.contains(&expected), "{expected} missing: {names:?}");
    }
    assert!(
        !mounted.root.join("bin/sh").exists() && !mounted.root.join("usr/bin").exists(),
        "the image has a shell: {names:?}"
    );
    let others: Vec<&&str> = names
        .iter()
        .filter(|name| {
            !name.contains(".so")
                && !matches!(
                    **name,
                    "/usr/local/bin/pgmcp"
                        | "/etc/ssl/certs/ca-certificates.crt"
                        | "/etc/passwd"
                        | "/etc/group"
                )
        })
        .collect();
    assert!(others.is_empty(), "unexpected files: {others:?}");
    // The size target is the release image's; CI's image wraps the debug binary `cargo test` already built.
    let total: u64 = files.iter().map(|(_, size)| size).sum();
    if std::env::var("PGMCP_IMAGE_PROFILE").as_deref() != Ok("debug") {
        assert!(total < MAX_IMAGE_BYTES, "the image holds {total} bytes");
    }
    let passwd = std::fs::read_to_string(mounted.root.join("etc/passwd")).unwrap();
    assert!(passwd.contains("pgmcp:x:65532:65532:"), "{passwd}");

    // The entrypoint runs as the image's user.
    let version = mounted.run(&["--version"]);
    assert!(version.status.success(), "{version:?}");
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        format!("pgmcp {}", env!("CARGO_PKG_VERSION"))
    );

    // serve --http with Entra authentication, configured by PGMCP_* variables plus a config file for the one
    // setting that has no variable (the Entra authority, pointed at the loopback issuer).
    let issuer = Issuer::start().await;
    let cluster = common::cluster();
    let config_file = mounted.root.join("tmp/pgmcp-test.toml");
    std::fs::write(&config_file, issuer.config()).unwrap();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let database_url = format!(
        "postgresql://reader@{}:{}/app",
        cluster.host(),
        cluster.port()
    );
    let log = mounted.root.join("tmp/pgmcp-test.log");
    let mut env = Issuer::pgmcp_env();
    env.push(("DATABASE_URL", &database_url));
    env.push(("PGMCP_CONFIG", "/tmp/pgmcp-test.toml"));
    let child = mounted
        .command(&["serve", "--http", &listen], &env)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start pgmcp in the image");
    let mut server = Server(child);
    let base = format!("http://{listen}");
    let client = http();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(response) = client.get(format!("{base}/healthz")).send().await
            && response.status().is_success()
        {
            break;
        }
        if let Ok(Some(status)) = server.0.try_wait() {
            panic!(
                "pgmcp exited ({status}): {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        assert!(Instant::now() < deadline, "pgmcp did not answer /healthz");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ready = client.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200, "{}", ready.text().await.unwrap());

    // The image's HEALTHCHECK command, from inside the image; and its failure when nothing listens.
    let probe = mounted.run(&["health", &format!("{base}/healthz")]);
    assert!(probe.status.success(), "{probe:?}");
    let refused = mounted.run(&[
        "health",
        &format!("http://127.0.0.1:{}/healthz", free_port()),
    ]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("did not answer"),
        "{refused:?}"
    );

    // No token: 401 with the challenge. A token without the role: 403. With it: the tools, and rows.
    let list = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}"#;
    let anonymous = mcp_post(&client, &format!("{base}/mcp"), list)
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    let challenge = anonymous.headers()["www-authenticate"].to_str().unwrap();
    assert!(challenge.contains("resource_metadata="), "{challenge}");
    let roleless = mcp_post(&client, &format!("{base}/mcp"), list)
        .bearer_auth(issuer.token(&[]))
        .send()
        .await
        .unwrap();
    assert_eq!(roleless.status(), 403);

    let token = issuer.token(&[ROLE]);
    let tools = mcp_post(&client, &format!("{base}/mcp"), list)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(tools.status(), 200);
    let tools = json_rpc(&tools.text().await.unwrap());
    let names: Vec<&str> = tools["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("{tools}"))
        .iter()
        .map(|tool| tool["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"execute_query") && names.contains(&"list_tables"),
        "{names:?}"
    );
    let query = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
        "name": "execute_query", "arguments": {"sql": "SELECT count(*) AS n FROM canary"}}});
    let answer = mcp_post(&client, &format!("{base}/mcp"), query.to_string())
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let answer = json_rpc(&answer.text().await.unwrap());
    let text = answer["result"]["content"][0]["text"].as_str().unwrap();
    let rows: Value = serde_json::from_str(text).unwrap();
    assert_eq!(rows["rows"], json!([[10]]), "{answer}");

    // It runs as the image's user, not root.
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", server.0.id())).unwrap_or_default();
    let uid_line = status.lines().find(|line| line.starts_with("Uid:"));
    assert!(
        uid_line.is_some_and(|line| line.split_whitespace().nth(1) == Some("65532")),
        "{uid_line:?}"
    );
    let _ = server.0.kill();
}
