//! The browser console served at `/` on the HTTP listener: plain HTML, CSS and JavaScript modules compiled into the
//! binary, so there is nothing to install or build. The files are public; everything they do goes through `/mcp`,
//! which keeps its own authentication, so serving them grants nothing.

use std::sync::OnceLock;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};

/// Where the page's scripts, styles and icon live; the page itself is `/`.
pub const ASSET_PREFIX: &str = "/ui";

/// Scripts only from files the server serves (never inline or eval), requests only back to this origin, and no
/// framing: a page that holds a bearer token must not be scriptable or clickjackable by anyone else.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
img-src 'self'; connect-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'none'; \
frame-ancestors 'none'";

struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

macro_rules! asset {
    ($name:literal, $content_type:expr) => {
        Asset {
            name: $name,
            content_type: $content_type,
            body: include_bytes!(concat!("assets/", $name)),
        }
    };
}

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const SVG: &str = "image/svg+xml";

const INDEX: Asset = asset!("index.html", HTML);

const ASSETS: &[Asset] = &[
    asset!("app.js", JS),
    asset!("mcp.js", JS),
    asset!("dom.js", JS),
    asset!("auth.js", JS),
    asset!("form.js", JS),
    asset!("schema.js", JS),
    asset!("sql.js", JS),
    asset!("results.js", JS),
    asset!("chart.js", JS),
    asset!("plan.js", JS),
    asset!("chat.js", JS),
    asset!("style.css", CSS),
    asset!("icon.svg", SVG),
];

/// The routes of the console: `/` and `/ui/{file}`. Any other path under `/ui` is 404.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(index))
        .route(&format!("{ASSET_PREFIX}/{{file}}"), get(asset))
}

async fn index(headers: HeaderMap) -> Response {
    respond(&INDEX, &headers)
}

async fn asset(Path(file): Path<String>, headers: HeaderMap) -> Response {
    match ASSETS.iter().find(|asset| asset.name == file) {
        Some(asset) => respond(asset, &headers),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// A strong validator per file: the files change only with the binary, and their names carry no version, so
/// browsers revalidate (`no-cache`) and get a 304 while the binary is the same.
fn etag(asset: &Asset) -> &'static str {
    static TAGS: OnceLock<Vec<(&'static str, String)>> = OnceLock::new();
    let tags = TAGS.get_or_init(|| {
        std::iter::once(&INDEX)
            .chain(ASSETS)
            .map(|asset| {
                let digest = Sha256::digest(asset.body);
                let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
                (asset.name, format!("\"{hex}\""))
            })
            .collect()
    });
    tags.iter()
        .find(|(name, _)| *name == asset.name)
        .map(|(_, tag)| tag.as_str())
        .unwrap_or("\"\"")
}

fn matches_etag(headers: &HeaderMap, tag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|candidate| candidate.trim().trim_start_matches("W/"))
        .any(|candidate| candidate == tag || candidate == "*")
}

fn respond(asset: &Asset, request: &HeaderMap) -> Response {
    let tag = etag(asset);
    let mut response = if matches_etag(request, tag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut response = asset.body.into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        );
        response
    };
    let headers = response.headers_mut();
    headers.insert(header::ETAG, HeaderValue::from_static(tag));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_script_the_page_imports_is_served() {
        let mut sources: Vec<&str> = vec![std::str::from_utf8(INDEX.body).unwrap()];
        for asset in ASSETS {
            if asset.content_type == JS {
                sources.push(std::str::from_utf8(asset.body).unwrap());
            }
        }
        for source in sources {
            for piece in source.split(['"', '\'']) {
                let name = piece
                    .strip_prefix("./")
                    .or_else(|| piece.strip_prefix("ui/"))
                    .unwrap_or("");
                if name.ends_with(".js") || name.ends_with(".css") || name.ends_with(".svg") {
                    assert!(
                        ASSETS.iter().any(|asset| asset.name == name),
                        "{name} is referenced but not embedded"
                    );
                }
            }
        }
    }

    #[test]
    fn the_page_has_no_inline_script_or_style() {
        let html = std::str::from_utf8(INDEX.body).unwrap();
        assert!(!html.contains("<script>"), "inline script");
        assert!(!html.contains("style="), "inline style attribute");
        assert!(!html.contains("<style"), "inline style element");
        for (at, _) in html.match_indices(" on") {
            let attribute: String = html[at + 1..]
                .chars()
                .take_while(|c| c.is_ascii_alphabetic())
                .collect();
            assert!(
                !html[at + 1 + attribute.len()..].starts_with('='),
                "inline event handler {attribute}"
            );
        }
    }

    #[test]
    fn etags_are_distinct_and_quoted() {
        let tags: Vec<&str> = std::iter::once(&INDEX).chain(ASSETS).map(etag).collect();
        for tag in &tags {
            assert!(tag.starts_with('"') && tag.ends_with('"') && tag.len() > 10);
        }
        let mut unique = tags.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), tags.len());
    }

    #[test]
    fn if_none_match_lists_and_weak_tags_are_understood() {
        let tag = etag(&INDEX);
        let mut headers = HeaderMap::new();
        headers.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_str(&format!("\"other\", W/{tag}")).unwrap(),
        );
        assert!(matches_etag(&headers, tag));
        headers.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"x\""));
        assert!(!matches_etag(&headers, tag));
    }
}
