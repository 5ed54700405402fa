//! observe: the actual state, read from the Docker Engine API by compose's
//! project label (source → desired → **observe** → plan → apply → record).
//! No child process: the hot path asks the engine directly.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bollard::Docker;
use bollard::query_parameters::ListContainersOptionsBuilder;
use serde::Serialize;
use tokio::sync::OnceCell;

pub mod health;
pub mod swarm;

pub const PROJECT_LABEL: &str = "com.docker.compose.project";
pub const SERVICE_LABEL: &str = "com.docker.compose.service";
pub const NUMBER_LABEL: &str = "com.docker.compose.container-number";
pub const CONFIG_HASH_LABEL: &str = "com.docker.compose.config-hash";
pub const ONEOFF_LABEL: &str = "com.docker.compose.oneoff";
pub const KEDGE_MANAGED: &str = "io.kedge.managed";
pub const KEDGE_PROJECT: &str = "io.kedge.project";
pub const KEDGE_SERVICE: &str = "io.kedge.service";
pub const KEDGE_COMMIT: &str = "io.kedge.commit";
/// The configured host a container was deployed to (fleet.md §4); absent
/// on this machine's engine, whose containers carried no such label before
/// hosts existed (adding it would recreate every one of them).
pub const KEDGE_HOST: &str = "io.kedge.host";
/// On images Kedge builds: the fingerprint of the inputs it built from.
pub const KEDGE_BUILD: &str = "io.kedge.build";

#[derive(Debug, thiserror::Error)]
pub enum ObserveError {
    #[error("cannot connect to the Docker engine")]
    Connect(#[source] bollard::errors::Error),
    #[error("the engine did not say its version")]
    Version(#[source] bollard::errors::Error),
    #[error("the engine's event stream failed")]
    Events(#[source] bollard::errors::Error),
    #[error("cannot inspect container {container}")]
    Inspect {
        container: String,
        #[source]
        source: bollard::errors::Error,
    },
    #[error("cannot list the containers of project {project}")]
    List {
        project: String,
        #[source]
        source: bollard::errors::Error,
    },
}

/// A container's state, as the engine reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    Created,
    Running,
    Paused,
    Restarting,
    Removing,
    Stopping,
    Exited,
    Dead,
    /// The engine said none.
    #[default]
    #[serde(rename = "")]
    Unreported,
}

impl RunState {
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Created => "created",
            RunState::Running => "running",
            RunState::Paused => "paused",
            RunState::Restarting => "restarting",
            RunState::Removing => "removing",
            RunState::Stopping => "stopping",
            RunState::Exited => "exited",
            RunState::Dead => "dead",
            RunState::Unreported => "",
        }
    }

    pub fn parse(s: &str) -> Option<RunState> {
        Some(match s {
            "created" => RunState::Created,
            "running" => RunState::Running,
            "paused" => RunState::Paused,
            "restarting" => RunState::Restarting,
            "removing" => RunState::Removing,
            "stopping" => RunState::Stopping,
            "exited" => RunState::Exited,
            "dead" => RunState::Dead,
            "" => RunState::Unreported,
            _ => return None,
        })
    }
}

impl std::fmt::Display for RunState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The engine names a container's state with one enum in its listings and
/// another in an inspection: the same states, one for one.
macro_rules! run_state_from {
    ($engine:path) => {
        impl From<$engine> for RunState {
            fn from(s: $engine) -> RunState {
                use $engine as S;
                match s {
                    S::EMPTY => RunState::Unreported,
                    S::CREATED => RunState::Created,
                    S::RUNNING => RunState::Running,
                    S::PAUSED => RunState::Paused,
                    S::RESTARTING => RunState::Restarting,
                    S::EXITED => RunState::Exited,
                    S::REMOVING => RunState::Removing,
                    S::DEAD => RunState::Dead,
                    S::STOPPING => RunState::Stopping,
                }
            }
        }
    };
}
run_state_from!(bollard::models::ContainerSummaryStateEnum);
run_state_from!(bollard::models::ContainerStateStatusEnum);

/// One container of a compose project, as the engine reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContainerState {
    pub id: String,
    pub name: String,
    pub service: String,
    pub number: u32,
    pub state: RunState,
    /// The image reference it was created from.
    pub image: String,
    pub image_id: String,
    pub config_hash: Option<String>,
    pub commit: Option<String>,
    pub oneoff: bool,
    /// For exited containers, from the engine's status text.
    pub exit_code: Option<i64>,
    /// With a healthcheck: starting, healthy or unhealthy (status text).
    pub health: Option<String>,
    #[serde(skip)]
    pub labels: BTreeMap<String, String>,
}

/// "Up 3 seconds (unhealthy)" → unhealthy; "(health: starting)" → starting.
pub fn health(status: &str) -> Option<String> {
    let inner = status.trim_end().strip_suffix(')')?;
    let inner = &inner[inner.rfind('(')? + 1..];
    let verdict = inner.strip_prefix("health: ").unwrap_or(inner);
    matches!(verdict, "starting" | "healthy" | "unhealthy").then(|| verdict.to_string())
}

/// "Exited (137) 2 seconds ago" → 137; "Restarting (3) 1 second ago" → 3.
pub fn exit_code(status: &str) -> Option<i64> {
    let rest = status
        .strip_prefix("Exited (")
        .or_else(|| status.strip_prefix("Restarting ("))?;
    rest.split_once(')')?.0.parse().ok()
}

#[cfg(test)]
mod tests {
    /// The state reads as the engine's own word, as it did when it was
    /// the engine's text: in `status`, the diff and the gate's reasons.
    #[test]
    fn a_run_state_is_the_engines_word_for_it() {
        use super::RunState;
        use bollard::models::{ContainerStateStatusEnum as I, ContainerSummaryStateEnum as L};
        for s in [
            L::EMPTY,
            L::CREATED,
            L::RUNNING,
            L::PAUSED,
            L::RESTARTING,
            L::EXITED,
            L::REMOVING,
            L::DEAD,
            L::STOPPING,
        ] {
            let state = RunState::from(s);
            assert_eq!(state.as_str(), s.to_string());
            assert_eq!(RunState::parse(state.as_str()), Some(state));
            assert_eq!(
                serde_json::to_string(&state).unwrap(),
                format!("{:?}", s.to_string())
            );
        }
        for s in [
            I::EMPTY,
            I::CREATED,
            I::RUNNING,
            I::PAUSED,
            I::RESTARTING,
            I::REMOVING,
            I::EXITED,
            I::DEAD,
            I::STOPPING,
        ] {
            assert_eq!(RunState::from(s).as_str(), s.to_string());
        }
    }

    #[test]
    fn exit_codes_from_status_text() {
        assert_eq!(super::exit_code("Exited (137) 2 seconds ago"), Some(137));
        assert_eq!(super::exit_code("Exited (0) About a minute ago"), Some(0));
        assert_eq!(super::exit_code("Restarting (3) 1 second ago"), Some(3));
        assert_eq!(super::exit_code("Up 3 minutes"), None);
    }

    #[test]
    fn health_from_status_text() {
        for (status, want) in [
            ("Up 3 seconds (unhealthy)", Some("unhealthy")),
            ("Up 2 seconds (health: starting)", Some("starting")),
            ("Up About a minute (healthy)", Some("healthy")),
            ("Up 3 minutes", None),
            ("Exited (1) 2 seconds ago", None),
            ("Up 1 second (Paused)", None),
        ] {
            assert_eq!(super::health(status).as_deref(), want, "{status}");
        }
    }
}

/// The engine's API, by the socket DOCKER_HOST names or the local one.
#[derive(Clone, Default)]
pub struct Engine {
    /// Made on first use, or earlier with `warm_up`, and kept once the
    /// engine has said which API version it speaks. Making it fails while
    /// the engine is down (even its socket may not exist yet); that is not
    /// remembered, so the next request tries again and a Kedge started
    /// before its engine speaks to it, in its own version, once it is up.
    client: Arc<OnceCell<Docker>>,
    /// A socket of its own (a host reached through a tunnel); `None`: the
    /// one `DOCKER_HOST` names, or the local one.
    socket: Option<std::path::PathBuf>,
}

/// What the host holds under a build service's image name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageOnHost {
    Missing,
    /// `build_label`: the image's `io.kedge.build` label, the fingerprint
    /// of the inputs Kedge built it from.
    Present {
        build_label: Option<String>,
    },
}

impl Engine {
    /// Nothing is connected or sent yet: a command can do its git work
    /// while `warm_up` runs.
    pub fn new() -> Engine {
        Engine::default()
    }

    /// The engine behind `socket` (a host's, forwarded: see `target::host`).
    /// The socket of an engine made with [`Engine::at`].
    pub fn socket(&self) -> Option<std::path::PathBuf> {
        self.socket.clone()
    }

    pub fn at(socket: &std::path::Path) -> Engine {
        Engine {
            client: Arc::default(),
            socket: Some(socket.to_path_buf()),
        }
    }

    async fn ready(&self) -> Result<&Docker, ObserveError> {
        self.client
            .get_or_try_init(|| async {
                tracing::debug!(
                    host = %std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into()),
                    "connecting to the docker engine"
                );
                let docker = match &self.socket {
                    Some(socket) => Docker::connect_with_unix(
                        &socket.to_string_lossy(),
                        120,
                        bollard::API_DEFAULT_VERSION,
                    )?,
                    None => Docker::connect_with_local_defaults()?,
                };
                docker.negotiate_version().await
            })
            .await
            .map_err(ObserveError::Connect)
    }

    /// The connected client, for `apply`'s changes to the engine.
    pub(crate) async fn client(&self) -> Result<&Docker, ObserveError> {
        self.ready().await
    }

    /// Connects and agrees on the API version now.
    pub async fn warm_up(&self) -> Result<(), ObserveError> {
        self.ready().await.map(drop)
    }

    /// Whether the engine answers.
    pub async fn ping(&self) -> bool {
        match self.ready().await {
            Ok(docker) => docker.ping().await.is_ok(),
            Err(_) => false,
        }
    }

    /// The id an image reference resolves to on this host now.
    pub async fn image_id(&self, reference: &str) -> Option<String> {
        self.ready()
            .await
            .ok()?
            .inspect_image(reference)
            .await
            .ok()?
            .id
    }

    /// The registry digests the host knows an image reference by
    /// (`repo@sha256:…`, as pulled); empty when it has none.
    pub async fn repo_digests(&self, reference: &str) -> Vec<String> {
        match self.ready().await {
            Ok(docker) => docker
                .inspect_image(reference)
                .await
                .ok()
                .and_then(|i| i.repo_digests)
                .unwrap_or_default(),
            Err(_) => Vec::new(),
        }
    }

    /// What the host holds under an image reference: absent (or no
    /// engine), or present with its `io.kedge.build` label.
    pub async fn image_on_host(&self, reference: &str) -> ImageOnHost {
        let inspected = match self.ready().await {
            Ok(docker) => docker.inspect_image(reference).await.ok(),
            Err(_) => None,
        };
        match inspected {
            Some(image) => ImageOnHost::Present {
                build_label: image
                    .config
                    .and_then(|c| c.labels)
                    .and_then(|mut labels| labels.remove(KEDGE_BUILD)),
            },
            None => ImageOnHost::Missing,
        }
    }

    /// The anonymous volumes of a project's containers (`- /data` in a
    /// compose file, or an image's VOLUME): named by the engine with 64 hex
    /// characters and without compose's volume label. Named volumes are
    /// never among them.
    pub async fn anonymous_volumes(&self, project: &str) -> Result<Vec<String>, ObserveError> {
        let docker = self.ready().await?;
        let filters: HashMap<&str, Vec<String>> =
            HashMap::from([("label", vec![format!("{PROJECT_LABEL}={project}")])]);
        let options = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filters)
            .build();
        let list = docker
            .list_containers(Some(options))
            .await
            .map_err(|source| ObserveError::List {
                project: project.to_string(),
                source,
            })?;
        let mut names: Vec<String> = list
            .into_iter()
            .flat_map(|c| c.mounts.unwrap_or_default())
            .filter(|m| m.typ.as_deref() == Some("volume"))
            .filter_map(|m| m.name)
            .filter(|n| n.len() == 64 && n.bytes().all(|b| b.is_ascii_hexdigit()))
            .collect();
        names.sort();
        names.dedup();
        let mut out = Vec::new();
        for name in names {
            // A volume compose created for a named volume carries its label.
            if let Ok(v) = docker.inspect_volume(&name).await
                && !v.labels.contains_key("com.docker.compose.volume")
            {
                out.push(name);
            }
        }
        Ok(out)
    }

    /// The engine's version and the API version Kedge speaks with it, as
    /// `20.10.24+dfsg1 (API 1.41)`.
    pub async fn version(&self) -> Result<String, ObserveError> {
        let docker = self.ready().await?;
        let v = docker.version().await.map_err(ObserveError::Version)?;
        let version = v.version.unwrap_or_else(|| "?".to_string());
        Ok(format!("{version} (API {})", docker.client_version()))
    }

    /// Container events of compose projects: the compose project label of
    /// each container that was created, started, stopped, died or removed.
    pub async fn project_events(
        &self,
    ) -> Result<impl futures_util::Stream<Item = Result<String, ObserveError>> + use<>, ObserveError>
    {
        use futures_util::StreamExt;
        let filters: HashMap<&str, Vec<String>> = HashMap::from([
            ("type", vec!["container".to_string()]),
            ("label", vec![PROJECT_LABEL.to_string()]),
        ]);
        let options = bollard::query_parameters::EventsOptionsBuilder::default()
            .filters(&filters)
            .build();
        Ok(self
            .ready()
            .await?
            .events(Some(options))
            .filter_map(|event| async move {
                match event {
                    Err(e) => Some(Err(ObserveError::Events(e))),
                    Ok(msg) => {
                        let action = msg.action.unwrap_or_default();
                        // exec_*, health checks, attach, top…: nothing changed.
                        // A health verdict changes what drift passes see.
                        let relevant = action.starts_with("health_status")
                            || matches!(
                                action.as_str(),
                                "create"
                                    | "start"
                                    | "restart"
                                    | "stop"
                                    | "die"
                                    | "kill"
                                    | "oom"
                                    | "destroy"
                                    | "pause"
                                    | "unpause"
                                    | "rename"
                                    | "update"
                            );
                        let project = msg
                            .actor
                            .and_then(|a| a.attributes)
                            .and_then(|mut attrs| attrs.remove(PROJECT_LABEL));
                        relevant.then_some(project).flatten().map(Ok)
                    }
                }
            }))
    }

    /// Every container of the project, running or not, sorted by service and number.
    pub async fn project_containers(
        &self,
        project: &str,
    ) -> Result<Vec<ContainerState>, ObserveError> {
        let mut all = self
            .list(&format!("{PROJECT_LABEL}={project}"), project)
            .await?;
        Ok(all.remove(project).unwrap_or_default())
    }

    /// The containers of every compose project on the host, in one call.
    pub async fn containers_by_project(
        &self,
    ) -> Result<BTreeMap<String, Vec<ContainerState>>, ObserveError> {
        self.list(PROJECT_LABEL, "*").await
    }

    async fn list(
        &self,
        label: &str,
        what: &str,
    ) -> Result<BTreeMap<String, Vec<ContainerState>>, ObserveError> {
        let filters: HashMap<&str, Vec<String>> =
            HashMap::from([("label", vec![label.to_string()])]);
        let options = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filters)
            .build();
        let list = self
            .ready()
            .await?
            .list_containers(Some(options))
            .await
            .map_err(|source| ObserveError::List {
                project: what.to_string(),
                source,
            })?;
        let mut out: BTreeMap<String, Vec<ContainerState>> = BTreeMap::new();
        for c in list {
            let labels: BTreeMap<String, String> =
                c.labels.unwrap_or_default().into_iter().collect();
            let label = |k: &str| labels.get(k).cloned();
            let project = label(PROJECT_LABEL).unwrap_or_default();
            let state = ContainerState {
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
                state: c.state.map(RunState::from).unwrap_or_default(),
                image: c.image.unwrap_or_default(),
                image_id: c.image_id.unwrap_or_default(),
                config_hash: label(CONFIG_HASH_LABEL),
                commit: label(KEDGE_COMMIT),
                oneoff: label(ONEOFF_LABEL).is_some_and(|v| v.eq_ignore_ascii_case("true")),
                exit_code: c.status.as_deref().and_then(exit_code),
                health: c.status.as_deref().and_then(health),
                labels,
            };
            out.entry(project).or_default().push(state);
        }
        for containers in out.values_mut() {
            containers.sort_by(|a, b| {
                (&a.service, a.number, &a.name).cmp(&(&b.service, b.number, &b.name))
            });
        }
        Ok(out)
    }
}
