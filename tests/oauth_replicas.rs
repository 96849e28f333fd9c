//! Replicas of one pgmcp service (the same `--public-url` and `--oauth-signing-key`, no shared storage) serve
//! every step of a sign-in for each other: a client registered on one is known to the other, a sign-in started
//! on one completes on the other (the provider sends the browser to the public URL), a token issued by one is
//! accepted by both — also as three replicas behind a real nginx — and a code redeemed at one is refused at the
//! other.

mod common;
mod nginx_support;
mod oauth_support;
mod oidc_support;

use oauth_support::*;
use reqwest::StatusCode;

const REDIRECT: &str = "http://127.0.0.1/callback";

#[tokio::test]
async fn replicas_sharing_the_key_serve_each_others_clients_sign_ins_and_tokens() {
    let (port_a, port_b) = (free_port(), free_port());
    let public = format!("http://127.0.0.1:{port_a}");
    let resource = format!("{public}/mcp");
    let provider = upstream_provider(&public);
    let dir = tempfile::tempdir().unwrap();
    let (key_path, _) = signing_key(dir.path(), "shared.pem");
    let a = replica(port_a, Some(&public), &provider, &key_path, "", &[]);
    let b = replica(port_b, Some(&public), &provider, &key_path, "", &[]);
    let b_base = format!("http://127.0.0.1:{port_b}");

    let client = register_at(&b_base, REDIRECT).await;

    // Started on B: B shows the consent page and sends the browser to the provider, which returns it to the
    // public URL, i.e. to A, which completes the sign-in B began.
    let authorize = authorize_url_at(&b_base, &resource, &client, REDIRECT, "r");
    let back = Browser::default().sign_in(&authorize, REDIRECT).await;
    assert_eq!(query(&back, "iss").as_deref(), Some(public.as_str()));
    let code = query(&back, "code").expect("a code");

    let (status, tokens) = redeem_at(&b_base, &resource, &client, REDIRECT, &code).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    let access = tokens["access_token"].as_str().unwrap();
    assert_eq!(
        call_at(&a.mcp_url(), access, "on-a").await.0,
        StatusCode::OK
    );
    assert_eq!(
        call_at(&b.mcp_url(), access, "on-b").await.0,
        StatusCode::OK
    );
    assert_eq!(a.audit_lines_with("on-a").len(), 1);
    assert_eq!(b.audit_lines_with("on-b").len(), 1);

    // The refresh token from B is honoured by A.
    let (status, refreshed) =
        refresh_at(&public, &client, tokens["refresh_token"].as_str().unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{refreshed}");
    assert_eq!(
        call_at(
            &b.mcp_url(),
            refreshed["access_token"].as_str().unwrap(),
            "refreshed-on-a"
        )
        .await
        .0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn three_replicas_behind_nginx_share_clients_and_tokens() {
    let ports = [free_port(), free_port(), free_port()];
    let nginx_port = free_port();
    let public = format!("http://127.0.0.1:{nginx_port}");
    let resource = format!("{public}/mcp");
    let provider = upstream_provider(&public);
    let dir = tempfile::tempdir().unwrap();
    let (key_path, _) = signing_key(dir.path(), "shared.pem");
    let replicas: Vec<_> = ports
        .iter()
        .map(|port| replica(*port, Some(&public), &provider, &key_path, "", &[]))
        .collect();
    let upstreams: Vec<std::net::SocketAddr> = ports
        .iter()
        .map(|port| format!("127.0.0.1:{port}").parse().unwrap())
        .collect();
    let nginx_dir = tempfile::tempdir().unwrap();
    let _nginx = nginx_support::start_nginx_on(nginx_port, nginx_dir.path(), &upstreams);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while http()
        .get(format!("{public}/healthz"))
        .send()
        .await
        .map(|r| r.status())
        .ok()
        != Some(StatusCode::OK)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "nginx does not answer"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    // Registered on the first replica, signed in through nginx (each step may land anywhere), redeemed on the
    // third.
    let client = register_at(&format!("http://127.0.0.1:{}", ports[0]), REDIRECT).await;
    let authorize = authorize_url_at(&public, &resource, &client, REDIRECT, "n");
    let back = Browser::default().sign_in(&authorize, REDIRECT).await;
    let code = query(&back, "code").expect("a code");
    let third = format!("http://127.0.0.1:{}", ports[2]);
    let (status, tokens) = redeem_at(&third, &resource, &client, REDIRECT, &code).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    let access = tokens["access_token"].as_str().unwrap();
    for round in 0..6 {
        assert_eq!(
            call_at(&resource, access, &format!("through-nginx-{round}"))
                .await
                .0,
            StatusCode::OK
        );
    }
    // Round-robin: every replica answered some of those calls, and accepted the token.
    let log = std::fs::read_to_string(nginx_dir.path().join("access.log")).unwrap_or_default();
    for (upstream, server) in upstreams.iter().zip(&replicas) {
        let answered = log
            .lines()
            .filter(|l| l.starts_with("POST ") && l.contains(&format!(" {upstream} 200 ")))
            .count();
        assert!(answered >= 1, "{upstream} answered no call:\n{log}");
        assert!(!server.audit_lines_with("through-nginx-").is_empty());
    }
}

#[tokio::test]
async fn a_rotated_key_keeps_its_clients_and_tokens_until_it_is_dropped() {
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let resource = format!("{base}/mcp");
    let provider = upstream_provider(&base);
    let dir = tempfile::tempdir().unwrap();
    let (old_key, _) = signing_key(dir.path(), "old.pem");
    let (new_key, _) = signing_key(dir.path(), "new.pem");
    let previous = format!(
        "previous_signing_keys = [{:?}]\n",
        old_key.to_string_lossy()
    );

    let before = replica(port, None, &provider, &old_key, "", &[]);
    let client = register_at(&base, REDIRECT).await;
    let back = Browser::default()
        .sign_in(
            &authorize_url_at(&base, &resource, &client, REDIRECT, "k"),
            REDIRECT,
        )
        .await;
    let code = query(&back, "code").expect("a code");
    let (_, tokens) = redeem_at(&base, &resource, &client, REDIRECT, &code).await;
    let old_access = tokens["access_token"].as_str().unwrap().to_string();
    let old_kid = oidc_support::split(&old_access).0["kid"].clone();
    drop(before);

    // The new key signs; the old one, now previous, still verifies and opens what it made.
    let rotated = replica(port, None, &provider, &new_key, &previous, &[]);
    let jwks = get_json(&format!("{base}/oauth/jwks")).await;
    assert_eq!(jwks["keys"].as_array().map(Vec::len), Some(2), "{jwks}");
    assert_eq!(
        call_at(&resource, &old_access, "old-token").await.0,
        StatusCode::OK
    );
    let (status, refreshed) =
        refresh_at(&base, &client, tokens["refresh_token"].as_str().unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{refreshed}");
    let new_access = refreshed["access_token"].as_str().unwrap();
    assert_ne!(oidc_support::split(new_access).0["kid"], old_kid);
    let page = Browser::default()
        .get(&authorize_url_at(&base, &resource, &client, REDIRECT, "k"))
        .await;
    assert_eq!(
        page.status(),
        StatusCode::OK,
        "the old registration is still known"
    );
    drop(rotated);

    // Dropped: what the old key made is refused.
    let _after = replica(port, None, &provider, &new_key, "", &[]);
    assert_eq!(
        call_at(&resource, &old_access, "dropped-key").await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        call_at(&resource, new_access, "new-key").await.0,
        StatusCode::OK
    );
    let page = Browser::default()
        .get(&authorize_url_at(&base, &resource, &client, REDIRECT, "k"))
        .await;
    assert_eq!(
        page.status(),
        StatusCode::BAD_REQUEST,
        "the old registration is gone"
    );
}

#[tokio::test]
async fn a_code_redeemed_at_one_replica_is_refused_at_the_other() {
    let (port_a, port_b) = (free_port(), free_port());
    let public = format!("http://127.0.0.1:{port_a}");
    let resource = format!("{public}/mcp");
    let provider = upstream_provider(&public);
    let dir = tempfile::tempdir().unwrap();
    let (key_path, _) = signing_key(dir.path(), "shared.pem");
    let _a = replica(port_a, Some(&public), &provider, &key_path, "", &[]);
    let _b = replica(port_b, Some(&public), &provider, &key_path, "", &[]);
    let b_base = format!("http://127.0.0.1:{port_b}");

    let client = register_at(&public, REDIRECT).await;
    let back = Browser::default()
        .sign_in(
            &authorize_url_at(&public, &resource, &client, REDIRECT, "once"),
            REDIRECT,
        )
        .await;
    let code = query(&back, "code").expect("a code");
    let (status, tokens) = redeem_at(&public, &resource, &client, REDIRECT, &code).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");

    // B has never seen the code spent; the provider has, and refuses its own code again.
    let (status, replayed) = redeem_at(&b_base, &resource, &client, REDIRECT, &code).await;
    assert!(
        replayed.get("access_token").is_none(),
        "a replayed code got tokens"
    );
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(replayed["error"], "invalid_grant", "{replayed}");
}
