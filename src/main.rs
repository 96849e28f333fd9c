use clap::Parser;

use pgmcp::cli::{Cli, Command};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    pgmcp::telemetry::init(&cli.log, cli.log_format);
    let outcome = match cli.command {
        Command::Serve(args) => pgmcp::app::serve(*args).await,
        Command::Check(args) => pgmcp::app::check(*args).await,
        Command::Demo(args) => pgmcp::app::demo(args).await,
    };
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("pgmcp: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
