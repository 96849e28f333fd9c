//! The fixed dataset every scenario runs on: pgbench's accounts at a given scale, a wide table with mixed types,
//! and a schema with many small tables for the catalog tools.

use std::process::Command;

use anyhow::{Context, bail};
use pgmcp::demo::cluster::{ClusterOptions, TempCluster};

pub const DATABASE: &str = "bench";

pub struct Dataset {
    pub cluster: TempCluster,
    pub scale: u32,
    pub mixed_rows: u32,
    pub catalog_tables: u32,
    pub server_version: String,
}

impl Dataset {
    pub fn url(&self) -> String {
        self.cluster.url(DATABASE)
    }

    pub fn accounts(&self) -> u64 {
        u64::from(self.scale) * 100_000
    }
}

pub fn load(scale: u32, mixed_rows: u32, catalog_tables: u32) -> anyhow::Result<Dataset> {
    let options = ClusterOptions {
        // Enough shared memory that the accounts table is served from cache, as on a warmed-up server.
        settings: vec![("shared_buffers".into(), "256MB".into())],
        ..ClusterOptions::default()
    };
    let cluster = TempCluster::start(&options).context("starting a throwaway PostgreSQL")?;
    cluster.psql("postgres", &format!("CREATE DATABASE {DATABASE}"))?;
    pgbench_init(&cluster, scale)?;
    cluster.psql(DATABASE, &mixed_table_sql(mixed_rows))?;
    cluster.psql(DATABASE, &catalog_schema_sql(catalog_tables))?;
    cluster.psql(DATABASE, "VACUUM ANALYZE")?;
    // Read the tables once so the first measured repetition does not pay for the disk.
    cluster.psql(
        DATABASE,
        "SELECT count(*) FROM pgbench_accounts; SELECT count(*) FROM mixed;",
    )?;
    let server_version = cluster
        .psql(DATABASE, "SELECT version()")?
        .trim()
        .to_string();
    Ok(Dataset {
        cluster,
        scale,
        mixed_rows,
        catalog_tables,
        server_version,
    })
}

fn pgbench_init(cluster: &TempCluster, scale: u32) -> anyhow::Result<()> {
    let pgbench = find_pgbench()?;
    let mut command = Command::new(&pgbench);
    for (key, _) in std::env::vars() {
        if key.starts_with("PG") {
            command.env_remove(key);
        }
    }
    let output = command
        .args([
            "-i",
            "-q",
            "-s",
            &scale.to_string(),
            "-h",
            cluster.host(),
            "-U",
        ])
        .arg(cluster.superuser())
        .arg("-p")
        .arg(cluster.port().to_string())
        .arg(DATABASE)
        .output()
        .with_context(|| format!("running {}", pgbench.display()))?;
    if !output.status.success() {
        bail!(
            "pgbench -i failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// pgbench beside the server binaries the cluster uses, else in a versioned install directory, else on PATH.
fn find_pgbench() -> anyhow::Result<std::path::PathBuf> {
    let beside = TempCluster::find_bin_dir()?.join("pgbench");
    if beside.is_file() {
        return Ok(beside);
    }
    let mut installed: Vec<std::path::PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path().join("bin/pgbench"))
        .filter(|path| path.is_file())
        .collect();
    installed.sort();
    Ok(installed.pop().unwrap_or_else(|| "pgbench".into()))
}

/// A wide table with one column of each common type, so rendering cost is not only integers and text.
fn mixed_table_sql(rows: u32) -> String {
    format!(
        "CREATE TABLE mixed (
            id int PRIMARY KEY, name text, price numeric(12,2), qty int8, ratio float8, active bool,
            created timestamptz, day date, tags text[], attrs jsonb, uid uuid, blob bytea, note varchar(200));
         INSERT INTO mixed
         SELECT g, 'item ' || g, (g * 1.37)::numeric(12,2), g::int8 * 1000, g / 7.0, g % 2 = 0,
                timestamptz '2024-01-01 00:00:00+00' + g * interval '1 minute', date '2024-01-01' + g % 365,
                ARRAY['tag' || g % 10, 'b'], jsonb_build_object('k', g, 'v', 'x' || g, 'ok', g % 3 = 0),
                md5(g::text)::uuid, decode(substr(md5(g::text), 1, 16), 'hex'), repeat('n', g % 40)
         FROM generate_series(1, {rows}) g;"
    )
}

/// Many small tables in their own schema, each with a key, a few columns, an index and a comment.
fn catalog_schema_sql(tables: u32) -> String {
    format!(
        "CREATE SCHEMA many;
         DO $$
         BEGIN
           FOR i IN 1..{tables} LOOP
             EXECUTE format('CREATE TABLE many.t%s (id bigint PRIMARY KEY, name text NOT NULL, amount numeric(10,2),
                             created timestamptz DEFAULT now(), ref_id int)', lpad(i::text, 4, '0'));
             EXECUTE format('CREATE INDEX ON many.t%s (ref_id)', lpad(i::text, 4, '0'));
             EXECUTE format('COMMENT ON TABLE many.t%s IS %L', lpad(i::text, 4, '0'), 'table number ' || i);
           END LOOP;
         END $$;"
    )
}
