//! A real nginx on loopback, round-robin over pgmcp replicas (the scale-out tests).
#![allow(dead_code)]

use std::path::Path;
use std::process::{Child, Command, Stdio};

pub use crate::common::free_port;

pub struct Nginx {
    child: Child,
    pub port: u16,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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
pub fn start_nginx(dir: &Path, upstreams: &[std::net::SocketAddr]) -> Nginx {
    start_nginx_on(free_port(), dir, upstreams)
}

/// Like `start_nginx` on a given port (when the replicas must know the public URL before nginx starts).
pub fn start_nginx_on(port: u16, dir: &Path, upstreams: &[std::net::SocketAddr]) -> Nginx {
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
