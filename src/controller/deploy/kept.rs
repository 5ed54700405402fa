//! controller/deploy: a deployment that is kept — its services, result and
//! state recorded at once, its events, the secrets no container uses pruned.

use std::sync::Arc;

use super::{Attempt, first_line, hooks_field};
use crate::controller::Shared;
use crate::controller::task::{Outcome, ReconcileError, RepoTask, Trigger};
use crate::desired::render::Desired;
use crate::events::{EventKind, NewEvent};
use crate::record::DeploymentStatus;
use crate::short;

/// Records a deployment whose apply, gate and hooks passed.
pub(super) async fn succeeded(
    shared: &Arc<Shared>,
    task: &mut RepoTask,
    attempt: Attempt<'_>,
) -> Result<Outcome, ReconcileError> {
    let Attempt {
        desired,
        message,
        trigger,
        deployment,
        target,
        previous: _,
        mut records,
        changed,
        moving,
        hook_runs,
        elapsed,
    } = attempt;
    let (id, name, commit) = (task.id(), task.repo.name.clone(), desired.commit.as_str());
    // The labels compose wrote (the specs Swarm holds) are the truth
    // about what it applied.
    target
        .settle(&task.site(shared), &desired.project, &mut records)
        .await;
    let status = if trigger == Trigger::Rollback {
        DeploymentStatus::RolledBack
    } else {
        DeploymentStatus::Success
    };
    // The deployment's result, its services and the repository's
    // state: all of it or none of it.
    let (deployed, kept, changes, runs) = (
        Deployed::of(desired),
        records.clone(),
        changed.clone(),
        hook_runs.clone(),
    );
    shared
        .db
        .write(move |s| {
            s.with_transaction(|s| {
                s.replace_services(id, &kept)?;
                s.record_hooks(deployment, &runs)?;
                s.finish_deployment(deployment, status, &changes, None)?;
                deployed.mark(s, id)
            })
        })
        .await?;
    task.drift.after_apply();
    if let Some(mv) = &moving {
        crate::controller::moves::finish(shared, task, mv).await;
    }
    prune_secrets(shared, id, desired).await;
    tracing::info!(
        repo = %name,
        commit = short(commit),
        changed = ?changed,
        "deployed in {:.1} s",
        elapsed.as_secs_f64()
    );
    let (kind, what) = if trigger == Trigger::Rollback {
        (EventKind::RolledBack, "rolled back to")
    } else {
        (EventKind::DeploySucceeded, "deployed")
    };
    task.emit(
        shared,
        NewEvent::new(
            &name,
            kind,
            format!("{what} {} in {:.1} s", short(commit), elapsed.as_secs_f64()),
        )
        .commit(commit)
        .field("commit_message", first_line(message))
        .field("trigger", trigger.as_str())
        .field("deployment", deployment)
        .field("changed", changed.clone())
        .field("duration_ms", elapsed.as_millis() as u64)
        .field_if(!hook_runs.is_empty(), "hooks", hooks_field(&hook_runs)),
    );
    Ok(Outcome::Deployed { changed })
}

/// What a deployment that is kept records as deployed, owned: it goes to
/// the store's writer.
pub(super) struct Deployed {
    commit: String,
    project: String,
    files: Vec<String>,
    profiles: Vec<String>,
    dormant: Vec<String>,
    env_files: Vec<String>,
    inputs: Option<crate::model::stack_inputs::StackInputs>,
    secrets: Vec<crate::model::stack_inputs::SecretPrint>,
    updates: Option<String>,
}

/// After a kept deployment: the plaintext no container of the stack uses
/// any more goes (all of it, when the stack reads no secret now).
async fn prune_secrets(shared: &Shared, id: i64, desired: &Desired) {
    drop_kept_override(shared, id).await;
    let dir = shared.secrets_dir(id);
    let keep = desired.secrets.as_ref().map(|s| s.in_use());
    let _ = tokio::task::spawn_blocking(move || match keep {
        Some(keep) => crate::desired::secrets::private::prune(&dir, &keep),
        None => {
            let _ = std::fs::remove_dir_all(&dir);
        }
    })
    .await;
}

/// What is deployed now is what was applied: the SOPS override kept aside
/// for a restore is an older deployment's, and must not come back.
pub(super) async fn drop_kept_override(shared: &Shared, id: i64) {
    let kept = shared
        .secrets_dir(id)
        .join(crate::desired::secrets::OVERRIDE_KEPT);
    let _ = tokio::fs::remove_file(kept).await;
}

impl Deployed {
    pub(super) fn of(desired: &Desired) -> Deployed {
        Deployed {
            commit: desired.commit.clone(),
            project: desired.project.clone(),
            files: desired
                .files
                .iter()
                .map(|f| f.to_string_lossy().into_owned())
                .collect(),
            profiles: desired.kedge.profiles.clone(),
            dormant: desired.dormant.clone(),
            inputs: desired.inputs.clone(),
            env_files: desired.env_files.clone(),
            secrets: desired
                .secrets
                .as_ref()
                .map(|s| s.prints())
                .unwrap_or_default(),
            updates: desired.kedge.updates.as_ref().map(|u| u.to_json()),
        }
    }

    pub(super) fn mark(
        &self,
        store: &crate::record::Store,
        id: i64,
    ) -> Result<(), crate::record::StoreError> {
        store.mark_deployed(
            id,
            &self.commit,
            &self.project,
            &self.files,
            self.inputs.as_ref(),
        )?;
        store.mark_profiles(id, &self.profiles, &self.dormant, &self.env_files)?;
        store.mark_secrets(id, &self.secrets)?;
        store.mark_updates_config(id, self.updates.as_deref())
    }
}
