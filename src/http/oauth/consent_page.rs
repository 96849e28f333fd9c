//! The two pages a person may see: the consent form and an error. Plain HTML, no script, never framed.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

use super::authorize::Grant;
use super::clients::Client;

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Headers for every page: no framing (clickjacking), no script, no caching, no referrer leaking the query.
fn protected(status: StatusCode, body: String) -> Response {
    let mut response = (status, Html(body)).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:34rem;margin:3rem auto;padding:0 1rem;\
line-height:1.5}button{font-size:1rem;padding:.5rem 1.2rem;margin-right:.5rem}code{word-break:break-all}";

pub fn error_page(status: StatusCode, message: &str) -> Response {
    protected(
        status,
        format!(
            "<!doctype html><html lang=en><head><meta charset=utf-8><title>pgmcp sign-in</title>\
             <style>{STYLE}</style></head><body><h1>Sign-in stopped</h1><p>{}</p></body></html>",
            escape(message)
        ),
    )
}

pub fn consent_page(client: &Client, grant: &Grant, consent: &str, resource: &str) -> Response {
    let name = client.name.as_deref().unwrap_or("An application");
    let redirect_host = reqwest::Url::parse(&grant.redirect_uri)
        .ok()
        .and_then(|url| {
            url.host_str()
                .map(str::to_string)
                .or(Some(url.scheme().to_string()))
        })
        .unwrap_or_default();
    let body = format!(
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>Allow access to pgmcp?</title>\
         <style>{STYLE}</style></head><body>\
         <h1>Allow <em>{name}</em> to use pgmcp?</h1>\
         <p><strong>{name}</strong> (client <code>{client_id}</code>) asks to query the PostgreSQL databases of \
         <code>{resource}</code> as you, with the same permissions you have there.</p>\
         <p>After you sign in, you will be sent back to <strong>{redirect_host}</strong>.</p>\
         <p>Only allow this if you started this sign-in from an application you trust.</p>\
         <form method=post action=\"authorize\">\
         <input type=hidden name=consent value=\"{consent}\">\
         <button type=submit name=decision value=allow>Allow and sign in</button>\
         <button type=submit name=decision value=deny>Deny</button>\
         </form></body></html>",
        name = escape(name),
        client_id = escape(&shorten(&client.client_id)),
        resource = escape(resource),
        redirect_host = escape(&redirect_host),
        consent = escape(consent),
    );
    protected(StatusCode::OK, body)
}

/// Registered client ids are long sealed values; the start is enough to recognise one.
fn shorten(id: &str) -> String {
    if id.chars().count() <= 60 {
        id.to_string()
    } else {
        format!("{}…", id.chars().take(40).collect::<String>())
    }
}
