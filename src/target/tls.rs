//! target: a `tcp://` host's engine behind TLS (fleet.md §4), made to
//! look like an `ssh://` one: a socket of Kedge's own (0600) whose every
//! connection is carried to the engine over TLS with the host's CA and the
//! client's certificate. The engine API and compose then speak to a local
//! socket whatever the host's transport; no TLS material reaches a child.

use std::path::Path;
use std::sync::Arc;

use tokio_rustls::TlsConnector;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::ServerName;

use crate::config::hosts::Tls;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {}", path.display())]
    Read {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} holds no PEM {what}", path.display())]
    Pem {
        path: std::path::PathBuf,
        what: &'static str,
    },
    #[error("cannot use the TLS files: {0}")]
    Config(#[source] rustls::Error),
    #[error("{0} is not a host name or address TLS can check")]
    Name(String),
    #[error("cannot connect to {addr}")]
    Connect {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the TLS handshake with {addr} failed")]
    Handshake {
        addr: String,
        #[source]
        source: std::io::Error,
    },
}

/// How to reach one engine over TLS.
#[derive(Clone)]
pub struct Dialer {
    addr: String,
    name: ServerName<'static>,
    connector: TlsConnector,
}

impl Dialer {
    /// From the host's `tls:` files; `addr` is `host:port`.
    pub fn new(addr: &str, tls: &Tls) -> Result<Dialer, TlsError> {
        let read = |p: &Path| {
            std::fs::read(p).map_err(|source| TlsError::Read {
                path: p.to_path_buf(),
                source,
            })
        };
        let pem = |p: &Path, what| TlsError::Pem {
            path: p.to_path_buf(),
            what,
        };
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pemfile::certs(&mut read(&tls.ca)?.as_slice()) {
            let cert = cert.map_err(|_| pem(&tls.ca, "certificate"))?;
            roots.add(cert).map_err(TlsError::Config)?;
        }
        if roots.is_empty() {
            return Err(pem(&tls.ca, "certificate"));
        }
        let certs: Vec<_> = rustls_pemfile::certs(&mut read(&tls.cert)?.as_slice())
            .collect::<Result<_, _>>()
            .map_err(|_| pem(&tls.cert, "certificate"))?;
        if certs.is_empty() {
            return Err(pem(&tls.cert, "certificate"));
        }
        let key = rustls_pemfile::private_key(&mut read(&tls.key)?.as_slice())
            .map_err(|_| pem(&tls.key, "private key"))?
            .ok_or_else(|| pem(&tls.key, "private key"))?;
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Config)?
        .with_root_certificates(roots)
        .with_client_auth_cert(certs, key)
        .map_err(TlsError::Config)?;
        let host = match addr.rsplit_once(':') {
            Some((h, _)) => h.trim_start_matches('[').trim_end_matches(']'),
            None => addr,
        };
        let name =
            ServerName::try_from(host.to_string()).map_err(|_| TlsError::Name(host.to_string()))?;
        Ok(Dialer {
            addr: addr.to_string(),
            name,
            connector: TlsConnector::from(Arc::new(config)),
        })
    }

    /// One connection to the engine, the handshake done.
    pub async fn dial(
        &self,
    ) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, TlsError> {
        let tcp = tokio::net::TcpStream::connect(&self.addr)
            .await
            .map_err(|source| TlsError::Connect {
                addr: self.addr.clone(),
                source,
            })?;
        self.connector
            .connect(self.name.clone(), tcp)
            .await
            .map_err(|source| TlsError::Handshake {
                addr: self.addr.clone(),
                source,
            })
    }
}

/// Carries every connection to `listener` to the engine, until aborted.
pub async fn forward(listener: tokio::net::UnixListener, dialer: Dialer) {
    loop {
        let Ok((mut local, _)) = listener.accept().await else {
            continue;
        };
        let dialer = dialer.clone();
        tokio::spawn(async move {
            match dialer.dial().await {
                Ok(mut remote) => {
                    let _ = tokio::io::copy_bidirectional(&mut local, &mut remote).await;
                }
                Err(e) => {
                    tracing::debug!("tls forward: {}", crate::error_chain(&e));
                }
            }
        });
    }
}
