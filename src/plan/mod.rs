//! plan: pure. What differs between the desired services and the observed
//! containers, and what to do about it in the repository's mode (source →
//! desired → observe → **plan** → apply → record). Output is sorted, so
//! equal inputs give equal plans.

pub mod build;
pub mod failure;
pub mod gate;
pub mod rollout;
pub mod swarm;
pub mod updates;
pub mod window;

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::desired::kedge_yaml::{Mode, Unhealthy};
use crate::desired::render::ServiceSpec;
use crate::observe::{ContainerState, RunState};

/// One deployed service as the planner needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Want {
    pub spec: ServiceSpec,
    /// The image reference its containers must run.
    pub image: String,
    /// What that reference resolves to on the host now (`None`: unknown).
    pub image_id: Option<String>,
    /// The config hash compose gave its containers at Kedge's last apply.
    pub config_hash: Option<String>,
}

pub use crate::model::drift::{Drift, ExtraReason};

/// What healing does, cheapest first.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Heal {
    /// Start a stopped container through the engine (no process).
    Start {
        service: String,
        container: String,
        id: String,
    },
    /// Remove a container through the engine (its volumes are kept).
    Remove {
        service: String,
        container: String,
        id: String,
    },
    /// `docker compose up -d --no-deps [--force-recreate] SERVICES`.
    Recreate { services: Vec<String>, force: bool },
    /// Restart an unhealthy container through the engine (`drift.unhealthy: restart`).
    Restart {
        service: String,
        container: String,
        id: String,
    },
    /// `docker stack deploy` of the deployed stack file again (Swarm).
    Redeploy { services: Vec<String> },
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub drifts: Vec<Drift>,
    pub heals: Vec<Heal>,
    /// Drifted services left alone because they are backed off.
    pub held: Vec<String>,
}

impl Plan {
    pub fn in_sync(&self) -> bool {
        self.drifts.is_empty()
    }
}

/// Compares and decides. `dormant`: services the compose files define
/// under profiles not enabled, whose containers (started by hand) are not
/// extra. `backed_off`: services that must not be healed now
/// (crash-looping); their drift is still reported. `unhealthy`: whether an
/// unhealthy container is restarted or only reported.
pub fn plan(
    want: &BTreeMap<String, Want>,
    actual: &[ContainerState],
    mode: Mode,
    prune: bool,
    dormant: &BTreeSet<String>,
    backed_off: &BTreeSet<String>,
    unhealthy: Unhealthy,
) -> Plan {
    let mut drifts = Vec::new();
    let mut start = Vec::new();
    let mut restart = Vec::new();
    let mut remove = Vec::new();
    let mut create = BTreeSet::new();
    let mut force = BTreeSet::new();

    // `docker compose run` containers are the operator's own, and so are
    // those labelled `io.kedge.ignore: "true"`.
    let actual: Vec<&ContainerState> = actual.iter().filter(|c| !c.oneoff && !ignored(c)).collect();

    for (name, w) in want {
        if w.spec.ignored {
            continue;
        }
        let mut mine: Vec<&ContainerState> = actual
            .iter()
            .copied()
            .filter(|c| &c.service == name)
            .collect();
        mine.sort_by_key(|c| (c.number, c.name.clone()));
        // A container the engine is removing is on its way out: starting
        // it fails (no such container) and creating beside it collides on
        // its name. The service is looked at again once it is gone (its
        // `destroy` event wakes the check).
        if mine.iter().any(|c| c.state == RunState::Removing) {
            continue;
        }
        let replicas = w.spec.replicas as usize;
        let (kept, beyond) = mine.split_at(mine.len().min(replicas));
        for c in beyond {
            drifts.push(Drift::Extra {
                service: name.clone(),
                container: c.name.clone(),
                reason: ExtraReason::BeyondReplicas,
            });
            remove.push((name.clone(), *c));
        }
        if kept.len() < replicas {
            drifts.push(Drift::Missing {
                service: name.clone(),
                expected: w.spec.replicas,
                actual: kept.len() as u32,
            });
            create.insert(name.clone());
        }
        for c in kept {
            let mut recreate = false;
            if let Some(actual_image) = wrong_image(w, c) {
                drifts.push(Drift::WrongImage {
                    service: name.clone(),
                    container: c.name.clone(),
                    expected: w.image.clone(),
                    actual: actual_image,
                });
                recreate = true;
            }
            if let (Some(expected), Some(actual)) = (&w.config_hash, &c.config_hash)
                && expected != actual
            {
                drifts.push(Drift::ConfigChanged {
                    service: name.clone(),
                    container: c.name.clone(),
                    expected: expected.clone(),
                    actual: actual.clone(),
                });
                recreate = true;
            }
            let complete = w.spec.one_shot() && completed(c);
            if c.state == RunState::Restarting {
                // Regression: a restarting container counted as alive, so a
                // crash loop under `restart: always` showed no drift at all.
                // Starting it would change nothing: it is reported only.
                drifts.push(Drift::CrashLoop {
                    service: name.clone(),
                    container: c.name.clone(),
                    exit_code: c.exit_code,
                });
            } else if !is_alive(c) && !complete {
                drifts.push(Drift::Stopped {
                    service: name.clone(),
                    container: c.name.clone(),
                    state: c.state.to_string(),
                    exit_code: c.exit_code,
                });
                if !recreate {
                    start.push((name.clone(), *c));
                }
            } else if c.health.as_deref() == Some("unhealthy") && c.state == RunState::Running {
                drifts.push(Drift::Unhealthy {
                    service: name.clone(),
                    container: c.name.clone(),
                });
                if !recreate && unhealthy == Unhealthy::Restart {
                    restart.push((name.clone(), *c));
                }
            }
            if recreate {
                force.insert(name.clone());
            }
        }
    }

    let ignored: BTreeSet<&String> = want
        .iter()
        .filter(|(_, w)| w.spec.ignored)
        .map(|(n, _)| n)
        .collect();
    for c in &actual {
        if !want.contains_key(&c.service)
            && !ignored.contains(&c.service)
            && !dormant.contains(&c.service)
        {
            drifts.push(Drift::Extra {
                service: c.service.clone(),
                container: c.name.clone(),
                reason: ExtraReason::NotInFile,
            });
            remove.push((c.service.clone(), *c));
        }
    }
    drifts.sort();

    let mut heals = Vec::new();
    let mut held: BTreeSet<String> = BTreeSet::new();
    if mode == Mode::Auto {
        let mut allowed = |service: &String| {
            if backed_off.contains(service) {
                held.insert(service.clone());
                false
            } else {
                true
            }
        };
        for (service, c) in &start {
            if allowed(service) && !force.contains(service) && !create.contains(service) {
                heals.push(Heal::Start {
                    service: service.clone(),
                    container: c.name.clone(),
                    id: c.id.clone(),
                });
            }
        }
        for (service, c) in &restart {
            if allowed(service) && !force.contains(service) && !create.contains(service) {
                heals.push(Heal::Restart {
                    service: service.clone(),
                    container: c.name.clone(),
                    id: c.id.clone(),
                });
            }
        }
        if prune {
            for (service, c) in &remove {
                heals.push(Heal::Remove {
                    service: service.clone(),
                    container: c.name.clone(),
                    id: c.id.clone(),
                });
            }
        }
        // A service that needs forcing gets it for all its containers; the
        // others only get what is missing created.
        let forced: Vec<String> = force.iter().filter(|s| allowed(s)).cloned().collect();
        let created: Vec<String> = create
            .iter()
            .filter(|s| !force.contains(*s) && allowed(s))
            .cloned()
            .collect();
        if !created.is_empty() {
            heals.push(Heal::Recreate {
                services: created,
                force: false,
            });
        }
        if !forced.is_empty() {
            heals.push(Heal::Recreate {
                services: forced,
                force: true,
            });
        }
        heals.sort();
    }
    Plan {
        drifts,
        heals,
        held: held.into_iter().collect(),
    }
}

/// Whether `actual` has a container labelled `io.kedge.ignore: "true"`
/// whose service is not among `services`: compose would remove it as an
/// orphan.
pub fn keeps_orphans<T>(actual: &[ContainerState], services: &BTreeMap<String, T>) -> bool {
    actual
        .iter()
        .any(|c| !c.oneoff && ignored(c) && !services.contains_key(&c.service))
}

/// Labelled `io.kedge.ignore: "true"` (by its compose service or by hand).
fn ignored(c: &ContainerState) -> bool {
    c.labels
        .get(crate::desired::render::IGNORE_LABEL)
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

fn is_alive(c: &ContainerState) -> bool {
    c.state == RunState::Running
}

/// A container that ran to success: for a one-shot, done rather than down.
pub fn completed(c: &ContainerState) -> bool {
    c.state == RunState::Exited && c.exit_code == Some(0)
}

/// The container's image when it is not what the service resolves to now:
/// another reference, or the same reference whose tag has moved.
fn wrong_image(w: &Want, c: &ContainerState) -> Option<String> {
    if let Some(expected_id) = &w.image_id
        && !c.image_id.is_empty()
        && &c.image_id != expected_id
    {
        return Some(c.image.clone());
    }
    // The engine shows an image id instead of a reference once the tag moved.
    let is_id = c.image.starts_with("sha256:");
    if !is_id && normalize(&c.image) != normalize(&w.image) {
        return Some(c.image.clone());
    }
    None
}

/// `nginx`, `library/nginx:latest` and `docker.io/library/nginx:latest` are one image.
pub fn normalize(reference: &str) -> String {
    let r = reference.strip_prefix("docker.io/").unwrap_or(reference);
    let r = r.strip_prefix("library/").unwrap_or(r);
    let last = r.rsplit('/').next().unwrap_or(r);
    if last.contains(':') || r.contains('@') {
        r.to_string()
    } else {
        format!("{r}:latest")
    }
}

#[cfg(test)]
mod tests;
