//! `/token` and `/revoke`: codes and refresh tokens become pgmcp's own access tokens — RS256 JWTs for pgmcp's
//! resource, carrying the identity the provider vouched for, so the verifier, the policy and the audit treat them
//! like the provider's own tokens. The provider's token never leaves pgmcp.
//!
//! A code is redeemed once, across replicas: it carries the provider's code, which pgmcp redeems at the provider
//! only now, and the provider accepts its code once whichever replica asks. What a single replica enforces in
//! memory, bounded: presenting a spent code again revokes what it was exchanged for, and a refresh token is used
//! once (its rotation), presenting a spent one revoking its whole family. Across replicas these two hold only with
//! sticky sessions; otherwise a replayed refresh token is bounded by the family's lifetime.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Form;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, Header};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::OAuthServer;
use super::authorize::{CODE_SECS, Code};
use super::seal::{Kind, Unsealed, now};
use crate::http::Caller;

/// Entries kept for spent codes and refresh-token families; past this the oldest expired ones go first.
const MAX_TRACKED: usize = 100_000;

/// The signed-in person as the provider's token described them: what pgmcp's tokens carry.
#[derive(Serialize, Deserialize, Clone, Debug, Default)]
pub struct Identity {
    sub: Option<String>,
    oid: Option<String>,
    tid: Option<String>,
    name: Option<String>,
    preferred_username: Option<String>,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    scopes: Vec<String>,
    /// The application that signed in at the provider (pgmcp's own registration).
    azp: Option<String>,
}

impl From<&Caller> for Identity {
    fn from(caller: &Caller) -> Identity {
        Identity {
            sub: caller.subject.clone(),
            oid: caller.oid.clone(),
            tid: caller.tid.clone(),
            name: caller.name.clone(),
            preferred_username: caller.preferred_username.clone(),
            roles: caller.roles.clone(),
            scopes: caller.scopes.clone(),
            azp: caller.client_app.clone(),
        }
    }
}

#[derive(Serialize, Deserialize)]
struct RefreshToken {
    /// The family: every refresh token descending from one code.
    family: String,
    id: String,
    client_id: String,
    scope: String,
    resource: String,
    identity: Identity,
    /// When the family ends, whatever the rotations (seconds since the epoch).
    family_expires: u64,
}

/// Spent codes and the current refresh token of each family, for one replica.
#[derive(Default)]
pub struct Spent {
    codes: Mutex<HashMap<String, u64>>,
    /// family → (current refresh token id, or `None` once revoked; expiry)
    families: Mutex<HashMap<String, (Option<String>, u64)>>,
}

fn bounded_insert<V>(map: &mut HashMap<String, (V, u64)>, key: String, value: (V, u64)) {
    if map.len() >= MAX_TRACKED {
        let now = now();
        map.retain(|_, (_, expires)| *expires > now);
    }
    if map.len() < MAX_TRACKED {
        map.insert(key, value);
    }
}

impl Spent {
    /// True the first time a code id is seen.
    fn first_use_of_code(&self, id: &str) -> bool {
        let Ok(mut codes) = self.codes.lock() else {
            return false;
        };
        if codes.contains_key(id) {
            return false;
        }
        if codes.len() >= MAX_TRACKED {
            let now = now();
            codes.retain(|_, expires| *expires > now);
        }
        codes.insert(id.to_string(), now() + CODE_SECS + 60);
        true
    }

    fn revoke_family(&self, family: &str, expires: u64) {
        if let Ok(mut families) = self.families.lock() {
            bounded_insert(&mut families, family.to_string(), (None, expires));
        }
    }

    /// Moves the family on from `presented` to `next`; false (and the family revoked) if `presented` was spent.
    fn rotate(&self, family: &str, presented: &str, next: &str, expires: u64) -> bool {
        let Ok(mut families) = self.families.lock() else {
            return false;
        };
        match families.get(family) {
            Some((Some(current), _)) if current == presented => {}
            // Not seen here (a restart, or another replica issued it): accepted and tracked from now on.
            None => {}
            Some(_) => {
                families.insert(family.to_string(), (None, expires));
                return false;
            }
        }
        bounded_insert(
            &mut families,
            family.to_string(),
            (Some(next.to_string()), expires),
        );
        true
    }
}

#[derive(Deserialize)]
pub struct TokenForm {
    grant_type: Option<String>,
    code: Option<String>,
    redirect_uri: Option<String>,
    client_id: Option<String>,
    code_verifier: Option<String>,
    refresh_token: Option<String>,
    resource: Option<String>,
}

fn token_error(error: &str, description: &str) -> Response {
    let status = if error == "invalid_client" {
        StatusCode::UNAUTHORIZED
    } else {
        StatusCode::BAD_REQUEST
    };
    (
        status,
        super::no_store(),
        Json(json!({ "error": error, "error_description": description })),
    )
        .into_response()
}

/// `POST /token`
pub async fn token(
    State(server): State<Arc<OAuthServer>>,
    form: Result<Form<TokenForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    if !server.limits.token.allow() {
        return super::too_many_requests();
    }
    let Ok(Form(form)) = form else {
        return token_error(
            "invalid_request",
            "send application/x-www-form-urlencoded parameters",
        );
    };
    if let Some(resource) = &form.resource
        && *resource != server.resource
    {
        return token_error(
            "invalid_target",
            "pgmcp issues tokens only for its own resource",
        );
    }
    match form.grant_type.as_deref() {
        Some("authorization_code") => redeem_code(&server, &form).await,
        Some("refresh_token") => refresh(&server, &form),
        _ => token_error(
            "unsupported_grant_type",
            "use authorization_code or refresh_token",
        ),
    }
}

async fn redeem_code(server: &OAuthServer, form: &TokenForm) -> Response {
    let code = match server
        .ring()
        .sealer
        .open::<Code>(Kind::Code, form.code.as_deref().unwrap_or_default())
    {
        Ok(code) => code,
        Err(Unsealed::Expired) => return token_error("invalid_grant", "the code has expired"),
        Err(Unsealed::Invalid) => return token_error("invalid_grant", "the code is not valid"),
    };
    let grant = &code.grant;
    if form.client_id.as_deref() != Some(grant.client_id.as_str()) {
        return token_error("invalid_grant", "the code was issued to another client");
    }
    if form.redirect_uri.as_deref() != Some(grant.redirect_uri.as_str()) {
        return token_error(
            "invalid_grant",
            "redirect_uri differs from the authorization request",
        );
    }
    let verifier = form.code_verifier.as_deref().unwrap_or_default();
    let valid_verifier = (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
    if !valid_verifier
        || URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes())) != grant.code_challenge
    {
        return token_error(
            "invalid_grant",
            "code_verifier does not match the code_challenge",
        );
    }
    let family_expires = now() + server.settings.refresh_token_lifetime.as_secs();
    if !server.spent.first_use_of_code(&code.id) {
        // RFC 6749 §4.1.2: a code used twice revokes what it was exchanged for.
        server.spent.revoke_family(&code.id, family_expires);
        tracing::warn!(client_id = %grant.client_id, "an authorization code was presented twice; its tokens are revoked");
        return token_error("invalid_grant", "the code has already been used");
    }
    let identity = match signed_in(server, &code).await {
        Ok(identity) => identity,
        Err(description) => return token_error("invalid_grant", description),
    };
    let refresh = RefreshToken {
        family: code.id.clone(),
        id: server.ring().sealer.random_id(),
        client_id: grant.client_id.clone(),
        scope: grant.scope.clone(),
        resource: grant.resource.clone(),
        identity,
        family_expires,
    };
    server
        .spent
        .rotate(&refresh.family, "", &refresh.id, family_expires);
    issue(server, &refresh)
}

/// Redeems the provider's code in `code` and checks the provider's token like any bearer token: who signed in.
async fn signed_in(server: &OAuthServer, code: &Code) -> Result<Identity, &'static str> {
    let upstream_token = match server
        .upstream
        .exchange(&code.upstream_code, &code.upstream_verifier)
        .await
    {
        Ok(token) => token,
        Err(error) => {
            // Also what a code redeemed before at another replica gets: the provider's code is spent.
            tracing::warn!(client_id = %code.grant.client_id, error = %format!("{error:#}"), "redeeming the sign-in provider's code failed");
            return Err(
                "the sign-in could not be completed at the provider (a code is accepted once); sign in again",
            );
        }
    };
    match server
        .authenticator
        .verify_token(upstream_token.expose())
        .await
    {
        Ok(caller) => {
            tracing::info!(oid = ?caller.oid, client_id = %code.grant.client_id, "signed in; tokens issued");
            Ok(Identity::from(&caller))
        }
        Err(rejection) => {
            tracing::warn!(
                reason = rejection.reason(),
                "the signed-in account may not use pgmcp"
            );
            Err("this account may not use pgmcp")
        }
    }
}

fn refresh(server: &OAuthServer, form: &TokenForm) -> Response {
    let presented = match server.ring().sealer.open::<RefreshToken>(
        Kind::RefreshToken,
        form.refresh_token.as_deref().unwrap_or_default(),
    ) {
        Ok(token) => token,
        Err(Unsealed::Expired) => {
            return token_error("invalid_grant", "the refresh token has expired");
        }
        Err(Unsealed::Invalid) => {
            return token_error("invalid_grant", "the refresh token is not valid");
        }
    };
    if form.client_id.as_deref() != Some(presented.client_id.as_str()) {
        return token_error(
            "invalid_grant",
            "the refresh token was issued to another client",
        );
    }
    let presented_id = presented.id.clone();
    let next = RefreshToken {
        id: server.ring().sealer.random_id(),
        ..presented
    };
    if !server
        .spent
        .rotate(&next.family, &presented_id, &next.id, next.family_expires)
    {
        tracing::warn!(client_id = %next.client_id, "a spent refresh token was presented again; its family is revoked");
        return token_error(
            "invalid_grant",
            "the refresh token has already been used; sign in again",
        );
    }
    issue(server, &next)
}

fn issue(server: &OAuthServer, refresh: &RefreshToken) -> Response {
    let lifetime = server.settings.access_token_lifetime.as_secs();
    let access = match mint(server, refresh, lifetime) {
        Ok(token) => token,
        Err(error) => {
            tracing::error!(error = %error, "signing an access token failed");
            return token_error("server_error", "the token could not be signed");
        }
    };
    let refresh_lifetime = refresh.family_expires.saturating_sub(now());
    let sealed = server
        .ring()
        .sealer
        .seal(Kind::RefreshToken, Some(refresh_lifetime), refresh);
    let mut body = json!({
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": lifetime,
        "refresh_token": sealed,
    });
    if !refresh.scope.is_empty() {
        body["scope"] = json!(refresh.scope);
    }
    (StatusCode::OK, super::no_store(), Json(body)).into_response()
}

fn mint(
    server: &OAuthServer,
    refresh: &RefreshToken,
    lifetime: u64,
) -> Result<String, jsonwebtoken::errors::Error> {
    let identity = &refresh.identity;
    let issued = now();
    let mut claims = json!({
        "iss": server.issuer,
        "aud": refresh.resource,
        "iat": issued,
        "nbf": issued,
        "exp": issued + lifetime,
        "jti": server.ring().sealer.random_id(),
        "client_id": refresh.client_id,
        "roles": identity.roles,
    });
    for (name, value) in [
        ("sub", &identity.sub),
        ("oid", &identity.oid),
        ("tid", &identity.tid),
        ("name", &identity.name),
        ("preferred_username", &identity.preferred_username),
        ("azp", &identity.azp),
    ] {
        if let Some(value) = value {
            claims[name] = json!(value);
        }
    }
    if !identity.scopes.is_empty() {
        claims["scp"] = json!(identity.scopes.join(" "));
    }
    let mut header = Header::new(Algorithm::RS256);
    let ring = server.ring();
    header.kid = Some(ring.current.kid.clone());
    header.typ = Some("at+jwt".into());
    jsonwebtoken::encode(&header, &claims, &ring.current.encoding)
}

#[derive(Deserialize)]
pub struct RevokeForm {
    token: Option<String>,
}

/// `POST /revoke` (RFC 7009): a refresh token ends its family. Access tokens are short-lived JWTs that every
/// replica checks on its own; revoking one is accepted and has no effect before it expires.
pub async fn revoke(
    State(server): State<Arc<OAuthServer>>,
    form: Result<Form<RevokeForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    if !server.limits.token.allow() {
        return super::too_many_requests();
    }
    let Ok(Form(form)) = form else {
        return token_error("invalid_request", "send the token as a form parameter");
    };
    let Some(token) = form.token else {
        return token_error("invalid_request", "token is required");
    };
    if let Ok(refresh) = server
        .ring()
        .sealer
        .open::<RefreshToken>(Kind::RefreshToken, &token)
    {
        server
            .spent
            .revoke_family(&refresh.family, refresh.family_expires);
        tracing::info!(client_id = %refresh.client_id, "refresh token revoked");
    }
    (StatusCode::OK, super::no_store()).into_response()
}
