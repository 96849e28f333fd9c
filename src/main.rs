use clap::Parser;

use pgmcp::cli::{Cli, Command};

/// A call allocates and frees a few hundred blocks, some larger than glibc's per-thread cache takes: with glibc's
/// malloc, allocation was a quarter of a served call's instructions (BENCHMARKS.md, seventh step).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    pgmcp::telemetry::init(&cli.log, cli.log_format);
    let runtime = match &cli.command {
        Command::Serve(args) => match pgmcp::app::serve_threads(args) {
            1 => tokio::runtime::Builder::new_current_thread(),
            threads => {
                let mut builder = tokio::runtime::Builder::new_multi_thread();
                builder.worker_threads(threads);
                builder
            }
        },
        _ => tokio::runtime::Builder::new_multi_thread(),
    }
    .enable_all()
    .build();
    let outcome = match runtime {
        Err(err) => Err(anyhow::Error::new(err).context("starting the async runtime")),
        Ok(runtime) => runtime.block_on(async {
            match cli.command {
                Command::Serve(args) => pgmcp::app::serve(*args).await,
                Command::Check(args) => pgmcp::app::check(*args).await,
                Command::Demo(args) => pgmcp::app::demo(args).await,
                Command::Health(args) => pgmcp::probe::run(args).await,
                Command::Azure(command) => pgmcp::azure_grant::run(command),
                Command::Chat(args) => pgmcp::app::chat(*args).await,
            }
        }),
    };
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("pgmcp: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
