//! Access-token verification: signature with a key of the issuer's JWKS, then the claims.

use std::collections::HashSet;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde::Deserialize;

use super::jwks::{KeySet, KeySource};
use super::kind::{EntraVersion, KindClaims, Shape, TypeHeader, check_header, check_kind};
use super::reason::Failure;
use crate::http::Caller;

/// Asymmetric signature algorithms only: `none` is not even representable, HMAC is refused so that a public key
/// can never be used as a shared secret.
pub const ALLOWED_ALGORITHMS: [Algorithm; 8] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
];

/// Tokens longer than this are not access tokens we issue to anyone; refusing them early bounds the work.
const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// What a token must satisfy, computed once from the settings.
pub struct Policy {
    pub audiences: Vec<String>,
    pub leeway: u64,
    /// Allowed tenants (`tid`); empty means any.
    pub tenants: HashSet<String>,
    pub required_roles: Vec<String>,
    pub required_scopes: Vec<String>,
    /// Lower-cased: client ids and object ids are GUIDs, which Entra writes in lower case but people may not.
    pub allowed_client_apps: HashSet<String>,
    pub allowed_principals: HashSet<String>,
    /// Only RFC 9068 `at+jwt` tokens (`auth.require_at_jwt`).
    pub require_at_jwt: bool,
}

/// A trusted issuer: its exact `iss`, the tenant it belongs to (Entra), and where its keys are.
pub struct TrustedIssuer {
    pub issuer: String,
    pub tenant: Option<String>,
    /// Entra's v1 or v2 issuer; `None` for a generic OpenID provider.
    pub entra: Option<EntraVersion>,
    pub keys: Arc<KeySource>,
    /// Audiences for this issuer instead of the policy's: pgmcp's own tokens name its resource.
    pub audiences: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct RawHeader {
    alg: Option<String>,
    kid: Option<String>,
    #[serde(flatten)]
    kind: TypeHeader,
}

/// The claims pgmcp reads. Everything else in the token is ignored.
#[derive(Deserialize, Default)]
struct Claims {
    iss: Option<String>,
    sub: Option<String>,
    oid: Option<String>,
    tid: Option<String>,
    azp: Option<String>,
    appid: Option<String>,
    client_id: Option<String>,
    name: Option<String>,
    preferred_username: Option<String>,
    upn: Option<String>,
    unique_name: Option<String>,
    #[serde(default, deserialize_with = "string_or_list")]
    roles: Vec<String>,
    scp: Option<String>,
    #[serde(flatten)]
    kind: KindClaims,
    /// Read leniently (any JSON number): jsonwebtoken has already insisted on an integer `exp`.
    exp: Option<serde_json::Number>,
}

fn string_or_list<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Option::<OneOrMany>::deserialize(deserializer)? {
        None => Vec::new(),
        Some(OneOrMany::One(one)) => vec![one],
        Some(OneOrMany::Many(many)) => many,
    })
}

/// A rejection with the detail for the log. The detail never contains the token.
pub type Rejected = (Failure, String);

/// An accepted token: the caller, and what decides how long the verdict stands (see [`super::cache`]).
pub struct Verified {
    pub caller: Caller,
    /// `exp`, in seconds since the epoch.
    pub expires: Option<u64>,
    /// The issuer's key source and the key set the signature was checked with.
    pub source: Arc<KeySource>,
    pub keys: Arc<KeySet>,
}

/// Verifies `token` against the trusted issuers and the policy.
pub async fn verify(
    token: &str,
    issuers: &[TrustedIssuer],
    policy: &Policy,
) -> Result<Verified, Rejected> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err((
            Failure::MalformedToken,
            format!("token of {} bytes", token.len()),
        ));
    }
    let mut parts = token.split('.');
    let (Some(header_part), Some(payload_part), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err((
            Failure::MalformedToken,
            "not a compact JWS (three dot-separated parts)".into(),
        ));
    };
    let header: RawHeader =
        decode_part(header_part).map_err(|e| (Failure::MalformedToken, format!("header: {e}")))?;
    check_header(&header.kind, policy.require_at_jwt)?;
    let alg_name = header.alg.unwrap_or_default();
    let alg = alg_name
        .parse::<Algorithm>()
        .ok()
        .filter(|alg| ALLOWED_ALGORITHMS.contains(alg))
        .ok_or_else(|| (Failure::DisallowedAlgorithm, format!("alg {alg_name:?}")))?;

    // The issuer is read before the signature is checked only to choose whose keys to check it with; the verified
    // claims are checked again below.
    let unverified: Claims = decode_part(payload_part)
        .map_err(|e| (Failure::MalformedToken, format!("payload: {e}")))?;
    let claimed_issuer = unverified.iss.unwrap_or_default();
    let Some(trusted) = issuers
        .iter()
        .find(|trusted| trusted.issuer == claimed_issuer)
    else {
        return Err((
            Failure::WrongIssuer,
            format!("iss {claimed_issuer:?} is not trusted"),
        ));
    };

    let kid = header.kid.as_deref();
    let keys = keys_for(&trusted.keys, kid).await?;
    let candidates = keys.find(kid);
    if candidates.is_empty() {
        return Err((
            Failure::UnknownKey,
            format!("kid {kid:?} not in the keys of {claimed_issuer}"),
        ));
    }

    let mut validation = Validation::new(alg);
    validation.leeway = policy.leeway;
    validation.validate_nbf = true;
    validation.set_required_spec_claims(&["exp", "iss", "aud"]);
    validation.set_issuer(&[&trusted.issuer]);
    validation.set_audience(trusted.audiences.as_deref().unwrap_or(&policy.audiences));

    let mut last_error = (Failure::BadSignature, "no key matched".to_string());
    let mut verified = None;
    for candidate in candidates {
        if candidate.alg.is_some_and(|key_alg| key_alg != alg) {
            last_error = (
                Failure::DisallowedAlgorithm,
                format!("alg {alg:?} does not match the key's algorithm"),
            );
            continue;
        }
        match jsonwebtoken::decode::<Claims>(token, &candidate.key, &validation) {
            Ok(data) => {
                verified = Some(data.claims);
                break;
            }
            Err(error) => {
                last_error = classify(error.kind());
                // Only a signature mismatch can be cured by another key with the same kid (or no kid); a claim
                // failure is final.
                if !matches!(
                    last_error.0,
                    Failure::BadSignature | Failure::DisallowedAlgorithm
                ) {
                    break;
                }
            }
        }
    }
    let claims = verified.ok_or(last_error)?;
    let expires = claims.exp.as_ref().and_then(serde_json::Number::as_u64);
    Ok(Verified {
        caller: check_claims(claims, trusted, policy)?,
        expires,
        source: trusted.keys.clone(),
        keys,
    })
}

async fn keys_for(source: &KeySource, kid: Option<&str>) -> Result<Arc<KeySet>, Rejected> {
    let cached = source.current();
    if let Some(set) = &cached
        && !set.find(kid).is_empty()
    {
        return Ok(set.clone());
    }
    // Unknown kid (the provider may have rotated its keys) or nothing cached yet: fetch, rate-limited.
    match source.refresh_on_demand(cached.as_ref()).await {
        Some(set) => Ok(set),
        None => Err((
            Failure::KeysUnavailable,
            format!("no signing keys from {}", source.describe()),
        )),
    }
}

fn decode_part<T: for<'de> Deserialize<'de>>(part: &str) -> Result<T, String> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| "not base64url".to_string())?;
    serde_json::from_slice(&bytes)
        .map_err(|e| format!("not the expected JSON ({})", e.classify_name()))
}

trait ClassifyName {
    fn classify_name(&self) -> &'static str;
}

impl ClassifyName for serde_json::Error {
    fn classify_name(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "io",
            serde_json::error::Category::Syntax => "syntax",
            serde_json::error::Category::Data => "unexpected claim types",
            serde_json::error::Category::Eof => "truncated",
        }
    }
}

fn classify(kind: &ErrorKind) -> Rejected {
    let failure = match kind {
        ErrorKind::InvalidSignature => Failure::BadSignature,
        ErrorKind::ExpiredSignature => Failure::Expired,
        ErrorKind::ImmatureSignature => Failure::NotYetValid,
        ErrorKind::InvalidIssuer => Failure::WrongIssuer,
        ErrorKind::InvalidAudience => Failure::WrongAudience,
        ErrorKind::MissingRequiredClaim(_) | ErrorKind::InvalidClaimFormat(_) => {
            Failure::MissingClaim
        }
        ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => Failure::DisallowedAlgorithm,
        _ => Failure::MalformedToken,
    };
    (failure, format!("{kind:?}"))
}

fn check_claims(
    claims: Claims,
    trusted: &TrustedIssuer,
    policy: &Policy,
) -> Result<Caller, Rejected> {
    let tid = claims.tid.clone();
    if let Some(expected) = &trusted.tenant
        && tid.as_deref() != Some(expected.as_str())
    {
        return Err((
            Failure::WrongTenant,
            format!("tid {tid:?} does not match the issuer's tenant {expected}"),
        ));
    }
    if !policy.tenants.is_empty()
        && !tid
            .as_ref()
            .is_some_and(|tid| policy.tenants.contains(&tid.to_ascii_lowercase()))
    {
        return Err((
            Failure::WrongTenant,
            format!("tid {tid:?} is not an allowed tenant"),
        ));
    }

    let app_only = check_kind(
        &Shape {
            kind: &claims.kind,
            has_scp: claims.scp.is_some(),
            azp: claims.azp.as_deref(),
            appid: claims.appid.as_deref(),
            oid: claims.oid.as_deref(),
            sub: claims.sub.as_deref(),
        },
        trusted.entra,
    )?;
    let scopes: Vec<String> = claims
        .scp
        .as_deref()
        .map(|scp| scp.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default();
    let has_role = || {
        claims
            .roles
            .iter()
            .any(|role| policy.required_roles.contains(role))
    };
    let has_scope = || {
        scopes.iter().any(|scope| {
            policy
                .required_scopes
                .iter()
                .any(|req| scope_matches(req, scope))
        })
    };
    if app_only {
        if !policy.required_roles.is_empty() && !has_role() {
            return Err((
                Failure::MissingRole,
                format!("app-only token with roles {:?}", claims.roles),
            ));
        }
        if policy.required_roles.is_empty() && !policy.required_scopes.is_empty() {
            return Err((
                Failure::MissingScope,
                "app-only token where only delegated scopes are accepted".into(),
            ));
        }
    } else if !policy.required_scopes.is_empty() {
        if !has_scope() {
            return Err((
                Failure::MissingScope,
                format!("delegated token with scopes {scopes:?}"),
            ));
        }
    } else if !policy.required_roles.is_empty() && !has_role() {
        // No scope is configured, so a delegated token is admitted only by a role assigned to the user.
        return Err((
            Failure::MissingRole,
            format!("delegated token with roles {:?}", claims.roles),
        ));
    }

    let client_app = claims
        .azp
        .clone()
        .or(claims.appid.clone())
        .or(claims.client_id.clone());
    if !policy.allowed_client_apps.is_empty()
        && !client_app.as_ref().is_some_and(|app| {
            policy
                .allowed_client_apps
                .contains(&app.to_ascii_lowercase())
        })
    {
        return Err((
            Failure::ClientAppNotAllowed,
            format!("client app {client_app:?}"),
        ));
    }
    let principal = claims.oid.clone().or(claims.sub.clone());
    if !policy.allowed_principals.is_empty()
        && !principal
            .as_ref()
            .is_some_and(|p| policy.allowed_principals.contains(&p.to_ascii_lowercase()))
    {
        return Err((
            Failure::PrincipalNotAllowed,
            format!("principal {principal:?}"),
        ));
    }

    Ok(Caller {
        issuer: claims.iss,
        subject: claims.sub,
        oid: claims.oid,
        tid,
        client_app,
        name: claims.name,
        preferred_username: claims
            .preferred_username
            .or(claims.upn)
            .or(claims.unique_name),
        roles: claims.roles,
        scopes,
        app_only,
    })
}

/// `scp` holds short names (`user_impersonation`); configuration may use the full form
/// (`api://<client id>/user_impersonation`) that clients request.
fn scope_matches(required: &str, granted: &str) -> bool {
    required == granted
        || required
            .rsplit_once('/')
            .is_some_and(|(_, short)| short == granted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_match_short_and_full_forms() {
        assert!(scope_matches("user_impersonation", "user_impersonation"));
        assert!(scope_matches(
            "api://abc/user_impersonation",
            "user_impersonation"
        ));
        assert!(!scope_matches("api://abc/user_impersonation", "other"));
        assert!(!scope_matches("read", "read.all"));
    }

    #[test]
    fn roles_claim_accepts_a_single_string() {
        let claims: Claims = serde_json::from_str(r#"{"roles":"MCP.Access"}"#).unwrap();
        assert_eq!(claims.roles, vec!["MCP.Access".to_string()]);
        let claims: Claims = serde_json::from_str(r#"{"roles":["a","b"]}"#).unwrap();
        assert_eq!(claims.roles.len(), 2);
    }
}
