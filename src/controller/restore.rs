//! controller: undoing a failed deployment — the last successful
//! deployment re-applied (recorded `rolled_back`, trigger `auto_rollback`)
//! and gated like any deployment, since what was healthy once may not be now.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use super::Shared;
use super::task::{ReconcileError, RepoTask, Trigger};
use crate::desired::kedge_yaml::Gate;
use crate::desired::render::ServiceSpec;
use crate::events::{EventKind, NewEvent};
use crate::record::{DeployStep, DeploymentStatus, NewDeployment};
use crate::{error_chain, short};

/// After a deployment that failed before `up` (a pull, a `deploy.before`
/// hook): nothing of the stack changed, but the files its containers are
/// healed from did — the label override, the SOPS override, the files
/// shipped to a host. They are put back as the deployed commit had them
/// (the clone holds its tree again); no container is touched.
pub async fn put_back_files(shared: &Arc<Shared>, task: &RepoTask) -> Result<(), ReconcileError> {
    let id = task.id();
    let state = shared.db.read(|s| s.repo_state(id))?;
    let records = shared.db.read(|s| s.services(id))?;
    if state.deployed_commit.is_none() || records.is_empty() {
        return Ok(());
    }
    let deployed = Project::of(shared, task, &state)?;
    // Nothing to bring back up.
    let mut restore = deployed.restore(&records, &[]);
    restore.prune = false;
    let restored = crate::target::Target::of_state(&state)
        .put_back(&task.site(shared), restore)
        .await;
    if let Err(e) = restored {
        tracing::warn!(repo = %task.repo.name, "cannot put the deployed overrides back: {}", error_chain(&e));
    }
    Ok(())
}

/// Re-applies the deployed commit after a failed `up` of `failed`, recorded
/// as a `rolled_back` deployment (trigger `auto_rollback`). The clone holds
/// the deployed tree again; its services' records are still the store's.
/// The restored commit; `None` when there is nothing to restore (a first
/// deployment) or the restore failed too (logged: the failed deployment
/// says what broke).
pub async fn restore_previous(
    shared: &Arc<Shared>,
    task: &RepoTask,
    failed: &str,
    changed: &[String],
    gate: Option<Gate>,
) -> Result<Option<String>, ReconcileError> {
    // The restored commit's gate settings; the defaults when its kedge.yaml
    // could not be read.
    let gate = gate.unwrap_or_default();
    let id = task.id();
    let name = &task.repo.name;
    let state = shared.db.read(|s| s.repo_state(id))?;
    let Some(deployed) = state.deployed_commit.clone() else {
        return Ok(None);
    };
    let records = shared.db.read(|s| s.services(id))?;
    let Some(previous) = shared
        .db
        .read(|s| s.deployments(id, 50))?
        .into_iter()
        .find(|d| d.commit == deployed && d.status != DeploymentStatus::Failed)
    else {
        return Ok(None);
    };
    if records.is_empty() {
        return Ok(None);
    }
    let deployed_project = Project::of(shared, task, &state)?;
    let project = deployed_project.project.clone();
    let message = format!(
        "restored after the failed deployment of {}: {}",
        short(failed),
        previous.message
    );
    let snapshot = match &previous.snapshot {
        Some(key) => shared.db.read(|s| s.snapshot(key))?,
        None => None,
    };
    let started = Instant::now();
    let restore = shared
        .begin_deployment(&NewDeployment {
            stack_id: id,
            commit: &deployed,
            message: &message,
            trigger: Trigger::AutoRollback,
            compose_snapshot: snapshot.as_deref(),
            rolled_back_from: Some(failed),
        })
        .await?;
    let applied_ms = crate::time::now_ms();
    let target = crate::target::Target::of_state(&state);
    let result = target
        .restore(
            &task.site(shared),
            deployed_project.restore(&records, changed),
        )
        .await;
    // Gated like a deployment: what was healthy once may not be now (its
    // data changed, a dependency went away).
    let result = match result {
        Ok(()) if !gate.wait || task.skip_gate => Ok(()),
        Ok(()) => {
            let specs: Vec<&ServiceSpec> = changed
                .iter()
                .filter_map(|s| records.get(s).map(|r| &r.spec))
                .collect();
            target
                .watch_gate(task.engine(shared), &project, &specs, &gate, applied_ms)
                .await
                .map(drop)
                .map_err(|f| (error_chain(&f), DeployStep::HealthGate))
        }
        Err(e) => Err((error_chain(&e), DeployStep::Apply)),
    };
    match result {
        Ok(()) => {
            tracing::warn!(repo = %name, failed = short(failed), restored = short(&deployed), "the failed deployment was undone: the last successful deployment is back");
            task.emit(
                shared,
                NewEvent::new(
                    name,
                    EventKind::RolledBack,
                    format!(
                        "the failed deployment of {} was undone: {} is back",
                        short(failed),
                        short(&deployed)
                    ),
                )
                .commit(&deployed)
                .field("trigger", Trigger::AutoRollback.as_str())
                .field("failed_commit", failed)
                .field("deployment", restore)
                .field("duration_ms", started.elapsed().as_millis() as u64),
            );
            let changes = changed.to_vec();
            shared
                .db
                .write(move |s| {
                    s.finish_deployment(restore, DeploymentStatus::RolledBack, &changes, None)
                })
                .await?;
            Ok(Some(deployed))
        }
        Err((why, step)) => {
            // Said plainly: neither the failed commit nor the restored one
            // runs healthy, and Kedge does not keep flapping between them.
            let text = if step == DeployStep::HealthGate {
                format!(
                    "the restore of {} after the failed deployment of {} did not come up either: \
                     {why}; the stack is left as it is, unhealthy, until the branch moves or `kedge sync`",
                    short(&deployed),
                    short(failed)
                )
            } else {
                format!(
                    "cannot restore {} after the failed deployment of {}: {why}",
                    short(&deployed),
                    short(failed)
                )
            };
            tracing::error!(repo = %name, restored = short(&deployed), "{text}");
            let (changes, failure) = (changed.to_vec(), text.clone());
            shared
                .db
                .write(move |s| {
                    s.with_transaction(|s| {
                        s.fail_deployment(restore, &changes, &failure, step)?;
                        s.mark_failed(id, &failure)
                    })
                })
                .await?;
            task.emit(
                shared,
                NewEvent::new(name, EventKind::DeployFailed, text.clone())
                    .commit(&deployed)
                    .field("trigger", Trigger::AutoRollback.as_str())
                    .field("failed_commit", failed)
                    .field("deployment", restore)
                    .field("step", step.as_str())
                    .field("duration_ms", started.elapsed().as_millis() as u64),
            );
            Ok(None)
        }
    }
}

/// The deployed deployment's compose project, as a restore applies it
/// again: its files, profiles and env files, whether it prunes, the images
/// it ran in place of Git's, whether it read SOPS files.
struct Project {
    project: String,
    files: Vec<PathBuf>,
    profiles: Vec<String>,
    env_files: Vec<String>,
    prune: bool,
    images: BTreeMap<String, String>,
    secrets: bool,
}

impl Project {
    fn of(
        shared: &Shared,
        task: &RepoTask,
        state: &crate::record::RepoState,
    ) -> Result<Project, ReconcileError> {
        let id = task.id();
        Ok(Project {
            project: state
                .project
                .clone()
                .unwrap_or_else(|| task.repo.name.clone()),
            files: state
                .compose_files
                .clone()
                .unwrap_or_default()
                .into_iter()
                .map(PathBuf::from)
                .collect(),
            profiles: state.profiles.clone().unwrap_or_default(),
            env_files: state.env_files.clone().unwrap_or_default(),
            prune: state.prune.unwrap_or(true),
            images: shared
                .db
                .read(|s| s.image_overrides(id))?
                .into_iter()
                .map(|o| (o.service, o.image))
                .collect(),
            secrets: !state.secrets.is_empty(),
        })
    }

    fn restore<'a>(
        &'a self,
        records: &'a BTreeMap<String, crate::record::ServiceRecord>,
        changed: &'a [String],
    ) -> crate::target::Restore<'a> {
        crate::target::Restore {
            project: &self.project,
            files: self.files.clone(),
            profiles: &self.profiles,
            env_files: &self.env_files,
            records,
            changed,
            prune: self.prune,
            images: &self.images,
            secrets: self.secrets,
        }
    }
}
