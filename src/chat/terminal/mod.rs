//! `pgmcp chat`: questions from the terminal (or one `--ask`), each step shown as it happens, Ctrl-C stopping
//! the current answer without leaving.

pub mod render;

use std::io::{IsTerminal, Write};
use std::sync::Arc;

use futures_util::future::BoxFuture;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader, Lines, Stdin};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use super::agent::{Agent, Confirm, Event, Turn};
use super::model::client::ModelClient;
use super::settings::ChatSettings;
use super::tools::InProcess;
use crate::mcp::{Databases, PgMcpServer};
use crate::telemetry::audit::AuditLog;
use render::Style;

pub struct Options {
    pub ask: Option<String>,
    pub json: bool,
}

type Input = Arc<Mutex<Lines<BufReader<Stdin>>>>;

/// Asks on the terminal before each write; anything but `y`/`yes` declines.
struct TerminalConfirm {
    input: Input,
    style: Style,
}

impl Confirm for TerminalConfirm {
    fn confirm<'a>(&'a self, sql: &'a str, params: &'a Value) -> BoxFuture<'a, bool> {
        Box::pin(async move {
            let mut out = std::io::stdout();
            let _ = write!(
                out,
                "\nThe model wants to change data:\n{}\n{}Run this write? [y/N] ",
                render::highlight(sql, self.style),
                if params.as_array().is_some_and(|p| !p.is_empty()) {
                    format!("params: {params}\n")
                } else {
                    String::new()
                }
            );
            let _ = out.flush();
            let answer = self
                .input
                .lock()
                .await
                .next_line()
                .await
                .ok()
                .flatten()
                .unwrap_or_default();
            matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")
        })
    }
}

pub async fn run(
    databases: Arc<Databases>,
    settings: ChatSettings,
    audit: Option<Arc<AuditLog>>,
    options: Options,
) -> anyhow::Result<()> {
    let db = databases.all()[0].clone();
    let warm = db.clone();
    tokio::spawn(async move { warm.warm_up().await });
    let server = PgMcpServer::new(databases.clone()).with_audit(audit);
    let runner = Arc::new(InProcess::start(server).await?);
    let model = Arc::new(ModelClient::new(settings.model)?);
    let style = Style {
        color: std::io::stdout().is_terminal()
            && std::env::var_os("NO_COLOR").is_none()
            && !options.json,
    };
    let input: Input = Arc::new(Mutex::new(BufReader::new(tokio::io::stdin()).lines()));
    // A write needs a person at the keyboard to confirm it; a script (`--ask`, `--json`, piped input) gets none.
    let confirm: Option<Arc<dyn Confirm>> =
        (options.ask.is_none() && !options.json && std::io::stdin().is_terminal()).then(|| {
            Arc::new(TerminalConfirm {
                input: input.clone(),
                style,
            }) as _
        });
    let mut agent = Agent::start(
        model.clone(),
        runner,
        settings.budgets,
        db.profile.description.clone(),
        confirm,
    )
    .await?;
    let mut interrupts = Interrupts::new()?;
    if let Some(question) = options.ask {
        let turn = answer(&mut agent, &question, style, options.json, &mut interrupts).await;
        return match (turn.error, turn.stopped) {
            (Some(error), _) => Err(anyhow::anyhow!(error)),
            (None, true) => Err(anyhow::anyhow!("stopped before the answer")),
            _ => Ok(()),
        };
    }
    if !options.json {
        eprintln!(
            "pgmcp chat — profile `{}` ({}), model {}. Ask a question; Ctrl-C stops an answer, Ctrl-D leaves.",
            db.profile.name,
            db.profile.access_mode.as_str(),
            model.model_name()
        );
    }
    loop {
        if !options.json {
            eprint!(
                "{}",
                if style.color {
                    "\x1b[1m?\x1b[0m "
                } else {
                    "? "
                }
            );
        }
        let line = tokio::select! {
            line = async { input.lock().await.next_line().await } => line?,
            _ = interrupts.next() => {
                eprintln!("\n(Ctrl-D or `exit` leaves)");
                continue;
            }
        };
        let Some(line) = line else { break };
        let question = line.trim();
        match question {
            "" => continue,
            "exit" | "quit" | "\\q" => break,
            _ => {}
        }
        answer(&mut agent, question, style, options.json, &mut interrupts).await;
    }
    Ok(())
}

async fn answer(
    agent: &mut Agent,
    question: &str,
    style: Style,
    json: bool,
    interrupts: &mut Interrupts,
) -> Turn {
    let cancel = CancellationToken::new();
    let mut out = std::io::stdout();
    let mut at_line_start = true;
    let mut emit = |event: &Event| {
        if !json {
            render::event(&mut out, style, event, &mut at_line_start);
        }
    };
    let turn = {
        let asking = agent.ask(question, &mut emit, &cancel);
        tokio::pin!(asking);
        loop {
            tokio::select! {
                turn = &mut asking => break turn,
                _ = interrupts.next() => cancel.cancel(),
            }
        }
    };
    if json {
        println!("{}", serde_json::to_string(&turn).unwrap_or_default());
    }
    turn
}

/// Ctrl-C as a stream of events: once caught, it no longer ends the process, so it can stop a turn instead.
struct Interrupts {
    #[cfg(unix)]
    signal: tokio::signal::unix::Signal,
}

impl Interrupts {
    fn new() -> anyhow::Result<Interrupts> {
        Ok(Interrupts {
            #[cfg(unix)]
            signal: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?,
        })
    }

    async fn next(&mut self) {
        #[cfg(unix)]
        self.signal.recv().await;
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}
