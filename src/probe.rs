//! `pgmcp health`: the container image's health probe. The runtime image holds pgmcp and its libraries only — no
//! shell, no curl — so the binary itself asks a running pgmcp's `/healthz` and turns the answer into an exit code.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use anyhow::Context;
use clap::Args;

/// Where `serve --http` listens in the image when nothing else is said (the Containerfile's default command).
const IMAGE_LISTEN: &str = "0.0.0.0:8080";

#[derive(Debug, Args)]
pub struct HealthArgs {
    /// The URL to ask. Default: /healthz on loopback at the port of PGMCP_HTTP, else 8080 (the image's
    /// `serve --http 0.0.0.0:8080`).
    #[arg(value_name = "URL")]
    pub url: Option<String>,

    /// Seconds to wait for the answer.
    #[arg(long, default_value_t = 3, value_name = "SECONDS")]
    pub timeout: u64,
}

/// Succeeds when the URL answers 2xx; the error says what came back instead.
pub async fn run(args: HealthArgs) -> anyhow::Result<()> {
    let url = match args.url {
        Some(url) => url,
        None => default_url(std::env::var("PGMCP_HTTP").ok().as_deref())?,
    };
    let client = crate::identity::http::http_client().context("setting up the HTTP client")?;
    let response = client
        .get(&url)
        .timeout(Duration::from_secs(args.timeout.max(1)))
        .send()
        .await
        .with_context(|| format!("{url} did not answer"))?;
    let status = response.status();
    if !status.is_success() {
        anyhow::bail!("{url} answered {status}");
    }
    println!("{url}: {status}");
    Ok(())
}

/// `/healthz` of the server listening on `listen`: a wildcard bind is reached on loopback of the same family.
fn default_url(listen: Option<&str>) -> anyhow::Result<String> {
    let text = listen
        .map(str::trim)
        .filter(|text| !text.is_empty())
        .unwrap_or(IMAGE_LISTEN);
    // `serve --http` also takes localhost:PORT.
    let numeric = match text.strip_prefix("localhost:") {
        Some(port) => format!("127.0.0.1:{port}"),
        None => text.to_string(),
    };
    let mut addr: SocketAddr = numeric.parse().with_context(|| {
        format!("PGMCP_HTTP = {text:?} is not IP:PORT; pass the URL to probe instead")
    })?;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        });
    }
    Ok(format!("http://{addr}/healthz"))
}

#[cfg(test)]
mod tests {
    use super::default_url;

    #[test]
    fn wildcard_binds_are_probed_on_loopback() {
        assert_eq!(default_url(None).unwrap(), "http://127.0.0.1:8080/healthz");
        assert_eq!(
            default_url(Some("0.0.0.0:9000")).unwrap(),
            "http://127.0.0.1:9000/healthz"
        );
        assert_eq!(
            default_url(Some("[::]:9000")).unwrap(),
            "http://[::1]:9000/healthz"
        );
        assert_eq!(
            default_url(Some("10.1.2.3:8080")).unwrap(),
            "http://10.1.2.3:8080/healthz"
        );
    }

    #[test]
    fn an_unparsable_listen_address_says_what_to_do() {
        assert_eq!(
            default_url(Some("localhost:8081")).unwrap(),
            "http://127.0.0.1:8081/healthz"
        );
        let error = default_url(Some("pgmcp:80")).unwrap_err().to_string();
        assert!(
            error.contains("PGMCP_HTTP") && error.contains("pass the URL"),
            "{error}"
        );
    }
}
