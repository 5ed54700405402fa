//! target: the ways to the configured hosts' engines (fleet.md §4), one per
//! host for the whole process — `serve`'s host watch keeps each open and
//! says whether it answers; a stack's task asks for its host's way before
//! each pass and gets its engine, and the socket compose is pointed at.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::host::{HostError, Reached, reach};
use crate::config::hosts::{Host, LOCAL};
use crate::observe::Engine;

/// How a stack's children and its engine client reach its host.
#[derive(Clone)]
pub struct Way {
    pub host: String,
    pub engine: Engine,
    /// The forwarded (or configured) socket compose is pointed at with
    /// `DOCKER_HOST`; `None`: the engine Kedge itself talks to.
    pub socket: Option<PathBuf>,
    /// The SSH connection of an `ssh://` host, for shipping files.
    pub control: Option<super::host::Control>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    #[error("host `{host}` is not configured (the global config's `hosts:` has: {known})")]
    Unknown { host: String, known: String },
    #[error("host `{host}` is unreachable: {why}")]
    Unreachable { host: String, why: String },
}

/// What the last look at a host found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// Not looked at yet.
    Unknown,
    Up {
        version: String,
    },
    Down {
        why: String,
    },
}

struct Slot {
    host: Host,
    /// The open way; looks take it one at a time.
    reached: tokio::sync::Mutex<Option<Reached>>,
    health: Mutex<Health>,
    /// The engine client at the way's socket (the same path across
    /// reconnections: one client for the slot's life).
    engine: Mutex<Option<Engine>>,
    control: Mutex<Option<super::host::Control>>,
}

/// The hosts' ways.
pub struct Pool {
    data_dir: PathBuf,
    local: Engine,
    slots: HashMap<String, Slot>,
}

impl Pool {
    /// `local` is this machine's engine, unless `hosts:` names `local` itself.
    pub fn new(hosts: &[Host], local: Engine, data_dir: &Path) -> Pool {
        let slots = hosts
            .iter()
            .map(|h| {
                (
                    h.name.clone(),
                    Slot {
                        host: h.clone(),
                        reached: tokio::sync::Mutex::new(None),
                        health: Mutex::new(Health::Unknown),
                        engine: Mutex::new(None),
                        control: Mutex::new(None),
                    },
                )
            })
            .collect();
        Pool {
            data_dir: data_dir.to_path_buf(),
            local,
            slots,
        }
    }

    /// The configured hosts other than `local`, by name.
    pub fn remote(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .slots
            .keys()
            .filter(|n| n.as_str() != LOCAL)
            .cloned()
            .collect();
        names.sort();
        names
    }

    /// The way to `host` for a pass: at once when the last look found it
    /// up, looked at now when never looked at, refused while it is down
    /// (the host watch looks again every check interval).
    pub async fn way(&self, host: &str) -> Result<Way, PoolError> {
        let Some(slot) = self.slots.get(host) else {
            if host == LOCAL {
                return Ok(Way {
                    host: LOCAL.to_string(),
                    engine: self.local.clone(),
                    socket: None,
                    control: None,
                });
            }
            let mut known: Vec<&str> = self.slots.keys().map(String::as_str).collect();
            known.push(LOCAL);
            known.sort();
            known.dedup();
            return Err(PoolError::Unknown {
                host: host.to_string(),
                known: known.join(", "),
            });
        };
        let health = lock(&slot.health).clone();
        match health {
            Health::Up { .. } => {}
            Health::Unknown => {
                self.look(host).await;
            }
            Health::Down { why } => {
                return Err(PoolError::Unreachable {
                    host: host.to_string(),
                    why,
                });
            }
        }
        let health = lock(&slot.health).clone();
        match health {
            Health::Up { .. } => {
                let engine = lock(&slot.engine).clone();
                let socket = engine.as_ref().and_then(Engine::socket);
                Ok(Way {
                    host: host.to_string(),
                    engine: engine.unwrap_or_else(|| self.local.clone()),
                    socket,
                    control: lock(&slot.control).clone(),
                })
            }
            Health::Down { why } => Err(PoolError::Unreachable {
                host: host.to_string(),
                why,
            }),
            Health::Unknown => Err(PoolError::Unreachable {
                host: host.to_string(),
                why: "not looked at yet".into(),
            }),
        }
    }

    /// Looks at `host` now: the way made again when it ended (or was never
    /// made), then the engine asked its version. Returns the health before
    /// and after.
    pub async fn look(&self, host: &str) -> (Health, Health) {
        let Some(slot) = self.slots.get(host) else {
            return (Health::Unknown, Health::Unknown);
        };
        let mut reached = slot.reached.lock().await;
        let ended = match reached.as_mut() {
            Some(r) => r.ended().await.is_some(),
            None => true,
        };
        let found = async {
            if ended {
                *reached = None;
                let r = reach(&slot.host, &self.data_dir).await?;
                *lock(&slot.engine) = Some(r.engine());
                *lock(&slot.control) = r.control.clone();
                *reached = Some(r);
            }
            let r = reached.as_ref().expect("made above");
            match r.version(host).await {
                Ok(v) => Ok(v),
                Err(e) => {
                    // A way that hangs is made again at the next look.
                    if matches!(e, HostError::Silent { .. }) {
                        *reached = None;
                    }
                    Err(e)
                }
            }
        }
        .await;
        let now = match found {
            Ok(version) => Health::Up { version },
            Err(e) => Health::Down {
                why: crate::error_chain(&e),
            },
        };
        let before = std::mem::replace(&mut *lock(&slot.health), now.clone());
        (before, now)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
