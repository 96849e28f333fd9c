//! `pgmcp serve --http`: the axum application around rmcp's Streamable HTTP service, its start-up checks and its
//! graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::routing::get;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use tokio_util::sync::CancellationToken;

use crate::http::auth::{self, AuthMode, Authenticator, ResourceInfo};
use crate::http::body::{AllowedHosts, check_host};
use crate::http::endpoints::{self, EndpointState};
use crate::http::mcp_route::McpRoute;
use crate::http::oauth::{self, OAuthServer};
use crate::http::on_behalf::LoginGate;
use crate::http::per_caller::CallerLimit;
use crate::http::settings::HttpSettings;
use crate::mcp::{Databases, PgMcpServer};
use crate::telemetry::Observed;
use crate::telemetry::metrics::Metrics;

pub const MCP_PATH: &str = "/mcp";
pub const PRM_PATH: &str = "/.well-known/oauth-protected-resource";

/// Refuses configurations that would expose data to anyone who can reach the port, or that cannot check the
/// Host header. Runs before binding, so a refused start never opens the port.
pub fn check_exposure(settings: &HttpSettings) -> anyhow::Result<()> {
    let loopback = settings.listen.ip().is_loopback();
    if settings.auth.mode == AuthMode::None && !loopback {
        if !settings.allow_unauthenticated {
            anyhow::bail!(
                "refusing to serve without authentication on {} (not a loopback address): anyone who can reach it could query the database — set `--auth-mode entra` or `oidc`, bind to 127.0.0.1, or pass `--allow-unauthenticated` if a gateway in front authenticates callers",
                settings.listen
            );
        }
        tracing::warn!(
            listen = %settings.listen,
            "serving WITHOUT authentication on a non-loopback address (--allow-unauthenticated): every caller can use every tool"
        );
    }
    if settings.listen.ip().is_unspecified() && settings.public_url.is_none() {
        anyhow::bail!(
            "`--http {}` listens on every interface, so pgmcp cannot tell which Host header is legitimate — set `--public-url` (or `http.public_url`) to the URL clients use, e.g. https://pgmcp.example.com",
            settings.listen
        );
    }
    for origin in &settings.allowed_origins {
        if origin != "null" && !origin.starts_with("https://") && !origin.starts_with("http://") {
            anyhow::bail!(
                "invalid `--allowed-origin` / `http.allowed_origins` = \"{origin}\": an origin is scheme://host[:port], e.g. https://app.example.com or http://localhost:*"
            );
        }
    }
    Ok(())
}

/// The Host values /mcp accepts: the public URL's host, plus the loopback names when bound to loopback (local
/// clients), or the bound address itself when bound to one specific non-loopback address.
pub fn allowed_hosts(settings: &HttpSettings) -> Vec<String> {
    let mut hosts = Vec::new();
    if let Some(host) = settings.public_url.as_ref().and_then(|u| u.host_str()) {
        hosts.push(host.to_string());
    }
    let ip = settings.listen.ip();
    if ip.is_loopback() {
        hosts.extend(["localhost", "127.0.0.1", "::1"].map(String::from));
    } else if settings.public_url.is_none() && !ip.is_unspecified() {
        hosts.push(ip.to_string());
    }
    hosts
}

/// The base URL the resource is known by: the public URL when set (a proxy's address, never the bind address),
/// otherwise the bound address.
pub fn public_base(settings: &HttpSettings, bound: SocketAddr) -> String {
    match &settings.public_url {
        Some(url) => url.as_str().trim_end_matches('/').to_string(),
        None => format!("http://{bound}"),
    }
}

/// Origins always accepted besides `--allowed-origin`: the server's own (a page it serves is not cross-origin),
/// i.e. the public URL's origin, and the loopback names on the bound port when bound to loopback.
pub fn own_origins(settings: &HttpSettings, bound: SocketAddr) -> Vec<String> {
    let mut origins = Vec::new();
    if let Some(url) = &settings.public_url
        && let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default())
    {
        // An explicit port: rmcp treats a port-less entry as "any port", which is wider than needed.
        origins.push(format!("{}://{host}:{port}", url.scheme()));
    }
    let port = bound.port();
    if bound.ip().is_loopback() {
        origins.extend([
            format!("http://localhost:{port}"),
            format!("http://127.0.0.1:{port}"),
            format!("http://[::1]:{port}"),
        ]);
    } else if settings.public_url.is_none() && !bound.ip().is_unspecified() {
        // Bound to one specific address, which is then also the accepted Host: the page served from it is ours.
        let origin = match bound.ip() {
            std::net::IpAddr::V4(ip) => format!("http://{ip}:{port}"),
            std::net::IpAddr::V6(ip) => format!("http://[{ip}]:{port}"),
        };
        origins.push(origin);
    }
    origins
}

/// Where the chat reaches this listener's own /mcp: over loopback (or the one bound address), with a Host header
/// the listener accepts.
fn own_mcp(settings: &HttpSettings, bound: SocketAddr) -> (String, String) {
    let target = match bound.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::from(([127, 0, 0, 1], bound.port()))
        }
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, bound.port()))
        }
        _ => bound,
    };
    let host = match &settings.public_url {
        Some(url) => match (url.host_str(), url.port()) {
            (Some(host), Some(port)) => format!("{host}:{port}"),
            (Some(host), None) => host.to_string(),
            _ => target.to_string(),
        },
        None => target.to_string(),
    };
    (format!("http://{target}{MCP_PATH}"), host)
}

fn request_timeout(settings: &HttpSettings, databases: &Databases) -> Duration {
    settings.request_timeout.unwrap_or_else(|| {
        let longest = databases
            .all()
            .iter()
            .map(|db| db.profile.statement_timeout)
            .max()
            .unwrap_or(Duration::from_secs(30));
        longest + Duration::from_secs(15)
    })
}

pub async fn serve_http(
    databases: Arc<Databases>,
    settings: HttpSettings,
    observed: Observed,
    chat: Option<crate::chat::ChatSettings>,
) -> anyhow::Result<()> {
    check_exposure(&settings)?;
    if settings.auth.mode == AuthMode::None
        && let Some(db) = databases.all().iter().find(|db| db.per_caller())
    {
        anyhow::bail!(
            "profile `{}` has db_identity = on_behalf_of, which logs in as each signed-in caller, but `--auth-mode` is \
             none, so no request carries a user: set `--auth-mode entra` (or oidc), or `--db-identity service`",
            db.profile.name
        );
    }
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("could not listen on `--http {}`", settings.listen))?;
    serve_http_on(listener, databases, settings, observed, chat, |_| {}).await
}

/// Serves on a listener the caller bound (`pgmcp demo --http` binds first, to fall back to a free port); the caller
/// has run `check_exposure` before binding. `on_listening` runs once the server is about to accept and a
/// termination signal would stop it gracefully, so whatever it announces is safe to act on at once.
pub(crate) async fn serve_http_on(
    listener: tokio::net::TcpListener,
    databases: Arc<Databases>,
    mut settings: HttpSettings,
    observed: Observed,
    chat: Option<crate::chat::ChatSettings>,
    on_listening: impl FnOnce(SocketAddr),
) -> anyhow::Result<()> {
    let bound = listener.local_addr().context("the bound address")?;
    settings.listen = bound;
    crate::db::deadline::anchor_deadlines();
    let terminated = termination_signal();
    let base = public_base(&settings, bound);
    let resource = format!("{base}{MCP_PATH}");

    let oauth_key = oauth::prepare(&settings, &databases).await?;
    let authenticator = match settings.auth.mode {
        AuthMode::None => None,
        _ => Some(
            Authenticator::with_own_issuer(
                &settings.auth,
                ResourceInfo {
                    resource: resource.clone(),
                    metadata_url: format!("{base}{PRM_PATH}{MCP_PATH}"),
                },
                oauth_key
                    .as_ref()
                    .map(|key| oauth::own_issuer(key, &base, &resource)),
            )
            .await
            .context("authentication settings ([auth] / --auth-mode ...)")?,
        ),
    };
    let oauth_server = match (settings.oauth.clone(), oauth_key, &authenticator) {
        (Some(oauth), Some(key), Some(auth)) => Some(
            OAuthServer::new(oauth, key, &settings.auth, auth.clone(), &base, &resource).await?,
        ),
        _ => None,
    };
    settings.policy.check_profiles(&databases.names())?;
    let metrics = Arc::new(Metrics::default());
    let server = PgMcpServer::new(databases.clone())
        .with_policy(authenticator.as_ref().map(|_| {
            let reads = databases.curated().read_only_names();
            Arc::new(settings.policy.clone().with_curated_reads(reads))
        }))
        .with_audit(observed.audit.clone())
        // Counted only where /metrics serves them.
        .with_metrics(settings.metrics.then(|| metrics.clone()))
        .with_otel(observed.otel.clone());
    if let (Some(otel), Some(auth)) = (&observed.otel, &authenticator) {
        otel.observe_auth(auth.clone());
    }

    let hosts = allowed_hosts(&settings);
    let stop_sessions = CancellationToken::new();
    let config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(settings.legacy_sessions)
        .with_json_response(true)
        // pgmcp's handlers never message the client mid-call, so a stateless request's handler runs on the HTTP
        // request's own task: no per-request service loop, spawned tasks or channels (vendor/README.md).
        .with_inline_stateless_requests(true)
        // The Host header is checked by `McpRoute`, first, against the same names; rmcp's own check
        // parsed each allowed name again on every request.
        .disable_allowed_hosts()
        .with_allowed_origins(
            settings
                .allowed_origins
                .iter()
                .cloned()
                .chain(own_origins(&settings, bound)),
        )
        .enforce_origin_validation()
        .with_max_request_body_bytes(settings.max_body_bytes)
        .with_cancellation_token(stop_sessions.clone());
    let mcp_service = StreamableHttpService::new(
        move || Ok(server.clone()),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    let route = Arc::new(McpRoute {
        allowed_hosts: hosts.clone(),
        auth: authenticator.clone(),
        // After authentication, which names the caller.
        caller_limit: (authenticator.as_ref())
            .map(|_| CallerLimit::new(settings.per_caller_concurrency)),
        timeout: request_timeout(&settings, &databases),
        max_body_bytes: settings.max_body_bytes,
        login: match &authenticator {
            Some(auth) if databases.all().iter().any(|db| db.per_caller()) => Some(LoginGate {
                databases: databases.clone(),
                auth: auth.clone(),
            }),
            _ => None,
        },
        mcp: mcp_service,
    });
    // One handler, not a layer per check: see `McpRoute`. rmcp's service is called through a shared reference: as
    // a tower service it was cloned twice per request, and each clone copied its config's host and origin lists.
    let mcp = Router::new().route(
        MCP_PATH,
        axum::routing::any(move |request: axum::extract::Request| route.clone().serve(request)),
    );

    let state = EndpointState {
        databases: databases.clone(),
        auth: authenticator.clone(),
        metrics,
        resource: resource.clone(),
        resource_name: settings.resource_name.clone(),
        resource_documentation: settings.resource_documentation.clone(),
    };
    let mut endpoints = Router::new()
        .route("/healthz", get(endpoints::healthz))
        .route("/readyz", get(endpoints::readyz));
    if authenticator.is_some() {
        endpoints = endpoints
            .route(PRM_PATH, get(endpoints::protected_resource_metadata))
            .route(
                &format!("{PRM_PATH}{MCP_PATH}"),
                get(endpoints::protected_resource_metadata),
            );
    }
    if settings.metrics {
        endpoints = endpoints.route("/metrics", get(endpoints::metrics));
    }
    let mut app = mcp.merge(endpoints.with_state(state));
    if settings.ui {
        app = app.merge(crate::web::router());
    }
    if let Some(oauth_server) = &oauth_server {
        app = app.merge(oauth_server.router());
    }
    if let Some(chat) = chat {
        let (mcp_url, mcp_host) = own_mcp(&settings, bound);
        let origins = (settings.allowed_origins.iter().cloned())
            .chain(own_origins(&settings, bound))
            .collect();
        let state = crate::chat::web::ChatState::new(
            chat,
            databases.clone(),
            observed.audit,
            mcp_url,
            mcp_host,
            origins,
        )?;
        // The same doors as /mcp: the Host check, then the bearer token.
        let mut chat = Router::new()
            .route(
                crate::chat::web::CHAT_PATH,
                axum::routing::post(crate::chat::web::chat),
            )
            .with_state(state);
        if let Some(authenticator) = &authenticator {
            chat = chat.route_layer(auth::require_bearer(authenticator.clone()));
        }
        app = app.merge(chat.route_layer(axum::middleware::from_fn_with_state(
            AllowedHosts(Arc::new(hosts)),
            check_host,
        )));
    }

    for db in databases.all() {
        tracing::info!(
            profile = %db.profile.name,
            connection = %db.profile.conn.redacted(),
            access_mode = db.profile.access_mode.as_str(),
            "serving MCP over HTTP"
        );
        let db = db.clone();
        tokio::spawn(async move { db.warm_up().await });
    }
    tracing::info!(
        resource = %resource,
        auth = ?settings.auth.mode,
        legacy_sessions = settings.legacy_sessions,
        web_client = settings.ui,
        "listening on http://{bound}"
    );
    on_listening(bound);

    let (stop_accepting, stopped) = tokio::sync::oneshot::channel::<()>();
    let mut running = tokio::spawn(crate::http::listener::serve(
        listener,
        app,
        settings.header_read_timeout,
        async move {
            let _ = stopped.await;
        },
    ));
    tokio::select! {
        outcome = &mut running => {
            stop_sessions.cancel();
            close(&databases);
            outcome.context("the HTTP server task failed")?;
            anyhow::bail!("the HTTP server stopped unexpectedly");
        }
        _ = terminated => {}
    }
    tracing::info!(
        bound_secs = settings.shutdown_timeout.as_secs_f64(),
        "termination signal received: no new connections, waiting for in-flight calls"
    );
    let _ = stop_accepting.send(());
    match tokio::time::timeout(settings.shutdown_timeout, &mut running).await {
        Ok(_) => tracing::info!("in-flight calls finished"),
        Err(_) => {
            tracing::warn!("in-flight calls did not finish in time; closing them");
            running.abort();
        }
    }
    stop_sessions.cancel();
    close(&databases);
    Ok(())
}

/// Registers SIGTERM and SIGINT handlers now, before the address is announced: a supervisor (or a test) that
/// signals right after start must get a graceful stop, not the default action.
fn termination_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let term = signal(SignalKind::terminate()).ok();
        let int = signal(SignalKind::interrupt()).ok();
        async move {
            match (term, int) {
                (Some(mut term), Some(mut int)) => {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = int.recv() => {}
                    }
                }
                _ => crate::app::shutdown_signal().await,
            }
        }
    }
    #[cfg(not(unix))]
    {
        crate::app::shutdown_signal()
    }
}

fn close(databases: &Databases) {
    for db in databases.all() {
        db.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::HttpArgs;
    use crate::config::file::ConfigFile;

    fn settings(listen: &str, public_url: Option<&str>) -> HttpSettings {
        let args = HttpArgs {
            listen: Some(listen.into()),
            public_url: public_url.map(str::to_string),
            allow_unauthenticated: true,
            ..HttpArgs::default()
        };
        crate::http::settings::resolve(&args, &ConfigFile::default())
            .unwrap()
            .unwrap()
    }

    /// The web client at `/` posts to `/mcp` with its own origin: whatever address serves the page must accept it.
    #[test]
    fn the_origin_that_serves_the_page_is_always_allowed() {
        let loopback = settings("127.0.0.1:8808", None);
        let origins = own_origins(&loopback, loopback.listen);
        assert!(origins.contains(&"http://127.0.0.1:8808".to_string()));
        assert!(origins.contains(&"http://localhost:8808".to_string()));

        let specific = settings("192.0.2.10:8080", None);
        assert_eq!(
            own_origins(&specific, specific.listen),
            vec!["http://192.0.2.10:8080"]
        );
        assert_eq!(allowed_hosts(&specific), vec!["192.0.2.10"]);

        let public = settings("0.0.0.0:8080", Some("https://pgmcp.example.com/"));
        assert_eq!(
            own_origins(&public, public.listen),
            vec!["https://pgmcp.example.com:443"]
        );
    }
}
