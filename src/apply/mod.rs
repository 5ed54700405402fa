//! apply: changes the engine through the `docker compose` v2 CLI, the
//! reference implementation of the compose spec (source → desired → observe
//! → plan → **apply** → record).

pub mod engine;
pub mod registry;
pub mod rollout;
pub mod stack;

use std::collections::BTreeMap;
use std::os::fd::RawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;

use crate::compose::{self, Compose};
use crate::observe::{KEDGE_BUILD, KEDGE_COMMIT, KEDGE_MANAGED, KEDGE_PROJECT, KEDGE_SERVICE};
use crate::process::ProcessError;

/// Why the docker CLI failed, as it said it ([`compose::reason`]): what
/// records, events and notifications show. The command line it ran is
/// logged at debug level, never shown.
#[derive(Debug, thiserror::Error)]
#[error("{reason}")]
pub struct Said {
    pub reason: String,
}

impl From<ProcessError> for Said {
    fn from(err: ProcessError) -> Said {
        tracing::debug!("{}", crate::error_chain(&err));
        Said {
            reason: compose::reason(&err),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Engine(#[from] crate::observe::ObserveError),
    #[error("cannot write the stack's decrypted secrets to its private directory")]
    Secrets(#[source] std::io::Error),
    #[error("cannot start container {container}")]
    Start {
        container: String,
        #[source]
        source: bollard::errors::Error,
    },
    #[error("cannot restart container {container}")]
    Restart {
        container: String,
        #[source]
        source: bollard::errors::Error,
    },
    #[error("cannot remove container {container}")]
    Remove {
        container: String,
        #[source]
        source: bollard::errors::Error,
    },
    #[error("cannot tag image {image} as {target}")]
    Tag {
        image: String,
        target: String,
        #[source]
        source: bollard::errors::Error,
    },
    #[error("cannot remove volume {volume}")]
    RemoveVolume {
        volume: String,
        #[source]
        source: bollard::errors::Error,
    },
    #[error("cannot take down compose project {project}")]
    Down {
        project: String,
        #[source]
        source: Said,
    },
    #[error("cannot pull image {}", images.join(", "))]
    Pull {
        images: Vec<String>,
        #[source]
        source: Said,
    },
    /// Compose's own reason only: its command line is logged at debug level.
    #[error("service {service} failed to build: {reason}")]
    Build { service: String, reason: String },
    #[error("docker compose up failed")]
    Up(#[source] Said),
    #[error(transparent)]
    Stack(#[from] stack::StackError),
    #[error("docker stack deploy of {project} failed")]
    StackDeploy {
        project: String,
        #[source]
        source: Said,
    },
    #[error("cannot write the stack file {}", path.display())]
    StackFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The stack's bind-mounted files could not reach its remote host
    /// (target::ship, whose error this keeps).
    #[error("cannot ship the stack's files to its host")]
    Ship(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("cannot write the label override {}", path.display())]
    Override {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

const DOWN_TIMEOUT: Duration = Duration::from_secs(300);

/// `docker compose -p PROJECT down --remove-orphans`. Compose finds the
/// containers by their project label, so no compose file is needed; named
/// volumes are kept (no `-v`): taking a stack down never loses data.
pub async fn down(
    project: &str,
    lock_fd: Option<RawFd>,
    docker_host: Option<&std::path::Path>,
) -> Result<(), ApplyError> {
    compose::reaching(compose::command(), docker_host)
        .args(["-p", project, "down", "--remove-orphans"])
        .cwd(std::env::temp_dir())
        .keep_open(lock_fd)
        .timeout(DOWN_TIMEOUT)
        .run()
        .await
        .map(drop)
        .map_err(|e| ApplyError::Down {
            project: project.to_string(),
            source: e.into(),
        })
}

/// Takes a stack down for good (`repo remove --down`): [`down`], then its
/// containers' anonymous volumes, which nothing could ever mount again.
/// Named volumes are kept. A volume that cannot be removed is logged.
pub async fn down_stack(
    engine: &crate::observe::Engine,
    docker_host: Option<&std::path::Path>,
    project: &str,
    lock_fd: Option<RawFd>,
) -> Result<(), ApplyError> {
    let anonymous = match engine.anonymous_volumes(project).await {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(%project, "cannot list anonymous volumes: {}", crate::error_chain(&e));
            Vec::new()
        }
    };
    down(project, lock_fd, docker_host).await?;
    for volume in anonymous {
        match engine::remove_volume(engine, &volume).await {
            Ok(()) => tracing::debug!(%project, %volume, "anonymous volume removed"),
            Err(e) => tracing::warn!(%project, "{}", crate::error_chain(&e)),
        }
    }
    Ok(())
}

/// Writes the compose override that puts Kedge's labels on every service.
/// `commits` maps each service to the commit that last changed it: compose
/// hashes labels into its config hash, so only those services are recreated.
/// `builds` maps build services to their build fingerprint, which labels
/// the images they build (compose leaves `build` out of its config hash).
/// `images` run in place of those the compose files name (`apply: deploy`).
pub async fn write_label_override(
    path: &Path,
    project: &str,
    commits: &BTreeMap<String, String>,
    builds: &BTreeMap<String, String>,
    images: &BTreeMap<String, String>,
    host: &str,
) -> Result<(), ApplyError> {
    let services: serde_json::Map<String, serde_json::Value> = commits
        .iter()
        .map(|(service, commit)| {
            let mut labels = json!({
                KEDGE_MANAGED: "true",
                KEDGE_PROJECT: project,
                KEDGE_SERVICE: service,
                KEDGE_COMMIT: commit,
            });
            if host != crate::config::hosts::LOCAL {
                labels[crate::observe::KEDGE_HOST] = json!(host);
            }
            let mut over = json!({ "labels": labels });
            if let Some(fingerprint) = builds.get(service) {
                over["build"] = json!({ "labels": { KEDGE_BUILD: fingerprint } });
            }
            if let Some(image) = images.get(service) {
                over["image"] = json!(image);
            }
            (service.clone(), over)
        })
        .collect();
    let doc = json!({ "services": services });
    let err = |source| ApplyError::Override {
        path: path.to_path_buf(),
        source,
    };
    // Written whole then renamed: compose never reads half a file.
    let tmp = path.with_extension("tmp");
    tokio::fs::write(&tmp, serde_json::to_vec_pretty(&doc).unwrap_or_default())
        .await
        .map_err(err)?;
    tokio::fs::rename(&tmp, path).await.map_err(err)
}

/// Pulls the images of `services` (those whose image is not on the host),
/// before anything changes, so an image that cannot be had fails the
/// deployment with the stack untouched.
pub async fn pull(
    project: &Compose,
    services: &[String],
    images: &[String],
) -> Result<(), ApplyError> {
    if services.is_empty() {
        return Ok(());
    }
    project
        .cmd(["pull", "--quiet"])
        .args(services)
        .timeout(compose::APPLY_TIMEOUT)
        .run()
        .await
        .map(drop)
        .map_err(|e| ApplyError::Pull {
            images: images.to_vec(),
            source: e.into(),
        })
}

/// Which services an `up` touches.
#[derive(Debug, Clone, Copy)]
pub enum Scope<'a> {
    /// Every service: a first deployment.
    All,
    /// These alone, without their dependencies (`--no-deps`): a later
    /// deployment applies what it changed and nothing else, so a one-shot
    /// that completed is not run again, nor a service stopped by hand
    /// started (that is drift, the heal's). None: no `up` at all.
    Only(&'a [String]),
}

/// Builds the services whose build inputs changed or whose image is missing,
/// then `up -d` of `scope`.
pub async fn up(
    project: &Compose,
    rebuild: &[String],
    scope: Scope<'_>,
    prune: bool,
) -> Result<(), ApplyError> {
    // One service per call: compose's `--quiet` error does not say which
    // service failed, and builds are rare enough to run one after another.
    for service in rebuild {
        project
            .cmd(["build", "--quiet", service])
            .timeout(compose::APPLY_TIMEOUT)
            .run()
            .await
            .map_err(|e| {
                tracing::debug!("{}", crate::error_chain(&e));
                ApplyError::Build {
                    service: service.clone(),
                    reason: compose::reason(&e),
                }
            })?;
    }
    let mut args = vec!["up", "-d", "--quiet-pull"];
    if prune {
        args.push("--remove-orphans");
    }
    if let Scope::Only(services) = scope {
        if services.is_empty() {
            return Ok(());
        }
        args.push("--no-deps");
        args.extend(services.iter().map(String::as_str));
    }
    project
        .cmd(args)
        .timeout(compose::APPLY_TIMEOUT)
        .run()
        .await
        .map(drop)
        .map_err(|e| ApplyError::Up(e.into()))
}

/// A deploy hook: `run --rm -T [--no-deps] SERVICE` within `timeout`, its
/// container removed after. `no_deps` when the stack runs already: a hook
/// before `up` must change nothing of it (its dependencies run, at their
/// deployed version); on a first deployment they are started for it.
/// Never an error: how it ended is the run's.
pub async fn run_hook(
    project: &Compose,
    phase: crate::model::hooks::HookPhase,
    service: &str,
    no_deps: bool,
    timeout: std::time::Duration,
) -> crate::model::hooks::HookRun {
    use crate::model::hooks::{HookRun, MAX_OUTPUT};
    let started = std::time::Instant::now();
    // Quiet progress: what stderr holds is the container's, or compose's
    // reason for failing.
    let mut args = vec!["--progress", "quiet", "run", "--rm", "-T", "--quiet-pull"];
    if no_deps {
        args.push("--no-deps");
    }
    args.push(service);
    let ended = project
        .cmd(args)
        .timeout(timeout)
        .run_to_end(MAX_OUTPUT)
        .await;
    let (ok, status, output) = match ended {
        Ok(e) => {
            let output = match (e.stdout.is_empty(), e.stderr.is_empty()) {
                (_, true) => e.stdout,
                (true, false) => e.stderr,
                (false, false) => format!("{}\n{}", e.stdout, e.stderr),
            };
            (e.success, e.status, output)
        }
        Err(crate::process::ProcessError::Timeout { after, .. }) => (
            false,
            format!(
                "timed out after {} (deploy.timeout)",
                crate::config::duration::format_duration(after)
            ),
            String::new(),
        ),
        Err(e) => (false, compose::reason(&e), String::new()),
    };
    HookRun {
        phase,
        service: service.to_string(),
        ok,
        status,
        duration_ms: started.elapsed().as_millis() as u64,
        output,
    }
}

/// Heals services: `up -d --no-deps [--force-recreate] SERVICES`. Forcing is
/// needed for a container replaced by hand whose compose labels were copied
/// from the original: compose alone would take it for up to date.
pub async fn recreate(
    project: &Compose,
    services: &[String],
    force: bool,
) -> Result<(), ApplyError> {
    let mut args = vec!["up", "-d", "--no-deps", "--quiet-pull"];
    if force {
        args.push("--force-recreate");
    }
    project
        .cmd(args)
        .args(services)
        .timeout(compose::APPLY_TIMEOUT)
        .run()
        .await
        .map(drop)
        .map_err(|e| ApplyError::Up(e.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_build_says_what_compose_said_not_how_it_was_run() {
        let failed = ProcessError::Failed {
            command: "docker compose --project-directory /x build --quiet app".into(),
            status: "exit status: 17".into(),
            stderr: "failed to solve: exit code: 3\n".into(),
        };
        let cases = [
            (failed, "failed to solve: exit code: 3"),
            (
                ProcessError::Failed {
                    command: "docker compose build".into(),
                    status: "exit status: 1".into(),
                    stderr: " \n".into(),
                },
                "compose exited with exit status: 1",
            ),
            (
                ProcessError::Timeout {
                    command: "docker compose build".into(),
                    after: Duration::from_secs(900),
                },
                "not finished within 900s",
            ),
        ];
        for (err, want) in cases {
            assert_eq!(compose::reason(&err), want);
        }
        let err = ApplyError::Build {
            service: "app".into(),
            reason: "failed to solve: exit code: 3".into(),
        };
        assert_eq!(
            err.to_string(),
            "service app failed to build: failed to solve: exit code: 3"
        );
        assert!(std::error::Error::source(&err).is_none());
    }
}
