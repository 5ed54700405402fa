//! http: how long a request may take and how many are answered at once,
//! over the whole router. A request past its time is answered 503 with
//! the reason (what it started, a sync or a rollback, goes on: it belongs
//! to the repository's task); one more than the cap is answered 503 at
//! once. An event stream holds neither: its answer is sent at once and
//! its body is not bounded here.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;

use super::ApiError;

/// Requests answered at once; more are refused until one is done.
pub const MAX_IN_FLIGHT: usize = 256;
/// What a `?wait=true` sync or rollback may take: a deployment and its
/// health gate, and the wait for an apply in flight before it.
pub const WAIT_LIMIT: Duration = Duration::from_secs(3600);
/// Beyond `http.command_wait`, what any other request may take.
const MARGIN: Duration = Duration::from_secs(30);

/// The limits one router enforces.
pub struct Limits {
    in_flight: Semaphore,
    max: usize,
    /// Any request but a waited sync or rollback.
    request: Duration,
    wait: Duration,
}

impl Limits {
    /// A request waits up to `command_wait` for a busy repository's task:
    /// it gets that and a margin.
    pub fn new(command_wait: Duration) -> Arc<Limits> {
        Limits::with(MAX_IN_FLIGHT, command_wait + MARGIN, WAIT_LIMIT)
    }

    fn with(max: usize, request: Duration, wait: Duration) -> Arc<Limits> {
        Arc::new(Limits {
            in_flight: Semaphore::new(max),
            max,
            request,
            wait,
        })
    }
}

/// Whether a request is a sync or rollback that waits for its deployment
/// (`POST …/sync?wait=true`, `…/rollback?wait=true`).
fn waits(request: &Request) -> bool {
    request.method() == axum::http::Method::POST
        && request.uri().query().is_some_and(|q| {
            q.split('&')
                .any(|pair| pair == "wait=true" || pair == "wait=1")
        })
}

pub async fn bound(State(limits): State<Arc<Limits>>, request: Request, next: Next) -> Response {
    let Ok(_permit) = limits.in_flight.try_acquire() else {
        let mut answer = ApiError::Unavailable(format!(
            "Kedge is answering {} requests already: ask again in a moment",
            limits.max
        ))
        .into_response();
        answer.headers_mut().insert(
            axum::http::header::RETRY_AFTER,
            axum::http::HeaderValue::from_static("1"),
        );
        return answer;
    };
    let limit = if waits(&request) {
        limits.wait
    } else {
        limits.request
    };
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::Unavailable(format!(
            "no answer within {} s; what the request started goes on (see the history and events)",
            limit.as_secs()
        ))
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::body::Body;
    use axum::routing::{get, post};
    use tower::ServiceExt;

    fn app(limits: Arc<Limits>, gate: Arc<tokio::sync::Notify>) -> Router {
        let slow = move || {
            let gate = gate.clone();
            async move {
                gate.notified().await;
                "done"
            }
        };
        Router::new()
            .route("/slow", get(slow.clone()))
            .route("/sync", post(slow))
            .route("/fast", get(|| async { "fast" }))
            .layer(axum::middleware::from_fn_with_state(limits, bound))
    }

    async fn send(app: &Router, method: &str, uri: &str) -> (u16, String) {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .body(Body::empty())
            .unwrap();
        let response = app.clone().oneshot(request).await.unwrap();
        let status = response.status().as_u16();
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_past_its_time_is_answered_503_with_the_reason() {
        let limits = Limits::with(8, Duration::from_secs(90), Duration::from_secs(3600));
        let app = app(limits, Arc::default());
        let (status, body) = send(&app, "GET", "/slow").await;
        assert_eq!(status, 503);
        assert!(body.contains("no answer within 90 s"), "{body}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_waited_sync_gets_its_own_longer_limit() {
        let limits = Limits::with(8, Duration::from_secs(90), Duration::from_secs(3600));
        let gate = Arc::new(tokio::sync::Notify::new());
        let app = app(limits, gate.clone());
        let waited = tokio::spawn({
            let app = app.clone();
            async move { send(&app, "POST", "/sync?wait=true").await }
        });
        // Past the ordinary limit, within its own: still waiting.
        tokio::time::sleep(Duration::from_secs(600)).await;
        assert!(!waited.is_finished());
        gate.notify_one();
        assert_eq!(waited.await.unwrap(), (200, "done".to_string()));
        // The same route without wait=true has the ordinary limit.
        let (status, _) = send(&app, "POST", "/sync").await;
        assert_eq!(status, 503);
    }

    #[tokio::test]
    async fn one_request_more_than_the_cap_is_refused_at_once() {
        let limits = Limits::with(1, Duration::from_secs(90), Duration::from_secs(3600));
        let gate = Arc::new(tokio::sync::Notify::new());
        let app = app(limits, gate.clone());
        let held = tokio::spawn({
            let app = app.clone();
            async move { send(&app, "GET", "/slow").await }
        });
        // Until the slow request holds the one place.
        let refused = loop {
            let (status, body) = send(&app, "GET", "/fast").await;
            if status == 503 {
                break body;
            }
            tokio::task::yield_now().await;
        };
        assert!(
            refused.contains("answering 1 requests already"),
            "{refused}"
        );
        gate.notify_one();
        assert_eq!(held.await.unwrap().0, 200);
        // Its place is given back.
        assert_eq!(send(&app, "GET", "/fast").await, (200, "fast".to_string()));
    }
}
