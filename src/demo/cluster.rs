//! A throwaway PostgreSQL cluster in a temp directory: used by every test and by `pgmcp demo`.
//!
//! Everything here is synchronous (`std::process`) so it works both inside and outside a tokio runtime.
//! Test binaries keep clusters in statics, whose `Drop` never runs, so each cluster also gets a detached
//! reaper process that stops the server and removes the directory once the creating process is gone.

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Component, Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, anyhow, bail};

use crate::demo::programs::{self, ID, PSQL, RUNUSER, SH};

/// PostgreSQL refuses to run as root, so root starts the server as this OS user.
const SERVER_OS_USER: &str = "postgres";
const SUPERUSER: &str = "postgres";
const HOST: &str = "127.0.0.1";
const START_ATTEMPTS: usize = 5;
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Settings that make a disposable cluster fast; durability is irrelevant for data we throw away.
const FAST_SETTINGS: &[(&str, &str)] = &[
    ("fsync", "off"),
    ("synchronous_commit", "off"),
    ("full_page_writes", "off"),
    ("max_connections", "200"),
    ("shared_buffers", "32MB"),
];

/// PostgreSQL's shutdown modes (`pg_ctl stop -m`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownMode {
    /// Waits for clients to disconnect.
    Smart,
    /// Terminates sessions (their clients get SQLSTATE 57P01), then a clean shutdown.
    Fast,
    /// Quits without a clean shutdown, as after a crash: crash recovery runs at the next start.
    Immediate,
}

impl ShutdownMode {
    fn as_str(self) -> &'static str {
        match self {
            ShutdownMode::Smart => "smart",
            ShutdownMode::Fast => "fast",
            ShutdownMode::Immediate => "immediate",
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct ClusterOptions {
    /// Extra postgresql.conf settings; they override the fast defaults.
    pub settings: Vec<(String, String)>,
    /// When `Some`, replaces pg_hba.conf entirely.
    pub hba: Option<String>,
    /// Files written into the data directory before start (mode 0600, owned by the server's OS user).
    pub files: Vec<(String, Vec<u8>)>,
    /// When `Some`, the superuser gets this password and auth is scram-sha-256; otherwise trust on loopback.
    pub superuser_password: Option<String>,
}

/// The OS user that owns and runs the server when pgmcp runs as root, and the `runuser` that switches to it.
struct ServerOwner {
    uid: u32,
    gid: u32,
    runuser: PathBuf,
}

pub struct TempCluster {
    bin_dir: PathBuf,
    root: PathBuf,
    data_dir: PathBuf,
    port: u16,
    password: Option<String>,
    /// The server's OS user when we run as root and must switch users.
    server_owner: Option<ServerOwner>,
    reaper: Option<Child>,
}

impl std::fmt::Debug for TempCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TempCluster")
            .field("port", &self.port)
            .field("data_dir", &self.data_dir)
            .field("has_password", &self.password.is_some())
            .finish()
    }
}

impl TempCluster {
    /// The directory holding initdb, pg_ctl and postgres (see [`programs::server_bin_dir`]).
    pub fn find_bin_dir() -> anyhow::Result<PathBuf> {
        programs::server_bin_dir()
    }

    /// Creates, configures and starts a fresh cluster listening only on 127.0.0.1 at a free port.
    pub fn start(opts: &ClusterOptions) -> anyhow::Result<TempCluster> {
        let bin_dir = Self::find_bin_dir()?;
        let root = create_private_temp_dir()?;
        let mut cluster = TempCluster {
            bin_dir,
            data_dir: root.join("data"),
            root,
            port: 0,
            password: opts.superuser_password.clone(),
            server_owner: None,
            reaper: None,
        };
        // From here on, an early return drops `cluster`, which cleans up whatever was created.
        let dir_uid = std::fs::metadata(&cluster.root)
            .with_context(|| format!("reading {}", cluster.root.display()))?
            .uid();
        if dir_uid == 0 {
            // Found before anything runs, so a missing `runuser` is named as such and not as the tool it would run.
            let runuser = programs::locate(RUNUSER).context(
                "running as root, pgmcp starts PostgreSQL as the `postgres` OS user with runuser",
            )?;
            let (uid, gid) = lookup_os_user(SERVER_OS_USER)?;
            std::os::unix::fs::chown(&cluster.root, Some(uid), Some(gid)).with_context(|| {
                format!(
                    "giving {} to the `{SERVER_OS_USER}` OS user",
                    cluster.root.display()
                )
            })?;
            cluster.server_owner = Some(ServerOwner { uid, gid, runuser });
        }
        cluster.reaper = Some(cluster.spawn_reaper()?);
        cluster.init_data_dir()?;
        cluster.configure(opts)?;
        cluster.start_server()?;
        Ok(cluster)
    }

    pub fn host(&self) -> &str {
        HOST
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn superuser(&self) -> &str {
        SUPERUSER
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// A libpq-style URL for the superuser; includes the password when the cluster has one.
    pub fn url(&self, dbname: &str) -> String {
        let credentials = match &self.password {
            Some(password) => format!("{SUPERUSER}:{}", percent_encode(password)),
            None => SUPERUSER.to_string(),
        };
        format!(
            "postgresql://{credentials}@{HOST}:{}/{}",
            self.port,
            percent_encode(dbname)
        )
    }

    /// Runs SQL (fed on stdin, so any length works) with the cluster's psql over TCP and returns stdout.
    pub fn psql(&self, dbname: &str, sql: &str) -> anyhow::Result<String> {
        let psql = self.bin_dir.join(PSQL.name);
        let psql = if programs::is_executable(&psql) {
            psql
        } else {
            programs::locate(PSQL)?
        };
        let mut command = Command::new(&psql);
        clear_libpq_env(&mut command);
        command
            .args([
                "-X",
                "-q",
                "-At",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                HOST,
                "-U",
                SUPERUSER,
                "-f",
                "-",
            ])
            .arg("-p")
            .arg(self.port.to_string())
            // The environment is never parsed as a connection string, unlike a `-d` argument.
            .env("PGDATABASE", dbname)
            .env("PGCONNECT_TIMEOUT", "10")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(password) = &self.password {
            command.env("PGPASSWORD", password);
        }
        let mut child = command
            .spawn()
            .with_context(|| format!("running {}", psql.display()))?;
        let mut stdin = child.stdin.take().context("psql stdin")?;
        let input = sql.to_owned();
        // A separate writer avoids a pipe deadlock when psql's output fills up before it read all input.
        let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
        let output = child.wait_with_output().context("waiting for psql")?;
        let write_result = writer
            .join()
            .map_err(|_| anyhow!("psql stdin writer panicked"))?;
        if !output.status.success() {
            bail!(
                "psql on database {dbname:?} failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        write_result.context("writing SQL to psql")?;
        String::from_utf8(output.stdout).context("psql output is not UTF-8")
    }

    /// Stops the server and removes the directory (the same as dropping it).
    pub fn stop(self) {
        drop(self);
    }

    /// Stops the server the way `pg_ctl stop -m MODE` does and waits until it is down; the data directory stays,
    /// so [`TempCluster::start_again`] brings the same cluster back. For tests of what clients see when
    /// PostgreSQL goes away.
    pub fn stop_with(&self, mode: ShutdownMode) -> anyhow::Result<()> {
        let mut pg_ctl = self.server_tool("pg_ctl");
        pg_ctl
            .arg("-D")
            .arg(&self.data_dir)
            .args(["-m", mode.as_str(), "-w", "-t", "30", "stop"]);
        run_checked(&mut pg_ctl, "pg_ctl stop").map(drop)
    }

    /// Starts a server stopped with [`TempCluster::stop_with`] again, on the same port.
    pub fn start_again(&self) -> anyhow::Result<()> {
        let mut pg_ctl = self.server_tool("pg_ctl");
        pg_ctl
            .arg("-D")
            .arg(&self.data_dir)
            .arg("-l")
            .arg(self.root.join("server.log"))
            .args(["-w", "-t", &READY_TIMEOUT.as_secs().to_string()])
            .arg("-o")
            .arg(format!("-p {}", self.port))
            .arg("start")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let status = pg_ctl
            .status()
            .with_context(|| cannot_start("pg_ctl start", &pg_ctl))?;
        if status.success() && wait_for_tcp(self.port, Instant::now() + READY_TIMEOUT) {
            return Ok(());
        }
        bail!(
            "PostgreSQL did not start again on port {} ({status}); server log tail:\n{}",
            self.port,
            log_tail(&self.root.join("server.log"))
        )
    }

    /// A command for a server tool, run as the server's OS user when we are root.
    fn server_tool(&self, tool: &str) -> Command {
        let program = self.bin_dir.join(tool);
        let mut command = if let Some(owner) = &self.server_owner {
            let mut command = Command::new(&owner.runuser);
            command.args(["-u", SERVER_OS_USER, "--"]).arg(program);
            command
        } else {
            Command::new(program)
        };
        clear_libpq_env(&mut command);
        // The caller's working directory may be unreadable for the server's OS user (e.g. /root).
        command.current_dir(&self.root).stdin(Stdio::null());
        command
    }

    fn spawn_reaper(&self) -> anyhow::Result<Child> {
        const SCRIPT: &str = r#"
            while kill -0 "$1" 2>/dev/null; do sleep 0.5; done
            if [ -f "$3/postmaster.pid" ]; then
                if [ -n "$5" ]; then "$5" -u "$6" -- "$2" stop -D "$3" -m immediate -w -t 10
                else "$2" stop -D "$3" -m immediate -w -t 10; fi
            fi
            rm -rf "$4"
        "#;
        let runuser = match &self.server_owner {
            Some(owner) => owner.runuser.as_os_str(),
            None => "".as_ref(),
        };
        Command::new(programs::locate(SH)?)
            .arg("-c")
            .arg(SCRIPT)
            .arg("pgmcp-cluster-reaper")
            .arg(std::process::id().to_string())
            .arg(self.bin_dir.join("pg_ctl"))
            .arg(&self.data_dir)
            .arg(&self.root)
            .arg(runuser)
            .arg(SERVER_OS_USER)
            .current_dir("/")
            .stdin(Stdio::null())
            // Inherited pipes would keep an MCP client or the test harness waiting for EOF.
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Own process group: a Ctrl-C aimed at the parent must not kill the cleanup.
            .process_group(0)
            .spawn()
            .context("spawning the cluster reaper (sh)")
    }

    fn init_data_dir(&self) -> anyhow::Result<()> {
        let mut initdb = self.server_tool("initdb");
        initdb.arg("-D").arg(&self.data_dir).args([
            "-U",
            SUPERUSER,
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ]);
        let pwfile = self.root.join("superuser.pw");
        if let Some(password) = &self.password {
            self.write_private_file(&pwfile, password.as_bytes())?;
            initdb
                .arg("--auth=scram-sha-256")
                .arg(format!("--pwfile={}", pwfile.display()));
        } else {
            initdb.arg("--auth=trust");
        }
        let result = run_checked(&mut initdb, "initdb");
        if self.password.is_some() {
            let _ = std::fs::remove_file(&pwfile);
        }
        result.map(drop)
    }

    fn configure(&self, opts: &ClusterOptions) -> anyhow::Result<()> {
        let socket_dir = self.root.join("sock");
        self.create_owned_dir(&socket_dir)?;
        let mut conf = String::from("\n# pgmcp TempCluster\n");
        conf.push_str(&conf_line("listen_addresses", HOST));
        conf.push_str(&conf_line(
            "unix_socket_directories",
            &socket_dir.to_string_lossy(),
        ));
        for (name, value) in FAST_SETTINGS {
            conf.push_str(&conf_line(name, value));
        }
        for (name, value) in &opts.settings {
            let valid = !name.is_empty()
                && name
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '.');
            if !valid {
                bail!("invalid PostgreSQL setting name {name:?}");
            }
            if value.contains(['\n', '\r']) {
                bail!("the value of setting {name} contains a line break");
            }
            conf.push_str(&conf_line(name, value));
        }
        let conf_path = self.data_dir.join("postgresql.conf");
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&conf_path)
            .with_context(|| format!("opening {}", conf_path.display()))?;
        file.write_all(conf.as_bytes())
            .with_context(|| format!("writing {}", conf_path.display()))?;
        if let Some(hba) = &opts.hba {
            self.write_private_file(&self.data_dir.join("pg_hba.conf"), hba.as_bytes())?;
        }
        for (name, contents) in &opts.files {
            let relative = Path::new(name);
            if !relative
                .components()
                .all(|part| matches!(part, Component::Normal(_)))
            {
                bail!("cluster file name {name:?} must be a plain relative path");
            }
            self.write_private_file(&self.data_dir.join(relative), contents)?;
        }
        Ok(())
    }

    fn start_server(&mut self) -> anyhow::Result<()> {
        let log_path = self.root.join("server.log");
        for attempt in 1..=START_ATTEMPTS {
            self.port = free_port()?;
            let deadline = Instant::now() + READY_TIMEOUT;
            let mut pg_ctl = self.server_tool("pg_ctl");
            pg_ctl
                .arg("-D")
                .arg(&self.data_dir)
                .arg("-l")
                .arg(&log_path)
                .args(["-w", "-t", &READY_TIMEOUT.as_secs().to_string()])
                .arg("-o")
                .arg(format!("-p {}", self.port))
                .arg("start")
                // pg_ctl's daemonized postmaster would otherwise hold our pipes open forever.
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            let status = pg_ctl
                .status()
                .with_context(|| cannot_start("pg_ctl start", &pg_ctl))?;
            if status.success() && wait_for_tcp(self.port, deadline) {
                return Ok(());
            }
            let log = log_tail(&log_path);
            let port_clash = [
                "could not bind",
                "Address already in use",
                "could not create any TCP/IP sockets",
            ]
            .iter()
            .any(|needle| log.contains(needle));
            self.stop_server();
            if !port_clash || attempt == START_ATTEMPTS {
                bail!(
                    "PostgreSQL did not start on port {} ({status}); server log tail:\n{log}",
                    self.port
                );
            }
        }
        bail!("PostgreSQL did not start after {START_ATTEMPTS} attempts")
    }

    fn stop_server(&self) {
        if !self.data_dir.join("postmaster.pid").exists() {
            return;
        }
        let mut pg_ctl = self.server_tool("pg_ctl");
        pg_ctl
            .arg("-D")
            .arg(&self.data_dir)
            .args(["-m", "immediate", "-w", "-t", "10", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let _ = pg_ctl.status();
    }

    fn write_private_file(&self, path: &Path, contents: &[u8]) -> anyhow::Result<()> {
        if let Some(parent) = path.parent()
            && !parent.exists()
        {
            self.create_owned_dir(parent)?;
        }
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)
            .with_context(|| format!("creating {}", path.display()))?;
        file.write_all(contents)
            .with_context(|| format!("writing {}", path.display()))?;
        self.give_to_server_user(path)
    }

    /// Creates `path` and any missing parents, each owned by the server's OS user.
    fn create_owned_dir(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(parent) = path.parent()
            && !parent.exists()
        {
            self.create_owned_dir(parent)?;
        }
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(path)
            .with_context(|| format!("creating {}", path.display()))?;
        self.give_to_server_user(path)
    }

    fn give_to_server_user(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(owner) = &self.server_owner {
            std::os::unix::fs::chown(path, Some(owner.uid), Some(owner.gid))
                .with_context(|| format!("changing the owner of {}", path.display()))?;
        }
        Ok(())
    }
}

impl Drop for TempCluster {
    fn drop(&mut self) {
        self.stop_server();
        let _ = std::fs::remove_dir_all(&self.root);
        if let Some(mut reaper) = self.reaper.take() {
            let _ = reaper.kill();
            let _ = reaper.wait();
        }
    }
}

fn create_private_temp_dir() -> anyhow::Result<PathBuf> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let base = std::env::temp_dir();
    for _ in 0..100 {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let name = format!(
            "pgmcp-{}-{}-{nanos:x}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let path = base.join(name);
        match std::fs::DirBuilder::new().mode(0o700).create(&path) {
            Ok(()) => return Ok(path),
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(err) => return Err(err).with_context(|| format!("creating {}", path.display())),
        }
    }
    bail!(
        "could not create a unique directory under {}",
        base.display()
    )
}

fn lookup_os_user(user: &str) -> anyhow::Result<(u32, u32)> {
    let id = |flag: &str| -> anyhow::Result<u32> {
        let output = run_checked(Command::new(programs::locate(ID)?).args([flag, user]), "id")
            .with_context(|| {
                format!("running as root needs an OS user `{user}` to own the PostgreSQL server")
            })?;
        let text = String::from_utf8_lossy(&output.stdout);
        text.trim()
            .parse()
            .with_context(|| format!("unexpected `id {flag} {user}` output {text:?}"))
    };
    Ok((id("-u")?, id("-g")?))
}

/// libpq reads PG* variables (PGHOST, PGSSLMODE, PGOPTIONS, ...) that would redirect or alter our connections.
fn clear_libpq_env(command: &mut Command) {
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("PG") {
            command.env_remove(&key);
        }
    }
}

fn run_checked(command: &mut Command, what: &str) -> anyhow::Result<Output> {
    let output = command
        .output()
        .with_context(|| cannot_start(what, command))?;
    if !output.status.success() {
        bail!(
            "{what} failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim(),
            String::from_utf8_lossy(&output.stdout).trim()
        );
    }
    Ok(output)
}

/// The program that failed to start may be runuser rather than the tool it was to run: name the one that failed.
fn cannot_start(what: &str, command: &Command) -> String {
    format!(
        "running {what}: could not start {}",
        Path::new(command.get_program()).display()
    )
}

fn conf_line(name: &str, value: &str) -> String {
    format!(
        "{name} = '{}'\n",
        value.replace('\\', "\\\\").replace('\'', "''")
    )
}

fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind((HOST, 0)).context("finding a free TCP port on 127.0.0.1")?;
    Ok(listener
        .local_addr()
        .context("reading the bound port")?
        .port())
}

fn wait_for_tcp(port: u16, deadline: Instant) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

fn percent_encode(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

#[cfg(test)]
#[path = "cluster_tests.rs"]
mod tests;
