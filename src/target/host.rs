//! target: reaching a host's engine (fleet.md §4). A `unix://` host is its
//! socket. An `ssh://` host is reached through one SSH connection that
//! forwards a socket of Kedge's own (0600, in its data directory) to the
//! host's engine socket: the engine API and the compose CLI both use it,
//! and no agent runs on the host. Its key is pinned: the operator's
//! `ssh_known_hosts`, or the one seen first, recorded and then required.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::hosts::{Endpoint, Host};
use crate::observe::Engine;
use crate::process::{Cmd, Kept, ProcessError};
use crate::source::auth::Refusal;

/// Where a host's forwarded socket and recorded keys live, in the data
/// directory.
pub const HOSTS_DIR: &str = "hosts";
/// How long an SSH connection may take to forward the engine's socket.
const CONNECT: Duration = Duration::from_secs(20);
/// The engine socket on an `ssh://` host.
const REMOTE_SOCKET: &str = "/var/run/docker.sock";

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("host {host}: cannot prepare {}", path.display())]
    Prepare {
        host: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "host {host}: the key {} is accessible by group or others (mode {mode:03o}); ssh refuses it: `chmod 600` it",
        path.display()
    )]
    KeyOpen {
        host: String,
        path: PathBuf,
        mode: u32,
    },
    #[error("host {host}: cannot start ssh")]
    Spawn {
        host: String,
        #[source]
        source: ProcessError,
    },
    #[error("host {host}: {refusal}")]
    Refused { host: String, refusal: Box<Refusal> },
    #[error("host {host}: the SSH connection ended: {why}")]
    Ended { host: String, why: String },
    #[error("host {host}: the SSH connection forwarded no socket within {}s", after.as_secs())]
    Timeout { host: String, after: Duration },
    #[error("host {host}")]
    Tls {
        host: String,
        #[source]
        source: super::tls::TlsError,
    },
    #[error("host {host}: the engine does not answer: {why}")]
    Engine { host: String, why: String },
    #[error("host {host}: the engine does not answer: no answer within {}s", after.as_secs())]
    Silent { host: String, after: Duration },
}

/// A host's engine, reachable while this lives: the SSH connection, if
/// any, ends with it.
pub struct Reached {
    pub socket: PathBuf,
    /// An `ssh://` host's connection, for commands over it: its control
    /// socket and destination.
    pub control: Option<Control>,
    tunnel: Option<Kept>,
    /// A `tcp://` host's forwarder (see `tls`).
    proxy: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Reached {
    fn drop(&mut self) {
        // The forwarded socket goes with its connection.
        if let Some(proxy) = self.proxy.take() {
            proxy.abort();
            let _ = std::fs::remove_file(&self.socket);
        }
        if self.tunnel.take().is_some() {
            let _ = std::fs::remove_file(&self.socket);
            if let Some(c) = &self.control {
                let _ = std::fs::remove_file(&c.path);
            }
        }
    }
}

impl Reached {
    /// The engine API at the host.
    pub fn engine(&self) -> Engine {
        Engine::at(&self.socket)
    }

    /// The engine's version, asked now; an engine that does not answer
    /// within the connection time is `HostError::Silent`.
    pub async fn version(&self, host: &str) -> Result<String, HostError> {
        match tokio::time::timeout(CONNECT, self.engine().version()).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(HostError::Engine {
                host: host.to_string(),
                why: crate::error_chain(&e),
            }),
            Err(_) => Err(HostError::Silent {
                host: host.to_string(),
                after: CONNECT,
            }),
        }
    }

    /// Why the way to the engine is gone, if it is: the SSH connection
    /// ended (its stderr's end), or its socket was removed.
    pub async fn ended(&mut self) -> Option<String> {
        if (self.tunnel.is_some() || self.proxy.is_some()) && !self.socket.exists() {
            return Some(format!("{} was removed", self.socket.display()));
        }
        match &mut self.tunnel {
            Some(t) => t.exited().await,
            None => None,
        }
    }
}

/// The SSH connection's control socket (`ControlMaster`): commands on the
/// host (shipping a stack's files) run over the connection already made,
/// with no new handshake and no second check of the host key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Control {
    pub path: PathBuf,
    pub destination: String,
}

/// Opens the way to `host`'s engine.
pub async fn reach(host: &Host, data_dir: &Path) -> Result<Reached, HostError> {
    match &host.endpoint {
        Endpoint::Unix(path) => Ok(Reached {
            socket: path.clone(),
            control: None,
            tunnel: None,
            proxy: None,
        }),
        Endpoint::Tcp { addr, tls } => {
            let name = &host.name;
            let tls_err = |source| HostError::Tls {
                host: name.clone(),
                source,
            };
            let dialer = super::tls::Dialer::new(addr, tls).map_err(tls_err)?;
            // Tried once now: a refused certificate is said here, not as
            // an engine that hangs up.
            drop(dialer.dial().await.map_err(tls_err)?);
            let socket = private_socket(data_dir, name)?;
            let prepared = |source| HostError::Prepare {
                host: name.clone(),
                path: socket.clone(),
                source,
            };
            let listener = tokio::net::UnixListener::bind(&socket).map_err(prepared)?;
            std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600))
                .map_err(prepared)?;
            Ok(Reached {
                socket: socket.clone(),
                control: None,
                tunnel: None,
                proxy: Some(tokio::spawn(super::tls::forward(listener, dialer))),
            })
        }
        Endpoint::Ssh {
            user,
            host: address,
            port,
            key,
            known_hosts,
        } => {
            let name = &host.name;
            let dir = data_dir.join(HOSTS_DIR);
            let prepare = |path: &Path, source| HostError::Prepare {
                host: name.clone(),
                path: path.to_path_buf(),
                source,
            };
            if let Some(key) = key {
                let mode = std::fs::metadata(key)
                    .map_err(|e| prepare(key, e))?
                    .permissions()
                    .mode();
                if mode & 0o077 != 0 {
                    return Err(HostError::KeyOpen {
                        host: name.clone(),
                        path: key.clone(),
                        mode: mode & 0o777,
                    });
                }
            }
            let socket = private_socket(data_dir, name)?;
            let control = socket.with_extension("ctl");
            let _ = std::fs::remove_file(&control);
            // Trust on first use: the key seen first is recorded here,
            // then required (`accept-new`); a file the operator gave is
            // the only truth (`yes`).
            let (known, strict) = match known_hosts {
                Some(file) => (file.clone(), "yes"),
                None => (dir.join(format!("{name}.known_hosts")), "accept-new"),
            };
            let mut cmd = Cmd::new("ssh").args([
                "-F",
                "/dev/null",
                "-N",
                "-T",
                "-o",
                "BatchMode=yes",
                "-o",
                "ExitOnForwardFailure=yes",
                "-o",
                "StreamLocalBindUnlink=yes",
                "-o",
                "StreamLocalBindMask=0177",
                "-o",
                "ServerAliveInterval=10",
                "-o",
                "ServerAliveCountMax=3",
                "-o",
                "ConnectTimeout=10",
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "HashKnownHosts=no",
            ]);
            cmd = cmd
                .arg("-o")
                .arg("ControlMaster=yes")
                .arg("-o")
                .arg(format!("ControlPath={}", control.display()))
                .arg("-o")
                .arg(format!("UserKnownHostsFile={}", known.display()))
                .arg("-o")
                .arg(format!("StrictHostKeyChecking={strict}"));
            if let Some(key) = key {
                cmd = cmd.arg("-i").arg(key);
            }
            if let Some(port) = port {
                cmd = cmd.arg("-p").arg(port.to_string());
            }
            let destination = match user {
                Some(u) => format!("{u}@{address}"),
                None => address.clone(),
            };
            cmd = cmd
                .arg("-L")
                .arg(format!("{}:{REMOTE_SOCKET}", socket.display()))
                .arg("--")
                .arg(&destination);
            let mut tunnel = cmd.spawn_kept().map_err(|source| HostError::Spawn {
                host: name.clone(),
                source,
            })?;
            let deadline = tokio::time::Instant::now() + CONNECT;
            loop {
                if let Some(stderr) = tunnel.exited().await {
                    return Err(match crate::source::auth::refusal(&stderr, key.is_some()) {
                        Some(refusal) => HostError::Refused {
                            host: name.clone(),
                            refusal: Box::new(refusal),
                        },
                        None => HostError::Ended {
                            host: name.clone(),
                            why: last_line(&stderr),
                        },
                    });
                }
                if std::os::unix::net::UnixStream::connect(&socket).is_ok() {
                    return Ok(Reached {
                        socket,
                        control: Some(Control {
                            path: control,
                            destination,
                        }),
                        tunnel: Some(tunnel),
                        proxy: None,
                    });
                }
                if tokio::time::Instant::now() >= deadline {
                    return Err(HostError::Timeout {
                        host: name.clone(),
                        after: CONNECT,
                    });
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// `DATA_DIR/hosts/NAME-PID.sock` in a directory only Kedge may enter:
/// this process's own (a `kedge host check` beside `serve` must not take
/// `serve`'s); a leftover of this process is removed.
fn private_socket(data_dir: &Path, name: &str) -> Result<PathBuf, HostError> {
    let dir = data_dir.join(HOSTS_DIR);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(|source| HostError::Prepare {
            host: name.to_string(),
            path: dir.clone(),
            source,
        })?;
    let socket = dir.join(format!("{name}-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&socket);
    Ok(socket)
}

/// What a host check found: the engine's version.
pub async fn check(host: &Host, data_dir: &Path) -> Result<String, HostError> {
    reach(host, data_dir).await?.version(&host.name).await
}

fn last_line(stderr: &str) -> String {
    stderr
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("ssh exited")
        .trim()
        .to_string()
}
