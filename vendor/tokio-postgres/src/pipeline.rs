//! Requests the caller encodes itself, for several statements under one Sync.

use crate::Error;
use crate::client::Responses;
use futures_util::Stream;
use postgres_protocol::message::backend::Message;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

/// The backend messages answering one [`Client::send_pipeline`](crate::Client::send_pipeline) request, in the order
/// the server sent them, up to and including its `ReadyForQuery`; the stream ends after that.
///
/// An `ErrorResponse` is yielded as an `Err` ([`Error::as_db_error`] holds it) and the stream goes on: the server
/// then skips to the Sync, so what follows is the `ReadyForQuery` that says whether a transaction block is left
/// failed. The stream also ends after an error saying the connection closed.
///
/// Dropping the stream early is safe: the connection reads and discards the rest of the request's answer.
pub struct PipelineResponses {
    responses: Responses,
    done: bool,
}

impl PipelineResponses {
    pub(crate) fn new(responses: Responses) -> PipelineResponses {
        PipelineResponses {
            responses,
            done: false,
        }
    }
}

impl Stream for PipelineResponses {
    type Item = Result<Message, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        let next = ready!(this.responses.poll_next(cx));
        this.done = match &next {
            Ok(Message::ReadyForQuery(_)) => true,
            Ok(_) => false,
            Err(error) => error.is_closed(),
        };
        Poll::Ready(Some(next))
    }
}
