use schemars::JsonSchema;
use serde::Serialize;

/// Who is calling, as established by the authentication layer from a validated access token. Tools use it for the
/// authorization policy and audit lines; it never holds the token itself.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, JsonSchema)]
pub struct Caller {
    /// Token issuer (`iss`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// Subject (`sub`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Entra object id of the user or service principal (`oid`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oid: Option<String>,
    /// Entra tenant (`tid`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tid: Option<String>,
    /// The calling client application (`azp` in v2 tokens, `appid` in v1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_app: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preferred_username: Option<String>,
    /// App roles (`roles`), e.g. `MCP.Access`.
    pub roles: Vec<String>,
    /// Delegated scopes (`scp`, space-separated in the token).
    pub scopes: Vec<String>,
    /// True for app-only tokens (client credentials / managed identity): no user behind the call.
    pub app_only: bool,
}
