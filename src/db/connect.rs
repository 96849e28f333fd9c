//! Opening sessions for a profile: libpq's sslmode fallbacks on top of tokio-postgres, and the per-session
//! settings every pgmcp connection starts with.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio_postgres::config::SslMode as WireSslMode;
use tokio_postgres::{AsyncMessage, Client, Config};

use super::session::{Connected, Notices, SessionConnect};
use super::tls::{MakeRustlsConnect, client_config};
use crate::config::profile::DEFAULT_APPLICATION_NAME;
use crate::config::{ConfigError, Profile, SslMode};
use crate::identity::{DbCredentials, IdentityError};

/// Connects sessions with a profile's settings: TLS per sslmode, application_name (default "pgmcp"), TCP
/// keepalives on, connect_timeout, the password resolved (explicit, else pgpass), and statement_timeout and
/// default_transaction_read_only=on sent as startup options (`options=-c ...`) so every session starts with them
/// and `RESET ALL` returns to them. Built once per profile; cheap to share.
pub struct PgConnector {
    config: Config,
    tls: MakeRustlsConnect,
    /// The TLS negotiations to try in order; later ones run only when earlier ones fail (libpq's
    /// `allow` and `prefer` retries).
    attempts: Vec<WireSslMode>,
    description: String,
    /// Set when the password is an Entra token or a Key Vault secret: asked for on every connection attempt.
    credentials: Option<Arc<DbCredentials>>,
}

impl std::fmt::Debug for PgConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgConnector")
            .field("target", &self.description)
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

/// libpq's order of attempts for each sslmode. `prefer` lets tokio-postgres fall back when the server
/// declines TLS, and retries in plain text when a TLS session is refused later (e.g. by a `hostnossl`
/// pg_hba line); `allow` starts plain and retries with TLS.
pub fn ssl_attempts(mode: SslMode) -> Vec<WireSslMode> {
    match mode {
        SslMode::Disable => vec![WireSslMode::Disable],
        SslMode::Allow => vec![WireSslMode::Disable, WireSslMode::Require],
        SslMode::Prefer => vec![WireSslMode::Prefer, WireSslMode::Disable],
        SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => vec![WireSslMode::Require],
    }
}

impl PgConnector {
    /// Reads `HOME` (pgpass, `~/.postgresql/root.crt`) and `PGPASSFILE` from the process environment.
    pub fn new(profile: &Profile) -> Result<PgConnector, ConfigError> {
        PgConnector::with_env(profile, &|name| std::env::var(name).ok())
    }

    pub fn with_env(
        profile: &Profile,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<PgConnector, ConfigError> {
        let conn = &profile.conn;
        let mut config = Config::new();
        if conn.hosts.is_empty() {
            config.host(crate::config::conninfo::DEFAULT_HOST);
        }
        for host in &conn.hosts {
            config.host(host);
        }
        for port in &conn.ports {
            config.port(*port);
        }
        let user = conn
            .user
            .clone()
            .unwrap_or_else(|| crate::config::conninfo::os_user(env));
        config.dbname(conn.dbname.as_deref().unwrap_or(&user));
        config.user(&user);
        if let Some(password) = conn.resolve_password(env) {
            config.password(password.expose());
        }
        config.application_name(
            conn.application_name
                .as_deref()
                .unwrap_or(DEFAULT_APPLICATION_NAME),
        );
        config.connect_timeout(profile.connect_timeout);
        // A server or network that disappears without a word (a host powered off, a partition) is noticed within
        // about a minute instead of the kernel's two hours, and a write nobody acknowledges fails the connection
        // after half a minute: a broken connection is then closed and replaced instead of holding its slot.
        config.keepalives(true);
        config.keepalives_idle(Duration::from_secs(30));
        config.keepalives_interval(Duration::from_secs(10));
        config.keepalives_retries(3);
        config.tcp_user_timeout(Duration::from_secs(30));
        // Every transaction pgmcp does not open itself as READ WRITE (only writes do) is read-only: a
        // statement that runs outside a transaction block, as a Parse before the call's BEGIN does, or after a
        // BEGIN that failed, cannot write either.
        let timeout = format!(
            "-c statement_timeout={} -c default_transaction_read_only=on",
            profile.statement_timeout.as_millis()
        );
        // Ours goes last so that it wins over the same settings in the user's own options.
        let options = match conn.options.as_deref().map(str::trim) {
            Some(user_options) if !user_options.is_empty() => format!("{user_options} {timeout}"),
            _ => timeout,
        };
        config.options(&options);

        let mode = conn.effective_sslmode();
        let attempts = ssl_attempts(mode);
        config.ssl_mode(attempts[0]);
        let tls = MakeRustlsConnect::new(
            client_config(conn, env)
                .map_err(|e| e.within(&format!("profiles.{}.", profile.name)))?,
        );
        let credentials = DbCredentials::for_profile(profile, env)
            .map_err(|error| {
                ConfigError::invalid(
                    format!("profiles.{}.db_auth", profile.name),
                    format!("{:?}", profile.identity.db_auth.as_str()),
                    error.message,
                    "",
                )
            })?
            .map(Arc::new);
        if let Some(credentials) = &credentials {
            tracing::debug!(profile = %profile.name, source = %credentials.source(), "database credential source");
        }
        Ok(PgConnector {
            config,
            tls,
            attempts,
            description: conn.redacted(),
            credentials,
        })
    }

    /// The tokio-postgres configuration (first TLS attempt's sslmode); hand it to
    /// `deadpool_postgres::Manager::from_connect` together with this connector.
    pub fn pg_config(&self) -> &Config {
        &self.config
    }

    /// The TLS connector of this profile, for cancel requests: they open a new connection to the server and must
    /// meet the same TLS requirements as the session they cancel.
    pub fn tls(&self) -> MakeRustlsConnect {
        self.tls.clone()
    }

    /// Opens one session; its connection task runs on the current tokio runtime.
    pub async fn connect(&self) -> Result<Client, tokio_postgres::Error> {
        Ok(self.connect_with(&self.config).await?.client)
    }

    /// Whether a configured host accepts TCP connections: a readiness check that needs no login.
    pub async fn server_accepts_connections(&self) -> bool {
        let ports = self.config.get_ports();
        for (index, host) in self.config.get_hosts().iter().enumerate() {
            let port = ports.get(index).or(ports.first()).copied().unwrap_or(5432);
            let reachable = match host {
                tokio_postgres::config::Host::Tcp(name) => {
                    tokio::net::TcpStream::connect((name.as_str(), port))
                        .await
                        .is_ok()
                }
                #[cfg(unix)]
                tokio_postgres::config::Host::Unix(dir) => {
                    tokio::net::UnixStream::connect(dir.join(format!(".s.PGSQL.{port}")))
                        .await
                        .is_ok()
                }
            };
            if reachable {
                return true;
            }
        }
        false
    }

    /// The per-connection credential source (Entra or Key Vault), if the profile has one.
    pub fn credentials(&self) -> Option<&DbCredentials> {
        self.credentials.as_deref()
    }

    /// Logs in with the profile's credential source: a password obtained now for this connection, and once more
    /// with a newly obtained one when the server refuses it (a revoked token, a rotated Key Vault secret).
    async fn connect_with(&self, base: &Config) -> Result<Connected, tokio_postgres::Error> {
        let Some(credentials) = &self.credentials else {
            return self.connect_attempts(base).await;
        };
        let mut config = base.clone();
        let presented = match credentials.password().await {
            Ok(password) => password,
            Err(error) => return Err(credential_failure(error).await),
        };
        config.password(presented.expose());
        match self.connect_attempts(&config).await {
            Err(error) if is_authentication_failure(&error) => {
                tracing::info!(
                    target = %self.description,
                    source = %credentials.source(),
                    "the server refused the credential; obtaining a new one and retrying once"
                );
                credentials.refused(&presented).await;
                match credentials.password().await {
                    Ok(password) => config.password(password.expose()),
                    Err(error) => return Err(credential_failure(error).await),
                };
                self.connect_attempts(&config).await
            }
            other => other,
        }
    }

    /// Opens a session with `base` and the given password (an on-behalf-of token), bypassing the profile's own
    /// credential source.
    pub async fn connect_with_password(
        &self,
        base: &Config,
        password: &crate::config::Secret,
    ) -> Result<Connected, tokio_postgres::Error> {
        let mut config = base.clone();
        config.password(password.expose());
        self.connect_attempts(&config).await
    }

    async fn connect_attempts(&self, base: &Config) -> Result<Connected, tokio_postgres::Error> {
        let mut last_error = None;
        for (index, mode) in self.attempts.iter().enumerate() {
            let mut config = base.clone();
            config.ssl_mode(*mode);
            match config.connect(self.tls.clone()).await {
                Ok((client, connection)) => {
                    return Ok(drive(client, connection, self.description.clone()));
                }
                Err(error) => {
                    if index + 1 < self.attempts.len() {
                        tracing::debug!(
                            target = %self.description, ?mode, %error,
                            "connection attempt failed; retrying as sslmode prescribes"
                        );
                    }
                    last_error = Some(error);
                }
            }
        }
        match last_error {
            Some(error) => Err(error),
            // `attempts` is never empty; connecting once more keeps this path honest without a panic.
            None => base
                .connect(self.tls.clone())
                .await
                .map(|(client, connection)| drive(client, connection, self.description.clone())),
        }
    }
}

impl SessionConnect for PgConnector {
    fn connect_session<'a>(
        &'a self,
        config: &'a Config,
    ) -> BoxFuture<'a, Result<Connected, tokio_postgres::Error>> {
        Box::pin(self.connect_with(config))
    }
}

/// Runs a new connection on its own task. Notices go to the session's [`Notices`] in the order they arrive,
/// before the responses that follow them reach the client; everything else a connection receives unasked
/// (notifications) is dropped: pgmcp never listens.
pub(crate) fn drive<S, T>(
    client: Client,
    mut connection: tokio_postgres::Connection<S, T>,
    target: String,
) -> Connected
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let notices = Notices::default();
    let sink = notices.clone();
    let task = tokio::spawn(async move {
        let ended = futures_util::future::poll_fn(|cx| {
            loop {
                match std::task::ready!(connection.poll_message(cx)) {
                    Some(Ok(AsyncMessage::Notice(notice))) => sink.offer(&notice),
                    Some(Ok(_)) => {}
                    Some(Err(error)) => return std::task::Poll::Ready(Err(error)),
                    None => return std::task::Poll::Ready(Ok(())),
                }
            }
        })
        .await;
        if let Err(error) = ended {
            let error = describe_error(&error);
            tracing::warn!(%target, %error, "database connection ended with an error");
        }
    });
    Connected {
        client,
        task,
        notices,
    }
}

/// An error with what tokio-postgres keeps behind its one-line summary: the server's message ("db error" alone does
/// not say that an administrator terminated the session) or the I/O cause ("error connecting to server" alone does
/// not say that the connection was refused). Neither holds SQL text or credentials.
pub fn describe_error(error: &tokio_postgres::Error) -> String {
    if let Some(db) = error.as_db_error() {
        return format!("{} (SQLSTATE {})", db.message(), db.code().code());
    }
    let mut message = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

/// SQLSTATE 28P01 (invalid_password) or 28000 (invalid_authorization_specification): the credential was refused.
pub fn is_authentication_failure(error: &tokio_postgres::Error) -> bool {
    error.as_db_error().is_some_and(|db| {
        let code = db.code().code();
        code == "28P01" || code == "28000"
    })
}

/// The credential failure inside a connection error, if that is why the connection failed.
pub fn credential_failure_of(error: &tokio_postgres::Error) -> Option<&IdentityError> {
    std::error::Error::source(error)?
        .downcast_ref::<std::io::Error>()?
        .get_ref()?
        .downcast_ref::<IdentityError>()
}

/// deadpool's `Connect` can only fail with a `tokio_postgres::Error`, which has no public constructor; an I/O
/// error carrying the credential failure is the one kind that can be made, so it is made by a startup that
/// cannot send. [`credential_failure_of`] gets the original back.
pub async fn credential_failure(error: IdentityError) -> tokio_postgres::Error {
    let mut pending = Some(std::io::Error::other(error));
    loop {
        let mut config = Config::new();
        // Without a user the startup fails before any I/O, so the loop ends on its second turn at the latest.
        if pending.is_some() {
            config.user("pgmcp");
        }
        config.ssl_mode(WireSslMode::Disable);
        let stream = FailingStream(pending.take());
        if let Err(error) = config.connect_raw(stream, tokio_postgres::NoTls).await {
            return error;
        }
    }
}

/// A stream whose every read and write fails, with the given error first.
struct FailingStream(Option<std::io::Error>);

impl FailingStream {
    fn error(&mut self) -> std::io::Error {
        self.0
            .take()
            .unwrap_or_else(|| std::io::Error::from(std::io::ErrorKind::BrokenPipe))
    }
}

impl tokio::io::AsyncRead for FailingStream {
    fn poll_read(
        self: Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        _buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Err(self.get_mut().error()))
    }
}

impl tokio::io::AsyncWrite for FailingStream {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        _buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::task::Poll::Ready(Err(self.get_mut().error()))
    }

    fn poll_flush(
        self: Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Err(self.get_mut().error()))
    }

    fn poll_shutdown(
        self: Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}
