//! The raw floor: the same SQL through plain tokio-postgres with prepared statements and a pool, the least any
//! server in front of PostgreSQL could cost.

use pgmcp::db::exec::{encode_flight, prepare_own_statements};
use pgmcp::db::params::TextParam;
use pgmcp::db::session::{FlightPlan, LEFTOVERS_SQL};
use std::str::FromStr;

use std::time::{Duration, Instant};

use anyhow::Context;
use deadpool_postgres::{
    ClientWrapper, Hook, HookError, Manager, ManagerConfig, Pool, RecyclingMethod,
};
use futures_util::{StreamExt, pin_mut};
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{NoTls, PipelineResponses, Statement};

use crate::measure::{XorShift, gather};

pub const POINT_SQL: &str = "SELECT * FROM pgbench_accounts WHERE aid = $1";

pub fn pool(url: &str, size: usize) -> anyhow::Result<Pool> {
    pool_with(url, size, RecyclingMethod::Fast)
}

fn pool_with(url: &str, size: usize, recycling_method: RecyclingMethod) -> anyhow::Result<Pool> {
    let config = tokio_postgres::Config::from_str(url).context("parsing the database URL")?;
    let manager = Manager::from_config(config, NoTls, ManagerConfig { recycling_method });
    Ok(Pool::builder(manager).max_size(size).build()?)
}

/// Point queries from `concurrency` tasks until `calls` are done or `budget` is spent; returns every latency and
/// the wall time of the whole run.
pub async fn point_queries(
    pool: &Pool,
    concurrency: usize,
    calls: usize,
    budget: Duration,
    accounts: u64,
) -> anyhow::Result<(Vec<Duration>, Duration)> {
    let started = Instant::now();
    let per_task = calls.div_ceil(concurrency);
    let mut tasks = Vec::new();
    for task in 0..concurrency {
        let pool = pool.clone();
        tasks.push(tokio::spawn(async move {
            let mut ids = XorShift::new(0x9e37_79b9 + task as u64);
            let mut latencies = Vec::with_capacity(per_task);
            for _ in 0..per_task {
                if started.elapsed() > budget {
                    break;
                }
                let call = Instant::now();
                let client = pool.get().await?;
                let statement = client.prepare_cached(POINT_SQL).await?;
                let aid = ids.next_in(accounts) as i32;
                let rows = client.query(&statement, &[&aid]).await?;
                anyhow::ensure!(rows.len() == 1, "account {aid} not found");
                latencies.push(call.elapsed());
            }
            anyhow::Ok(latencies)
        }));
    }
    Ok((gather(tasks).await?, started.elapsed()))
}

/// Which of pgmcp's per-call statement sequences (a read-only call) to replay without pgmcp.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Sequence {
    /// Today's: the statement restated with its row limit (`SELECT * FROM (…) LIMIT 1001`), prepared once per
    /// connection; `START TRANSACTION READ ONLY`, its Bind/Execute, `ROLLBACK` and the session check (pgmcp's
    /// `AFTER_ROLLBACK_SQL`) under one Sync, pgmcp's own statements prepared once per connection and run by name,
    /// encoded by pgmcp's own `encode_flight`; the call ends when the whole answer, the check's included, has been
    /// read.
    Current,
    /// The same without the session check (the ROLLBACK alone). Kept so scenario 1 shows what the check costs.
    WithoutSessionCheck,
    /// The sequence before: `START TRANSACTION READ ONLY` awaited, then a portal with a row limit (Bind, then
    /// Execute: two more round trips), the ROLLBACK queued, then the session check. Kept so scenario 1 shows what
    /// the one flight bought.
    PreviousPortal,
}

impl Sequence {
    pub fn label(self) -> &'static str {
        match self {
            Sequence::Current => "raw, pgmcp's statement sequence",
            Sequence::WithoutSessionCheck => "raw, the same without the session check",
            Sequence::PreviousPortal => "raw, the previous sequence (three round trips)",
        }
    }

    /// A pool that recycles connections as pgmcp does, with pgmcp's own statements prepared on each connection.
    pub fn pool(self, url: &str, size: usize) -> anyhow::Result<Pool> {
        let config = tokio_postgres::Config::from_str(url).context("parsing the database URL")?;
        let recycling_method = RecyclingMethod::Fast;
        let manager = Manager::from_config(config, NoTls, ManagerConfig { recycling_method });
        let prepare = Hook::async_fn(|client: &mut ClientWrapper, _| {
            Box::pin(async move {
                let answer = client
                    .send_pipeline(prepare_own_statements())
                    .map_err(HookError::Backend)?;
                pin_mut!(answer);
                while let Some(message) = answer.next().await {
                    message.map_err(HookError::Backend)?;
                }
                Ok(())
            })
        });
        Ok(Pool::builder(manager)
            .max_size(size)
            .post_create(prepare)
            .build()?)
    }
}

/// pgmcp's point query as it restates a bounded read.
pub fn bounded_point_sql() -> String {
    format!("SELECT * FROM (\n{POINT_SQL}\n) AS pgmcp_rows LIMIT 1001")
}

/// The point query for account `aid` in pgmcp's flight, as `encode_flight` builds it, with the session check
/// after the ROLLBACK when `check` is set, on a connection of a [`Sequence::pool`]; returns the prepared statement
/// and the answer's stream.
pub async fn send_flight(
    client: &deadpool_postgres::Client,
    bounded: &str,
    aid: i64,
    check: bool,
) -> anyhow::Result<(Statement, PipelineResponses)> {
    let statement = client.prepare_cached(bounded).await?;
    let params = [TextParam::from_json(&aid.into(), &Type::INT4)];
    let plan = FlightPlan::Named { check };
    let request = encode_flight(&statement, &params, plan).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let answer = client.send_pipeline(request)?;
    Ok((statement, answer))
}

/// pgmcp's statement sequence without pgmcp, from `concurrency` tasks on a pool made by `sequence.pool`: the
/// database floor of one pgmcp call.
pub async fn pgmcp_sequence(
    pool: &Pool,
    sequence: Sequence,
    concurrency: usize,
    calls: usize,
    budget: Duration,
    accounts: u64,
) -> anyhow::Result<(Vec<Duration>, Duration)> {
    let started = Instant::now();
    let per_task = calls.div_ceil(concurrency);
    let bounded = bounded_point_sql();
    let mut tasks = Vec::new();
    for task in 0..concurrency {
        let pool = pool.clone();
        let bounded = bounded.clone();
        tasks.push(tokio::spawn(async move {
            let mut ids = XorShift::new(0x5eed + task as u64);
            let mut latencies = Vec::with_capacity(per_task);
            while latencies.len() < per_task && started.elapsed() < budget {
                let call = Instant::now();
                let mut client = pool.get().await?;
                let aid = ids.next_in(accounts) as i32;
                match sequence {
                    Sequence::Current | Sequence::WithoutSessionCheck => {
                        let check = sequence == Sequence::Current;
                        let (_, answer) = send_flight(&client, &bounded, aid.into(), check).await?;
                        pin_mut!(answer);
                        while let Some(message) = answer.next().await {
                            message?;
                        }
                    }
                    Sequence::PreviousPortal => {
                        let txn = client.build_transaction().read_only(true).start().await?;
                        let statement = txn.prepare_cached(POINT_SQL).await?;
                        let portal = txn.bind_raw(&statement, [aid]).await?;
                        let stream = txn.query_portal_raw(&portal, 1001).await?;
                        pin_mut!(stream);
                        while let Some(row) = stream.next().await {
                            row?;
                        }
                        // Dropping the transaction queues its ROLLBACK without waiting for it, as pgmcp did.
                        drop(txn);
                    }
                }
                latencies.push(call.elapsed());
                if sequence == Sequence::PreviousPortal {
                    tokio::spawn(async move {
                        let check = client.prepare_cached(LEFTOVERS_SQL).await?;
                        client.query(&check, &[&false]).await?;
                        anyhow::Ok(())
                    });
                }
            }
            anyhow::Ok(latencies)
        }));
    }
    Ok((gather(tasks).await?, started.elapsed()))
}

/// Fetches a whole result (prepared, binary rows, nothing rendered) and returns its time.
pub async fn fetch_all(pool: &Pool, sql: &str) -> anyhow::Result<(Duration, usize)> {
    let started = Instant::now();
    let client = pool.get().await?;
    let statement = client.prepare_cached(sql).await?;
    let rows = client.query(&statement, &[]).await?;
    Ok((started.elapsed(), rows.len()))
}

/// The first `rows` rows of a result through a portal, as a server that truncates must do at best.
pub async fn fetch_first(pool: &Pool, sql: &str, rows: i32) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut client = pool.get().await?;
    let txn = client.transaction().await?;
    let statement = txn.prepare(sql).await?;
    let params: [&(dyn ToSql + Sync); 0] = [];
    let portal = txn.bind(&statement, &params).await?;
    let stream = txn.query_portal_raw(&portal, rows).await?;
    pin_mut!(stream);
    while let Some(row) = stream.next().await {
        row?;
    }
    txn.rollback().await?;
    Ok(started.elapsed())
}
