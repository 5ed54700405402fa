//! controller: deploying one commit — render it, decide what it changes
//! (`plan::rollout`), apply that (`apply`) through the gate and the hooks;
//! `kept` records a deployment that passed, `failed` one that did not and
//! undoes what the failure decision says (`plan::failure`).

mod failed;
mod kept;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use super::Shared;
use super::task::{Outcome, ReconcileError, RepoTask, StepError, Trigger};
use crate::desired::kedge_yaml::Mode;
use crate::desired::render::{self, Desired, RenderError, ServiceSpec};
use crate::events::{EventKind, NewEvent, Severity};
use crate::model::hooks::HookRun;
use crate::plan::rollout::rollout;
use crate::record::{DeployStep, DeploymentStatus, NewDeployment, ServiceRecord};
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
        object_ids,
        &crate::process::repo_env,
        task.max_compose_size,
        &task.fingerprint_key,
        task.sops.current(),
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
        records, changed, ..
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
    let attempt = Attempt {
        desired,
        message,
        trigger,
        deployment,
        target,
        previous,
        records,
        changed,
        moving,
        hook_runs,
        elapsed,
    };
    match gated {
        Ok(()) => kept::succeeded(shared, task, attempt).await,
        Err(e) => failed::failed(shared, task, attempt, e).await,
    }
}

/// A deployment whose apply, gate and hooks have run: what it applied and
/// what it found, for recording it kept (`kept`) or failed (`failed`).
struct Attempt<'a> {
    desired: &'a Desired,
    message: &'a str,
    trigger: Trigger,
    deployment: i64,
    target: crate::target::Target,
    /// The services' records before the apply.
    previous: BTreeMap<String, ServiceRecord>,
    /// The services' records as applied.
    records: BTreeMap<String, ServiceRecord>,
    changed: Vec<String>,
    moving: Option<super::moves::Move>,
    hook_runs: Vec<HookRun>,
    elapsed: std::time::Duration,
}

/// The hooks' runs as an event's `fields.hooks`.
fn hooks_field(runs: &[HookRun]) -> serde_json::Value {
    serde_json::to_value(runs).unwrap_or_default()
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
