//! observe: a Swarm stack's services, tasks and nodes through the Engine
//! API of a manager (`docker.target: swarm`), by the stack's namespace
//! label. Read only, no child process.

use std::collections::{BTreeMap, HashMap};

use bollard::query_parameters::{
    ListNodesOptionsBuilder, ListServicesOptionsBuilder, ListTasksOptionsBuilder,
};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{Engine, KEDGE_COMMIT, KEDGE_SERVICE, ObserveError};

/// The label `docker stack deploy` puts on what it makes.
pub const STACK_LABEL: &str = "com.docker.stack.namespace";

/// One service of a stack as the engine reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SwarmService {
    pub id: String,
    /// `<stack>_<service>`.
    pub name: String,
    /// The compose service it came from (`io.kedge.service`, else the name
    /// without the stack's prefix).
    pub service: String,
    /// Without the `@sha256:` pin Swarm adds.
    pub image: String,
    /// `None` for a global service.
    pub replicas: Option<u64>,
    pub running: u64,
    pub desired: u64,
    /// `updating`, `paused`, `completed`, `rollback_started`, … (`None`:
    /// never updated).
    pub update_state: Option<String>,
    pub update_message: Option<String>,
    pub commit: Option<String>,
    /// A digest of what the spec says besides the replica count: it changes
    /// when someone runs `docker service update` by hand.
    pub fingerprint: String,
}

/// A task that failed, for the health gate's account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedTask {
    pub service_id: String,
    /// Engine time (RFC 3339) the task was created.
    pub created_at: String,
    pub state: String,
    pub error: String,
    pub exit_code: Option<i64>,
}

/// A Swarm node: hostname and whether it is `ready`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SwarmNode {
    pub hostname: String,
    pub state: String,
}

/// The image reference without a digest pin: `a/b:1@sha256:…` → `a/b:1`.
pub fn unpinned(image: &str) -> &str {
    image.split_once('@').map_or(image, |(name, _)| name)
}

impl Engine {
    /// The services of stack `project`, with their task counts.
    pub async fn stack_services(&self, project: &str) -> Result<Vec<SwarmService>, ObserveError> {
        let filters: HashMap<&str, Vec<String>> =
            HashMap::from([("label", vec![format!("{STACK_LABEL}={project}")])]);
        let options = ListServicesOptionsBuilder::default()
            .filters(&filters)
            .status(true)
            .build();
        let list = self
            .ready()
            .await?
            .list_services(Some(options))
            .await
            .map_err(|source| ObserveError::List {
                project: project.to_string(),
                source,
            })?;
        let mut out: Vec<SwarmService> = list
            .into_iter()
            .map(|s| {
                let spec = s.spec.unwrap_or_default();
                let name = spec.name.clone().unwrap_or_default();
                let labels: BTreeMap<String, String> = spec
                    .labels
                    .clone()
                    .unwrap_or_default()
                    .into_iter()
                    .collect();
                let image = spec
                    .task_template
                    .as_ref()
                    .and_then(|t| t.container_spec.as_ref())
                    .and_then(|c| c.image.clone())
                    .unwrap_or_default();
                let replicas = spec
                    .mode
                    .as_ref()
                    .and_then(|m| m.replicated.as_ref())
                    .map(|r| r.replicas.unwrap_or(1).max(0) as u64);
                let status = s.service_status.unwrap_or_default();
                let update = s.update_status.unwrap_or_default();
                let fingerprint = fingerprint(&spec);
                SwarmService {
                    id: s.id.unwrap_or_default(),
                    service: labels.get(KEDGE_SERVICE).cloned().unwrap_or_else(|| {
                        name.strip_prefix(&format!("{project}_"))
                            .unwrap_or(&name)
                            .to_string()
                    }),
                    commit: labels.get(KEDGE_COMMIT).cloned(),
                    image: unpinned(&image).to_string(),
                    name,
                    replicas,
                    running: status.running_tasks.unwrap_or(0),
                    desired: status.desired_tasks.unwrap_or(0),
                    update_state: update
                        .state
                        .map(|s| s.to_string())
                        .filter(|s| !s.is_empty()),
                    update_message: update.message.filter(|m| !m.is_empty()),
                    fingerprint,
                }
            })
            .collect();
        out.sort_by(|a, b| a.service.cmp(&b.service));
        Ok(out)
    }

    /// The failed or rejected tasks of the stack's services.
    pub async fn failed_tasks(&self, project: &str) -> Result<Vec<FailedTask>, ObserveError> {
        let filters: HashMap<&str, Vec<String>> =
            HashMap::from([("label", vec![format!("{STACK_LABEL}={project}")])]);
        let options = ListTasksOptionsBuilder::default().filters(&filters).build();
        let tasks = self
            .ready()
            .await?
            .list_tasks(Some(options))
            .await
            .map_err(|source| ObserveError::List {
                project: project.to_string(),
                source,
            })?;
        Ok(tasks
            .into_iter()
            .filter_map(|t| {
                let status = t.status?;
                let state = status.state?.to_string();
                if state != "failed" && state != "rejected" {
                    return None;
                }
                Some(FailedTask {
                    service_id: t.service_id.unwrap_or_default(),
                    created_at: t.created_at.map(|d| d.to_string()).unwrap_or_default(),
                    state,
                    error: status.err.or(status.message).unwrap_or_default(),
                    exit_code: status.container_status.and_then(|c| c.exit_code),
                })
            })
            .collect())
    }

    /// The Swarm's nodes, by hostname.
    pub async fn swarm_nodes(&self) -> Result<Vec<SwarmNode>, ObserveError> {
        let nodes = self
            .ready()
            .await?
            .list_nodes(Some(ListNodesOptionsBuilder::default().build()))
            .await
            .map_err(|source| ObserveError::List {
                project: "(nodes)".to_string(),
                source,
            })?;
        let mut out: Vec<SwarmNode> = nodes
            .into_iter()
            .map(|n| SwarmNode {
                hostname: n
                    .description
                    .and_then(|d| d.hostname)
                    .unwrap_or_else(|| n.id.unwrap_or_default()),
                state: n
                    .status
                    .and_then(|s| s.state)
                    .map(|s| s.to_string())
                    .unwrap_or_default(),
            })
            .collect();
        out.sort_by(|a, b| a.hostname.cmp(&b.hostname));
        Ok(out)
    }
}

/// sha256 of the spec without its replica count and the image's digest
/// pin (Swarm may add or refresh one on its own).
fn fingerprint(spec: &bollard::models::ServiceSpec) -> String {
    let mut spec = spec.clone();
    spec.mode = None;
    if let Some(c) = spec
        .task_template
        .as_mut()
        .and_then(|t| t.container_spec.as_mut())
        && let Some(image) = c.image.as_mut()
    {
        *image = unpinned(image).to_string();
    }
    if let Some(t) = spec.task_template.as_mut() {
        // Bumped by `--force`: a restart, not a change.
        t.force_update = None;
    }
    // Through a `Value`: its maps are ordered, the spec's labels (a
    // HashMap) are not, and the digest must not change between processes.
    let value = serde_json::to_value(&spec).unwrap_or_default();
    let json = serde_json::to_vec(&value).unwrap_or_default();
    hex::encode(Sha256::digest(json))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_lose_their_pin() {
        assert_eq!(unpinned("reg:5000/a/b:1@sha256:abc"), "reg:5000/a/b:1");
        assert_eq!(unpinned("busybox"), "busybox");
    }

    #[test]
    fn the_fingerprint_ignores_replicas_pins_and_forced_restarts() {
        use bollard::models::{
            ServiceSpecMode, ServiceSpecModeReplicated, TaskSpec, TaskSpecContainerSpec,
        };
        let spec = |replicas: i64, image: &str, force: Option<u64>, env: &str| {
            bollard::models::ServiceSpec {
                name: Some("app_web".into()),
                mode: Some(ServiceSpecMode {
                    replicated: Some(ServiceSpecModeReplicated {
                        replicas: Some(replicas),
                    }),
                    ..Default::default()
                }),
                task_template: Some(TaskSpec {
                    container_spec: Some(TaskSpecContainerSpec {
                        image: Some(image.into()),
                        env: Some(vec![env.into()]),
                        ..Default::default()
                    }),
                    force_update: force,
                    ..Default::default()
                }),
                ..Default::default()
            }
        };
        let base = fingerprint(&spec(3, "web:1", None, "A=1"));
        assert_eq!(
            base,
            fingerprint(&spec(1, "web:1@sha256:ff", Some(2), "A=1"))
        );
        assert_ne!(base, fingerprint(&spec(3, "web:1", None, "A=2")));
        assert_ne!(base, fingerprint(&spec(3, "web:2", None, "A=1")));
    }
}
