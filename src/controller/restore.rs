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
    let project = state.project.clone().unwrap_or_else(|| name.clone());
    let files: Vec<PathBuf> = state
        .compose_files
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(PathBuf::from)
        .collect();
    let profiles = state.profiles.clone().unwrap_or_default();
    let prune = state.prune.unwrap_or(true);
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
    // The images the restored deployment ran in place of Git's.
    let images: BTreeMap<String, String> = shared
        .db
        .read(|s| s.image_overrides(id))?
        .into_iter()
        .map(|o| (o.service, o.image))
        .collect();
    let result = target
        .restore(
            &task.site(shared),
            crate::target::Restore {
                project: &project,
                files,
                profiles: &profiles,
                env_files: &state.env_files.clone().unwrap_or_default(),
                records: &records,
                changed,
                prune,
                images: &images,
            },
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
