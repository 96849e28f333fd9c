//! The subcommands, wired from configuration to running services.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::Context;
use rmcp::ServiceExt;
use tokio_util::sync::CancellationToken;

use crate::cli::{ChatArgs, CheckArgs, DatabaseArgs, DemoArgs, ServeArgs};
use crate::config::file::{ConfigFile, ToolsExposedFile, parse_duration};
use crate::config::{self, ConfigSources, Profile, ProfileOverrides};
use crate::db::Database;
use crate::mcp::{Databases, PgMcpServer};
use crate::telemetry::Observed;
use crate::telemetry::audit::AuditLog;

/// Resolves the profiles named by the command line and environment; every error names the setting and the fix.
pub fn resolve_profiles(args: &DatabaseArgs) -> anyhow::Result<Vec<Profile>> {
    Ok(config::resolve(&sources(
        args,
        std::env::vars().collect(),
    )?)?)
}

fn sources(args: &DatabaseArgs, env: HashMap<String, String>) -> anyhow::Result<ConfigSources> {
    let statement_timeout = match &args.statement_timeout {
        None => None,
        Some(text) => Some(parse_duration(text).ok_or_else(|| {
            anyhow::anyhow!(
                "invalid `--statement-timeout` = \"{text}\": not a duration — use a number with a unit, e.g. 500ms, 30s, 2m"
            )
        })?),
    };
    Ok(ConfigSources {
        database_url: args.database_url.clone(),
        config_path: args.config.clone(),
        profiles: args.profiles.clone(),
        overrides: ProfileOverrides {
            access_mode: args.access_mode,
            statement_timeout,
            max_rows: args.max_rows,
            max_result_bytes: args.max_result_bytes,
            pool_max: args.pool_max,
            identity: args.identity_overrides(),
        },
        env,
    })
}

fn open_databases(profiles: Vec<Profile>) -> anyhow::Result<Arc<Databases>> {
    Ok(Arc::new(Databases::new(pools(profiles)?)))
}

/// The served profiles with the config file's curated tools, checked against them (`--tools` wins over
/// `tools_exposed`).
fn open_databases_with_tools(
    profiles: Vec<Profile>,
    file: &ConfigFile,
    tools_flag: Option<ToolsExposedFile>,
) -> anyhow::Result<Arc<Databases>> {
    let list = pools(profiles)?;
    let exposure = match (&tools_flag, &file.tools_exposed) {
        (Some(flag), _) => Some(("--tools", flag)),
        (None, Some(value)) => Some(("tools_exposed", value)),
        (None, None) => None,
    };
    let file_profiles: Vec<String> = (file.profiles_in_order().into_iter())
        .map(|(name, _)| name)
        .collect();
    let curated = crate::tools::curated::load(&file.tools, &file_profiles, &list, exposure)?;
    Ok(Arc::new(Databases::new(list).with_curated(curated)))
}

fn pools(profiles: Vec<Profile>) -> anyhow::Result<Vec<Arc<Database>>> {
    profiles
        .into_iter()
        .map(|profile| {
            let name = profile.name.clone();
            Database::new(profile)
                .map(Arc::new)
                .with_context(|| format!("profile `{name}`"))
        })
        .collect::<anyhow::Result<Vec<_>>>()
}

pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let file = match &args.database.config {
        Some(path) => ConfigFile::load(path)?,
        None => ConfigFile::default(),
    };
    // Settings are checked before any pool exists, so a bad flag fails fast with its own message.
    let http = crate::http::settings::resolve(&args.http, &file)?;
    let otel_settings =
        crate::telemetry::otel::settings::resolve(&args.otel, &file.opentelemetry, &|name| {
            std::env::var(name).ok()
        })?;
    let audit = args
        .audit_log
        .as_ref()
        .or(file.audit_log.as_ref())
        .map(|target| AuditLog::open(target).map(Arc::new))
        .transpose()?;
    let profiles = resolve_profiles(&args.database)?;
    let databases = open_databases_with_tools(profiles, &file, args.tools_exposed())?;
    // Only a server with curated tools waits for its database here, and only as long as a connection may take.
    crate::tools::curated::verify_at_start(&databases).await?;
    if http.is_none()
        && let Some(db) = databases.all().iter().find(|db| db.per_caller())
    {
        anyhow::bail!(
            "profile `{}` has db_identity = on_behalf_of, which logs in as each signed-in caller of `serve --http`; \
             over stdio there is no signed-in caller: serve over HTTP with `--auth-mode entra`, or use \
             `--db-identity service`",
            db.profile.name
        );
    }
    let chat = match http.is_some() && crate::chat::settings::configured(&args.llm, &file.chat) {
        true => Some(crate::chat::resolve_settings(&args.llm, &file.chat)?),
        false => None,
    };
    let otel = match &otel_settings {
        Some(settings) => {
            let otel = Arc::new(crate::telemetry::otel::Otel::start(settings)?);
            otel.observe_pools(databases.clone());
            Some(otel)
        }
        None => None,
    };
    let observed = Observed {
        audit,
        otel: otel.clone(),
    };
    let outcome = match http {
        Some(settings) => {
            crate::http::server::serve_http(databases, settings, observed, chat).await
        }
        None => serve_stdio_with(databases, observed).await,
    };
    // Spans of the last calls are still queued; they are delivered before the process ends, whatever the outcome.
    if let Some(otel) = otel {
        otel.shutdown().await;
    }
    outcome
}

/// How many threads `serve` runs on, decided before the runtime exists. Over stdio, one: a stdio server has one
/// client, and one thread serves it with a third less CPU per call than worker threads that hand each request
/// between them. Over HTTP (`--http`, `PGMCP_HTTP` or `http.listen`), `--http-threads` or `http.threads`, one by
/// default for the same reason. A config file that cannot be read, or a thread count out of range, counts as the
/// default here; `serve` reports it.
pub fn serve_threads(args: &ServeArgs) -> usize {
    let file = (args.database.config.as_ref()).map(|path| ConfigFile::load(path).ok());
    let file_http = file
        .as_ref()
        .and_then(|file| file.as_ref())
        .map(|file| &file.http);
    let serves_http = args.http.listen.is_some()
        || file_http.is_some_and(|http| http.listen.is_some())
        || matches!(file, Some(None));
    if !serves_http {
        return 1;
    }
    crate::http::settings::threads(args.http.threads, file_http.and_then(|http| http.threads))
        .unwrap_or(crate::http::settings::DEFAULT_HTTP_THREADS)
}

/// Serves MCP on stdin/stdout until the client closes stdin or a termination signal arrives.
pub async fn serve_stdio(databases: Arc<Databases>) -> anyhow::Result<()> {
    serve_stdio_with(databases, Observed::default()).await
}

async fn serve_stdio_with(databases: Arc<Databases>, observed: Observed) -> anyhow::Result<()> {
    crate::db::deadline::anchor_deadlines();
    for db in databases.all() {
        tracing::info!(
            profile = %db.profile.name,
            connection = %db.profile.conn.redacted(),
            access_mode = db.profile.access_mode.as_str(),
            "serving MCP on stdio"
        );
        // Opening connections must not delay the client's first request: tools/list needs no database.
        let db = db.clone();
        tokio::spawn(async move { db.warm_up().await });
    }
    let server = PgMcpServer::new(databases.clone())
        .with_audit(observed.audit)
        .with_otel(observed.otel);
    // The client closing stdin (or dying) cancels every call in flight at once, so their statements are cancelled
    // on the server before pgmcp exits, rather than left running for as long as they would take.
    let client_gone = CancellationToken::new();
    let (input, output) = stdio_streams();
    let input: StdinStream = Box::new(EndSignal {
        inner: input,
        ended: client_gone.clone(),
    });
    let running = server
        .serve_with_ct((input, output), client_gone)
        .await
        .context("the MCP client did not complete the handshake")?;
    tokio::select! {
        outcome = running.waiting() => { outcome.context("MCP session ended with an error")?; }
        _ = shutdown_signal() => { tracing::info!("termination signal received, shutting down"); }
    }
    for db in databases.all() {
        db.close();
    }
    Ok(())
}

type StdinStream = Box<dyn tokio::io::AsyncRead + Send + Unpin>;

/// stdin that cancels `ended` when it reaches its end or fails: the client is gone.
struct EndSignal {
    inner: StdinStream,
    ended: CancellationToken,
}

impl tokio::io::AsyncRead for EndSignal {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        match &polled {
            std::task::Poll::Ready(Ok(()))
                if buf.filled().len() == before && buf.remaining() > 0 =>
            {
                self.ended.cancel()
            }
            std::task::Poll::Ready(Err(_)) => self.ended.cancel(),
            _ => {}
        }
        polled
    }
}
type StdoutStream = Box<dyn tokio::io::AsyncWrite + Send + Unpin>;

/// The MCP session's stdin and stdout. tokio's own `stdin()`/`stdout()` hand every read and write to a blocking
/// thread and back; MCP clients spawn servers with pipes, and a pipe can be read and written on the runtime's own
/// event loop instead, which saves two thread hand-offs per call. Anything else (a terminal, a file) keeps tokio's.
fn stdio_streams() -> (StdinStream, StdoutStream) {
    #[cfg(unix)]
    {
        use std::os::fd::AsFd;
        use tokio::net::unix::pipe;

        // A duplicate of the descriptor, so that dropping the stream never closes fd 0 or 1 themselves.
        let duplicate =
            |fd: std::os::fd::BorrowedFd<'_>| fd.try_clone_to_owned().ok().map(std::fs::File::from);
        let input: StdinStream = match duplicate(std::io::stdin().as_fd())
            .and_then(|file| pipe::Receiver::from_file(file).ok())
        {
            Some(pipe) => Box::new(pipe),
            None => Box::new(tokio::io::stdin()),
        };
        let output: StdoutStream = match duplicate(std::io::stdout().as_fd())
            .and_then(|file| pipe::Sender::from_file(file).ok())
        {
            Some(pipe) => Box::new(pipe),
            None => Box::new(tokio::io::stdout()),
        };
        (input, output)
    }
    #[cfg(not(unix))]
    {
        (Box::new(tokio::io::stdin()), Box::new(tokio::io::stdout()))
    }
}

/// Resolves on SIGTERM (container stop) or SIGINT (Ctrl-C).
pub(crate) async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

pub async fn check(args: CheckArgs) -> anyhow::Result<()> {
    let profiles = resolve_profiles(&args.database)?;
    let mut failed = false;
    for profile in profiles {
        let report = crate::check::run(&profile).await;
        print!("{}", report.text);
        failed |= !report.ok;
        if args.pii && report.ok {
            let report = crate::check::pii::run(&profile).await;
            print!("{}", report.text);
            failed |= !report.ok;
        }
    }
    if failed {
        anyhow::bail!("the connection check failed");
    }
    Ok(())
}

/// `pgmcp chat`: the model settings are checked before the database is opened, so a missing key costs nothing.
pub async fn chat(args: ChatArgs) -> anyhow::Result<()> {
    let file = match &args.database.config {
        Some(path) => ConfigFile::load(path)?,
        None => ConfigFile::default(),
    };
    let settings = crate::chat::resolve_settings(&args.llm, &file.chat)?;
    let audit = args
        .audit_log
        .as_ref()
        .or(file.audit_log.as_ref())
        .map(|target| AuditLog::open(target).map(Arc::new))
        .transpose()?;
    let databases = open_databases(resolve_profiles(&args.database)?)?;
    if let Some(db) = databases.all().iter().find(|db| db.per_caller()) {
        anyhow::bail!(
            "profile `{}` has db_identity = on_behalf_of, which logs in as each signed-in caller of `serve --http`; \
             the terminal chat has no signed-in caller: use the web client's Chat tab, or `--db-identity service`",
            db.profile.name
        );
    }
    let options = crate::chat::terminal::Options {
        ask: args.ask,
        json: args.json,
    };
    let outcome = crate::chat::terminal::run(databases.clone(), settings, audit, options).await;
    for db in databases.all() {
        db.close();
    }
    outcome
}

pub async fn demo(args: DemoArgs) -> anyhow::Result<()> {
    if args.print_config {
        print!(
            "{}",
            crate::demo::client_config::client_config(&std::env::current_exe()?)
        );
        return Ok(());
    }
    // Checked before the cluster starts, so a bad address, config file or model setting costs nothing.
    let http = args.http.as_deref().map(demo_http_settings).transpose()?;
    let file = match &args.config {
        Some(path) => ConfigFile::load(path)?,
        None => ConfigFile::default(),
    };
    let chat = if args.chat || crate::chat::settings::configured(&args.llm, &file.chat) {
        Some(crate::chat::resolve_settings(&args.llm, &file.chat)?)
    } else {
        None
    };
    let audit = args
        .audit_log
        .as_ref()
        .or(file.audit_log.as_ref())
        .map(|target| AuditLog::open(target).map(Arc::new))
        .transpose()?;
    let demo = tokio::task::spawn_blocking(crate::demo::start_demo)
        .await
        .context("the demo start-up task failed")??;
    let url = demo.url.clone();
    let database_args = DatabaseArgs {
        database_url: Some(url),
        config: args.config.clone(),
        ..DatabaseArgs::default()
    };
    // The demo ignores the caller's PG* variables and PGMCP_CONFIG: it serves only its own sample database, with
    // the settings of a config file only when one is named on its command line.
    let profiles = config::resolve(&sources(&database_args, HashMap::new())?)?;
    let databases = open_databases_with_tools(profiles, &file, None)?;
    crate::tools::curated::verify_at_start(&databases).await?;
    let outcome = match (http, chat) {
        (Some(settings), chat) => demo_http(databases, settings, audit, chat).await,
        (None, Some(chat)) if args.chat => {
            let options = crate::chat::terminal::Options {
                ask: None,
                json: false,
            };
            crate::chat::terminal::run(databases, chat, audit, options).await
        }
        (None, _) => demo_stdio(databases, audit).await,
    };
    drop(demo);
    outcome
}

async fn demo_stdio(databases: Arc<Databases>, audit: Option<Arc<AuditLog>>) -> anyhow::Result<()> {
    eprintln!(
        "pgmcp demo: serving MCP on stdio against the sample database (Ctrl-D or close the client to stop)"
    );
    if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        // A person ran the demo in a terminal: stdio MCP is for clients, so say how to connect one.
        let binary = std::env::current_exe()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| "pgmcp".into());
        eprintln!(
            "pgmcp demo: this is an MCP server speaking JSON-RPC on stdin/stdout; connect a client instead of typing:\n  \
             `{binary} demo --http` serves it with a web client to open in a browser,\n  \
             `{binary} demo --print-config` prints Claude Desktop / VS Code settings, or\n  \
             `npx @modelcontextprotocol/inspector {binary} demo` opens the MCP Inspector"
        );
    }
    serve_stdio_with(databases, Observed { audit, otel: None }).await
}

/// The demo's HTTP settings: loopback only (it serves without authentication), the web client on.
fn demo_http_settings(listen: &str) -> anyhow::Result<crate::http::settings::HttpSettings> {
    let args = crate::cli::HttpArgs {
        listen: Some(listen.to_string()),
        ..Default::default()
    };
    let settings = crate::http::settings::resolve(&args, &ConfigFile::default())?
        .context("the demo's HTTP address")?;
    if !settings.listen.ip().is_loopback() {
        anyhow::bail!(
            "`pgmcp demo --http {listen}`: the demo serves without authentication, so it listens on loopback only — use e.g. 127.0.0.1:8808"
        );
    }
    Ok(settings)
}

async fn demo_http(
    databases: Arc<Databases>,
    settings: crate::http::settings::HttpSettings,
    audit: Option<Arc<AuditLog>>,
    chat: Option<crate::chat::ChatSettings>,
) -> anyhow::Result<()> {
    let wanted = settings.listen;
    crate::http::server::check_exposure(&settings)?;
    let listener = match tokio::net::TcpListener::bind(wanted).await {
        Ok(listener) => listener,
        // Only the default address falls back: an address the user typed is one they meant.
        Err(err)
            if err.kind() == std::io::ErrorKind::AddrInUse
                && wanted.to_string() == crate::cli::DEMO_HTTP_DEFAULT =>
        {
            eprintln!("pgmcp demo: {wanted} is in use; taking a free port instead");
            tokio::net::TcpListener::bind((wanted.ip(), 0))
                .await
                .context("could not listen on a free loopback port")?
        }
        Err(err) => {
            return Err(err).with_context(|| format!("could not listen on `--http {wanted}`"));
        }
    };
    let observed = Observed { audit, otel: None };
    crate::http::server::serve_http_on(listener, databases, settings, observed, chat, |bound| {
        eprintln!(
            "pgmcp demo: serving MCP over HTTP at http://{bound}/mcp against the sample database (Ctrl-C to stop)"
        );
        // stdout carries no protocol here, so the one line a person (or a script) needs goes there.
        println!("Open the pgmcp web client: http://{bound}/");
    })
    .await
}
