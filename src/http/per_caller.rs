//! One caller cannot take the whole server: at most `per_caller_concurrency` MCP requests of one authenticated
//! principal run at once. More wait for one of that caller's own requests to finish — not for the database pool,
//! where they would queue ahead of everyone else — and after [`CALLER_WAIT`] are refused with
//! `429 Too Many Requests` and `Retry-After`. Callers are told apart by their token's issuer and object id (or
//! subject); requests without a caller (`--auth-mode none`) are not limited here: they would all be one caller, or
//! one gateway's address.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::http::Caller;

/// The default limit: below the default pool size (10), so one caller always leaves connections for others.
pub const DEFAULT_PER_CALLER_CONCURRENCY: usize = 8;

/// How long a request over its caller's limit waits for one of that caller's requests to finish.
pub const CALLER_WAIT: Duration = Duration::from_secs(5);

/// One caller's slots, and how many of its requests hold or wait for one.
struct Slots {
    semaphore: Arc<Semaphore>,
    requests: usize,
}

type Callers = Arc<Mutex<HashMap<String, Slots>>>;

/// Requests per caller. An entry exists only while its caller has requests running or waiting, so the map never
/// holds more entries than there are requests in flight.
#[derive(Clone)]
pub struct CallerLimit {
    limit: usize,
    callers: Callers,
}

/// A request's membership in its caller's entry; the entry goes when the last one leaves.
struct Member {
    key: String,
    callers: Callers,
}

impl Drop for Member {
    fn drop(&mut self) {
        let mut callers = lock(&self.callers);
        if let Some(slots) = callers.get_mut(&self.key) {
            slots.requests -= 1;
            if slots.requests == 0 {
                callers.remove(&self.key);
            }
        }
    }
}

/// A running request's slot.
pub struct Slot {
    _permit: OwnedSemaphorePermit,
    _member: Member,
}

fn lock(
    callers: &Mutex<HashMap<String, Slots>>,
) -> std::sync::MutexGuard<'_, HashMap<String, Slots>> {
    // Counts only: a panic elsewhere cannot leave the map inconsistent.
    callers
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl CallerLimit {
    /// `limit` 0 turns the limit off.
    pub fn new(limit: usize) -> CallerLimit {
        CallerLimit {
            limit,
            callers: Arc::default(),
        }
    }

    /// A slot for one of `key`'s requests, waiting at most `wait` for one to come free.
    async fn acquire(&self, key: String, wait: Duration) -> Option<Slot> {
        let semaphore = {
            let mut callers = lock(&self.callers);
            let slots = callers.entry(key.clone()).or_insert_with(|| Slots {
                semaphore: Arc::new(Semaphore::new(self.limit)),
                requests: 0,
            });
            slots.requests += 1;
            slots.semaphore.clone()
        };
        let member = Member {
            key,
            callers: self.callers.clone(),
        };
        match tokio::time::timeout(wait, semaphore.acquire_owned()).await {
            Ok(Ok(permit)) => Some(Slot {
                _permit: permit,
                _member: member,
            }),
            _ => None,
        }
    }

    /// Callers with requests running or waiting (for tests of the bound).
    pub fn callers_in_flight(&self) -> usize {
        lock(&self.callers).len()
    }
}

/// The principal behind a validated token: the issuer with the object id, else the subject.
fn caller_key(caller: &Caller) -> Option<String> {
    let principal = caller.oid.as_ref().or(caller.subject.as_ref())?;
    Some(format!(
        "{}\u{0}{principal}",
        caller.issuer.as_deref().unwrap_or_default()
    ))
}

impl CallerLimit {
    /// A slot for the request's caller, named by authentication, once one is free; `None` for a request this limit
    /// does not count. The response that refuses it when none came free in time.
    pub fn admit(&self, request: &Request) -> impl Future<Output = Result<Option<Slot>, Response>> {
        // GET holds a legacy session's event stream open for as long as the client listens: it runs no call.
        let key = (self.limit > 0 && request.method() == Method::POST)
            .then(|| request.extensions().get::<Caller>().and_then(caller_key))
            .flatten();
        async move {
            let Some(key) = key else {
                return Ok(None);
            };
            match self.acquire(key, CALLER_WAIT).await {
                Some(slot) => Ok(Some(slot)),
                None => {
                    tracing::info!(
                        limit = self.limit,
                        waited_s = CALLER_WAIT.as_secs(),
                        "request refused: its caller kept as many requests running as allowed for the whole wait"
                    );
                    Err(too_many(self.limit))
                }
            }
        }
    }
}

/// The response, holding the request's slot for as long as its call runs: an event stream's call is still running
/// when its headers go out, so its slot is held until the stream ends.
pub fn held_until_answered(response: Response, slot: Option<Slot>) -> Response {
    let Some(slot) = slot else {
        return response;
    };
    let streams = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("text/event-stream"));
    if !streams {
        return response;
    }
    response.map(|body| {
        Body::from_stream(body.into_data_stream().map(move |chunk| {
            let _held = &slot;
            chunk
        }))
    })
}

fn too_many(limit: usize) -> Response {
    let message = format!(
        "too many concurrent requests from this caller: at most {limit} run at once, and none of them finished \
         within {} s; retry later",
        CALLER_WAIT.as_secs()
    );
    let body = serde_json::json!({"jsonrpc": "2.0", "id": null, "error": {"code": -32000, "message": message}});
    (
        StatusCode::TOO_MANY_REQUESTS,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::RETRY_AFTER, "1"),
        ],
        body.to_string(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHORT: Duration = Duration::from_millis(20);

    #[tokio::test]
    async fn each_caller_has_its_own_slots_and_entries_go_away() {
        let limit = CallerLimit::new(2);
        let a1 = limit.acquire("a".into(), SHORT).await.expect("first");
        let a2 = limit.acquire("a".into(), SHORT).await.expect("second");
        assert!(
            limit.acquire("a".into(), SHORT).await.is_none(),
            "the third waits and gives up"
        );
        let b1 = limit
            .acquire("b".into(), SHORT)
            .await
            .expect("another caller is not affected");
        drop(a1);
        let a3 = limit
            .acquire("a".into(), SHORT)
            .await
            .expect("a slot came free");
        drop((a2, a3, b1));
        assert_eq!(
            limit.callers_in_flight(),
            0,
            "no entry outlives its requests"
        );
    }

    #[tokio::test]
    async fn a_waiting_request_runs_when_its_caller_frees_a_slot() {
        let limit = CallerLimit::new(1);
        let first = limit.acquire("a".into(), SHORT).await.expect("first");
        let waiting = tokio::spawn({
            let limit = limit.clone();
            async move {
                limit
                    .acquire("a".into(), Duration::from_secs(10))
                    .await
                    .is_some()
            }
        });
        tokio::task::yield_now().await;
        drop(first);
        assert!(waiting.await.unwrap(), "the waiting request got the slot");
        assert_eq!(limit.callers_in_flight(), 0);
    }

    #[test]
    fn callers_are_told_apart_by_issuer_and_principal() {
        let caller = |issuer: &str, oid: Option<&str>, sub: Option<&str>| Caller {
            issuer: Some(issuer.into()),
            oid: oid.map(str::to_string),
            subject: sub.map(str::to_string),
            ..Caller::default()
        };
        assert_eq!(
            caller_key(&caller("i", Some("o"), Some("s"))),
            caller_key(&caller("i", Some("o"), Some("other")))
        );
        assert_ne!(
            caller_key(&caller("i", Some("o"), None)),
            caller_key(&caller("j", Some("o"), None))
        );
        assert!(caller_key(&caller("i", None, None)).is_none());
    }
}
