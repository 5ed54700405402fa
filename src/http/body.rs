//! http: request bodies as the listener takes them. Every body is read into
//! one buffer (sized by `Content-Length` when there is one) and handed on
//! as a single piece once complete, within [`BODY_TIMEOUT`] of the first
//! read. A body sent a byte per TCP segment would otherwise be kept as
//! one small piece per segment, each holding on to a read buffer thousands
//! of times its size; and a body that never ends would hold its
//! connection for good. Nothing is read until a handler asks: a request
//! refused on its headers never has its body read.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::body::{Body, Bytes};
use hyper::body::{Frame, SizeHint};

use super::ApiError;

/// A request body must have arrived this long after a handler began to
/// read it; otherwise the request is answered 408 and its connection closed.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a body was not read to its end.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("the request body did not arrive within {}s", BODY_TIMEOUT.as_secs())]
    TimedOut,
    #[error("the request body is over {limit} bytes")]
    TooLarge { limit: usize },
}

/// A body read whole into one buffer, within a deadline, up to a limit.
pub struct Bounded {
    inner: Body,
    buffer: Option<Vec<u8>>,
    limit: usize,
    timeout: Duration,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Set when the deadline passed: the middleware answers 408 then,
    /// whatever the handler made of the error.
    timed_out: Arc<AtomicBool>,
    done: bool,
}

impl Bounded {
    pub fn new(inner: Body, limit: usize, timeout: Duration, timed_out: Arc<AtomicBool>) -> Self {
        Bounded {
            inner,
            buffer: None,
            limit,
            timeout,
            deadline: None,
            timed_out,
            done: false,
        }
    }
}

impl hyper::body::Body for Bounded {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        let timeout = this.timeout;
        let deadline = this
            .deadline
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        let limit = this.limit;
        let hint = this.inner.size_hint();
        let buffer = this.buffer.get_or_insert_with(|| {
            // Announced: that much at once (no more than the limit); pages
            // not yet written take no memory. Otherwise it grows as needed.
            let announced = hint.exact().unwrap_or(8 << 10);
            Vec::with_capacity(usize::try_from(announced).unwrap_or(limit).min(limit))
        });
        loop {
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    // Trailers are of no use to any route: dropped.
                    if let Ok(data) = frame.into_data() {
                        if buffer.len() + data.len() > limit {
                            this.done = true;
                            this.buffer = None;
                            return Poll::Ready(Some(Err(BodyError::TooLarge { limit }.into())));
                        }
                        // Copied, so the piece (and the read buffer it
                        // points into) is released at once.
                        buffer.extend_from_slice(&data);
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    this.done = true;
                    this.buffer = None;
                    // Unwrapped: axum tells a size limit from other errors
                    // by how deep it is wrapped.
                    return Poll::Ready(Some(Err(e.into_inner())));
                }
                Poll::Ready(None) => {
                    this.done = true;
                    let whole = this.buffer.take().unwrap_or_default();
                    if whole.is_empty() {
                        return Poll::Ready(None);
                    }
                    return Poll::Ready(Some(Ok(Frame::data(Bytes::from(whole)))));
                }
                Poll::Pending => {
                    ready!(deadline.as_mut().poll(cx));
                    this.done = true;
                    this.buffer = None;
                    this.timed_out.store(true, Ordering::Relaxed);
                    return Poll::Ready(Some(Err(BodyError::TimedOut.into())));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || (self.buffer.is_none() && self.inner.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        if self.done {
            return SizeHint::with_exact(0);
        }
        self.inner.size_hint()
    }
}

/// Middleware: every request's body is [`Bounded`]; a request whose body
/// did not arrive in time is answered 408 (and, having a body not read to
/// its end, its connection is closed).
pub async fn bound(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let timed_out = Arc::new(AtomicBool::new(false));
    let flag = timed_out.clone();
    let request =
        request.map(|b| Body::new(Bounded::new(b, super::BODY_LIMIT, BODY_TIMEOUT, flag)));
    let response = next.run(request).await;
    if timed_out.load(Ordering::Relaxed) && response.status() != 408 {
        return ApiError::Timeout(BodyError::TimedOut.to_string()).into_response();
    }
    response
}

/// What a failed read of a (bounded) body answers: 408, 413, or 400.
pub fn read_error(e: axum::Error) -> ApiError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(err) = source {
        if let Some(b) = err.downcast_ref::<BodyError>() {
            return match b {
                BodyError::TimedOut => ApiError::Timeout(b.to_string()),
                BodyError::TooLarge { .. } => ApiError::TooLarge(b.to_string()),
            };
        }
        if err.is::<http_body_util::LengthLimitError>() {
            return ApiError::TooLarge(format!(
                "the request body is over {} bytes",
                super::BODY_LIMIT
            ));
        }
        source = err.source();
    }
    ApiError::BadRequest("cannot read the request body".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt as _;

    /// A body that yields `pieces` one by one, each after `gap`.
    fn dripped(pieces: Vec<&'static [u8]>, gap: Duration) -> Body {
        let stream = futures_util::stream::iter(pieces).then(move |p| async move {
            tokio::time::sleep(gap).await;
            Ok::<_, std::io::Error>(Bytes::from_static(p))
        });
        Body::from_stream(stream)
    }

    fn bounded(inner: Body, limit: usize, timeout: Duration) -> (Body, Arc<AtomicBool>) {
        let flag = Arc::new(AtomicBool::new(false));
        (
            Body::new(Bounded::new(inner, limit, timeout, flag.clone())),
            flag,
        )
    }

    #[tokio::test]
    async fn pieces_come_out_as_one_and_late_or_large_bodies_are_refused() {
        let pieces: Vec<&'static [u8]> = vec![b"{", b"\"a\"", b":", b"1", b"}"];
        // In time: one piece, the whole body.
        let (body, flag) = bounded(
            dripped(pieces.clone(), Duration::from_millis(5)),
            100,
            Duration::from_secs(5),
        );
        let mut frames = body.into_data_stream();
        assert_eq!(
            frames.next().await.unwrap().unwrap(),
            Bytes::from_static(b"{\"a\":1}")
        );
        assert!(frames.next().await.is_none());
        assert!(!flag.load(Ordering::Relaxed));

        // Too slow: refused at the deadline, and flagged.
        let (body, flag) = bounded(
            dripped(pieces.clone(), Duration::from_millis(300)),
            100,
            Duration::from_millis(500),
        );
        let e = axum::body::to_bytes(body, 100).await.unwrap_err();
        assert_eq!(read_error(e).status(), 408);
        assert!(flag.load(Ordering::Relaxed));

        // Too large: refused once past the limit.
        let (body, flag) = bounded(
            dripped(pieces, Duration::from_millis(1)),
            4,
            Duration::from_secs(10),
        );
        let e = axum::body::to_bytes(body, 100).await.unwrap_err();
        assert_eq!(read_error(e).status(), 413);
        assert!(!flag.load(Ordering::Relaxed));

        // Empty: no piece at all.
        let (body, _) = bounded(Body::empty(), 4, Duration::from_secs(10));
        assert!(axum::body::to_bytes(body, 100).await.unwrap().is_empty());
    }
}
