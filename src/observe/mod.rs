//! observe: the actual state, read from the Docker Engine API by compose's
//! project label (source → desired → **observe** → plan → apply → record).
//! No child process: the hot path asks the engine directly.

use std::collections::{BTreeMap, HashMap};

use bollard::Docker;
use bollard::query_parameters::ListContainersOptionsBuilder;
use serde::Serialize;

pub const PROJECT_LABEL: &str = "com.docker.compose.project";
pub const SERVICE_LABEL: &str = "com.docker.compose.service";
pub const NUMBER_LABEL: &str = "com.docker.compose.container-number";
pub const CONFIG_HASH_LABEL: &str = "com.docker.compose.config-hash";
pub const ONEOFF_LABEL: &str = "com.docker.compose.oneoff";
pub const KEDGE_MANAGED: &str = "io.kedge.managed";
pub const KEDGE_PROJECT: &str = "io.kedge.project";
pub const KEDGE_SERVICE: &str = "io.kedge.service";
pub const KEDGE_COMMIT: &str = "io.kedge.commit";

#[derive(Debug, thiserror::Error)]
pub enum ObserveError {
    #[error("cannot connect to the Docker engine")]
    Connect(#[source] bollard::errors::Error),
    #[error("cannot list the containers of project {project}")]
    List {
        project: String,
        #[source]
        source: bollard::errors::Error,
    },
}

/// One container of a compose project, as the engine reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContainerState {
    pub id: String,
    pub name: String,
    pub service: String,
    pub number: u32,
    /// created, running, exited, …
    pub state: String,
    /// The image reference it was created from.
    pub image: String,
    pub image_id: String,
    pub config_hash: Option<String>,
    pub commit: Option<String>,
    pub oneoff: bool,
    /// For exited containers, from the engine's status text.
    pub exit_code: Option<i64>,
    #[serde(skip)]
    pub labels: BTreeMap<String, String>,
}

/// "Exited (137) 2 seconds ago" → 137.
pub fn exit_code(status: &str) -> Option<i64> {
    let rest = status.strip_prefix("Exited (")?;
    rest.split_once(')')?.0.parse().ok()
}

#[derive(Clone)]
pub struct Engine {
    docker: Docker,
}

impl Engine {
    /// Connects through DOCKER_HOST or the local socket, speaking the
    /// engine's own API version.
    pub async fn connect() -> Result<Engine, ObserveError> {
        let docker = Docker::connect_with_local_defaults().map_err(ObserveError::Connect)?;
        let docker = docker
            .negotiate_version()
            .await
            .map_err(ObserveError::Connect)?;
        Ok(Engine { docker })
    }

    pub fn docker(&self) -> &Docker {
        &self.docker
    }

    /// Whether an image reference resolves on this host.
    pub async fn has_image(&self, reference: &str) -> bool {
        self.docker.inspect_image(reference).await.is_ok()
    }

    /// Every container of the project, running or not, sorted by service and number.
    pub async fn project_containers(
        &self,
        project: &str,
    ) -> Result<Vec<ContainerState>, ObserveError> {
        let filters: HashMap<&str, Vec<String>> =
            HashMap::from([("label", vec![format!("{PROJECT_LABEL}={project}")])]);
        let options = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filters)
            .build();
        let list = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(|source| ObserveError::List {
                project: project.to_string(),
                source,
            })?;
        let mut out: Vec<ContainerState> = list
            .into_iter()
            .map(|c| {
                let labels: BTreeMap<String, String> =
                    c.labels.unwrap_or_default().into_iter().collect();
                let label = |k: &str| labels.get(k).cloned();
                ContainerState {
                    id: c.id.unwrap_or_default(),
                    name: c
                        .names
                        .and_then(|n| n.into_iter().next())
                        .unwrap_or_default()
                        .trim_start_matches('/')
                        .to_string(),
                    service: label(SERVICE_LABEL).unwrap_or_default(),
                    number: label(NUMBER_LABEL)
                        .and_then(|n| n.parse().ok())
                        .unwrap_or(0),
                    state: c.state.map(|s| s.to_string()).unwrap_or_default(),
                    image: c.image.unwrap_or_default(),
                    image_id: c.image_id.unwrap_or_default(),
                    config_hash: label(CONFIG_HASH_LABEL),
                    commit: label(KEDGE_COMMIT),
                    oneoff: label(ONEOFF_LABEL).is_some_and(|v| v.eq_ignore_ascii_case("true")),
                    exit_code: c.status.as_deref().and_then(exit_code),
                    labels,
                }
            })
            .collect();
        out.sort_by(|a, b| (&a.service, a.number, &a.name).cmp(&(&b.service, b.number, &b.name)));
        Ok(out)
    }
}
