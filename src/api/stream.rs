//! api: `GET /api/v1/events/stream`, the event log as server-sent events:
//! one event per message, `id:` the event's id. An event this `serve`
//! emits is sent at once, before it is stored (a store another process
//! holds must not delay it): that message has no `id:` line, and a message
//! with only `id:` follows once the log has it. A client that reconnects
//! with `Last-Event-ID` gets everything stored after it, then what comes.
//! A stream checks again who opened it (the bearer token, or the
//! dashboard session and its token) before each event and every
//! [`RECHECK`]: revoked (`kedge token revoke`, from any process) or signed
//! out, it ends. At most [`STREAMS_PER_TOKEN`] streams are open per token
//! (a dashboard session's count as its token's) and [`STREAMS_TOTAL`] in
//! all: one more is answered 429.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;
use serde::Deserialize;
use tokio::sync::broadcast;

use super::{ApiError, AppState};
use crate::events::{Event, Live};

/// How often an idle stream checks that its token still holds: a revoked
/// token's streams end within this.
pub const RECHECK: Duration = Duration::from_secs(5);

/// Streams one token may hold open at once: a dashboard in a few tabs and
/// a watcher or two, not a leak of reconnects.
pub const STREAMS_PER_TOKEN: usize = 8;
/// Streams open at once in all. Each is a task and a store query every
/// [`RECHECK`]; this keeps them a small share of what `serve` does.
pub const STREAMS_TOTAL: usize = 128;

/// Announced events a stream remembers until their rows come: far more
/// than can be emitted while a store stays locked for a minute.
const SHOWN: usize = 4096;

/// The streams open now, per token name.
static OPEN: LazyLock<Arc<Streams>> =
    LazyLock::new(|| Arc::new(Streams::new(STREAMS_PER_TOKEN, STREAMS_TOTAL)));

/// Counts open streams against the caps.
struct Streams {
    per_token: usize,
    total: usize,
    open: Mutex<HashMap<String, usize>>,
}

/// One open stream's place: given back when the stream is dropped (its
/// client gone, or the stream ended).
struct Slot {
    streams: Arc<Streams>,
    token: String,
}

impl Streams {
    fn new(per_token: usize, total: usize) -> Streams {
        Streams {
            per_token,
            total,
            open: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, usize>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A place for one more stream of `token`, or why there is none.
    fn take(self: &Arc<Self>, token: &str) -> Result<Slot, ApiError> {
        let mut open = self.lock();
        if open.values().sum::<usize>() >= self.total {
            return Err(ApiError::TooManyRequests(format!(
                "{} event streams are open, as many as Kedge serves at once: try again later",
                self.total
            )));
        }
        let mine = open.entry(token.to_string()).or_default();
        if *mine >= self.per_token {
            return Err(ApiError::TooManyRequests(format!(
                "token '{token}' already has {} event streams open, as many as one token may: close one first",
                self.per_token
            )));
        }
        *mine += 1;
        Ok(Slot {
            streams: self.clone(),
            token: token.to_string(),
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.streams.lock();
        if let Some(n) = open.get_mut(&self.token) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.token);
            }
        }
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StreamQuery {
    /// Only this repository's events
    repo: Option<String>,
}

/// The event log as server-sent events: one event per message, `id:` the
/// event's id, `event:` its kind, `data:` the event as JSON (as in
/// `/api/v1/events`). Without `Last-Event-ID` it starts with what comes next.
#[utoipa::path(get, path = "/api/v1/events/stream", tag = "events",
    params(
        StreamQuery,
        ("Last-Event-ID" = Option<i64>, Header, description = "resume after this event id"),
    ),
    responses(
        (status = 200, description = "a stream of events that ends when Kedge stops, or within 5 s of its token being revoked (or its session signed out)",
            content_type = "text/event-stream", body = String),
        (status = 400, description = "a query parameter or Last-Event-ID is not valid", body = super::ErrorBody),
        (status = 404, description = "no repository of that name", body = super::ErrorBody),
        (status = 429, description = "its token already has 8 streams open, or Kedge 128 in all", body = super::ErrorBody),
    ))]
pub async fn events_stream(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    q: Result<Query<StreamQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    if let Some(repo) = &q.repo {
        state.ops.repo(repo)?;
    }
    let reader = Reader::of(&headers);
    let token = reader
        .token_name(&state)
        .ok_or_else(|| ApiError::Unauthorized("unknown or revoked token".into()))?;
    let slot = OPEN.take(&token)?;
    // Subscribed before the backlog is read: nothing falls between the two.
    let live = state.ops.subscribe()?;
    let after = match headers.get("last-event-id") {
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<i64>().ok())
            .ok_or_else(|| ApiError::BadRequest("Last-Event-ID is not an event id".into()))?,
        None => state.ops.last_event_id()?,
    };
    let mut recheck = tokio::time::interval_at(tokio::time::Instant::now() + RECHECK, RECHECK);
    recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let follow = Follow {
        _slot: slot,
        reader,
        recheck,
        state,
        repo: q.repo,
        live,
        sent: after,
        backlog: VecDeque::new(),
        shown: VecDeque::new(),
        caught_up: false,
    };
    let stream = futures_util::stream::unfold(follow, |mut f| async move {
        let event = f.next().await?;
        Some((Ok::<_, Infallible>(event), f))
    });
    Ok(sse(stream).into_response())
}

fn sse(
    stream: impl Stream<Item = Result<SseEvent, Infallible>> + Send + 'static,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>> + Send + 'static> {
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

/// Who opened a stream, as the middleware let them in
/// (`auth::require_token_or_session`): a bearer token when the request
/// sent `Authorization`, else the dashboard session of its cookie.
enum Reader {
    /// The digest of the bearer token.
    Token(String),
    /// The request's cookies, to find its session again.
    Session(HeaderMap),
}

impl Reader {
    fn of(headers: &HeaderMap) -> Reader {
        match headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        {
            Some(v) => Reader::Token(crate::ops::tokens::token_hash(
                v.strip_prefix("Bearer ").unwrap_or_default().trim(),
            )),
            None => {
                let mut cookies = HeaderMap::new();
                for v in headers.get_all(axum::http::header::COOKIE) {
                    cookies.append(axum::http::header::COOKIE, v.clone());
                }
                Reader::Session(cookies)
            }
        }
    }

    /// The name of the token it reads with (a session's: the token it
    /// signed in with); `None` once revoked or signed out.
    fn token_name(&self, state: &AppState) -> Option<String> {
        match self {
            Reader::Token(digest) => state.ops.token_by_digest(digest).ok()?.map(|t| t.name),
            Reader::Session(cookies) => crate::http::session::current(state, cookies)
                .ok()?
                .map(|s| s.token_name),
        }
    }

    /// Whether it may still read: the token is there (not revoked), the
    /// session open. A store that cannot tell ends the stream too (a
    /// client reconnects with `Last-Event-ID` and is checked afresh).
    fn still_holds(&self, state: &AppState) -> bool {
        match self {
            Reader::Token(digest) => matches!(state.ops.token_by_digest(digest), Ok(Some(_))),
            Reader::Session(cookies) => {
                matches!(crate::http::session::current(state, cookies), Ok(Some(_)))
            }
        }
    }
}

struct Follow {
    /// Held as long as the stream lives.
    _slot: Slot,
    reader: Reader,
    recheck: tokio::time::Interval,
    state: Arc<AppState>,
    repo: Option<String>,
    live: broadcast::Receiver<Live>,
    /// The id of the last event sent: nothing at or before it again.
    sent: i64,
    backlog: VecDeque<Live>,
    /// The origins of the announced events sent whose rows have not come
    /// yet: a row of one moves the client's id, it is not sent again.
    shown: VecDeque<String>,
    caught_up: bool,
}

impl Follow {
    /// The next event to send; `None` ends the stream (Kedge stopping, or
    /// its reader's token revoked).
    async fn next(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(live) = self.backlog.pop_front() {
                let message = match live {
                    Live::Announced(e) if self.wanted(&e) => {
                        if self.shown.len() == SHOWN {
                            self.shown.pop_front();
                        }
                        self.shown.extend(e.origin.clone());
                        announced(&e)
                    }
                    Live::Stored(e) if e.id > self.sent => {
                        let seen = e
                            .origin
                            .as_ref()
                            .and_then(|o| self.shown.iter().position(|s| s == o));
                        match seen {
                            Some(at) => {
                                self.shown.remove(at);
                                self.sent = e.id;
                                SseEvent::default().id(e.id.to_string())
                            }
                            None if self.wanted(&e) => {
                                self.sent = e.id;
                                message(&e)
                            }
                            None => continue,
                        }
                    }
                    _ => continue,
                };
                if !self.reader.still_holds(&self.state) {
                    return None;
                }
                return Some(message);
            }
            if !self.caught_up {
                // What was stored after the last id sent, from the log.
                let page = self
                    .state
                    .ops
                    .events_after(self.repo.as_deref(), self.sent, 1000)
                    .unwrap_or_default();
                self.caught_up = page.len() < 1000;
                self.backlog.extend(page.into_iter().map(Live::Stored));
                continue;
            }
            let received = tokio::select! {
                received = self.live.recv() => received,
                _ = self.recheck.tick() => {
                    if !self.reader.still_holds(&self.state) {
                        return None;
                    }
                    continue;
                }
            };
            match received {
                Ok(e) => self.backlog.push_back(e),
                // Fell behind the broadcast: the log has it all.
                Err(broadcast::error::RecvError::Lagged(_)) => self.caught_up = false,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }

    fn wanted(&self, e: &Event) -> bool {
        self.repo.as_ref().is_none_or(|r| *r == e.repo)
    }
}

/// An event not stored yet: no id to resume after.
fn announced(e: &Event) -> SseEvent {
    SseEvent::default()
        .event(e.kind.as_str())
        .data(serde_json::to_string(e).unwrap_or_default())
}

fn message(e: &Event) -> SseEvent {
    SseEvent::default()
        .id(e.id.to_string())
        .event(e.kind.as_str())
        .data(serde_json::to_string(e).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_capped_per_token_and_in_all() {
        let streams = Arc::new(Streams::new(2, 3));
        let a1 = streams.take("a").unwrap();
        let _a2 = streams.take("a").unwrap();
        let err = streams.take("a").err().unwrap();
        assert_eq!(err.status(), axum::http::StatusCode::TOO_MANY_REQUESTS);
        assert!(err.to_string().contains("token 'a' already has 2"), "{err}");
        let _b1 = streams.take("b").unwrap();
        // Three open: the total is reached, for a token with none too.
        let err = streams.take("c").err().unwrap();
        assert!(
            err.to_string().starts_with("3 event streams are open"),
            "{err}"
        );
        // A stream that ends gives its place back.
        drop(a1);
        let _c1 = streams.take("c").unwrap();
        assert_eq!(streams.lock().get("a"), Some(&1));
    }
}
