use super::*;

use std::os::unix::fs::PermissionsExt;

const REAPER_CHILD_ENV: &str = "PGMCP_TEST_REAPER_CHILD_OUT";

fn process_alive(pid: &str) -> bool {
    Command::new("kill")
        .args(["-0", pid])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

fn postmaster_pid(cluster: &TempCluster) -> String {
    let pid_file =
        std::fs::read_to_string(cluster.data_dir().join("postmaster.pid")).expect("postmaster.pid");
    pid_file
        .lines()
        .next()
        .expect("pid line")
        .trim()
        .to_string()
}

fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    done()
}

#[test]
fn starts_and_runs_sql_with_psql() {
    let cluster = TempCluster::start(&ClusterOptions::default()).expect("start");
    assert_eq!(cluster.host(), "127.0.0.1");
    assert_eq!(cluster.superuser(), "postgres");
    assert_ne!(cluster.port(), 0);
    assert_eq!(cluster.psql("postgres", "select 1").expect("psql"), "1\n");
    assert_eq!(
        cluster.url("postgres"),
        format!(
            "postgresql://postgres@127.0.0.1:{}/postgres",
            cluster.port()
        )
    );
    let err = cluster
        .psql("postgres", "select * from no_such_table")
        .expect_err("must fail");
    assert!(format!("{err:#}").contains("no_such_table"), "{err:#}");
}

#[tokio::test]
async fn accepts_tokio_postgres_over_tcp() {
    let cluster = TempCluster::start(&ClusterOptions::default()).expect("start");
    let (client, connection) =
        tokio_postgres::connect(&cluster.url("postgres"), tokio_postgres::NoTls)
            .await
            .expect("connect");
    tokio::spawn(connection);
    let row = client
        .query_one("select current_user::text, inet_server_addr()::text", &[])
        .await
        .expect("query");
    assert_eq!(row.get::<_, String>(0), "postgres");
    assert_eq!(row.get::<_, String>(1), "127.0.0.1/32");
}

#[test]
fn applies_settings_hba_and_files() {
    let opts = ClusterOptions {
        settings: vec![
            ("work_mem".into(), "7MB".into()),
            ("application_name".into(), "it's quoted".into()),
        ],
        hba: None,
        files: vec![("extra/deeper/note.txt".into(), b"hello".to_vec())],
        superuser_password: None,
    };
    let cluster = TempCluster::start(&opts).expect("start");
    let shown = cluster
        .psql(
            "postgres",
            "select current_setting('work_mem'), current_setting('fsync'), current_setting('max_connections'), \
             current_setting('listen_addresses')",
        )
        .expect("psql");
    assert_eq!(shown, "7MB|off|200|127.0.0.1\n");
    let note = cluster.data_dir().join("extra/deeper/note.txt");
    assert_eq!(std::fs::read(&note).expect("note"), b"hello");
    let meta = std::fs::metadata(&note).expect("metadata");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(
        meta.uid(),
        std::fs::metadata(cluster.data_dir())
            .expect("data dir")
            .uid()
    );

    let bad_name = ClusterOptions {
        settings: vec![("x\nssl".into(), "on".into())],
        ..Default::default()
    };
    assert!(TempCluster::start(&bad_name).is_err());
    let escaping = ClusterOptions {
        files: vec![("../evil".into(), Vec::new())],
        ..Default::default()
    };
    assert!(TempCluster::start(&escaping).is_err());
}

#[test]
fn replaces_pg_hba_conf() {
    let opts = ClusterOptions {
        hba: Some("local all all trust\nhost all all 127.0.0.1/32 reject\n".into()),
        ..Default::default()
    };
    let cluster = TempCluster::start(&opts).expect("start");
    let err = cluster
        .psql("postgres", "select 1")
        .expect_err("TCP must be rejected");
    assert!(format!("{err:#}").contains("pg_hba.conf"), "{err:#}");
}

#[test]
fn drop_stops_the_server_and_removes_the_directory() {
    let cluster = TempCluster::start(&ClusterOptions::default()).expect("start");
    let pid = postmaster_pid(&cluster);
    let root = cluster.root.clone();
    assert!(process_alive(&pid));
    cluster.stop();
    assert!(!root.exists(), "{} still exists", root.display());
    assert!(
        wait_until(Duration::from_secs(5), || !process_alive(&pid)),
        "postmaster {pid} still running"
    );
}

#[tokio::test]
async fn password_cluster_rejects_a_wrong_password() {
    let password = "s3cret pass/@:word";
    let opts = ClusterOptions {
        superuser_password: Some(password.into()),
        ..Default::default()
    };
    let cluster = TempCluster::start(&opts).expect("start");
    assert_eq!(
        cluster
            .psql("postgres", "select 1")
            .expect("psql with password"),
        "1\n"
    );

    let good = cluster.url("postgres");
    assert!(
        good.contains("postgres:s3cret%20pass%2F%40%3Aword@"),
        "{good}"
    );
    let (client, connection) = tokio_postgres::connect(&good, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    client.simple_query("select 1").await.expect("query");

    let wrong = good.replace("s3cret", "wrong");
    let err = tokio_postgres::connect(&wrong, tokio_postgres::NoTls)
        .await
        .err()
        .expect("wrong password");
    let code = err.as_db_error().map(|db| db.code().clone());
    assert_eq!(
        code,
        Some(tokio_postgres::error::SqlState::INVALID_PASSWORD),
        "{err:?}"
    );
    let missing = format!(
        "postgresql://postgres@127.0.0.1:{}/postgres",
        cluster.port()
    );
    assert!(
        tokio_postgres::connect(&missing, tokio_postgres::NoTls)
            .await
            .is_err()
    );
}

/// Not a test on its own: the body of the child process that `reaper_cleans_up_after_kill9` kills.
#[test]
fn reaper_child_helper() {
    let Some(out) = std::env::var_os(REAPER_CHILD_ENV) else {
        return;
    };
    let cluster = TempCluster::start(&ClusterOptions::default()).expect("start");
    let report = format!("{}\n{}\n", postmaster_pid(&cluster), cluster.root.display());
    let staging = PathBuf::from(format!("{}.tmp", PathBuf::from(&out).display()));
    std::fs::write(&staging, report).expect("write report");
    std::fs::rename(&staging, &out).expect("publish report");
    // Kept alive until the parent kills it; the cluster must not be dropped normally.
    std::thread::sleep(Duration::from_secs(120));
    std::mem::forget(cluster);
}

#[test]
fn reaper_cleans_up_after_kill9() {
    if std::env::var_os(REAPER_CHILD_ENV).is_some() {
        return;
    }
    let out = std::env::temp_dir().join(format!("pgmcp-reaper-test-{}", std::process::id()));
    let _ = std::fs::remove_file(&out);
    let mut child = Command::new(std::env::current_exe().expect("current exe"))
        .args([
            "--exact",
            "demo::cluster::tests::reaper_child_helper",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(REAPER_CHILD_ENV, &out)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child test process");
    let published = wait_until(Duration::from_secs(60), || out.exists());
    if !published {
        let _ = child.kill();
        let _ = child.wait();
        panic!("child never reported its cluster");
    }
    let report = std::fs::read_to_string(&out).expect("report");
    let _ = std::fs::remove_file(&out);
    let mut lines = report.lines();
    let pid = lines.next().expect("pid").to_string();
    let root = PathBuf::from(lines.next().expect("root"));
    assert!(process_alive(&pid) && root.exists());

    child.kill().expect("kill -9 child");
    // Reaping the zombie matters: `kill -0` still succeeds for a zombie, so the reaper would wait forever.
    child.wait().expect("wait child");
    assert!(
        wait_until(Duration::from_secs(20), || !process_alive(&pid)
            && !root.exists()),
        "postmaster {pid} alive: {}, {} exists: {}",
        process_alive(&pid),
        root.display(),
        root.exists()
    );
}
