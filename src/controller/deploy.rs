//! controller: deploying one commit — render it, decide what it changes
//! (`plan::rollout`), apply that (`apply`), record the deployment and its
//! events, and undo a failed `up` by re-applying the last good deployment.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Shared;
use super::task::{Outcome, ReconcileError, RepoTask, StepError, Trigger};
use crate::apply::{self, ApplyError};
use crate::desired::kedge_yaml::{Mode, Target};
use crate::desired::render::{self, Desired, RenderError, ServiceSpec};
use crate::events::{EventKind, NewEvent, Severity};
use crate::plan::rollout::rollout;
use crate::record::{DeploymentStatus, NewDeployment, ServiceRecord};
use crate::source::git::GitError;
use crate::{error_chain, short};

/// A commit rendered in the render worktree.
pub struct Rendered {
    pub desired: Desired,
    pub info: crate::source::git::CommitInfo,
    pub render_dir: PathBuf,
}

/// Checks a commit out in the render worktree and renders it.
pub async fn render_commit(
    task: &RepoTask,
    commit: &str,
) -> Result<Result<Rendered, (crate::source::git::CommitInfo, RenderError)>, GitError> {
    // Three independent reads of the same commit, side by side.
    let (info, mut object_ids, render_dir) = tokio::try_join!(
        task.git.commit_info(commit),
        task.git.object_ids(commit),
        task.git.checkout_for_render(commit),
    )?;
    object_ids.insert(String::new(), info.tree.clone());
    tracing::debug!(commit = short(commit), "checked out for rendering");
    let rendered = render::render(
        &task.repo.name,
        commit,
        &render_dir,
        &task.git.clone,
        &object_ids,
        &crate::process::repo_env,
        task.max_compose_size,
    )
    .await;
    Ok(match rendered {
        Ok(desired) => Ok(Rendered {
            desired,
            info,
            render_dir,
        }),
        Err(e) => Err((info, e)),
    })
}

/// Renders and applies one commit (in `auto` mode, or when forced by sync
/// or rollback), recording the outcome.
pub async fn deploy(
    shared: &Arc<Shared>,
    task: &mut RepoTask,
    commit: &str,
    trigger: Trigger,
) -> Result<Outcome, ReconcileError> {
    let id = task.repo.id;
    let name = task.repo.name.clone();
    let Rendered {
        desired,
        info,
        render_dir,
    } = match render_commit(task, commit).await? {
        Ok(r) => r,
        Err((info, e)) => {
            if trigger.detects() {
                shared.emit(commit_detected(&name, commit, &info.message, None));
            }
            return refuse(shared, id, &name, &info.message, commit, trigger, &e);
        }
    };
    // One repository per compose project: the heals of each would take the
    // other's containers for Extra ones, and the locks (per repository)
    // would not keep their applies apart.
    let owner = shared.store().project_owner(&desired.project, id)?;
    if let Some(owner) = owner {
        if trigger.detects() {
            shared.emit(commit_detected(&name, commit, &info.message, None));
        }
        let e = RenderError::ProjectTaken {
            project: desired.project.clone(),
            repo: owner,
        };
        return refuse(shared, id, &name, &info.message, commit, trigger, &e);
    }

    let waits = desired.kedge.mode != Mode::Auto && !trigger.forced();
    if trigger.detects() {
        let mode = waits.then_some(desired.kedge.mode);
        shared.emit(commit_detected(&name, commit, &info.message, mode));
    }
    shared.store().set_rendered(id, &desired.kedge)?;
    if waits {
        tracing::info!(repo = %name, commit = short(commit), mode = %desired.kedge.mode, "new commit not deployed: mode is {}", desired.kedge.mode);
        shared.store().mark_settled(id, commit, None)?;
        return Ok(Outcome::Deferred {
            mode: desired.kedge.mode,
        });
    }
    apply_rendered(
        shared,
        task,
        &desired,
        &info.message,
        trigger,
        Source::Checkout(render_dir),
    )
    .await
}

/// Where a rendered project's files come from.
pub enum Source {
    /// The commit, checked out in the render worktree.
    Checkout(PathBuf),
    /// A compose snapshot stored with an earlier deployment, for a commit
    /// that is gone from the repository.
    Snapshot,
}

/// Applies a rendered project and records the deployment.
pub async fn apply_rendered(
    shared: &Arc<Shared>,
    task: &mut RepoTask,
    desired: &Desired,
    message: &str,
    trigger: Trigger,
    source: Source,
) -> Result<Outcome, ReconcileError> {
    let id = task.repo.id;
    let name = task.repo.name.clone();
    let commit = desired.commit.as_str();
    let started = Instant::now();
    let deployment = shared.store().begin_deployment(&NewDeployment {
        repo_id: id,
        commit,
        message,
        trigger: trigger.as_str(),
        compose_snapshot: Some(&desired.rendered),
        rolled_back_from: None,
    })?;
    shared.emit(
        NewEvent::new(
            &name,
            EventKind::DeployStarted,
            format!("deploying {}: {}", short(commit), first_line(message)),
        )
        .commit(commit)
        .field("commit_message", first_line(message))
        .field("trigger", trigger.as_str())
        .field("deployment", deployment),
    );

    tracing::debug!(commit = short(commit), "rendered");
    let previous = shared.store().services(id)?;
    let crate::plan::rollout::Rollout {
        mut records,
        changed,
        ..
    } = rollout(desired, &previous, commit);
    let applied_ms = crate::time::now_ms();
    let result = apply_desired(shared, task, desired, &source, &records, &previous).await;
    // The health gate: the changed services must come up before the
    // deployment counts. The deployment stays `in_progress` meanwhile.
    task.gated = false;
    let swarm = desired.kedge.target == Target::Swarm;
    let gated = match result {
        Ok(()) if desired.kedge.gate.wait && !task.skip_gate => {
            task.gated = true;
            let specs: Vec<&ServiceSpec> = changed
                .iter()
                .filter_map(|s| desired.services.get(s))
                .collect();
            tracing::debug!(repo = %name, services = ?changed, "health gate");
            let watched = if swarm {
                super::swarm::watch(
                    shared,
                    &desired.project,
                    &specs,
                    &desired.kedge.gate,
                    applied_ms,
                )
                .await
            } else {
                super::gate::watch(
                    &shared.engine,
                    &desired.project,
                    &specs,
                    &desired.kedge.gate,
                    applied_ms,
                )
                .await
            };
            watched.map(drop).map_err(|f| {
                if f.engine_lost() {
                    StepError::GateEngine(f)
                } else {
                    StepError::Gate(f)
                }
            })
        }
        other => other,
    };
    let elapsed = started.elapsed();
    match gated {
        Ok(()) => {
            // The labels compose wrote (the specs Swarm holds) are the truth
            // about what it applied.
            if swarm {
                super::swarm::settle(shared, task, &desired.project, &mut records).await;
            } else {
                record_config_hashes(shared, &desired.project, &mut records).await;
            }
            shared.store().save_services(id, &records)?;
            shared.store().finish_deployment(
                deployment,
                if trigger == Trigger::Rollback {
                    DeploymentStatus::RolledBack
                } else {
                    DeploymentStatus::Success
                },
                &changed,
                None,
            )?;
            mark_deployed(shared, id, desired)?;
            task.drift.after_apply();
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
            shared.emit(
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
                .field("duration_ms", elapsed.as_millis() as u64),
            );
            Ok(Outcome::Deployed { changed })
        }
        Err(e) => {
            let gate_failed = matches!(e, StepError::Gate(_));
            // Swarm's own `failure_action: rollback` already put the previous
            // version of these services back.
            let swarm_rolled: Vec<&str> = match &e {
                StepError::Gate(f) => super::swarm::rolled_back_by_swarm(f),
                _ => Vec::new(),
            };
            // A failed gate without a rollback leaves the stack as it is:
            // what runs is what was applied, and drift is measured against it.
            // Not when Swarm rolled part of it back: what runs is then no
            // longer the commit, and keeping it would have the heal loop
            // deploy the failed commit again and again.
            let keep = gate_failed
                && swarm_rolled.is_empty()
                && (!desired.kedge.gate.rollback_on_failure || trigger == Trigger::Rollback);
            let mut error = error_chain(&e);
            tracing::error!(repo = %name, commit = short(commit), "deploy failed: {error}");
            let deployed = shared.store().repo_state(id)?.deployed_commit;
            if keep && swarm {
                super::swarm::settle(shared, task, &desired.project, &mut records).await;
            }
            if keep {
                if !swarm {
                    record_config_hashes(shared, &desired.project, &mut records).await;
                }
                shared.store().save_services(id, &records)?;
                mark_deployed(shared, id, desired)?;
                error.push_str(&format!("; {}", left_as_is(trigger)));
            } else if let Some(deployed) = &deployed {
                // The clone goes back to what is running: its files are bind-mounted.
                match task.git.checkout_deployed(deployed).await {
                    Ok(()) => restore_settings(shared, task, desired).await,
                    Err(e) => tracing::warn!(
                        repo = %name,
                        "cannot restore the deployed checkout: {}",
                        error_chain(&e)
                    ),
                }
            }
            let note = if keep {
                Some(left_as_is(trigger))
            } else if gate_failed && deployed.is_none() {
                error.push_str(&format!("; {NOTHING_TO_ROLL_BACK}"));
                Some(NOTHING_TO_ROLL_BACK)
            } else {
                None
            };
            let step = if gate_failed { "health_gate" } else { "apply" };
            shared
                .store()
                .fail_deployment(deployment, &changed, &error, step)?;
            shared.emit(
                NewEvent::new(&name, EventKind::DeployFailed, error.clone())
                    .commit(commit)
                    .field("commit_message", first_line(message))
                    .field("trigger", trigger.as_str())
                    .field("deployment", deployment)
                    .field("step", step)
                    .field("duration_ms", elapsed.as_millis() as u64),
            );
            shared.store().mark_failed(id, &error)?;
            if gate_failed {
                // Not tried again until the branch moves or `kedge sync`.
                shared.store().mark_settled(id, commit, None)?;
            }
            // A failed `up` may have changed part of the stack, and a failed
            // gate did: put the last successful deployment back. Earlier
            // steps change nothing.
            // Not applied a second time when Swarm put every changed service
            // back; when it rolled back only some, the others are restored
            // too (the rolled-back ones are a no-op for Swarm).
            let swarm_undid =
                !changed.is_empty() && changed.iter().all(|c| swarm_rolled.contains(&c.as_str()));
            let undo = matches!(
                e,
                StepError::Apply(ApplyError::Up(_) | ApplyError::StackDeploy { .. })
            ) || (gate_failed && !keep && !swarm_undid);
            let restored = if undo {
                restore_previous(shared, task, commit, &changed).await?
            } else {
                None
            };
            if restored.is_some() {
                // Undone: trying the commit again would only break and
                // restore the stack once more, whoever tries (a `kedge
                // sync` too, or serve would deploy it at its next pass).
                shared.store().mark_settled(id, commit, None)?;
            }
            task.drift.after_apply();
            Err(ReconcileError::Apply {
                commit: commit.to_string(),
                note,
                restored,
                source: Box::new(e),
            })
        }
    }
}

/// After a failed deployment, the settings that govern the running stack
/// (`prune`, `drift.unhealthy`, `docker.target`) are the deployed commit's
/// again, read from the restored checkout: the failed commit's must not
/// steer the restore or the drift checks after it (a failed switch to
/// `target: swarm` would have them look for a stack). The mode stays the
/// last rendered one, as `repo list` shows it.
async fn restore_settings(shared: &Shared, task: &RepoTask, failed: &Desired) {
    let name = &task.repo.name;
    match crate::desired::kedge_yaml::load(&task.git.clone, &crate::process::repo_env).await {
        Ok(mut deployed) => {
            deployed.mode = failed.kedge.mode;
            if let Err(e) = shared.store().set_rendered(task.repo.id, &deployed) {
                tracing::warn!(repo = %name, "cannot restore the deployed settings: {}", error_chain(&e));
            }
        }
        Err(e) => tracing::warn!(
            repo = %name,
            "cannot read the deployed commit's kedge.yaml: {}",
            error_chain(&e)
        ),
    }
}

/// Why a deployment whose gate failed was left running.
fn left_as_is(trigger: Trigger) -> &'static str {
    if trigger == Trigger::Rollback {
        "left running as it is (a failed rollback is not rolled back)"
    } else {
        "left running as it is (deploy.rollback_on_failure is false)"
    }
}
const NOTHING_TO_ROLL_BACK: &str = "nothing to roll back to: no earlier deployment succeeded";

/// What runs now is `desired`'s commit.
fn mark_deployed(shared: &Shared, id: i64, desired: &Desired) -> Result<(), ReconcileError> {
    let files: Vec<String> = desired
        .files
        .iter()
        .map(|f| f.to_string_lossy().into_owned())
        .collect();
    Ok(shared
        .store()
        .mark_deployed(id, &desired.commit, &desired.project, &files)?)
}

/// Re-applies the deployed commit after a failed `up` of `failed`, recorded
/// as a `rolled_back` deployment (trigger `auto_rollback`). The clone holds
/// the deployed tree again; its services' records are still the store's.
/// The restored commit; `None` when there is nothing to restore (a first
/// deployment) or the restore failed too (logged: the failed deployment
/// says what broke).
async fn restore_previous(
    shared: &Arc<Shared>,
    task: &RepoTask,
    failed: &str,
    changed: &[String],
) -> Result<Option<String>, ReconcileError> {
    let id = task.repo.id;
    let name = &task.repo.name;
    let state = shared.store().repo_state(id)?;
    let Some(deployed) = state.deployed_commit.clone() else {
        return Ok(None);
    };
    let records = shared.store().services(id)?;
    let Some(previous) = shared
        .store()
        .deployments(id, 50)?
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
    let prune = state.prune.unwrap_or(true);
    let message = format!(
        "restored after the failed deployment of {}: {}",
        short(failed),
        previous.message
    );
    let started = Instant::now();
    let restore = shared.store().begin_deployment(&NewDeployment {
        repo_id: id,
        commit: &deployed,
        message: &message,
        trigger: Trigger::AutoRollback.as_str(),
        compose_snapshot: previous.compose_snapshot.as_deref(),
        rolled_back_from: Some(failed),
    })?;
    let commits: BTreeMap<String, String> = records
        .iter()
        .map(|(s, r)| (s.clone(), r.commit.clone()))
        .collect();
    let fingerprints: BTreeMap<String, String> = records
        .iter()
        .filter_map(|(s, r)| Some((s.clone(), r.spec.build_fingerprint.clone()?)))
        .collect();
    let override_path = task.override_path();
    let swarm = state.target.as_deref() == Some(Target::Swarm.as_str());
    let mut result = if swarm {
        super::swarm::redeploy_deployed(shared, task, &project, prune)
            .await
            .map(drop)
    } else {
        apply::write_label_override(&override_path, &project, &commits, &fingerprints)
    };
    if result.is_ok() && !swarm {
        let compose = task
            .compose(shared, &project, &task.git.clone, files)
            .with_file(override_path);
        // The engine may still be creating what the aborted `up` asked for
        // when compose exits: a leftover can appear after the first look.
        for attempt in 1..=RESTORE_ATTEMPTS {
            apply::rollout::remove_recreate_leftovers(&shared.engine, &project).await;
            result = apply::up(&compose, &[], prune).await;
            if result.is_ok() || attempt == RESTORE_ATTEMPTS {
                break;
            }
            tracing::debug!(repo = %name, attempt, "restore failed, trying again");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    match result {
        Ok(()) => {
            tracing::warn!(repo = %name, failed = short(failed), restored = short(&deployed), "the failed deployment was undone: the last successful deployment is back");
            shared.emit(
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
            shared.store().finish_deployment(
                restore,
                DeploymentStatus::RolledBack,
                changed,
                None,
            )?;
            Ok(Some(deployed))
        }
        Err(e) => {
            let text = error_chain(&e);
            tracing::error!(repo = %name, restored = short(&deployed), "cannot restore the last successful deployment: {text}");
            shared
                .store()
                .fail_deployment(restore, changed, &text, "apply")?;
            Ok(None)
        }
    }
}

/// How often a restore is tried before it is given up.
const RESTORE_ATTEMPTS: u32 = 3;

/// The first line of a commit message.
fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or_default().trim()
}

/// A new branch head found; `waits` when the mode leaves it to `kedge sync`.
fn commit_detected(repo: &str, commit: &str, message: &str, waits: Option<Mode>) -> NewEvent {
    let event = NewEvent::new(
        repo,
        EventKind::CommitDetected,
        match waits {
            Some(mode) => format!(
                "new commit {} waits for `kedge sync` (mode {mode}): {}",
                short(commit),
                first_line(message)
            ),
            None => format!("new commit {}: {}", short(commit), first_line(message)),
        },
    )
    .commit(commit)
    .field("commit_message", first_line(message));
    match waits {
        Some(mode) => event
            .severity(Severity::Warning)
            .field("waits", true)
            .field("mode", mode.as_str()),
        None => event.field("waits", false),
    }
}

async fn apply_desired(
    shared: &Shared,
    task: &RepoTask,
    desired: &Desired,
    source: &Source,
    records: &BTreeMap<String, ServiceRecord>,
    previous: &BTreeMap<String, ServiceRecord>,
) -> Result<(), StepError> {
    if desired.kedge.target == Target::Swarm {
        let checkout = matches!(source, Source::Checkout(_));
        return super::swarm::apply_stack(shared, task, desired, checkout, records).await;
    }
    // Images first, from the render checkout: a missing image fails here,
    // before the deployed checkout or any container changes.
    let (services, images) = apply::rollout::missing_images(&shared.engine, desired).await;
    match source {
        Source::Checkout(render_dir) => {
            let render = task.compose(shared, &desired.project, render_dir, desired.files.clone());
            apply::pull(&render, &services, &images).await?;
            task.git.checkout_deployed(&desired.commit).await?;
        }
        Source::Snapshot => {
            let snapshot = task.compose(
                shared,
                &desired.project,
                &task.git.clone,
                desired.files.clone(),
            );
            apply::pull(&snapshot, &services, &images).await?;
        }
    }
    let commits: BTreeMap<String, String> = records
        .iter()
        .map(|(s, r)| (s.clone(), r.commit.clone()))
        .collect();
    let fingerprints: BTreeMap<String, String> = desired
        .services
        .iter()
        .filter_map(|(s, spec)| Some((s.clone(), spec.build_fingerprint.clone()?)))
        .collect();
    let rebuild = apply::rollout::builds(&shared.engine, desired, previous).await;
    let override_path = task.override_path();
    apply::write_label_override(&override_path, &desired.project, &commits, &fingerprints)?;
    let project = task
        .compose(
            shared,
            &desired.project,
            &task.git.clone,
            desired.files.clone(),
        )
        .with_file(override_path);
    tracing::debug!(commit = short(&desired.commit), "deployed tree checked out");
    apply::up(&project, &rebuild, desired.kedge.prune).await?;
    tracing::debug!(commit = short(&desired.commit), "compose up done");
    Ok(())
}

/// Reads back the config hash compose gave each service's containers.
async fn record_config_hashes(
    shared: &Shared,
    project: &str,
    records: &mut BTreeMap<String, ServiceRecord>,
) {
    let engine = &shared.engine;
    match engine.project_containers(project).await {
        Ok(containers) => {
            for (name, record) in records.iter_mut() {
                record.config_hash = containers
                    .iter()
                    .find(|c| &c.service == name && !c.oneoff)
                    .and_then(|c| c.config_hash.clone());
            }
        }
        Err(e) => tracing::warn!(%project, "cannot read back config hashes: {}", error_chain(&e)),
    }
}

/// A commit that cannot be rendered is a failed deployment; nothing is applied
/// and it is not retried until the branch moves.
fn refuse(
    shared: &Arc<Shared>,
    id: i64,
    name: &str,
    message: &str,
    commit: &str,
    trigger: Trigger,
    err: &RenderError,
) -> Result<Outcome, ReconcileError> {
    let text = error_chain(err);
    tracing::error!(repo = %name, commit = short(commit), "deploy failed: {text}");
    let store = shared.store();
    let deployment = store.begin_deployment(&NewDeployment {
        repo_id: id,
        commit,
        message,
        trigger: trigger.as_str(),
        compose_snapshot: None,
        rolled_back_from: None,
    })?;
    store.fail_deployment(deployment, &[], &text, "render")?;
    drop(store);
    shared.emit(
        NewEvent::new(name, EventKind::DeployFailed, text.clone())
            .commit(commit)
            .field("commit_message", first_line(message))
            .field("trigger", trigger.as_str())
            .field("deployment", deployment)
            .field("step", "render"),
    );
    shared.store().mark_settled(id, commit, Some(&text))?;
    Ok(Outcome::Refused { error: text })
}
