//! Client ID metadata documents: the client id is an https URL, and the JSON document there describes the client
//! (its name and redirect URIs). Fetching a URL that anyone can name is a server-side request forgery risk, so the
//! fetch is fenced: https only, the host's addresses must all be public (loopback only with the development
//! setting), the connection goes to the address that was checked, no redirects, a small size and a short time.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::clients::{Client, check_redirect_uri};

const MAX_DOCUMENT_BYTES: usize = 16 * 1024;
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_TTL: Duration = Duration::from_secs(300);
const MAX_TTL: Duration = Duration::from_secs(24 * 3600);
const MAX_CACHED: usize = 1000;

pub struct MetadataDocuments {
    allow_loopback: bool,
    cache: Mutex<HashMap<String, (Client, Instant)>>,
}

#[derive(Deserialize)]
struct Document {
    client_id: String,
    client_name: Option<String>,
    #[serde(default)]
    redirect_uris: Vec<String>,
    token_endpoint_auth_method: Option<String>,
}

/// Addresses a metadata fetch may never reach: this machine, private networks, link-local (cloud metadata
/// services live there), and the other special ranges.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 192 && b == 0)
                || (a == 198 && (18..20).contains(&b))
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || first == 0x2001 && v6.segments()[1] == 0x0db8
                || first == 0x0064)
        }
    }
}

impl MetadataDocuments {
    pub fn new(allow_loopback: bool) -> MetadataDocuments {
        MetadataDocuments {
            allow_loopback,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The client the document at `url` describes; the error is safe to show to the person signing in.
    pub async fn client(&self, url: &str) -> Result<Client, String> {
        if let Ok(cache) = self.cache.lock()
            && let Some((client, until)) = cache.get(url)
            && *until > Instant::now()
        {
            return Ok(client.clone());
        }
        let (client, ttl) = self.fetch(url).await?;
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= MAX_CACHED {
                let now = Instant::now();
                cache.retain(|_, (_, until)| *until > now);
                if cache.len() >= MAX_CACHED {
                    cache.clear();
                }
            }
            cache.insert(url.to_string(), (client.clone(), Instant::now() + ttl));
        }
        Ok(client)
    }

    async fn fetch(&self, text: &str) -> Result<(Client, Duration), String> {
        let url =
            reqwest::Url::parse(text).map_err(|_| "the client id is not a URL".to_string())?;
        if url.scheme() != "https"
            || url.fragment().is_some()
            || !url.username().is_empty()
            || url.password().is_some()
            || url.path() == "/"
        {
            return Err(
                "a client id URL must be https with a path, and no fragment or user".to_string(),
            );
        }
        let host = url.host_str().unwrap_or_default().to_string();
        let port = url.port_or_known_default().unwrap_or(443);
        let lookup_host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let addresses: Vec<SocketAddr> =
            tokio::time::timeout(FETCH_TIMEOUT, tokio::net::lookup_host((lookup_host, port)))
                .await
                .map_err(|_| format!("resolving {host} timed out"))?
                .map_err(|_| format!("{host} does not resolve"))?
                .collect();
        let Some(first) = addresses.first().copied() else {
            return Err(format!("{host} does not resolve"));
        };
        let allowed = |ip: IpAddr| is_public(ip) || (self.allow_loopback && ip.is_loopback());
        if let Some(refused) = addresses.iter().find(|a| !allowed(a.ip())) {
            return Err(format!(
                "{host} resolves to {}, which is not a public address",
                refused.ip()
            ));
        }
        let _ = rustls::crypto::ring::default_provider().install_default();
        // Pinned to the checked address: a second DNS answer cannot swap in an internal one.
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(FETCH_TIMEOUT)
            .connect_timeout(FETCH_TIMEOUT)
            .resolve(&host, first)
            .user_agent(concat!("pgmcp/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|_| "no HTTP client".to_string())?;
        let mut response = client
            .get(url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|error| {
                tracing::warn!(url = %url, error = %error, "client metadata document not fetched");
                format!("could not fetch {url}")
            })?;
        if !response.status().is_success() {
            return Err(format!(
                "{url} answered HTTP {}",
                response.status().as_u16()
            ));
        }
        let ttl = max_age(response.headers())
            .unwrap_or(DEFAULT_TTL)
            .min(MAX_TTL);
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|_| format!("reading {url} failed"))?
        {
            if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
                return Err(format!("{url} is larger than {MAX_DOCUMENT_BYTES} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        let document: Document = serde_json::from_slice(&body)
            .map_err(|_| format!("{url} is not a client metadata document"))?;
        Ok((validate(document, text)?, ttl))
    }
}

fn max_age(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::CACHE_CONTROL)?.to_str().ok()?;
    value.split(',').find_map(|part| {
        part.trim()
            .strip_prefix("max-age=")
            .and_then(|secs| secs.parse::<u64>().ok())
            .map(Duration::from_secs)
    })
}

fn validate(document: Document, url: &str) -> Result<Client, String> {
    if document.client_id != url {
        return Err(format!(
            "the document's client_id is {:?}, not its own URL",
            document.client_id
        ));
    }
    if let Some(method) = &document.token_endpoint_auth_method
        && method != "none"
    {
        return Err(format!(
            "token_endpoint_auth_method {method:?} is not supported; use none (PKCE)"
        ));
    }
    if document.redirect_uris.is_empty() || document.redirect_uris.len() > 8 {
        return Err("the document must list 1 to 8 redirect_uris".to_string());
    }
    for uri in &document.redirect_uris {
        check_redirect_uri(uri).map_err(|why| format!("redirect URI {uri}: {why}"))?;
    }
    Ok(Client {
        client_id: document.client_id,
        name: document
            .client_name
            .map(|name| name.chars().take(100).collect()),
        redirect_uris: document.redirect_uris,
        pre_approved: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        assert!(is_public("20.50.1.1".parse().unwrap()));
        assert!(is_public("2606:4700::1".parse().unwrap()));
    }

    #[tokio::test]
    async fn loopback_documents_are_refused_without_the_development_setting() {
        let documents = MetadataDocuments::new(false);
        let err = documents
            .client("https://127.0.0.1:9/client.json")
            .await
            .unwrap_err();
        assert!(err.contains("not a public address"), "{err}");
        let err = documents
            .client("http://example.com/client.json")
            .await
            .unwrap_err();
        assert!(err.contains("https"), "{err}");
    }
}
