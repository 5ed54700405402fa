//! controller/deploy: a deployment that failed — what the failure
//! decision (`plan::failure`) says to keep, put back or undo, recorded with
//! its events; a failed write-back update reverted in Git.

use std::sync::Arc;

use super::kept::{Deployed, drop_kept_override};
use super::{Attempt, first_line, hooks_field};
use crate::apply::ApplyError;
use crate::controller::Shared;
use crate::controller::task::{ReconcileError, RepoTask, StepError, Trigger};
use crate::desired::kedge_yaml::Gate;
use crate::desired::render::Desired;
use crate::events::{EventKind, NewEvent};
use crate::plan::failure;
use crate::record::DeployStep;
use crate::{error_chain, short};

/// Records a deployment that failed at `e`, and undoes what the failure
/// decision says to undo.
pub(super) async fn failed(
    shared: &Arc<Shared>,
    task: &mut RepoTask,
    attempt: Attempt<'_>,
    e: StepError,
) -> Result<crate::controller::task::Outcome, ReconcileError> {
    let Attempt {
        desired,
        message,
        trigger,
        deployment,
        target,
        previous,
        mut records,
        changed,
        moving,
        hook_runs,
        elapsed,
    } = attempt;
    let (id, name, commit) = (task.id(), task.repo.name.clone(), desired.commit.as_str());
    // A failed gate or `deploy.after` hook: the commit's verdict.
    let gate_failed = e.judges_the_commit();
    // Swarm's own `failure_action: rollback` already put the previous
    // version of these services back.
    let target_rolled: Vec<&str> = match &e {
        StepError::Gate(f) => f.rolled_back_by_target(),
        _ => Vec::new(),
    };
    let deployed = shared.db.read(|s| s.repo_state(id))?.deployed_commit;
    let decision = failure::decide(&failure::Failure {
        step: failed_step(&e),
        rollback_on_failure: desired.kedge.gate.rollback_on_failure,
        is_rollback: trigger == Trigger::Rollback,
        changed: &changed,
        target_rolled: &target_rolled,
        has_deployed: deployed.is_some(),
    });
    let mut error = error_chain(&e);
    tracing::error!(repo = %name, commit = short(commit), "deploy failed: {error}");
    // The deployed commit's gate, read back with its settings: what
    // a restore goes through.
    let mut restored_gate = None;
    if decision.keep {
        // What runs is what was applied, and drift is measured against it.
        target
            .settle(&task.site(shared), &desired.project, &mut records)
            .await;
        drop_kept_override(shared, id).await;
    } else if let (true, Some(deployed)) = (decision.restore_checkout, &deployed) {
        // The clone goes back to what is running: its files are bind-mounted.
        match task.git.checkout_deployed(deployed).await {
            Ok(()) => restored_gate = restore_settings(shared, task, desired).await,
            Err(e) => tracing::warn!(
                repo = %name,
                "cannot restore the deployed checkout: {}",
                error_chain(&e)
            ),
        }
    }
    if decision.restore_checkout && !decision.undo && !decision.keep {
        // Failed before `up`: the containers are as they were; the
        // files they are healed from go back too.
        crate::controller::restore::put_back_files(shared, task).await?;
    }
    if let Some(note) = decision.note {
        error.push_str(&format!("; {}", note.text()));
    }
    let note = decision.note.map(failure::Note::text);
    let step = match failed_step(&e) {
        failure::FailedStep::Gate => DeployStep::HealthGate,
        failure::FailedStep::BeforeHook => DeployStep::BeforeHook,
        failure::FailedStep::AfterHook => DeployStep::AfterHook,
        _ => DeployStep::Apply,
    };
    // The failed deployment and the repository's state (what is
    // deployed now, the error, whether the commit is tried again):
    // all of it or none of it.
    let (deployed, kept, changes, runs) = (
        Deployed::of(desired),
        records.clone(),
        changed.clone(),
        hook_runs.clone(),
    );
    let (text, settled) = (error.clone(), commit.to_string());
    // A new image that failed the gate is never proposed again as
    // an update (fleet.md §3).
    let failed_images: Vec<(String, String)> = if gate_failed {
        changed
            .iter()
            .filter_map(|s| {
                let image = desired.services.get(s)?.image.clone()?;
                let before = previous.get(s).and_then(|r| r.spec.image.as_deref());
                (before != Some(image.as_str())).then(|| (s.clone(), image))
            })
            .collect()
    } else {
        Vec::new()
    };
    shared
        .db
        .write(move |s| {
            s.with_transaction(|s| {
                for (service, image) in &failed_images {
                    s.mark_image_failed(id, service, image)?;
                }
                if decision.keep {
                    s.replace_services(id, &kept)?;
                    deployed.mark(s, id)?;
                }
                s.record_hooks(deployment, &runs)?;
                s.fail_deployment(deployment, &changes, &text, step)?;
                s.mark_failed(id, &text)?;
                if decision.settle {
                    // Not tried again until the branch moves or `kedge sync`.
                    s.mark_settled(id, &settled, None)?;
                }
                Ok(())
            })
        })
        .await?;
    task.emit(
        shared,
        NewEvent::new(&name, EventKind::DeployFailed, error.clone())
            .commit(commit)
            .field("commit_message", first_line(message))
            .field("trigger", trigger.as_str())
            .field("deployment", deployment)
            .field("step", step.as_str())
            .field("duration_ms", elapsed.as_millis() as u64)
            .field_if(!hook_runs.is_empty(), "hooks", hooks_field(&hook_runs)),
    );
    if trigger == Trigger::ImageUpdate {
        // The images that ran before are what the restore puts back.
        crate::controller::image_update::step_back(shared, task, Some(&changed)).await?;
    }
    let restored = if decision.undo {
        // A move undone: the new project goes, the old one comes
        // back whole.
        let back = match &moving {
            Some(_) => {
                crate::controller::moves::abandon(shared, task, &desired.project).await;
                shared.db.read(|s| s.services(id))?.into_keys().collect()
            }
            None => changed.clone(),
        };
        crate::controller::restore::restore_previous(shared, task, commit, &back, restored_gate)
            .await?
    } else {
        if decision.keep
            && let Some(mv) = &moving
        {
            crate::controller::moves::finish(shared, task, mv).await;
        }
        None
    };
    if restored.is_some() {
        // Undone: trying the commit again would only break and
        // restore the stack once more, whoever tries (a `kedge
        // sync` too, or serve would deploy it at its next pass).
        let settled = commit.to_string();
        shared
            .db
            .write(move |s| s.mark_settled(id, &settled, None))
            .await?;
    }
    task.drift.after_apply();
    if gate_failed && restored.is_some() {
        // An update Kedge wrote back failed: Git is made to say
        // again what runs.
        let author = desired
            .kedge
            .updates
            .as_ref()
            .and_then(|u| u.git_author.clone());
        crate::controller::write_back::after_failed_gate(shared, task, commit, author.as_deref())
            .await?;
    }
    Err(ReconcileError::Apply {
        commit: commit.to_string(),
        note,
        restored,
        source: Box::new(e),
    })
}

/// After a failed deployment, the settings that govern the running stack
/// (`prune`, `drift.unhealthy`, `docker.target`) are the deployed commit's
/// again, read from the restored checkout: the failed commit's must not
/// steer the restore or the drift checks after it (a failed switch to
/// `target: swarm` would have them look for a stack). The mode stays the
/// last rendered one, as `repo list` shows it.
async fn restore_settings(shared: &Shared, task: &RepoTask, failed: &Desired) -> Option<Gate> {
    let name = &task.repo.name;
    match crate::desired::kedge_yaml::load(&task.git.clone, &crate::process::repo_env).await {
        Ok(mut deployed) => {
            deployed.mode = failed.kedge.mode;
            // The host is the failed commit's: a commit that moves a stack
            // is refused before it is applied, so both name the same one.
            // (This file may be the repository's root file, which names
            // no host for a declared stack: the restore must not send the
            // stack's checks to this machine's engine.)
            deployed.host = failed.kedge.host.clone();
            deployed.hosts = failed.kedge.hosts.clone();
            let (id, settings) = (task.id(), deployed.settings());
            if let Err(e) = shared
                .db
                .write(move |s| s.set_rendered(id, &settings))
                .await
            {
                tracing::warn!(repo = %name, "cannot restore the deployed settings: {}", error_chain(&e));
            }
            Some(deployed.gate)
        }
        Err(e) => {
            tracing::warn!(
                repo = %name,
                "cannot read the deployed commit's kedge.yaml: {}",
                error_chain(&e)
            );
            None
        }
    }
}

/// The step a deployment failed at, as the failure decision sees it.
fn failed_step(e: &StepError) -> failure::FailedStep {
    match e {
        StepError::Apply(ApplyError::Up(_) | ApplyError::StackDeploy { .. }) => {
            failure::FailedStep::Up
        }
        StepError::Gate(_) => failure::FailedStep::Gate,
        StepError::GateEngine(_) => failure::FailedStep::GateEngine,
        StepError::Hook { .. } if e.judges_the_commit() => failure::FailedStep::AfterHook,
        StepError::Hook { .. } => failure::FailedStep::BeforeHook,
        StepError::Apply(_) | StepError::Checkout(_) => failure::FailedStep::BeforeUp,
    }
}
