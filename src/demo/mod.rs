//! `pgmcp demo`: a throwaway PostgreSQL cluster with a sample database.

pub mod client_config;
pub mod cluster;
pub mod dataset;
pub mod programs;

pub use cluster::{ClusterOptions, TempCluster};
pub use dataset::{DEMO_ROLE, SLOW_QUERY, demo_url, load_sample};

/// The database `pgmcp demo` creates and serves.
pub const DEMO_DATABASE: &str = "restaurants";

/// A running demo: the cluster (stopped and removed when dropped) and the least-privilege URL to serve.
#[derive(Debug)]
pub struct Demo {
    pub cluster: TempCluster,
    pub url: String,
}

/// Starts a throwaway cluster and loads the sample into database [`DEMO_DATABASE`]. Progress goes to
/// stderr only, because stdout carries the MCP protocol.
pub fn start_demo() -> anyhow::Result<Demo> {
    let started = std::time::Instant::now();
    eprintln!("pgmcp demo: starting a temporary PostgreSQL cluster...");
    let cluster = TempCluster::start(&ClusterOptions::default())?;
    eprintln!(
        "pgmcp demo: cluster ready on {}:{} (data in {}, removed on exit)",
        cluster.host(),
        cluster.port(),
        cluster.data_dir().display()
    );
    eprintln!(
        "pgmcp demo: loading the sample dataset (restaurants, customers, menu_items, reviews, orders)..."
    );
    load_sample(&cluster, DEMO_DATABASE)?;
    let url = demo_url(&cluster, DEMO_DATABASE);
    eprintln!(
        "pgmcp demo: ready in {:.1}s; connected as the read-only role {DEMO_ROLE}: {url}",
        started.elapsed().as_secs_f64()
    );
    Ok(Demo { cluster, url })
}
