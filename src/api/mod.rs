//! api: `kedge serve`'s HTTP face — health, metrics, the JSON API under
//! `/api/v1` (the same operations and the same JSON as the CLI), the event
//! stream, and the git webhooks (signed with a webhook secret, not a
//! token); the dashboard (`web`) is mounted on the same listener. It calls `ops` only; a bad request is a 4xx with a JSON reason.
//! Requests never take a repository's lock unless they apply (sync,
//! rollback, remove), and nothing here can slow a deploy down.

mod auth;
mod body;
mod error;
mod hooks;
pub mod metrics;
mod openapi;
mod routes;
mod stream;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::Listen;
use crate::controller::{FacesError, Shared};
use crate::ops::Ops;

pub use body::BODY_TIMEOUT;
pub use error::{ApiError, ErrorBody};
pub use openapi::document as openapi_document;

/// Request bodies larger than this are refused (413) without being read.
pub const BODY_LIMIT: usize = 1 << 20;
/// A connection that has not sent its request headers within this is closed.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a diff over HTTP waits for an apply in flight before it answers
/// 409: a health gate may hold the repository for minutes.
pub const DIFF_WAIT: Duration = Duration::from_secs(10);
/// The pause after a failed `accept`.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// What every handler gets.
pub struct AppState {
    pub ops: Ops,
    pub shared: Arc<Shared>,
    /// The counters of `/metrics`; the hook handlers count through it.
    pub metrics: metrics::Metrics,
    /// The dashboard's signed-in sessions.
    pub sessions: crate::web::Sessions,
}

/// The whole HTTP surface.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .merge(routes::public())
        .merge(hooks::routes())
        .merge(crate::web::routes())
        .nest("/api/v1", routes::api(state.clone()))
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        .layer(axum::extract::DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::middleware::from_fn(body::bound))
        .layer(tower_http::limit::RequestBodyLimitLayer::new(BODY_LIMIT))
        .layer(axum::middleware::map_response(json_errors))
        .layer(axum::middleware::from_fn(close_after_unread_body))
        .with_state(state)
}

/// Errors the framework answers itself (405, 413, …) speak JSON too; the
/// dashboard's error pages stay HTML.
async fn json_errors(response: axum::response::Response) -> axum::response::Response {
    use axum::http::header::CONTENT_TYPE;
    let status = response.status();
    let is_json_or_page = response.headers().get(CONTENT_TYPE).is_some_and(|v| {
        v.as_bytes().starts_with(b"application/json") || v.as_bytes().starts_with(b"text/html")
    });
    if !(status.is_client_error() || status.is_server_error()) || is_json_or_page {
        return response;
    }
    let reason = status
        .canonical_reason()
        .unwrap_or("error")
        .to_ascii_lowercase();
    let (mut parts, _) = response.into_parts();
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    parts.headers.insert(
        CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/json"),
    );
    let body = serde_json::to_string(&ErrorBody { error: reason }).unwrap_or_default();
    axum::response::Response::from_parts(parts, axum::body::Body::from(body))
}

/// A request refused with its body unread (no token, too large, …) ends
/// its connection: the answer says so, so a client does not send its next
/// request on a connection the server is about to close.
async fn close_after_unread_body(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::http::header::{CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING};
    let headers = request.headers();
    let has_body = headers.contains_key(TRANSFER_ENCODING)
        || headers
            .get(CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0");
    let mut response = next.run(request).await;
    let status = response.status();
    if has_body && (status.is_client_error() || status.is_server_error()) {
        response
            .headers_mut()
            .insert(CONNECTION, axum::http::HeaderValue::from_static("close"));
    }
    response
}

/// Binds the listener `settings.listen` names (nothing for `none`) and
/// serves until `shutdown` turns true: then it stops accepting and lets
/// requests in flight finish.
pub async fn start(
    shared: Arc<Shared>,
    shutdown: watch::Receiver<bool>,
) -> Result<Option<JoinHandle<()>>, FacesError> {
    let addr = match shared.settings.listen {
        Listen::Off => {
            tracing::info!("HTTP listener disabled (--listen none)");
            return Ok(None);
        }
        Listen::Addr(addr) => addr,
    };
    let tls = match &shared.settings.tls {
        Some((cert, key)) => Some(tls_acceptor(cert, key)?),
        None => None,
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| FacesError {
            what: format!("cannot listen on {addr}"),
            source: Some(Box::new(e)),
        })?;
    let bound = listener.local_addr().unwrap_or(addr);
    tracing::info!(tls = tls.is_some(), "listening on {}", bound);
    // Subscribed before the listener serves: a deploy that follows at once is counted.
    let live = shared.hub.subscribe();
    let commands = shared.commands.clone();
    let state = Arc::new(AppState {
        ops: Ops::serving(shared.clone()),
        shared,
        metrics: metrics::Metrics::new(),
        sessions: Default::default(),
    });
    tokio::spawn(metrics::follow(state.clone(), live));
    let app = router(state);
    Ok(Some(tokio::spawn(accept_loop(
        listener, bound, tls, app, shutdown, commands,
    ))))
}

fn tls_acceptor(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<tokio_rustls::TlsAcceptor, FacesError> {
    let fail = |what: String, e: Option<Box<dyn std::error::Error + Send + Sync>>| FacesError {
        what,
        source: e,
    };
    let read = |p: &std::path::Path| {
        std::fs::read(p)
            .map_err(|e| fail(format!("cannot read {}", p.display()), Some(Box::new(e))))
    };
    let certs: Vec<_> = rustls_pemfile::certs(&mut read(cert)?.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|e| {
            fail(
                format!("{} holds no PEM certificate", cert.display()),
                Some(Box::new(e)),
            )
        })?;
    if certs.is_empty() {
        return Err(fail(
            format!("{} holds no PEM certificate", cert.display()),
            None,
        ));
    }
    let key = rustls_pemfile::private_key(&mut read(key)?.as_slice())
        .map_err(|e| {
            fail(
                format!("{} holds no PEM private key", key.display()),
                Some(Box::new(e)),
            )
        })?
        .ok_or_else(|| fail(format!("{} holds no PEM private key", key.display()), None))?;
    let config = tokio_rustls::rustls::ServerConfig::builder_with_provider(Arc::new(
        tokio_rustls::rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .and_then(|b| b.with_no_client_auth().with_single_cert(certs, key))
    .map_err(|e| {
        fail(
            "cannot use the TLS certificate and key".into(),
            Some(Box::new(e)),
        )
    })?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Accepts connections until shutdown, each served with a header read
/// timeout; at shutdown, connections finish their requests in flight.
async fn accept_loop(
    listener: tokio::net::TcpListener,
    bound: SocketAddr,
    tls: Option<tokio_rustls::TlsAcceptor>,
    app: Router,
    mut shutdown: watch::Receiver<bool>,
    commands: Arc<crate::controller::in_flight::InFlight>,
) {
    use hyper::server::conn::http1::Builder;
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::server::graceful::GracefulShutdown;
    let graceful = GracefulShutdown::new();
    // HTTP/1 only, served directly: hyper-util's auto builder first reads
    // to tell HTTP/1 from HTTP/2, and that read had no timeout, so a
    // connection that sent nothing stayed open for good.
    let mut builder = Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT);
    let builder = Arc::new(builder);
    loop {
        let (stream, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of descriptors, say: retrying at once would spin
                    // a worker thread the controller needs.
                    tracing::warn!("accept failed: {e}");
                    tokio::select! {
                        _ = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                        _ = shutdown.changed() => break,
                    }
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let builder = builder.clone();
        match &tls {
            None => {
                let conn = builder.serve_connection(TokioIo::new(stream), service);
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    let _ = conn.await;
                });
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                let watcher = graceful.watcher();
                tokio::spawn(async move {
                    // The handshake counts against the same budget as headers.
                    let Ok(Ok(stream)) =
                        tokio::time::timeout(HEADER_TIMEOUT, acceptor.accept(stream)).await
                    else {
                        return;
                    };
                    let conn = builder.serve_connection(TokioIo::new(stream), service);
                    let _ = watcher.watch(conn).await;
                });
            }
        }
    }
    tracing::info!(%bound, "HTTP listener closed: finishing requests in flight");
    // A sync or rollback a request started finishes first, however long
    // its gate takes, and the request waiting for it then answers.
    commands.idle().await;
    // Long-lived streams (the event stream) end with the process.
    let _ = tokio::time::timeout(Duration::from_secs(10), graceful.shutdown()).await;
}
