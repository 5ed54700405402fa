//! controller: a deployment that moves the stack to another compose
//! project (`docker.project_name` changed). The new project is made whole;
//! the old one is taken down once the new one has passed its gate, or
//! before its `up` when both publish the same host ports (said, with the
//! ports). The old project is never healed again: the deployed project is
//! the new one from then on.

use std::collections::BTreeSet;

use serde_json::Value;

use super::Shared;
use super::task::{ReconcileError, RepoTask};
use crate::desired::render::Desired;
use crate::record::DeploymentStatus;
use crate::{apply, error_chain};

/// A move under way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Move {
    /// The project the stack leaves.
    pub from: String,
    /// The host ports both publish: the old project went down first.
    pub collisions: Vec<String>,
}

/// The host ports a rendered project (`config --format json`) publishes,
/// as `PORT/PROTOCOL`.
pub fn published(rendered: &str) -> BTreeSet<String> {
    let Ok(doc) = serde_json::from_str::<Value>(rendered) else {
        return BTreeSet::new();
    };
    let Some(services) = doc.get("services").and_then(Value::as_object) else {
        return BTreeSet::new();
    };
    services
        .values()
        .filter_map(|s| s.get("ports")?.as_array())
        .flatten()
        .filter_map(|p| {
            let published = match p.get("published")? {
                Value::String(s) if !s.is_empty() => s.clone(),
                Value::Number(n) => n.to_string(),
                _ => return None,
            };
            let protocol = p.get("protocol").and_then(Value::as_str).unwrap_or("tcp");
            Some(format!("{published}/{protocol}"))
        })
        .collect()
}

/// The named volumes a rendered project uses, by their engine names
/// (compose prefixes a volume without `name:` with the project's name).
pub fn volumes(rendered: &str) -> BTreeSet<String> {
    let Ok(doc) = serde_json::from_str::<Value>(rendered) else {
        return BTreeSet::new();
    };
    doc.get("volumes")
        .and_then(Value::as_object)
        .map(|all| {
            all.iter()
                .filter(|(_, v)| v.get("external").and_then(Value::as_bool) != Some(true))
                .map(|(key, v)| {
                    v.get("name")
                        .and_then(Value::as_str)
                        .unwrap_or(key)
                        .to_string()
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Whether deploying `desired` moves the stack, and from where: the
/// project deployed now, when it differs. With ports both publish, the
/// old project is taken down here, before the new one's `up`.
pub async fn begin(
    shared: &Shared,
    task: &RepoTask,
    desired: &Desired,
) -> Result<Option<Move>, ReconcileError> {
    let id = task.id();
    let state = shared.db.read(|s| s.repo_state(id))?;
    let Some(from) = state.project.clone().filter(|p| *p != desired.project) else {
        return Ok(None);
    };
    // A target that cannot move a project (a Swarm stack) deploys afresh.
    let (before, now) = (
        crate::target::Target::of_state(&state),
        crate::target::Target::of_kedge(&desired.kedge),
    );
    if !before.moves_projects() || !now.moves_projects() {
        return Ok(None);
    }
    let deployed = state.deployed_commit.clone();
    let old = shared.db.read(|s| {
        let found = s.deployments(id, 50)?.into_iter().find(|d| {
            Some(&d.commit) == deployed.as_ref()
                && matches!(
                    d.status,
                    DeploymentStatus::Success | DeploymentStatus::RolledBack
                )
        });
        match found.and_then(|d| d.snapshot) {
            Some(key) => s.snapshot(&key),
            None => Ok(None),
        }
    })?;
    let before = old.as_deref().map(published).unwrap_or_default();
    // Data stays where it is: volumes are the project's, and the new one
    // gets its own unless they are named outright.
    let kept = volumes(&desired.rendered);
    for left in old
        .as_deref()
        .map(volumes)
        .unwrap_or_default()
        .difference(&kept)
    {
        tracing::warn!(repo = %task.repo.name, volume = %left, "the volume of the old project is not the new one's: its data stays in it (give the volume a `name:` to keep using it)");
    }
    let collisions: Vec<String> = published(&desired.rendered)
        .intersection(&before)
        .cloned()
        .collect();
    let name = &task.repo.name;
    if collisions.is_empty() {
        tracing::info!(repo = %name, %from, to = %desired.project, "the stack moves to another compose project: the old one goes down once the new one passes its gate");
    } else {
        tracing::warn!(repo = %name, %from, to = %desired.project, ports = ?collisions, "the stack moves to another compose project that publishes the same host ports: the old one goes down first");
        down(shared, &from, task).await;
    }
    Ok(Some(Move { from, collisions }))
}

/// The new project runs (it passed its gate, or a failed one is kept):
/// the old one goes down, if it has not already.
pub async fn finish(shared: &Shared, task: &RepoTask, mv: &Move) {
    if mv.collisions.is_empty() {
        down(shared, &mv.from, task).await;
    }
}

/// The new project failed and is undone: it goes down, so that the old
/// one can come back in its place.
pub async fn abandon(shared: &Shared, task: &RepoTask, to: &str) {
    down(shared, to, task).await;
}

async fn down(shared: &Shared, project: &str, task: &RepoTask) {
    let fd = task.lock.as_ref().map(|l| l.fd());
    let site = task.site(shared);
    match apply::down_stack(site.engine, site.docker_host.as_deref(), project, fd).await {
        Ok(()) => tracing::info!(repo = %task.repo.name, %project, "compose project taken down"),
        Err(e) => {
            tracing::warn!(repo = %task.repo.name, %project, "cannot take the project down: {}", error_chain(&e))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_ports_a_project_publishes() {
        let rendered = r#"{"services": {
            "web": {"ports": [{"target": 80, "published": "8080", "protocol": "tcp"},
                              {"target": 53, "published": "5353", "protocol": "udp"}]},
            "api": {"ports": [{"target": 9000}]},
            "db": {}
        }}"#;
        let want: BTreeSet<String> = ["8080/tcp", "5353/udp"].map(String::from).into();
        assert_eq!(published(rendered), want);
        assert!(published("not json").is_empty());
    }

    #[test]
    fn the_volumes_a_project_owns_by_their_engine_names() {
        let rendered = r#"{"volumes": {
            "data": {"name": "shop_data"},
            "shared": {"name": "shared-data"},
            "outside": {"name": "backups", "external": true}
        }}"#;
        let want: BTreeSet<String> = ["shop_data", "shared-data"].map(String::from).into();
        assert_eq!(volumes(rendered), want);
    }
}
