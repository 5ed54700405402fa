//! http: `kedge serve`'s server — the listener and its connection cap,
//! TLS, request bodies bounded in size and time, the state every handler
//! gets (`AppState`), who a request speaks for (a bearer token or a
//! dashboard session), and the one router that mounts the two HTTP faces,
//! `api` and `web`, which never import each other. Nothing here can slow
//! a deploy down: bodies are bounded in size and time (`body`),
//! connections in number and time (`listen`).

pub mod auth;
pub mod body;
mod error;
pub mod limits;
mod listen;
pub mod session;
pub mod throttle;

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
pub use listen::raise_descriptor_limit;
pub use session::{Session, Sessions};

/// Request bodies larger than this are refused (413) without being read.
pub const BODY_LIMIT: usize = 1 << 20;
/// A connection that has not sent its request headers within this is closed.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a diff over HTTP waits for an apply in flight before it answers
/// 409: a health gate may hold the repository for minutes.
pub const DIFF_WAIT: Duration = Duration::from_secs(10);

/// What every handler gets.
pub struct AppState {
    /// The faces' only door: nothing past it is in reach of a handler.
    pub ops: Ops,
    /// The counters of `/metrics`; the hook handlers count through it.
    pub metrics: crate::api::metrics::Metrics,
    /// The dashboard's signed-in sessions.
    pub sessions: Sessions,
}

/// The whole HTTP surface: the API's routes and the dashboard's.
pub fn router(state: Arc<AppState>) -> Router {
    let limits = limits::Limits::new(state.ops.settings().command_wait);
    Router::new()
        .merge(crate::api::routes(state.clone()))
        .merge(crate::web::routes())
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        .layer(axum::extract::DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::middleware::from_fn(body::bound))
        .layer(tower_http::limit::RequestBodyLimitLayer::new(BODY_LIMIT))
        .layer(axum::middleware::map_response(json_errors))
        .layer(axum::middleware::from_fn(close_after_unread_body))
        .layer(axum::middleware::from_fn_with_state(limits, limits::bound))
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

/// Why the listener could not be bound; for a taken port, how to choose
/// another (the OS's "Address already in use" alone says neither).
fn listen_error(addr: std::net::SocketAddr, e: std::io::Error) -> FacesError {
    if e.kind() != std::io::ErrorKind::AddrInUse {
        return FacesError {
            what: format!("cannot listen on {addr}"),
            source: Some(Box::new(e)),
        };
    }
    let mut other = addr;
    other.set_port(addr.port() % 65535 + 1);
    FacesError {
        what: format!(
            "cannot listen on {addr}: port {} is taken (another kedge serve, or another server); \
             choose another address with --listen or KEDGE_LISTEN (e.g. --listen {other}), \
             or --listen none to serve no HTTP",
            addr.port()
        ),
        source: None,
    }
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
        Some((cert, key)) => Some(listen::tls_acceptor(cert, key)?),
        None => None,
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| listen_error(addr, e))?;
    let bound = listener.local_addr().unwrap_or(addr);
    let cap = listen::connection_cap(listen::descriptor_limit());
    tracing::info!(
        tls = tls.is_some(),
        max_connections = cap,
        "listening on {}",
        bound
    );
    // Subscribed before the listener serves: a deploy that follows at once is counted.
    let live = shared.hub.subscribe();
    let commands = shared.commands.clone();
    let state = Arc::new(AppState {
        ops: Ops::serving(shared),
        metrics: crate::api::metrics::Metrics::new(),
        sessions: Default::default(),
    });
    tokio::spawn(crate::api::metrics::follow(state.clone(), live));
    let app = router(state);
    Ok(Some(tokio::spawn(listen::accept_loop(
        listener, bound, tls, app, cap, shutdown, commands,
    ))))
}
