//! target: where a stack runs and how (fleet.md §4) — a compose project
//! or a Swarm stack (`docker.target`), each on an endpoint. Enum dispatch:
//! the controller, operations and status ask the stack's `Target` to
//! apply, settle, gate, restore, observe and take down; none of them
//! branches on its kind. Every endpoint is the local engine for now; a
//! remote host will be an endpoint of either kind.

pub mod compose;
/// The applied project's overrides, for heals run outside an apply.
pub use compose::as_applied;
pub mod gate;
pub mod host;
pub mod pool;
pub mod ship;
pub mod swarm;
pub mod tls;

use crate::model::hooks::HookRun;
use std::collections::BTreeMap;
use std::os::fd::RawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::apply::ApplyError;
use crate::desired::kedge_yaml::Gate;
use crate::desired::render::{Desired, ServiceSpec};
use crate::model::settings::Target as Kind;
use crate::observe::Engine;
use crate::observe::swarm::SwarmService;
use crate::record::ServiceRecord;
use crate::source::git::{GitError, Repository};
use gate::GateFailure;

/// The host a target's engine runs on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `local`, or a name of the global config's `hosts:` (fleet.md §4).
    pub host: String,
}

/// Image reference → image id on the host (`None`: not there).
pub type ImageIds = std::collections::HashMap<String, Option<String>>;

/// What a drift check plans from: the deployed services and the stack's
/// settings (see `Target::drift_plan`).
pub struct Observe<'a> {
    pub project: &'a str,
    pub records: &'a BTreeMap<String, ServiceRecord>,
    pub mode: crate::model::settings::Mode,
    pub prune: bool,
    /// Services under profiles not enabled.
    pub dormant: std::collections::BTreeSet<String>,
    /// Crash-looping services, left alone for now.
    pub backed_off: &'a std::collections::BTreeSet<String>,
    pub unhealthy: crate::model::settings::Unhealthy,
    /// The project's containers, when listed already (`status` lists
    /// every project's at once).
    pub containers: Option<Vec<crate::observe::ContainerState>>,
}

/// A stack's target: how it runs, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Compose(Endpoint),
    Swarm(Endpoint),
}

/// Where a rendered project's files come from.
pub enum Source {
    /// The commit, checked out in the render worktree.
    Checkout(PathBuf),
    /// A compose snapshot stored with an earlier deployment, for a commit
    /// that is gone from the repository.
    Snapshot,
}

/// What a target works with, handed over by the stack's task: the engine,
/// the clone the stack runs from, the stack's own files, and the lock its
/// child processes hold.
pub struct Site<'a> {
    /// The configured host (`local`: this machine).
    pub host: String,
    pub engine: &'a Engine,
    /// The socket compose reaches the host's engine through (`DOCKER_HOST`);
    /// `None`: the engine Kedge itself talks to.
    pub docker_host: Option<PathBuf>,
    /// An `ssh://` host's connection, over which the stack's files travel.
    pub control: Option<host::Control>,
    pub git: &'a Repository,
    pub lock_fd: Option<RawFd>,
    pub registry_config: Option<PathBuf>,
    /// A declared stack's directory, for compose's project directory.
    pub stack_dir: Option<PathBuf>,
    /// Kedge's compose override (labels, images run in place of Git's).
    pub override_path: PathBuf,
    /// The deployed Swarm stack file.
    pub stack_path: PathBuf,
    /// The stack's decrypted SOPS files.
    pub secrets_dir: PathBuf,
}

impl Site<'_> {
    /// `project`'s compose files in `dir`, as the stack's children run it.
    pub fn compose(
        &self,
        project: &str,
        dir: &Path,
        files: Vec<PathBuf>,
    ) -> crate::compose::Compose {
        crate::compose::Compose::new(project, dir, files)
            .on_host(self.docker_host.clone())
            .holding(self.lock_fd)
            .pulling_with(self.registry_config.clone())
            .of_stack(self.stack_dir.clone(), &[])
    }
}

/// A failed apply on a target.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error(transparent)]
    Apply(#[from] ApplyError),
    #[error(transparent)]
    Checkout(#[from] GitError),
    /// A `deploy.before` hook failed: nothing of the stack was changed.
    /// The runs so far, the failed one last.
    #[error("{}", runs.last().map(HookRun::failure).unwrap_or_default())]
    Hook { runs: Vec<HookRun> },
}

/// How a restore re-applies the last good deployment.
pub struct Restore<'a> {
    pub project: &'a str,
    pub files: Vec<PathBuf>,
    pub profiles: &'a [String],
    pub env_files: &'a [String],
    pub records: &'a BTreeMap<String, ServiceRecord>,
    /// What the failed deployment changed: it goes back, what it added goes.
    pub changed: &'a [String],
    pub prune: bool,
    /// The images the restored deployment ran in place of Git's.
    pub images: &'a BTreeMap<String, String>,
    /// The restored deployment read SOPS files: its override of their
    /// plaintext is put back and read.
    pub secrets: bool,
}

impl Target {
    /// The target a stack's settings name, on `host` (`None`: this
    /// machine's engine).
    pub fn of(kind: Option<Kind>, host: Option<&str>) -> Target {
        let endpoint = Endpoint {
            host: host.unwrap_or(crate::config::hosts::LOCAL).to_string(),
        };
        match kind.unwrap_or_default() {
            Kind::Compose => Target::Compose(endpoint),
            Kind::Swarm => Target::Swarm(endpoint),
        }
    }

    /// The target the stack was last rendered for.
    pub fn of_state(state: &crate::record::RepoState) -> Target {
        Target::of(state.target, state.host.as_deref())
    }

    /// The target a rendered `kedge.yaml` names.
    pub fn of_kedge(kedge: &crate::desired::kedge_yaml::KedgeYaml) -> Target {
        Target::of(Some(kedge.target), Some(&kedge.host))
    }

    /// The host it runs on.
    pub fn host(&self) -> &str {
        &self.endpoint().host
    }

    pub fn kind(&self) -> Kind {
        match self {
            Target::Compose(_) => Kind::Compose,
            Target::Swarm(_) => Kind::Swarm,
        }
    }

    pub fn endpoint(&self) -> &Endpoint {
        match self {
            Target::Compose(e) | Target::Swarm(e) => e,
        }
    }

    /// Whether a new project name moves the stack (its old project taken
    /// down after the new one is up): a Swarm stack is named by its
    /// project and deployed afresh.
    pub fn moves_projects(&self) -> bool {
        matches!(self, Target::Compose(_))
    }

    /// Whether it can run an image in place of Git's without a commit
    /// (`updates.apply: deploy`), and if not, why.
    pub fn runs_image_overrides(&self) -> Result<(), &'static str> {
        match self {
            Target::Compose(_) => Ok(()),
            Target::Swarm(_) => {
                Err("`apply: deploy` is for compose stacks: a Swarm stack takes `apply: commit`")
            }
        }
    }

    /// Applies a rendered commit.
    pub async fn apply(
        &self,
        site: &Site<'_>,
        desired: &Desired,
        source: &Source,
        records: &BTreeMap<String, ServiceRecord>,
        previous: &BTreeMap<String, ServiceRecord>,
        changed: &[String],
    ) -> Result<Vec<HookRun>, TargetError> {
        match self {
            Target::Compose(_) => {
                compose::apply(site, desired, source, records, previous, changed).await
            }
            Target::Swarm(_) => {
                let checkout = matches!(source, Source::Checkout(_));
                swarm::apply(site, desired, checkout, records)
                    .await
                    .map(|()| Vec::new())
            }
        }
    }

    /// `deploy.after`, once the gate has passed: the runs, or the runs up
    /// to the one that failed (last). A Swarm stack has none (refused at
    /// render).
    pub async fn after_hooks(
        &self,
        site: &Site<'_>,
        desired: &Desired,
    ) -> Result<Vec<HookRun>, Vec<HookRun>> {
        match self {
            Target::Compose(_) => compose::after_hooks(site, desired).await,
            Target::Swarm(_) => Ok(Vec::new()),
        }
    }

    /// After an apply that is kept: what the engine made of it is recorded
    /// (config hashes, service spec digests), so a later hand edit shows as
    /// drift.
    pub async fn settle(
        &self,
        site: &Site<'_>,
        project: &str,
        records: &mut BTreeMap<String, ServiceRecord>,
    ) {
        match self {
            Target::Compose(_) => compose::settle(site.engine, project, records).await,
            Target::Swarm(_) => swarm::settle(site, project, records).await,
        }
    }

    /// The health gate of `specs`: compose's containers, or Swarm's tasks.
    pub async fn watch_gate(
        &self,
        engine: &Engine,
        project: &str,
        specs: &[&ServiceSpec],
        gate: &Gate,
        applied_ms: i64,
    ) -> Result<Duration, GateFailure> {
        // `deploy.ignore`, and the hooks' one-shot services: services the
        // gate does not wait for.
        let specs: Vec<&ServiceSpec> = specs
            .iter()
            .filter(|s| !gate.leaves_out(&s.name))
            .copied()
            .collect();
        let specs = specs.as_slice();
        match self {
            Target::Compose(_) => gate::watch(engine, project, specs, gate, applied_ms).await,
            Target::Swarm(_) => swarm::watch(engine, project, specs, gate, applied_ms).await,
        }
    }

    /// Re-applies the last good deployment after a failed one.
    pub async fn restore(&self, site: &Site<'_>, r: Restore<'_>) -> Result<(), ApplyError> {
        match self {
            Target::Compose(_) => compose::restore(site, r).await,
            Target::Swarm(_) => swarm::redeploy_deployed(site, r.project, r.prune)
                .await
                .map(drop),
        }
    }

    /// After a failure before anything was applied: the files a compose
    /// project's heals read (its overrides, its shipped files) put back as
    /// the deployed deployment had them, no container touched (`r.changed`
    /// is empty). A Swarm stack keeps its deployed stack file: nothing.
    pub async fn put_back(&self, site: &Site<'_>, r: Restore<'_>) -> Result<(), ApplyError> {
        match self {
            Target::Compose(_) => compose::restore(site, r).await,
            Target::Swarm(_) => Ok(()),
        }
    }

    /// Takes the stack down: its containers (anonymous volumes too) or its
    /// Swarm stack. Named volumes stay.
    pub async fn take_down(
        &self,
        way: &pool::Way,
        project: &str,
        lock_fd: Option<RawFd>,
    ) -> Result<(), ApplyError> {
        let socket = way.socket.as_deref();
        match self {
            Target::Compose(_) => {
                crate::apply::down_stack(&way.engine, socket, project, lock_fd).await
            }
            Target::Swarm(_) => crate::apply::stack::remove(project, lock_fd, socket).await,
        }
    }

    /// The drift plan of the stack now, and the containers it was made
    /// from (none for a Swarm stack: its services are what it watches).
    pub async fn drift_plan(
        &self,
        engine: &Engine,
        o: Observe<'_>,
        images: &mut ImageIds,
    ) -> Result<
        (crate::plan::Plan, Vec<crate::observe::ContainerState>),
        crate::observe::ObserveError,
    > {
        match self {
            Target::Compose(_) => compose::drift_plan(engine, o, images).await,
            Target::Swarm(_) => swarm::drift_plan(engine, o).await,
        }
    }

    /// The nodes of the target's cluster (a Swarm's), whose readiness is
    /// news; `None` for a target without nodes, or an engine that did not
    /// answer.
    pub async fn nodes(&self, engine: &Engine) -> Option<Vec<crate::observe::swarm::SwarmNode>> {
        match self {
            Target::Compose(_) => None,
            Target::Swarm(_) => engine.swarm_nodes().await.ok(),
        }
    }

    /// The services an orchestrator runs for the stack, as `status` shows
    /// them (tasks run on other nodes too); `None` for a compose project,
    /// whose containers say it, or an engine that did not answer.
    pub async fn orchestrated(&self, engine: &Engine, project: &str) -> Option<Vec<SwarmService>> {
        match self {
            Target::Compose(_) => None,
            Target::Swarm(_) => Some(swarm::services(engine, project).await.unwrap_or_default()),
        }
    }
}

/// What of a rendered project (read in `checkout`) a remote host's engine
/// could not see when nothing ships it (a `tcp://` host: no SSH to ship
/// over), since it is a file of this machine: bind-mount sources in the
/// checkout, and `configs` and `secrets` read from files in it. Each named
/// as `service web: bind mount of conf/app.conf` or `configs app: file
/// app.conf`.
pub fn local_files(rendered: &str, checkout: &Path) -> Vec<String> {
    let Ok(doc) = serde_json::from_str::<serde_json::Value>(rendered) else {
        return Vec::new();
    };
    let shown = |p: &Path| p.strip_prefix(checkout).unwrap_or(p).display().to_string();
    let binds = ship::local_binds(&doc, &[checkout])
        .into_iter()
        .map(|b| format!("service {}: bind mount of {}", b.service, shown(&b.source)));
    let files = ship::local_files(&doc, &[checkout])
        .into_iter()
        .map(|f| format!("{} {}: file {}", f.kind, f.name, shown(&f.source)));
    binds.chain(files).collect()
}

#[cfg(test)]
mod tests {
    use super::local_files;

    #[test]
    fn the_files_a_remote_host_would_not_see() {
        let rendered = r#"{
            "services": {
                "web": {"volumes": [
                    {"type": "bind", "source": "/co/conf", "target": "/etc/app"},
                    {"type": "bind", "source": "/srv/data", "target": "/data"},
                    {"type": "volume", "source": "data", "target": "/var/data"}
                ]},
                "db": {"volumes": [{"type": "tmpfs", "target": "/tmp"}]}
            },
            "configs": {"app_conf": {"file": "/co/app.conf"}, "ext": {"external": true},
                        "hosts": {"file": "/etc/hosts"}},
            "secrets": {"token": {"file": "/co/token"}, "env": {"environment": "TOKEN"}}
        }"#;
        let co = std::path::Path::new("/co");
        assert_eq!(
            local_files(rendered, co),
            vec![
                "service web: bind mount of conf",
                "configs app_conf: file app.conf",
                "secrets token: file token",
            ],
            "the host's own /srv/data and /etc/hosts are not this machine's files"
        );
        assert!(local_files(r#"{"services": {"web": {"image": "x"}}}"#, co).is_empty());
        assert!(local_files("not json", co).is_empty());
    }
}
