//! http: the listener — accepting connections up to a cap below the
//! process's descriptor limit, serving each with a header read timeout
//! (plain or TLS), and the descriptor limit itself, raised at start.
//! Whatever strangers do to the listener, descriptors stay for the engine,
//! git, compose and the store, so deploys and heals go on.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use tokio::sync::{Semaphore, watch};

use super::HEADER_TIMEOUT;
use crate::controller::FacesError;

/// The pause after a failed `accept`.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// A failed `accept` or a refused connection is logged at most this often
/// (with how many there were since): a flood must not flood the log too.
const LOG_INTERVAL: Duration = Duration::from_secs(10);
/// Descriptors kept out of the connections' reach, at least: the engine's
/// connections and event stream, git and compose children's pipes, the
/// store, the log. A quarter of the limit when that is more.
const RESERVED_DESCRIPTORS: u64 = 256;
/// Connections beyond this are refused whatever the descriptor limit: each
/// costs memory too.
const MAX_CONNECTIONS: u64 = 8192;
/// How far the soft descriptor limit is raised at start (never past the
/// hard one): higher would only slow down children that close every
/// descriptor up to the limit.
const RAISE_DESCRIPTORS_TO: u64 = 65536;
/// The answer to a connection over the cap, before it is closed.
const OVER_CAP: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n\
Content-Length: 54\r\nConnection: close\r\nRetry-After: 10\r\n\r\n\
{\"error\":\"too many connections: try again in a while\"}";

/// The soft limit on open descriptors (`RLIMIT_NOFILE`).
pub fn descriptor_limit() -> u64 {
    // SAFETY: getrlimit writes into the struct it is given.
    let mut limit = unsafe { std::mem::zeroed::<libc::rlimit>() };
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return 1024;
    }
    limit.rlim_cur
}

/// Raises the soft descriptor limit to the hard one (up to
/// [`RAISE_DESCRIPTORS_TO`]): the default soft limit (1024) is small for
/// a daemon that serves HTTP and runs git and compose for many repositories.
pub fn raise_descriptor_limit() {
    // SAFETY: getrlimit/setrlimit read and write the struct they are given.
    let mut limit = unsafe { std::mem::zeroed::<libc::rlimit>() };
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return;
    }
    let before = limit.rlim_cur;
    let wanted = limit.rlim_max.min(RAISE_DESCRIPTORS_TO);
    if wanted <= before {
        return;
    }
    limit.rlim_cur = wanted;
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } == 0 {
        tracing::debug!("descriptor limit raised from {before} to {wanted}");
    } else {
        tracing::warn!(
            "cannot raise the descriptor limit from {before} to {wanted}: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// How many connections the listener holds at once under a descriptor
/// limit of `limit`: what is left after the reserve, within bounds.
pub fn connection_cap(limit: u64) -> usize {
    let reserve = (limit / 4).max(RESERVED_DESCRIPTORS);
    limit.saturating_sub(reserve).clamp(16, MAX_CONNECTIONS) as usize
}

/// Something that may happen very often, logged at most once per interval.
struct Throttled {
    interval: Duration,
    last: Option<Instant>,
    since: u64,
}

impl Throttled {
    fn new(interval: Duration) -> Self {
        Throttled {
            interval,
            last: None,
            since: 0,
        }
    }

    /// One more occurrence at `now`: `Some(n)` when it is to be logged,
    /// `n` being how many (this one included) since the last time it was.
    fn hit(&mut self, now: Instant) -> Option<u64> {
        self.since += 1;
        if self
            .last
            .is_some_and(|last| now.duration_since(last) < self.interval)
        {
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.since))
    }
}

/// Accepts connections until shutdown, each served with a header read
/// timeout, at most `cap` at once; at shutdown, connections finish their
/// requests in flight.
///
/// A connection over the cap is accepted, answered 503 and closed at once
/// rather than left waiting in the kernel's queue: the client learns at
/// once rather than timing out, and the queue does not fill with
/// connections that would take the slots slow ones free ahead of whoever
/// comes next. It holds a descriptor for a moment, which the reserve covers.
pub async fn accept_loop(
    listener: tokio::net::TcpListener,
    bound: SocketAddr,
    tls: Option<tokio_rustls::TlsAcceptor>,
    app: Router,
    cap: usize,
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
    let slots = Arc::new(Semaphore::new(cap));
    let mut failures = Throttled::new(LOG_INTERVAL);
    let mut refusals = Throttled::new(LOG_INTERVAL);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    if let Some(n) = failures.hit(Instant::now()) {
                        tracing::warn!(failures = n, "accept failed: {e}");
                    }
                    // Out of descriptors, say: retrying at once would spin
                    // a worker thread the controller needs.
                    tokio::select! {
                        _ = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                        _ = shutdown.changed() => break,
                    }
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            if let Some(n) = refusals.hit(Instant::now()) {
                tracing::warn!(
                    refused = n,
                    max_connections = cap,
                    "connection refused: {cap} connections are open already"
                );
            }
            if tls.is_none() {
                let _ = stream.try_write(OVER_CAP);
            }
            drop(stream);
            continue;
        };
        // The peer's address, for the sign-in back-off (`ConnectInfo`).
        let app = tower::ServiceExt::map_request(
            app.clone(),
            move |mut r: axum::extract::Request<hyper::body::Incoming>| {
                r.extensions_mut().insert(axum::extract::ConnectInfo(peer));
                r
            },
        );
        let service = hyper_util::service::TowerToHyperService::new(app);
        let builder = builder.clone();
        match &tls {
            None => {
                let conn = builder.serve_connection(TokioIo::new(stream), service);
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    let _ = conn.await;
                    drop(slot);
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
                    drop(slot);
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

pub fn tls_acceptor(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_capped_below_the_descriptor_limit() {
        for (limit, want) in [
            (256, 16),
            (512, 256),
            (1024, 768),
            (4096, 3072),
            (20_000, 8192),
            (1 << 20, 8192),
            (u64::MAX, 8192),
        ] {
            assert_eq!(connection_cap(limit), want, "{limit}");
        }
    }

    #[test]
    fn a_flood_of_failures_is_logged_once_per_interval() {
        let start = Instant::now();
        let mut t = Throttled::new(Duration::from_secs(10));
        assert_eq!(t.hit(start), Some(1));
        for i in 1..1000 {
            assert_eq!(t.hit(start + Duration::from_millis(i)), None);
        }
        assert_eq!(t.hit(start + Duration::from_secs(10)), Some(1000));
        assert_eq!(t.hit(start + Duration::from_secs(11)), None);
        assert_eq!(t.hit(start + Duration::from_secs(25)), Some(2));
    }
}
