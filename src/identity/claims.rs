//! Who a token belongs to, read from its payload for `pgmcp check` and logs. The signature is not checked:
//! pgmcp is the token's holder, not its audience, and only shows these values.

use base64::Engine;
use serde::Deserialize;

/// The identifying claims of an Entra access token.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct TokenClaims {
    pub oid: Option<String>,
    pub appid: Option<String>,
    pub azp: Option<String>,
    pub upn: Option<String>,
    pub preferred_username: Option<String>,
    pub tid: Option<String>,
    pub aud: Option<serde_json::Value>,
    pub idtyp: Option<String>,
    pub scp: Option<String>,
    pub roles: Option<Vec<String>>,
}

impl TokenClaims {
    /// The claims of a JWT, or `None` when the token is not a JWT (some token services issue opaque ones).
    pub fn read(token: &str) -> Option<TokenClaims> {
        let payload = token.split('.').nth(1)?;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload.trim_end_matches('='))
            .ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// True when no user is behind the token: Entra marks app tokens with `idtyp=app`; a token without `scp`
    /// and without a user name is an application's too.
    pub fn is_app_only(&self) -> bool {
        match self.idtyp.as_deref() {
            Some("app") => true,
            Some("user") => false,
            _ => self.scp.is_none() && self.upn.is_none() && self.preferred_username.is_none(),
        }
    }

    /// `oid=… appid=… upn=…` with the claims that are present.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        if let Some(oid) = &self.oid {
            parts.push(format!("oid={oid}"));
        }
        if let Some(appid) = self.appid.as_ref().or(self.azp.as_ref()) {
            parts.push(format!("appid={appid}"));
        }
        if let Some(upn) = self.upn.as_ref().or(self.preferred_username.as_ref()) {
            parts.push(format!("upn={upn}"));
        }
        if let Some(tid) = &self.tid {
            parts.push(format!("tid={tid}"));
        }
        if parts.is_empty() {
            "no identifying claims".to_string()
        } else {
            parts.join(" ")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_payload_without_exposing_the_token() {
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(br#"{"oid":"o-1","appid":"a-1","upn":"ann@contoso.com","idtyp":"user"}"#);
        let token = format!("eyJhbGciOiJub25lIn0.{payload}.sig");
        let claims = TokenClaims::read(&token).unwrap();
        assert_eq!(claims.summary(), "oid=o-1 appid=a-1 upn=ann@contoso.com");
        assert!(!claims.is_app_only());
        assert_eq!(TokenClaims::read("opaque"), None);
    }
}
