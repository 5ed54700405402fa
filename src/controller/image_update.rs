//! controller: image updates deployed without a commit (fleet.md §3,
//! `apply: deploy`). The stack's task runs the candidate in place of the
//! image Git names — an override kept in the store and written into the
//! compose override file — as a deployment with trigger `image_update`,
//! behind the health gate; a failed gate steps the override back, and so
//! does a rollback.

use std::sync::Arc;

use super::Shared;
use super::commands::CommandError;
use super::deploy::deploy;
use super::task::{Outcome, ReconcileError, RepoTask, Trigger};
use crate::desired::render::Desired;
use crate::model::updates::ImageOverride;
use crate::short;

/// Applies the stack's overrides in force to `desired`; those Git has
/// moved past (it names another image now) are dropped for good.
pub async fn run_instead(
    shared: &Shared,
    task: &RepoTask,
    desired: &mut Desired,
) -> Result<(), ReconcileError> {
    let id = task.id();
    let overrides = shared.db.read(move |s| s.image_overrides(id))?;
    if overrides.is_empty() {
        return Ok(());
    }
    let stale = desired.run_instead(&overrides);
    if !stale.is_empty() {
        tracing::info!(repo = %task.repo.name, stack = task.stack_name(), services = ?stale, "Git names another image now: the image update deployed in its place gives way");
        shared
            .db
            .write(move |s| {
                for service in &stale {
                    s.remove_image_override(id, service)?;
                }
                Ok(())
            })
            .await?;
    }
    Ok(())
}

/// After a failed gate of an image update, or before a rollback: each
/// override of `services` goes back to what ran before it.
pub async fn step_back(
    shared: &Shared,
    task: &RepoTask,
    services: Option<&[String]>,
) -> Result<(), ReconcileError> {
    let id = task.id();
    let services: Vec<String> = match services {
        Some(s) => s.to_vec(),
        None => shared
            .db
            .read(move |s| s.image_overrides(id))?
            .into_iter()
            .map(|o| o.service)
            .collect(),
    };
    if services.is_empty() {
        return Ok(());
    }
    shared
        .db
        .write(move |s| {
            for service in &services {
                s.step_back_image_override(id, service)?;
            }
            Ok(())
        })
        .await?;
    Ok(())
}

/// The command: deploys `changes` over the deployed commit. The changed
/// services, or why not.
pub async fn deploy_images(
    shared: &Arc<Shared>,
    task: &mut RepoTask,
    changes: Vec<ImageOverride>,
) -> Result<Vec<String>, CommandError> {
    super::commands::prepare(shared, task).await?;
    let id = task.id();
    let state = shared
        .db
        .read(|s| s.repo_state(id))
        .map_err(ReconcileError::from)?;
    let Some(deployed) = state.deployed_commit.clone() else {
        return Err(CommandError::Refused {
            commit: String::new(),
            error: "the stack has no deployment to update".into(),
        });
    };
    // Checked again under the lock: a rollback may have pinned it since.
    if let Some(why) = super::write_back::held(&state) {
        return Err(CommandError::Refused {
            commit: deployed,
            error: why,
        });
    }
    let message = format!(
        "image update: {}",
        changes
            .iter()
            .map(|c| format!(
                "{} {} → {}",
                c.service,
                c.previous.as_deref().unwrap_or(&c.base),
                c.image
            ))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let kept = changes.clone();
    shared
        .db
        .write(move |s| {
            for c in &kept {
                s.set_image_override(id, c)?;
            }
            Ok(())
        })
        .await
        .map_err(ReconcileError::from)?;
    tracing::info!(repo = %task.repo.name, stack = task.stack_name(), commit = short(&deployed), "{message}");
    task.update_message = Some(message);
    let outcome = deploy(shared, task, &deployed, Trigger::ImageUpdate).await;
    task.update_message = None;
    match outcome.map_err(CommandError::from)? {
        Outcome::Deployed { changed } => Ok(changed),
        Outcome::Refused { error } => {
            // Nothing was applied: Git's images stay in force.
            let services: Vec<String> = changes.iter().map(|c| c.service.clone()).collect();
            step_back(shared, task, Some(&services)).await?;
            Err(CommandError::Refused {
                commit: deployed,
                error,
            })
        }
        Outcome::Deferred { mode } => {
            let services: Vec<String> = changes.iter().map(|c| c.service.clone()).collect();
            step_back(shared, task, Some(&services)).await?;
            Err(CommandError::Refused {
                commit: deployed,
                error: format!("mode {mode}: not deployed"),
            })
        }
        Outcome::Waiting { opens } => {
            // Git's images stay in force until the window opens; the
            // update is proposed again then.
            let services: Vec<String> = changes.iter().map(|c| c.service.clone()).collect();
            step_back(shared, task, Some(&services)).await?;
            Err(CommandError::Window {
                repo: task.address(),
                commit: deployed,
                opens,
            })
        }
        Outcome::Unchanged => Ok(Vec::new()),
    }
}

/// `apply: deploy` after a check: the stack's available candidates, all
/// in one deployment by the stack's task (this process's, or one made for
/// the command); the rows say what came of them.
pub(super) async fn apply(
    shared: &Arc<Shared>,
    stack: &crate::record::Stack,
    rows: &mut [crate::model::updates::UpdateRow],
) -> Result<(), ReconcileError> {
    use crate::events::{EventKind, NewEvent};
    let id = stack.id;
    let state = shared.db.read(move |s| s.repo_state(id))?;
    let services = shared.db.read(move |s| s.services(id))?;
    let overrides = shared.db.read(move |s| s.image_overrides(id))?;
    let target = crate::target::Target::of_state(&state);
    let mut changes = Vec::new();
    for row in rows.iter_mut() {
        if row.state != "available" {
            continue;
        }
        let (Some(running), Some(candidate)) = (&row.running_image, &row.candidate_image) else {
            continue;
        };
        if let Some(why) = super::write_back::held(&state) {
            row.detail = Some(why);
            continue;
        }
        if let Err(why) = target.runs_image_overrides() {
            row.detail = Some(why.to_string());
            continue;
        }
        let base = match overrides.iter().find(|o| o.service == row.service) {
            Some(o) => o.base.clone(),
            None => match services
                .get(&row.service)
                .and_then(|r| r.spec.image.clone())
            {
                Some(image) => image,
                None => continue,
            },
        };
        changes.push(ImageOverride {
            service: row.service.clone(),
            base,
            image: candidate.clone(),
            previous: Some(running.clone()),
        });
    }
    if changes.is_empty() {
        return Ok(());
    }
    let Some(repo) = shared.db.read(|s| s.repo_by_id(stack.repo_id))? else {
        return Ok(());
    };
    let request = super::inbox::Request::ImageUpdate {
        changes: changes.clone(),
    };
    let answer = match shared.send_command(id, request.clone()) {
        Ok(Some(ticket)) => {
            // The ticket's other ends stay open until the answer: a
            // dropped `started` would withdraw the command.
            let super::inbox::Ticket {
                reply,
                started,
                begun,
            } = ticket;
            let answer = reply.await;
            drop((started, begun));
            match answer {
                Ok(answer) => answer,
                Err(_) => Err(CommandError::Stopping {
                    repo: repo.name.clone(),
                }),
            }
        }
        Ok(None) => {
            let mut task = RepoTask::of_stack(shared, repo.clone(), stack.clone());
            super::commands::run(shared, &mut task, request).await
        }
        Err(_) => Err(CommandError::Busy {
            repo: repo.name.clone(),
            waited: std::time::Duration::ZERO,
        }),
    };
    let failure = match answer {
        Ok(_) => None,
        Err(e) => Some(crate::error_chain(&e)),
    };
    for row in rows.iter_mut() {
        let Some(change) = changes.iter().find(|c| c.service == row.service) else {
            continue;
        };
        let from = change.previous.clone().unwrap_or_default();
        let event = match &failure {
            None => {
                row.state = "applied".into();
                row.detail = Some("deployed without a commit (trigger image_update)".into());
                NewEvent::new(
                    &stack.repo,
                    EventKind::UpdateApplied,
                    format!("update deployed: {} {from} → {}", row.service, change.image),
                )
            }
            Some(error) => {
                row.state = "failed".into();
                row.detail = Some(error.clone());
                NewEvent::new(
                    &stack.repo,
                    EventKind::UpdateFailed,
                    format!(
                        "update of {} to {} failed: {error}",
                        row.service, change.image
                    ),
                )
            }
        };
        shared.emit(
            event
                .stack((!stack.root).then_some(stack.name.as_str()))
                .service(&row.service)
                .field("apply", "deploy")
                .field("from", from)
                .field("to", change.image.clone()),
        );
    }
    Ok(())
}
