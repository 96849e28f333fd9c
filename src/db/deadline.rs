//! How long a call waits for PostgreSQL. The server bounds its own work with `statement_timeout`, but a server that
//! stopped answering (frozen, or behind a stalled network) cannot report even that; these bounds make sure a call
//! still ends, its connection is closed rather than reused, and a cancel request cannot hang in turn.

use std::pin::Pin;
use std::time::Duration;

use tokio_postgres::CancelToken;

use crate::db::tls::MakeRustlsConnect;
use crate::tools::ToolError;

/// A cancel request opens a connection of its own; through a stalled network it would wait forever.
pub const CANCEL_REQUEST_BOUND: Duration = Duration::from_secs(3);

/// How long the check of a connection after a call may take before the connection counts as broken.
pub const SESSION_CHECK_BOUND: Duration = Duration::from_secs(5);

/// How often the runtime's time driver is woken by [`anchor_deadlines`]; below every per-call deadline.
const DEADLINE_ANCHOR_PERIOD: Duration = Duration::from_secs(4);
const _: () = assert!(DEADLINE_ANCHOR_PERIOD.as_millis() < SESSION_CHECK_BOUND.as_millis());

/// Keeps one timer always pending, nearer than any deadline a call sets. tokio wakes its time driver (an eventfd
/// write, then a return from `epoll_wait` for nothing) whenever a timer is registered earlier than the driver's
/// next planned wake-up, and with no timer pending every call's first deadline is: one or two wasted wake-ups per
/// call, measured in bench/where. With this timer pending, a call's deadlines (the session check's 5 s is the
/// shortest, or the statement timeout plus 2 s when that is shorter) fall after it and wake nothing; the price is
/// one wake-up every few seconds.
pub fn anchor_deadlines() {
    tokio::spawn(async {
        let mut ticks = tokio::time::interval(DEADLINE_ANCHOR_PERIOD);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
        }
    });
}

/// The longest a whole tool call may wait on its connection: twice the statement timeout (a tool may run a few
/// statements) plus a margin. Past it, the server or the network to it has stopped answering.
pub fn call_deadline(statement_timeout: Duration) -> Duration {
    statement_timeout.saturating_mul(2) + Duration::from_secs(2)
}

/// What a caller is told when PostgreSQL did not answer in time.
pub fn no_answer(waited: Duration) -> ToolError {
    ToolError::Unavailable {
        message: format!(
            "PostgreSQL did not answer within {} ms: the server or the network to it has stalled; the connection \
             was closed and the call can be retried",
            waited.as_millis()
        ),
    }
}

/// Asks the server to cancel the statement running on a session, off the caller's path and bounded.
pub fn cancel_in_background(token: CancelToken, tls: MakeRustlsConnect) {
    tokio::spawn(async move {
        match tokio::time::timeout(CANCEL_REQUEST_BOUND, token.cancel_query(tls)).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::debug!(%error, "the cancel request failed"),
            Err(_) => tracing::debug!("the cancel request got no answer in time"),
        }
    });
}

/// How many cancel requests a call the client gave up on sends at most, and how long each waits for the call's work
/// to end before the next is sent.
const CANCEL_ATTEMPTS: usize = 4;
const CANCEL_RETRY_AFTER: Duration = Duration::from_millis(250);

/// Stops the statement of a call the client gave up on: cancels, then waits a little for `work` (the call's
/// exchange with the server) to end, and cancels again while it has not, a bounded number of times. One cancel is
/// not always enough: PostgreSQL discards a cancel that arrives while its backend sits between two messages of a
/// pipeline (a flight's Bind and its Execute, say), and the statement would then run until `statement_timeout`.
pub async fn cancel_until_stopped<F: Future>(
    mut work: Pin<&mut F>,
    token: &CancelToken,
    tls: MakeRustlsConnect,
) {
    for _ in 0..CANCEL_ATTEMPTS {
        cancel_bounded(token, tls.clone()).await;
        if tokio::time::timeout(CANCEL_RETRY_AFTER, work.as_mut())
            .await
            .is_ok()
        {
            return;
        }
    }
    tracing::debug!(
        "the cancelled call's statement had not ended after {CANCEL_ATTEMPTS} cancel requests"
    );
}

/// Sends a cancel request and waits for it to be delivered, at most [`CANCEL_REQUEST_BOUND`].
pub async fn cancel_bounded(token: &CancelToken, tls: MakeRustlsConnect) {
    if tokio::time::timeout(CANCEL_REQUEST_BOUND, token.cancel_query(tls))
        .await
        .is_err()
    {
        tracing::debug!("the cancel request got no answer in time");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_call_deadline_leaves_room_for_a_few_statements() {
        assert_eq!(
            call_deadline(Duration::from_secs(30)),
            Duration::from_secs(62)
        );
        assert_eq!(
            call_deadline(Duration::from_millis(500)),
            Duration::from_secs(3)
        );
    }

    #[test]
    fn no_answer_says_what_happened_and_what_to_do() {
        let text = no_answer(Duration::from_secs(4)).to_string();
        assert!(text.contains("did not answer within 4000 ms"), "{text}");
        assert!(text.contains("retried"), "{text}");
    }
}
