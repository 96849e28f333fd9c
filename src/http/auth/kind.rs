//! Is this JWS an access token for pgmcp, and of which kind? A signature by a trusted issuer says who wrote a
//! token, not what it is for: the same issuer signs ID tokens (OpenID Connect sign-in), logout tokens and access
//! tokens with the same keys. An ID token issued to a client whose id is one of pgmcp's audiences (Entra: pgmcp's
//! own client id, for instance when someone signs in to an app with pgmcp's registration) would otherwise pass the
//! issuer, audience and lifetime checks — and, without `scp`, be taken for an app-only token carrying the signed-in
//! user's app roles.
//!
//! The rules, each from a documented property of the token formats:
//! - JOSE header `crit` (RFC 7515 §4.1.11): pgmcp understands no JWS extension, so any `crit` makes the token
//!   invalid. jsonwebtoken parses `crit` but does not enforce it.
//! - JOSE header `typ`: when present it must be `JWT` or `at+jwt` (RFC 9068 §2.1; `application/` prefix optional,
//!   case-insensitive per RFC 7515 §4.1.9). Other typed JWTs (`logout+jwt`, `secevent+jwt`, `dpop+jwt`, …) are
//!   not access tokens. With `auth.require_at_jwt` (providers that implement RFC 9068) only `at+jwt` passes, which
//!   is what RFC 9068 §4 asks of a resource server: an ID token is typed `JWT` or not at all.
//! - `nonce`, `at_hash`, `c_hash`: ID-token claims (OpenID Connect Core §2, §3.1.3.6, §3.3.2.11); neither
//!   RFC 9068 nor Entra's access-token reference has them. (Keycloak before 25 also copied `nonce` into access
//!   tokens; those tokens are refused.)
//! - Entra only: an access token always names the client application that asked for it — `azp` in v2 tokens,
//!   `appid` in v1 tokens, "always present" as claims used for access-token validation — while an ID token is
//!   addressed to the client itself (`aud`) and has neither. So the v2 issuer requires `azp` and the v1 issuer
//!   `appid`.
//! - Entra only, the kind: `idtyp` (optional claim, "the most accurate way for an API to determine if a token is
//!   an app token or an app+user token") must be `app` or `user` when present and agree with `scp`, which only
//!   delegated tokens carry. Without `idtyp`, a token without `scp` is app-only only if its `oid` equals its
//!   `sub`: in an app-only token both name the calling service principal, while in any user token `sub` is a
//!   pairwise identifier that differs from the user's `oid`.

use super::reason::Failure;
use super::verify::Rejected;

/// Which Entra issuer signed the token: it decides which claim names the client application.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntraVersion {
    V1,
    V2,
}

/// The JOSE header fields that say what a token is. Everything else in the header is ignored.
#[derive(serde::Deserialize, Default)]
pub struct TypeHeader {
    typ: Option<String>,
    /// Any JSON value: its mere presence is refused, whatever its shape.
    crit: Option<serde_json::Value>,
}

/// The claims that tell an access token from an ID token.
#[derive(serde::Deserialize, Default)]
pub struct KindClaims {
    nonce: Option<serde_json::Value>,
    at_hash: Option<serde_json::Value>,
    c_hash: Option<serde_json::Value>,
    idtyp: Option<String>,
}

/// Refuses a header pgmcp does not understand or that types the token as something other than an access token.
pub fn check_header(header: &TypeHeader, require_at_jwt: bool) -> Result<(), Rejected> {
    if let Some(crit) = &header.crit {
        return Err((
            Failure::UnsupportedCriticalHeader,
            format!("crit {crit}: pgmcp understands no JWS extension"),
        ));
    }
    let typ = header.typ.as_deref().map(media_type);
    let acceptable = match typ.as_deref() {
        Some("at+jwt") => true,
        Some("jwt") | None => !require_at_jwt,
        Some(_) => false,
    };
    if !acceptable {
        let wanted = if require_at_jwt {
            "at+jwt (auth.require_at_jwt)"
        } else {
            "JWT or at+jwt"
        };
        return Err((
            Failure::NotAnAccessToken,
            format!("typ {:?} where {wanted} is expected", header.typ),
        ));
    }
    Ok(())
}

/// `typ` is a media type: compared case-insensitively, with the `application/` prefix optional (RFC 7515 §4.1.9).
fn media_type(typ: &str) -> String {
    let lower = typ.to_ascii_lowercase();
    match lower.strip_prefix("application/") {
        Some(short) => short.to_string(),
        None => lower,
    }
}

/// What the verified claims say about the token's kind, for [`check_kind`].
pub struct Shape<'a> {
    pub kind: &'a KindClaims,
    pub has_scp: bool,
    pub azp: Option<&'a str>,
    pub appid: Option<&'a str>,
    pub oid: Option<&'a str>,
    pub sub: Option<&'a str>,
}

/// Refuses ID tokens and tokens whose kind is contradictory; returns whether the token is app-only.
pub fn check_kind(shape: &Shape, entra: Option<EntraVersion>) -> Result<bool, Rejected> {
    let id_token_claims: Vec<&str> = [
        ("nonce", &shape.kind.nonce),
        ("at_hash", &shape.kind.at_hash),
        ("c_hash", &shape.kind.c_hash),
    ]
    .into_iter()
    .filter(|(_, value)| value.is_some())
    .map(|(name, _)| name)
    .collect();
    if !id_token_claims.is_empty() {
        return Err((
            Failure::NotAnAccessToken,
            format!("carries the ID-token claims {id_token_claims:?}"),
        ));
    }
    let Some(version) = entra else {
        // Generic OpenID providers have no common way to mark app-only tokens; `scp` is Entra's convention and the
        // policy reads it the same way for every issuer.
        return Ok(!shape.has_scp);
    };
    let (client_claim, client) = match version {
        EntraVersion::V2 => ("azp", shape.azp),
        EntraVersion::V1 => ("appid", shape.appid),
    };
    if client.is_none_or(str::is_empty) {
        return Err((
            Failure::NotAnAccessToken,
            format!(
                "no {client_claim}: Entra access tokens of this issuer name their client application there"
            ),
        ));
    }
    match shape.kind.idtyp.as_deref() {
        Some("app") if shape.has_scp => Err((
            Failure::NotAnAccessToken,
            "idtyp app with delegated scopes (scp)".into(),
        )),
        Some("app") => Ok(true),
        Some("user") if !shape.has_scp => Err((
            Failure::NotAnAccessToken,
            "idtyp user without delegated scopes (scp)".into(),
        )),
        Some("user") => Ok(false),
        Some(other) => Err((
            Failure::NotAnAccessToken,
            format!("idtyp {other:?} is neither app nor user"),
        )),
        None if shape.has_scp => Ok(false),
        None => match (shape.oid, shape.sub) {
            (Some(oid), Some(sub)) if oid.eq_ignore_ascii_case(sub) => Ok(true),
            (oid, sub) => Err((
                Failure::NotAnAccessToken,
                format!(
                    "no scp and no idtyp, and oid {oid:?} is not sub {sub:?}, as it is in app-only tokens"
                ),
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(json: &str) -> TypeHeader {
        serde_json::from_str(json).unwrap()
    }

    fn reason(result: Result<impl Sized, Rejected>) -> &'static str {
        match result {
            Ok(_) => "accepted",
            Err((failure, _)) => failure.as_str(),
        }
    }

    #[test]
    fn header_types_and_crit() {
        for (json, at_jwt, expected) in [
            (r#"{"alg":"RS256"}"#, false, "accepted"),
            (r#"{"typ":"JWT"}"#, false, "accepted"),
            (r#"{"typ":"jwt"}"#, false, "accepted"),
            (r#"{"typ":"at+jwt"}"#, false, "accepted"),
            (r#"{"typ":"application/AT+JWT"}"#, true, "accepted"),
            (r#"{"typ":"JWT"}"#, true, "not_an_access_token"),
            (r#"{"alg":"RS256"}"#, true, "not_an_access_token"),
            (r#"{"typ":"logout+jwt"}"#, false, "not_an_access_token"),
            (r#"{"typ":"secevent+jwt"}"#, false, "not_an_access_token"),
            (
                r#"{"typ":"JWT","crit":["exp"]}"#,
                false,
                "unsupported_critical_header",
            ),
            (
                r#"{"typ":"JWT","crit":[]}"#,
                false,
                "unsupported_critical_header",
            ),
            (
                r#"{"crit":"b64","b64":false}"#,
                false,
                "unsupported_critical_header",
            ),
        ] {
            assert_eq!(
                reason(check_header(&header(json), at_jwt)),
                expected,
                "{json} {at_jwt}"
            );
        }
    }

    fn shape<'a>(kind: &'a KindClaims, scp: bool, claims: [Option<&'a str>; 4]) -> Shape<'a> {
        let [azp, appid, oid, sub] = claims;
        Shape {
            kind,
            has_scp: scp,
            azp,
            appid,
            oid,
            sub,
        }
    }

    #[test]
    fn entra_kinds() {
        let none = KindClaims::default();
        let idtyp = |value: &str| KindClaims {
            idtyp: Some(value.into()),
            ..KindClaims::default()
        };
        let (app, user) = (idtyp("app"), idtyp("user"));
        let device = idtyp("device");
        let nonce = KindClaims {
            nonce: Some("n-0S6_WzA2Mj".into()),
            ..KindClaims::default()
        };
        let v2 = Some(EntraVersion::V2);
        let v1 = Some(EntraVersion::V1);
        let sp = Some("a1a1a1a1-b2b2-4c3c-8d4d-e5e5e5e5e5e5");
        let client = Some("0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0");
        let pairwise = Some("AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ");
        for (name, shape, version, expected) in [
            (
                "v2 app-only",
                shape(&none, false, [client, None, sp, sp]),
                v2,
                Ok(true),
            ),
            (
                "v2 app-only idtyp",
                shape(&app, false, [client, None, sp, pairwise]),
                v2,
                Ok(true),
            ),
            (
                "v1 app-only",
                shape(&none, false, [None, client, sp, sp]),
                v1,
                Ok(true),
            ),
            (
                "v2 delegated",
                shape(&none, true, [client, None, sp, pairwise]),
                v2,
                Ok(false),
            ),
            (
                "v2 delegated idtyp",
                shape(&user, true, [client, None, sp, pairwise]),
                v2,
                Ok(false),
            ),
            (
                "v2 ID token",
                shape(&none, false, [None, None, sp, pairwise]),
                v2,
                Err("no azp"),
            ),
            (
                "v1 ID token",
                shape(&none, false, [None, None, sp, pairwise]),
                v1,
                Err("no appid"),
            ),
            (
                "v2 token with v1's appid",
                shape(&none, false, [None, client, sp, sp]),
                v2,
                Err("no azp"),
            ),
            (
                "ID token with azp",
                shape(&none, false, [client, None, sp, pairwise]),
                v2,
                Err("is not sub"),
            ),
            (
                "nonce",
                shape(&nonce, false, [client, None, sp, sp]),
                v2,
                Err("ID-token claims"),
            ),
            (
                "idtyp app with scp",
                shape(&app, true, [client, None, sp, sp]),
                v2,
                Err("with delegated"),
            ),
            (
                "idtyp user without scp",
                shape(&user, false, [client, None, sp, sp]),
                v2,
                Err("without"),
            ),
            (
                "idtyp device",
                shape(&device, false, [client, None, sp, sp]),
                v2,
                Err("neither"),
            ),
            (
                "no sub",
                shape(&none, false, [client, None, sp, None]),
                v2,
                Err("is not sub"),
            ),
        ] {
            match (check_kind(&shape, version), expected) {
                (Ok(app_only), Ok(expected)) => assert_eq!(app_only, expected, "{name}"),
                (Err((failure, detail)), Err(needle)) => {
                    assert_eq!(failure, Failure::NotAnAccessToken, "{name}");
                    assert!(detail.contains(needle), "{name}: {detail}");
                }
                (got, expected) => panic!(
                    "{name}: {:?} where {expected:?} was expected",
                    got.map_err(|e| e.1)
                ),
            }
        }
    }

    #[test]
    fn oidc_refuses_id_token_claims_only() {
        let hashed = KindClaims {
            at_hash: Some("77QmUPtjPfzWtF2AnpK9RQ".into()),
            ..KindClaims::default()
        };
        assert_eq!(
            reason(check_kind(&shape(&hashed, false, [None; 4]), None)),
            "not_an_access_token"
        );
        let plain = KindClaims::default();
        assert_eq!(
            check_kind(&shape(&plain, false, [None; 4]), None).ok(),
            Some(true)
        );
        assert_eq!(
            check_kind(&shape(&plain, true, [None; 4]), None).ok(),
            Some(false)
        );
    }
}
