//! Scale-out: three pgmcp instances behind a real nginx (round-robin) on loopback. Stateless serving means any
//! instance can answer any request, so a client's calls succeed across instances and keep succeeding when one
//! instance goes away.

mod common;
mod http_support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Era, reader_url};
use http_support::{HttpClient, HttpServer, connect, http};
use serde_json::json;

struct Nginx {
    child: Child,
    port: u16,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn nginx_binary() -> String {
    ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .map(String::from)
        .expect("nginx is required for the scale-out test: install the Debian package `nginx` (scripts/test.sh does)")
}

fn current_user() -> String {
    let out = Command::new("id").arg("-un").output().expect("id -un");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// nginx with everything (pid, logs, temp files) inside `dir`, in the foreground, as the current user.
fn start_nginx(dir: &Path, upstreams: &[std::net::SocketAddr]) -> Nginx {
    let port = free_port();
    let d = dir.display();
    let servers: String = upstreams
        .iter()
        .map(|a| format!("    server {a} max_fails=1 fail_timeout=30s;\n"))
        .collect();
    // As root, nginx would switch its workers to `nobody`, who cannot use the temp dir.
    let user = if current_user() == "root" {
        "user root;\n"
    } else {
        ""
    };
    let conf = format!(
        r#"{user}daemon off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 256; }}
http {{
  log_format upstream '$request_method $upstream_addr $upstream_status $status';
  access_log {d}/access.log upstream;
  client_body_temp_path {d}/client_body;
  proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi;
  scgi_temp_path {d}/scgi;
  upstream pgmcp {{
{servers}  }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://pgmcp;
      proxy_http_version 1.1;
      proxy_set_header Host $http_host;
      proxy_set_header Connection "";
      proxy_buffering off;
      proxy_connect_timeout 2s;
      proxy_read_timeout 60s;
      proxy_next_upstream error timeout;
    }}
  }}
}}
"#
    );
    let conf_path = dir.join("nginx.conf");
    std::fs::write(&conf_path, conf).expect("write nginx.conf");
    let child = Command::new(nginx_binary())
        .arg("-p")
        .arg(dir)
        .arg("-e")
        .arg(dir.join("error.log"))
        .arg("-c")
        .arg(&conf_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start nginx");
    Nginx { child, port }
}

async fn wait_until_up(url: &str) {
    let client = http();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(r) = client.get(url).send().await
            && r.status() == 200
        {
            return;
        }
        assert!(Instant::now() < deadline, "nothing answers {url}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// How many POSTs to /mcp each upstream answered with 200, from nginx's access log.
fn answered_by(dir: &Path, upstream: std::net::SocketAddr) -> usize {
    let log = std::fs::read_to_string(dir.join("access.log")).unwrap_or_default();
    log.lines()
        .filter(|l| l.starts_with("POST ") && l.contains(&format!(" {upstream} 200 ")))
        .count()
}

async fn calls_served(server: &HttpServer) -> u64 {
    let text = http()
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with("pgmcp_tool_calls_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

async fn round(client: &HttpClient, n: i64) {
    let result = common::call_ok(
        client,
        "execute_query",
        json!({"sql": "SELECT $1::int * 2 AS doubled", "params": [n]}),
    )
    .await;
    assert_eq!(result["rows"], json!([[n * 2]]));
}

#[tokio::test]
async fn calls_succeed_across_instances_and_survive_losing_one() {
    let url = reader_url();
    let mut instances: Vec<HttpServer> = (0..3)
        .map(|_| {
            HttpServer::start(
                &["serve", "--database-url", &url, "--http", "127.0.0.1:0"],
                &[],
            )
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let addrs: Vec<_> = instances.iter().map(|s| s.addr).collect();
    let nginx = start_nginx(dir.path(), &addrs);
    let base = format!("http://127.0.0.1:{}", nginx.port);
    wait_until_up(&format!("{base}/healthz")).await;

    let mcp = format!("{base}/mcp");
    let stateless = connect(&mcp, Era::Stateless).await;
    let legacy = connect(&mcp, Era::Legacy).await;
    for n in 0..6 {
        round(&stateless, n).await;
        round(&legacy, n).await;
        let tools = legacy.list_all_tools().await.expect("tools/list");
        assert!(tools.iter().any(|t| t.name == "execute_query"));
    }
    for (i, instance) in instances.iter().enumerate() {
        assert!(
            answered_by(dir.path(), instance.addr) > 0,
            "round-robin should have reached instance {i}"
        );
    }

    // One instance dies mid-run; nginx skips it and the same clients carry on.
    instances[1].kill();
    for n in 10..20 {
        round(&stateless, n).await;
        round(&legacy, n).await;
    }
    let total: u64 = {
        let mut sum = 0;
        for i in [0, 2] {
            sum += calls_served(&instances[i]).await;
        }
        sum
    };
    assert!(
        total >= 20,
        "the surviving instances served the rest ({total})"
    );
    stateless.cancel().await.ok();
    legacy.cancel().await.ok();
    drop(nginx);
}
