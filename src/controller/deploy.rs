//! controller: deploying one commit — render it, decide what it changes
//! (`plan::rollout`), apply that (`apply`), record the deployment and its
//! events, and undo a failed `up` by re-applying the last good deployment.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use super::Shared;
use super::task::{Outcome, ReconcileError, RepoTask, StepError, Trigger};
use crate::apply::ApplyError;
use crate::desired::kedge_yaml::{Gate, Mode};
use crate::desired::render::{self, Desired, RenderError, ServiceSpec};
use crate::events::{EventKind, NewEvent, Severity};
use crate::model::hooks::HookRun;
use crate::plan::failure;
use crate::plan::rollout::rollout;
use crate::record::{DeployStep, DeploymentStatus, NewDeployment};
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
    let (info, tree, render_dir) = tokio::try_join!(
        task.git.commit_info(commit),
        task.tree(commit),
        task.git.checkout_for_render(commit),
    )?;
    let mut object_ids = (*tree).clone();
    object_ids.insert(String::new(), info.tree.clone());
    tracing::debug!(commit = short(commit), "checked out for rendering");
    let rendered = render::render(
        &task.repo.name,
        task.stack_name(),
        commit,
        &render_dir,
        &task.git.clone,
        &object_ids,
        &crate::process::repo_env,
        task.max_compose_size,
        &task.fingerprint_key,
        &task.sops.current(),
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
    let id = task.id();
    let name = task.repo.name.clone();
    if trigger.detects() && unchanged(shared, task, commit).await? {
        return Ok(Outcome::Unchanged);
    }
    let Rendered {
        mut desired,
        info,
        render_dir,
    } = match render_commit(task, commit).await? {
        Ok(r) => r,
        Err((info, e)) => {
            if trigger.detects() {
                task.emit(shared, commit_detected(&name, commit, &info.message, None));
            }
            return refuse(shared, task, &info.message, commit, trigger, &e).await;
        }
    };
    // One repository per compose project: the heals of each would take the
    // other's containers for Extra ones, and the locks (per repository)
    // would not keep their applies apart.
    let owner = shared
        .db
        .read(|s| s.project_owner(&desired.project, &desired.kedge.host, id))?;
    if let Some(owner) = owner {
        if trigger.detects() {
            task.emit(shared, commit_detected(&name, commit, &info.message, None));
        }
        let e = RenderError::ProjectTaken {
            project: desired.project.clone(),
            repo: owner,
        };
        return refuse(shared, task, &info.message, commit, trigger, &e).await;
    }

    let refused = match crate::desired::services_named::refused(&desired) {
        Some(e) => Some(e),
        None => super::hosts::reach_for(shared, task, &desired).await?,
    };
    if let Some(e) = refused {
        if trigger.detects() {
            task.emit(shared, commit_detected(&name, commit, &info.message, None));
        }
        return refuse(shared, task, &info.message, commit, trigger, &e).await;
    }

    super::image_update::run_instead(shared, task, &mut desired).await?;
    let waits = desired.kedge.mode != Mode::Auto && !trigger.forced();
    if trigger.detects() {
        let mode = waits.then_some(desired.kedge.mode);
        task.emit(shared, commit_detected(&name, commit, &info.message, mode));
    }
    let settings = desired.kedge.settings();
    shared
        .db
        .write(move |s| s.set_rendered(id, &settings))
        .await?;
    if waits {
        tracing::info!(repo = %name, commit = short(commit), mode = %desired.kedge.mode, "new commit not deployed: mode is {}", desired.kedge.mode);
        let settled = commit.to_string();
        shared
            .db
            .write(move |s| s.mark_settled(id, &settled, None))
            .await?;
        return Ok(Outcome::Deferred {
            mode: desired.kedge.mode,
        });
    }
    if let Some(opens) =
        super::windows::hold(shared, task, &desired.kedge.windows, commit, trigger).await?
    {
        return Ok(Outcome::Waiting { opens });
    }
    // An image update has no commit message: it says what it deploys.
    let message = match (trigger, &task.update_message) {
        (Trigger::ImageUpdate, Some(m)) => m.clone(),
        _ => info.message.clone(),
    };
    apply_rendered(
        shared,
        task,
        &desired,
        &message,
        trigger,
        Source::Checkout(render_dir),
    )
    .await
}

/// Whether `commit`, found on the branch, changes none of the inputs of
/// the stack that runs (fleet.md §1). Then it is recorded as what runs,
/// with a debug event, and neither rendered nor deployed: no compose
/// process starts. One git process reads the commit's tree.
async fn unchanged(
    shared: &Arc<Shared>,
    task: &RepoTask,
    commit: &str,
) -> Result<bool, ReconcileError> {
    let id = task.id();
    let (state, newest) = shared
        .db
        .read(|s| Ok((s.repo_state(id)?, s.deployments(id, 1)?)))?;
    let Some(inputs) = state.inputs.as_ref() else {
        return Ok(false);
    };
    // Only a stack that runs its deployed commit: after a failed
    // deployment left running, the same inputs still mean a change.
    let runs_deployed = newest.first().is_some_and(|d| {
        d.status == DeploymentStatus::Success && state.deployed_commit.as_deref() == Some(&d.commit)
    });
    if !runs_deployed || state.pinned_commit.is_some() {
        return Ok(false);
    }
    let object_ids = task.tree(commit).await?;
    let env = crate::desired::stack_inputs::env_digest(&task.fingerprint_key);
    let now = crate::desired::stack_inputs::fingerprint(&inputs.paths, &object_ids, &env);
    if now != inputs.fingerprint {
        return Ok(false);
    }
    let settled = commit.to_string();
    shared
        .db
        .write(move |s| s.mark_unchanged(id, &settled))
        .await?;
    let deployed = state.deployed_commit.as_deref().unwrap_or_default();
    tracing::debug!(repo = %task.repo.name, commit = short(commit), "the commit changes none of the stack's inputs");
    task.emit(
        shared,
        NewEvent::new(
            &task.repo.name,
            EventKind::StackUnchanged,
            format!(
                "{} changes none of the stack's inputs: it runs as deployed from {}",
                short(commit),
                short(deployed)
            ),
        )
        .commit(commit)
        .field("deployed_commit", deployed),
    );
    Ok(true)
}

pub use crate::target::Source;

/// Applies a rendered project and records the deployment.
pub async fn apply_rendered(
    shared: &Arc<Shared>,
    task: &mut RepoTask,
    desired: &Desired,
    message: &str,
    trigger: Trigger,
    source: Source,
) -> Result<Outcome, ReconcileError> {
    let id = task.id();
    let name = task.repo.name.clone();
    let commit = desired.commit.as_str();
    let started = Instant::now();
    let deployment = shared
        .begin_deployment(&NewDeployment {
            stack_id: id,
            commit,
            message,
            trigger,
            compose_snapshot: Some(&desired.rendered),
            rolled_back_from: None,
        })
        .await?;
    if let Some(announce) = task.announce.take() {
        let _ = announce.send(deployment);
    }
    task.emit(
        shared,
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
    // A move to another compose project makes the new one whole: nothing
    // of it runs yet, whatever the old one runs.
    let moving = super::moves::begin(shared, task, desired).await?;
    let previous = match moving {
        Some(_) => BTreeMap::new(),
        None => shared.db.read(|s| s.services(id))?,
    };
    let crate::plan::rollout::Rollout {
        mut records,
        changed,
        ..
    } = rollout(desired, &previous, commit);
    let applied_ms = crate::time::now_ms();
    let target = crate::target::Target::of_kedge(&desired.kedge);
    let result = {
        let _turn = shared.apply_turn().await;
        target
            .apply(
                &task.site(shared),
                desired,
                &source,
                &records,
                &previous,
                &changed,
            )
            .await
            .map_err(StepError::from)
    };
    // The deploy hooks' runs, for the record and its event.
    let mut hook_runs: Vec<HookRun> = Vec::new();
    let result = match result {
        Ok(runs) => {
            hook_runs = runs;
            Ok(())
        }
        Err(e) => {
            if let StepError::Hook { runs } = &e {
                hook_runs = runs.clone();
            }
            Err(e)
        }
    };
    // The health gate: the changed services must come up before the
    // deployment counts. The deployment stays `in_progress` meanwhile.
    task.gated = false;
    let gated = match result {
        Ok(()) if desired.kedge.gate.wait && !task.skip_gate => {
            task.gated = true;
            let specs: Vec<&ServiceSpec> = changed
                .iter()
                .filter_map(|s| desired.services.get(s))
                .collect();
            tracing::debug!(repo = %name, services = ?changed, "health gate");
            let watched = target
                .watch_gate(
                    task.engine(shared),
                    &desired.project,
                    &specs,
                    &desired.kedge.gate,
                    applied_ms,
                )
                .await;
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
    // `deploy.after`: once the gate has passed (or was skipped).
    let gated = match gated {
        Ok(()) if !desired.kedge.gate.after.is_empty() => {
            match target.after_hooks(&task.site(shared), desired).await {
                Ok(runs) => {
                    hook_runs.extend(runs);
                    Ok(())
                }
                Err(runs) => {
                    hook_runs.extend(runs.iter().cloned());
                    Err(StepError::Hook { runs })
                }
            }
        }
        other => other,
    };
    let elapsed = started.elapsed();
    match gated {
        Ok(()) => {
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
                super::moves::finish(shared, task, mv).await;
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
        Err(e) => {
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
                super::restore::put_back_files(shared, task).await?;
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
                super::image_update::step_back(shared, task, Some(&changed)).await?;
            }
            let restored = if decision.undo {
                // A move undone: the new project goes, the old one comes
                // back whole.
                let back = match &moving {
                    Some(_) => {
                        super::moves::abandon(shared, task, &desired.project).await;
                        shared.db.read(|s| s.services(id))?.into_keys().collect()
                    }
                    None => changed.clone(),
                };
                super::restore::restore_previous(shared, task, commit, &back, restored_gate).await?
            } else {
                if decision.keep
                    && let Some(mv) = &moving
                {
                    super::moves::finish(shared, task, mv).await;
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
                super::write_back::after_failed_gate(shared, task, commit, author.as_deref())
                    .await?;
            }
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

/// The hooks' runs as an event's `fields.hooks`.
fn hooks_field(runs: &[HookRun]) -> serde_json::Value {
    serde_json::to_value(runs).unwrap_or_default()
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

/// What runs now is `desired`'s commit.
/// What a deployment that is kept records as deployed, owned: it goes to
/// the store's writer.
struct Deployed {
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
async fn drop_kept_override(shared: &Shared, id: i64) {
    let kept = shared
        .secrets_dir(id)
        .join(crate::desired::secrets::OVERRIDE_KEPT);
    let _ = tokio::fs::remove_file(kept).await;
}

impl Deployed {
    fn of(desired: &Desired) -> Deployed {
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

    fn mark(&self, store: &crate::record::Store, id: i64) -> Result<(), crate::record::StoreError> {
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

/// The first line of a commit message.
pub(super) fn first_line(text: &str) -> &str {
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

/// A commit that cannot be rendered is a failed deployment; nothing is applied
/// and it is not retried until the branch moves.
async fn refuse(
    shared: &Arc<Shared>,
    task: &mut RepoTask,
    message: &str,
    commit: &str,
    trigger: Trigger,
    err: &RenderError,
) -> Result<Outcome, ReconcileError> {
    let (id, name) = (task.id(), task.repo.name.as_str());
    let text = error_chain(err);
    tracing::error!(repo = %name, commit = short(commit), "deploy failed: {text}");
    let deployment = shared
        .begin_deployment(&NewDeployment {
            stack_id: id,
            commit,
            message,
            trigger,
            compose_snapshot: None,
            rolled_back_from: None,
        })
        .await?;
    let failed = text.clone();
    shared
        .db
        .write(move |s| s.fail_deployment(deployment, &[], &failed, DeployStep::Render))
        .await?;
    if let Some(announce) = task.announce.take() {
        let _ = announce.send(deployment);
    }
    task.emit(
        shared,
        NewEvent::new(name, EventKind::DeployFailed, text.clone())
            .commit(commit)
            .field("commit_message", first_line(message))
            .field("trigger", trigger.as_str())
            .field("deployment", deployment)
            .field("step", DeployStep::Render.as_str()),
    );
    let (settled, failed) = (commit.to_string(), text.clone());
    shared
        .db
        .write(move |s| s.mark_settled(id, &settled, Some(&failed)))
        .await?;
    Ok(Outcome::Refused { error: text })
}
