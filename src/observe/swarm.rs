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
    /// A digest of the task template, compared with each task's spec to
    /// count the tasks that run the current version.
    #[serde(skip)]
    pub template: String,
}

/// The tasks of a stack as the health gate reads them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StackTasks {
    pub failed: Vec<FailedTask>,
    /// `(service id, template digest)` of each running task.
    pub running: Vec<(String, String)>,
}

impl StackTasks {
    /// Running tasks of `service` on its current task template.
    pub fn current(&self, service: &SwarmService) -> u64 {
        self.running
            .iter()
            .filter(|(id, template)| *id == service.id && *template == service.template)
            .count() as u64
    }
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
                let template = spec
                    .task_template
                    .as_ref()
                    .map(template_digest)
                    .unwrap_or_default();
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
                    template,
                }
            })
            .collect();
        out.sort_by(|a, b| a.service.cmp(&b.service));
        Ok(out)
    }

    /// The stack's failed or rejected tasks, and the template of each
    /// running one.
    pub async fn stack_tasks(&self, project: &str) -> Result<StackTasks, ObserveError> {
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
        let mut out = StackTasks::default();
        for t in tasks {
            let Some(status) = t.status else { continue };
            let Some(state) = status.state.map(|s| s.to_string()) else {
                continue;
            };
            let service_id = t.service_id.unwrap_or_default();
            match state.as_str() {
                "running" => {
                    let desired = t.desired_state.map(|s| s.to_string());
                    // A task being shut down no longer counts.
                    if desired.is_none_or(|d| d == "running") {
                        let template = t.spec.as_ref().map(template_digest).unwrap_or_default();
                        out.running.push((service_id, template));
                    }
                }
                "failed" | "rejected" => out.failed.push(FailedTask {
                    service_id,
                    created_at: t.created_at.map(|d| d.to_string()).unwrap_or_default(),
                    state,
                    error: status.err.or(status.message).unwrap_or_default(),
                    exit_code: status.container_status.and_then(|c| c.exit_code),
                }),
                _ => {}
            }
        }
        Ok(out)
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

/// sha256 of a task template as a task copies it from its service. Without
/// the placement: Swarm keeps a task whose node still satisfies changed
/// constraints, so its spec keeps the old placement. Without the runtime:
/// the engine fills it in a service's template (`container`), not in a
/// task's spec.
pub fn template_digest(template: &bollard::models::TaskSpec) -> String {
    let mut template = template.clone();
    template.placement = None;
    template.runtime = None;
    let value = serde_json::to_value(&template).unwrap_or_default();
    hex::encode(Sha256::digest(
        serde_json::to_vec(&value).unwrap_or_default(),
    ))
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
    fn only_running_tasks_on_the_current_template_count() {
        use bollard::models::{TaskSpec, TaskSpecContainerSpec, TaskSpecPlacement};
        let template = |image: &str, constraint: &str| TaskSpec {
            container_spec: Some(TaskSpecContainerSpec {
                image: Some(image.into()),
                ..Default::default()
            }),
            placement: Some(TaskSpecPlacement {
                constraints: Some(vec![constraint.into()]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let new = template_digest(&template("web:2", "node.role==worker"));
        // The engine shows a service's template with its runtime, a task's without.
        let as_the_service_shows_it = TaskSpec {
            runtime: Some("container".into()),
            ..template("web:2", "node.role==worker")
        };
        assert_eq!(new, template_digest(&as_the_service_shows_it));
        // A task kept through a placement change counts; one on the old image does not.
        assert_eq!(
            new,
            template_digest(&template("web:2", "node.role==manager"))
        );
        let old = template_digest(&template("web:1", "node.role==worker"));
        assert_ne!(new, old);
        let service = SwarmService {
            id: "s1".into(),
            name: "app_web".into(),
            service: "web".into(),
            image: "web:2".into(),
            replicas: Some(3),
            running: 3,
            desired: 3,
            update_state: None,
            update_message: None,
            commit: None,
            fingerprint: String::new(),
            template: new.clone(),
        };
        let tasks = StackTasks {
            failed: Vec::new(),
            running: vec![
                ("s1".into(), new.clone()),
                ("s1".into(), old),
                ("s2".into(), new),
            ],
        };
        assert_eq!(tasks.current(&service), 1);
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
