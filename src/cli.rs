//! Command-line interface: `pgmcp serve`, `pgmcp check`, `pgmcp chat`, `pgmcp demo`, `pgmcp health`,
//! `pgmcp azure grant`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::AccessMode;

#[derive(Debug, Parser)]
#[command(
    name = "pgmcp",
    version,
    about = "A PostgreSQL server for the Model Context Protocol: lets AI agents explore and query PostgreSQL safely.",
    long_about = "pgmcp lets MCP clients (Claude, VS Code, Cursor, AI Foundry agents, the official SDKs) explore and query \
PostgreSQL. SQL is read-only by default, checked by PostgreSQL's own parser and run inside read-only transactions \
with timeouts and row/byte ceilings.\n\n\
The database comes from, in order: --database-url, DATABASE_URL, a profile from the config file (--config / \
PGMCP_CONFIG, selected with --profile / PGMCP_PROFILE), or libpq's PGHOST, PGPORT, PGDATABASE, PGUSER, PGPASSWORD, \
PGSSLMODE, PGSSLROOTCERT, PGAPPNAME (with ~/.pgpass honoured).",
    after_help = "Examples:\n  pgmcp demo                                   # sample database, MCP on stdio\n  \
pgmcp demo --http                            # sample database and the web client at http://127.0.0.1:8808/\n  \
pgmcp demo --config examples/governed.toml   # the same, customers' emails and phones masked, curated tools\n  \
pgmcp serve --database-url postgresql://readonly@localhost/app\n  \
PGHOST=db.example.com PGUSER=reader pgmcp check\n  \
pgmcp serve --config pgmcp.toml --profile local --profile azure_dev"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    /// Log filter (tracing syntax, e.g. `info`, `pgmcp=debug`). Logs go to stderr; stdout is the MCP channel.
    #[arg(long, global = true, env = "PGMCP_LOG", default_value = "info", value_parser = parse_log_filter)]
    pub log: String,

    /// Log format on stderr.
    #[arg(long, global = true, env = "PGMCP_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve MCP over stdio (how Claude Desktop, VS Code and other clients launch local servers), or over
    /// Streamable HTTP with --http.
    Serve(Box<ServeArgs>),
    /// Connect once and report the server, the session's security and the role's privileges; exit non-zero on failure.
    /// With --pii, also list columns that look like personal data and print the masks to add.
    Check(Box<CheckArgs>),
    /// Start a throwaway PostgreSQL with a sample restaurants database and serve MCP on stdio against it.
    /// With --http, serve it over HTTP on loopback with the web client and print the URL to open.
    Demo(DemoArgs),
    /// Ask a running pgmcp's /healthz and exit non-zero unless it answers 2xx: the container image's health
    /// check, which has no shell or curl.
    Health(crate::probe::HealthArgs),
    /// Azure helpers.
    #[command(subcommand)]
    Azure(crate::azure_grant::AzureCommand),
    /// Ask the database in plain language: a model (OpenAI, Azure OpenAI, or any OpenAI-compatible endpoint such
    /// as vLLM, Ollama, LM Studio) answers through pgmcp's tools, showing each step and the SQL it ran.
    Chat(Box<ChatArgs>),
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
OPENAI_API_KEY=... pgmcp chat --llm-model gpt-4o --database-url postgresql://reader@localhost/app\n  \
pgmcp chat --llm-base-url http://127.0.0.1:11434/v1 --llm-model llama3.1 --ask \"which table is largest?\"\n  \
pgmcp demo --chat --llm-model gpt-4o")]
pub struct ChatArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,

    #[command(flatten)]
    pub llm: LlmArgs,

    /// Answer this one question, print the steps and the answer, and exit.
    #[arg(long, value_name = "QUESTION")]
    pub ask: Option<String>,

    /// Print the transcript as JSON (one object per question) instead of the steps as text.
    #[arg(long)]
    pub json: bool,

    /// Write one JSON audit line per tool call the model makes (as `serve --audit-log`).
    #[arg(long, env = "PGMCP_AUDIT_LOG", value_name = "PATH|stderr")]
    pub audit_log: Option<String>,
}

/// The model behind `pgmcp chat` and the web client's Chat tab. Each flag also reads its environment variable and
/// a key of the config file's `[chat]` table; the flag wins over the variable, which wins over the file.
#[derive(Debug, Args, Clone, Default)]
#[command(next_help_heading = "Chat model")]
pub struct LlmArgs {
    /// openai (OpenAI or any OpenAI-compatible endpoint) or azure_openai. Default: azure_openai when an Azure
    /// OpenAI endpoint is set, else openai. Config: `chat.provider`.
    #[arg(long, env = "PGMCP_LLM_PROVIDER", value_name = "openai|azure_openai")]
    pub llm_provider: Option<String>,

    /// Base URL of an OpenAI-compatible API, before /chat/completions (default https://api.openai.com/v1; Ollama:
    /// http://127.0.0.1:11434/v1). Config: `chat.base_url`.
    #[arg(long, env = "PGMCP_LLM_BASE_URL", value_name = "URL")]
    pub llm_base_url: Option<String>,

    /// Model name, e.g. gpt-4o, llama3.1. Config: `chat.model`.
    #[arg(long, env = "PGMCP_LLM_MODEL", value_name = "NAME")]
    pub llm_model: Option<String>,

    /// The environment variable that holds the API key (default OPENAI_API_KEY; AZURE_OPENAI_API_KEY for Azure
    /// OpenAI, which without a key signs in with Entra). Config: `chat.api_key_env`.
    #[arg(long, env = "PGMCP_LLM_API_KEY_ENV", value_name = "NAME")]
    pub llm_api_key_env: Option<String>,

    /// Azure OpenAI resource endpoint, e.g. https://myresource.openai.azure.com. Config:
    /// `chat.azure_openai_endpoint`.
    #[arg(long, env = "AZURE_OPENAI_ENDPOINT", value_name = "URL")]
    pub azure_openai_endpoint: Option<String>,

    /// Azure OpenAI deployment name. Config: `chat.azure_openai_deployment`.
    #[arg(long, env = "AZURE_OPENAI_DEPLOYMENT", value_name = "NAME")]
    pub azure_openai_deployment: Option<String>,

    /// Azure OpenAI api-version (default 2024-10-21). Config: `chat.azure_openai_api_version`.
    #[arg(long, env = "AZURE_OPENAI_API_VERSION", value_name = "VERSION")]
    pub azure_openai_api_version: Option<String>,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,

    #[command(flatten)]
    pub http: Box<HttpArgs>,

    /// With a model configured, `serve --http` also answers the web client's Chat tab (`POST /chat`).
    #[command(flatten)]
    pub llm: LlmArgs,

    /// Write one JSON audit line per tool call (caller, tool, arguments including SQL, outcome, rows, duration)
    /// to this file, or to `stderr`. Off unless set. Config: `audit_log`.
    #[arg(long, env = "PGMCP_AUDIT_LOG", value_name = "PATH|stderr")]
    pub audit_log: Option<String>,

    /// Which tools to offer: all (default), builtin, curated (only the config file's [[tools]], so agents cannot
    /// write SQL of their own), or a comma-separated list of tool names. Tools left out are absent from tools/list
    /// and refused on tools/call. Config: `tools_exposed`.
    #[arg(
        long = "tools",
        env = "PGMCP_TOOLS",
        value_delimiter = ',',
        value_name = "all|builtin|curated|NAME,..."
    )]
    pub tools: Vec<String>,

    #[command(flatten)]
    pub otel: OtelArgs,
}

/// OpenTelemetry export: traces and metrics over OTLP/HTTP (protobuf). Off unless an endpoint is set; everything
/// else is read from the standard OTEL_* variables (OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES,
/// OTEL_TRACES_SAMPLER, OTEL_EXPORTER_OTLP_HEADERS, ...) or the config file's `[opentelemetry]` table.
#[derive(Debug, Args, Clone, Default)]
#[command(next_help_heading = "OpenTelemetry")]
pub struct OtelArgs {
    /// Export to this OTLP/HTTP base URL, e.g. http://localhost:4318 (an OpenTelemetry Collector); `/v1/traces`
    /// and `/v1/metrics` are appended. Wins over OTEL_EXPORTER_OTLP_ENDPOINT. Config: `opentelemetry.endpoint`.
    #[arg(long, value_name = "URL")]
    pub otel_endpoint: Option<String>,

    /// Put each call's SQL on its span (`db.query.text`). Off by default: SQL can hold data. Also
    /// PGMCP_OTEL_QUERY_TEXT=true. Config: `opentelemetry.query_text`.
    #[arg(long)]
    pub otel_query_text: bool,
}

impl ServeArgs {
    /// `--tools` as the config key `tools_exposed` would be written, when given.
    pub fn tools_exposed(&self) -> Option<crate::config::file::ToolsExposedFile> {
        use crate::config::file::ToolsExposedFile;
        match self.tools.as_slice() {
            [] => None,
            [set] if matches!(set.as_str(), "all" | "builtin" | "curated") => {
                Some(ToolsExposedFile::Set(set.clone()))
            }
            names => Some(ToolsExposedFile::Names(names.to_vec())),
        }
    }
}

/// Remote serving. Each flag also reads its `PGMCP_` environment variable and a key of the config file's `[http]`,
/// `[auth]` or `[policy]` table; the flag wins over the variable, which wins over the file.
#[derive(Debug, Args, Clone, Default)]
#[command(next_help_heading = "Remote (Streamable HTTP)")]
pub struct HttpArgs {
    /// Serve Streamable HTTP at /mcp on this address (e.g. 127.0.0.1:8080, 0.0.0.0:8080) instead of stdio.
    /// Config: `http.listen`.
    #[arg(long = "http", env = "PGMCP_HTTP", value_name = "ADDR")]
    pub listen: Option<String>,

    /// The externally visible base URL (https://pgmcp.example.com) when behind a proxy or ingress: it names the
    /// protected resource ({URL}/mcp) and the accepted Host. Config: `http.public_url`.
    #[arg(long, env = "PGMCP_PUBLIC_URL", value_name = "URL")]
    pub public_url: Option<String>,

    /// Browser origin allowed to call /mcp (repeatable; e.g. https://app.example.com, http://localhost:*).
    /// Requests with any other Origin get 403. Config: `http.allowed_origins`.
    #[arg(
        long = "allowed-origin",
        env = "PGMCP_ALLOWED_ORIGIN",
        value_delimiter = ',',
        value_name = "ORIGIN"
    )]
    pub allowed_origins: Vec<String>,

    /// Serve without authentication on a non-loopback address. Config: `http.allow_unauthenticated`.
    #[arg(long, env = "PGMCP_ALLOW_UNAUTHENTICATED")]
    pub allow_unauthenticated: bool,

    /// Keep legacy (pre-2026-07-28) clients in server-side sessions (Mcp-Session-Id). Off by default: every
    /// request stands alone, so any number of replicas can sit behind a load balancer. Config:
    /// `http.legacy_sessions`.
    #[arg(long, env = "PGMCP_LEGACY_SESSIONS")]
    pub legacy_sessions: bool,

    /// Do not serve the browser console at / (the web client; /mcp is unaffected). Config: `http.ui = false`.
    #[arg(long, env = "PGMCP_NO_UI")]
    pub no_ui: bool,

    /// Inbound authentication: none, entra (Microsoft Entra ID) or oidc (any OpenID provider). Config: `auth.mode`.
    #[arg(long, env = "PGMCP_AUTH_MODE", value_name = "none|entra|oidc")]
    pub auth_mode: Option<String>,

    /// Entra tenant whose tokens are accepted (repeatable). Config: `auth.entra_tenant_ids`.
    #[arg(
        long = "entra-tenant-id",
        env = "PGMCP_ENTRA_TENANT_ID",
        value_delimiter = ',',
        value_name = "ID"
    )]
    pub entra_tenant_ids: Vec<String>,

    /// The Entra app registration's application (client) id. Config: `auth.entra_client_id`.
    #[arg(long, env = "PGMCP_ENTRA_CLIENT_ID", value_name = "ID")]
    pub entra_client_id: Option<String>,

    /// The Entra app registration's Application ID URI (api://...). Config: `auth.entra_app_id_uri`.
    #[arg(long, env = "PGMCP_ENTRA_APP_ID_URI", value_name = "URI")]
    pub entra_app_id_uri: Option<String>,

    /// Issuer URL of an OpenID provider (discovered via /.well-known/openid-configuration). Config:
    /// `auth.oidc_issuer`.
    #[arg(long, env = "PGMCP_OIDC_ISSUER", value_name = "URL")]
    pub oidc_issuer: Option<String>,

    /// Accepted token audience (repeatable). Config: `auth.audiences`.
    #[arg(
        long = "audience",
        env = "PGMCP_AUDIENCE",
        value_delimiter = ',',
        value_name = "AUD"
    )]
    pub audiences: Vec<String>,

    /// App role a token must carry, any of (repeatable; e.g. MCP.Access). Config: `auth.required_roles`.
    #[arg(
        long = "required-role",
        env = "PGMCP_REQUIRED_ROLE",
        value_delimiter = ',',
        value_name = "ROLE"
    )]
    pub required_roles: Vec<String>,

    /// Delegated scope a token must carry, any of (repeatable). Config: `auth.required_scopes`.
    #[arg(
        long = "required-scope",
        env = "PGMCP_REQUIRED_SCOPE",
        value_delimiter = ',',
        value_name = "SCOPE"
    )]
    pub required_scopes: Vec<String>,

    /// Client application (azp/appid) allowed to call (repeatable). Config: `auth.allowed_client_apps`.
    #[arg(
        long = "allowed-client-app",
        env = "PGMCP_ALLOWED_CLIENT_APP",
        value_delimiter = ',',
        value_name = "ID"
    )]
    pub allowed_client_apps: Vec<String>,

    /// How many MCP requests one authenticated caller may have running at once; more get 429 with Retry-After,
    /// so one caller cannot take every database connection (default 8; 0 turns the limit off). Config:
    /// `http.per_caller_concurrency`.
    #[arg(long, env = "PGMCP_PER_CALLER_CONCURRENCY", value_name = "N")]
    pub per_caller_concurrency: Option<i64>,

    /// Threads that serve HTTP (default 1). One thread answers every request without handing it between threads,
    /// which on a small host costs a third less CPU per call; more threads use more cores when one is not enough.
    /// Config: `http.threads`.
    #[arg(long = "http-threads", env = "PGMCP_HTTP_THREADS", value_name = "N")]
    pub threads: Option<i64>,

    /// App role or scope that grants execute_write under the default policy (default MCP.Write). Config:
    /// `policy.write_role`.
    #[arg(long, env = "PGMCP_WRITE_ROLE", value_name = "ROLE")]
    pub write_role: Option<String>,

    /// Be the OAuth authorization server MCP clients sign in with (VS Code, Claude, the Inspector): clients
    /// register here, people sign in at Entra ID / the OpenID provider, and pgmcp issues its own tokens.
    /// Needs --oauth-upstream-client-id, the client secret (or --oauth-upstream-credential managed_identity or
    /// certificate) and --oauth-signing-key. Config: `oauth.enabled`.
    #[arg(long, env = "PGMCP_OAUTH_SERVER")]
    pub oauth_server: bool,

    /// The client id pgmcp signs people in with at the provider (Entra: the app registration's Application
    /// (client) ID). Config: `oauth.upstream_client_id`.
    #[arg(long, env = "PGMCP_OAUTH_UPSTREAM_CLIENT_ID", value_name = "ID")]
    pub oauth_upstream_client_id: Option<String>,

    /// That client's secret; prefer the environment variable. There is no config key: secrets stay out of files.
    #[arg(
        long,
        env = "PGMCP_OAUTH_UPSTREAM_CLIENT_SECRET",
        hide_env_values = true,
        value_name = "SECRET"
    )]
    pub oauth_upstream_client_secret: Option<String>,

    /// How pgmcp's app authenticates at the provider: `client_secret` (the default), `managed_identity`
    /// (secretless: the managed identity's token is a federated credential of the app registration; a
    /// user-assigned one is named by `oauth.upstream_managed_identity_client_id`) or `certificate`
    /// (--oauth-upstream-certificate). Config: `oauth.upstream_credential`.
    #[arg(long, env = "PGMCP_OAUTH_UPSTREAM_CREDENTIAL", value_name = "KIND")]
    pub oauth_upstream_credential: Option<String>,

    /// The certificate pgmcp's app proves itself with (uploaded to the app registration): a PEM file with the
    /// certificate and its RSA private key, or a Key Vault certificate stored as PEM,
    /// https://<vault>.vault.azure.net/secrets/<name>. Config: `oauth.upstream_certificate`.
    #[arg(long, env = "PGMCP_OAUTH_UPSTREAM_CERTIFICATE", value_name = "PEM|URL")]
    pub oauth_upstream_certificate: Option<String>,

    /// The RSA private key (2048 bits or more) that signs pgmcp's tokens, shared by every replica: a PEM file,
    /// or a Key Vault secret holding it, https://<vault>.vault.azure.net/secrets/<name>, whose enabled versions
    /// are the key's rotations. Config: `oauth.signing_key`.
    #[arg(long, env = "PGMCP_OAUTH_SIGNING_KEY", value_name = "PEM|URL")]
    pub oauth_signing_key: Option<String>,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Also look for columns that hold personal data (by name, and by a small sample of values read in a read-only
    /// transaction: emails, phone numbers, card numbers, national ids) and print the mask configuration to add.
    /// Sampled values are never printed.
    #[arg(long)]
    pub pii: bool,
}

#[derive(Debug, Args, Clone, Default)]
pub struct DatabaseArgs {
    /// PostgreSQL connection string: a URL (postgresql://user@host:5432/db?sslmode=verify-full) or keyword/value
    /// pairs (host=... dbname=...). Overrides the profile's connection settings.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// TOML file with named profiles (see the README's configuration reference).
    #[arg(long, env = "PGMCP_CONFIG")]
    pub config: Option<PathBuf>,

    /// Profile to use from the config file. Repeat to expose several profiles at once: tools then take a
    /// `profile` argument and the first one is the default.
    #[arg(long = "profile", env = "PGMCP_PROFILE", value_delimiter = ',')]
    pub profiles: Vec<String>,

    /// Override the profile's access mode. read_write allows single-statement DML through execute_write.
    #[arg(long, env = "PGMCP_ACCESS_MODE", value_parser = parse_access_mode)]
    pub access_mode: Option<AccessMode>,

    /// Override the statement timeout, e.g. `30s`, `500ms`, `2m`.
    #[arg(long, env = "PGMCP_STATEMENT_TIMEOUT")]
    pub statement_timeout: Option<String>,

    /// Override the default number of rows a query returns.
    #[arg(long, env = "PGMCP_MAX_ROWS")]
    pub max_rows: Option<usize>,

    /// Override the result size ceiling in bytes.
    #[arg(long, env = "PGMCP_MAX_RESULT_BYTES")]
    pub max_result_bytes: Option<usize>,

    /// Override the pool's maximum number of connections.
    #[arg(long, env = "PGMCP_POOL_MAX")]
    pub pool_max: Option<usize>,

    /// Where the database password comes from: password (URL, PGPASSWORD, ~/.pgpass), key_vault (an Azure Key
    /// Vault secret) or entra (a Microsoft Entra token, for Azure Database for PostgreSQL).
    #[arg(long, env = "PGMCP_DB_AUTH", value_parser = crate::identity::DbAuth::parse, help_heading = "Identity")]
    pub db_auth: Option<crate::identity::DbAuth>,

    /// How Entra tokens are obtained: auto, managed_identity, workload_identity, client_secret (service principal
    /// with AZURE_CLIENT_SECRET or AZURE_CLIENT_CERTIFICATE_PATH) or azure_cli.
    #[arg(long, env = "PGMCP_ENTRA_CREDENTIAL", value_parser = crate::identity::EntraCredentialKind::parse, help_heading = "Identity")]
    pub entra_credential: Option<crate::identity::EntraCredentialKind>,

    /// Client id of a user-assigned managed identity (default: the system-assigned one).
    #[arg(
        long,
        env = "PGMCP_MANAGED_IDENTITY_CLIENT_ID",
        help_heading = "Identity"
    )]
    pub managed_identity_client_id: Option<String>,

    /// PostgreSQL role for Entra logins: the name given to pgaadauth_create_principal (e.g. the managed
    /// identity's display name).
    #[arg(long, env = "PGMCP_DB_USER", help_heading = "Identity")]
    pub db_user: Option<String>,

    /// A host (or `.suffix`) besides the Azure PostgreSQL hosts that may receive Entra tokens. Repeatable.
    #[arg(
        long = "token-host-allow",
        env = "PGMCP_TOKEN_HOST_ALLOW",
        value_delimiter = ',',
        help_heading = "Identity"
    )]
    pub token_host_allow: Vec<String>,

    /// Key Vault holding the database password, e.g. https://myvault.vault.azure.net (with --db-auth key_vault).
    #[arg(long, env = "PGMCP_KEY_VAULT_URL", help_heading = "Identity")]
    pub key_vault_url: Option<String>,

    /// Name of the Key Vault secret holding the database password.
    #[arg(long, env = "PGMCP_KEY_VAULT_SECRET", help_heading = "Identity")]
    pub key_vault_secret: Option<String>,

    /// Whose identity logs in to PostgreSQL over HTTP: service (pgmcp's own) or on_behalf_of (each caller's,
    /// through the OAuth on-behalf-of exchange).
    #[arg(long, env = "PGMCP_DB_IDENTITY", value_parser = crate::identity::DbIdentity::parse, help_heading = "Identity")]
    pub db_identity: Option<crate::identity::DbIdentity>,
}

impl DatabaseArgs {
    /// The identity flags as overrides of the profile's identity keys.
    pub fn identity_overrides(&self) -> crate::identity::IdentityOverrides {
        crate::identity::IdentityOverrides {
            db_auth: self.db_auth,
            entra_credential: self.entra_credential,
            managed_identity_client_id: self.managed_identity_client_id.clone(),
            db_user: self.db_user.clone(),
            token_host_allow: self.token_host_allow.clone(),
            key_vault_url: self.key_vault_url.clone(),
            key_vault_secret: self.key_vault_secret.clone(),
            db_identity: self.db_identity,
        }
    }
}

/// Where `pgmcp demo --http` listens when no address is given.
pub const DEMO_HTTP_DEFAULT: &str = "127.0.0.1:8808";

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Print ready-to-paste client configuration (Claude Desktop, VS Code) for the demo and exit.
    #[arg(long)]
    pub print_config: bool,

    /// Serve MCP over HTTP with the web client instead of stdio, on this loopback address (default
    /// 127.0.0.1:8808, or a free port when that one is taken), and print the URL to open in a browser.
    #[arg(
        long,
        value_name = "ADDR",
        num_args = 0..=1,
        default_missing_value = DEMO_HTTP_DEFAULT,
        conflicts_with = "print_config"
    )]
    pub http: Option<String>,

    /// Chat with the sample database in the terminal (needs a model: see the Chat model options).
    #[arg(long, conflicts_with_all = ["print_config", "http"])]
    pub chat: bool,

    /// Serve the sample database with this config file's settings: its default profile's masks and limits (the
    /// connection is always the demo's), its [[tools]], tools_exposed and audit_log. examples/governed.toml masks
    /// customers' emails and phone numbers and adds curated tools.
    #[arg(long, value_name = "PATH", conflicts_with = "print_config")]
    pub config: Option<PathBuf>,

    /// Write one JSON audit line per tool call to this file, or to `stderr` (as `serve --audit-log`).
    #[arg(long, value_name = "PATH|stderr", conflicts_with = "print_config")]
    pub audit_log: Option<String>,

    #[command(flatten)]
    pub llm: LlmArgs,
}

fn parse_log_filter(value: &str) -> Result<String, String> {
    tracing_subscriber::EnvFilter::try_new(value)
        .map(|_| value.to_string())
        .map_err(|error| {
            format!(
                "not a log filter ({error}); set PGMCP_LOG / --log to a level such as `info`, or targets such as \
                 `info,pgmcp=debug`"
            )
        })
}

pub(crate) fn parse_access_mode(value: &str) -> Result<AccessMode, String> {
    match value {
        "read_only" | "read-only" => Ok(AccessMode::ReadOnly),
        "read_write" | "read-write" => Ok(AccessMode::ReadWrite),
        other => Err(format!(
            "`{other}` is not an access mode: use read_only or read_write"
        )),
    }
}
