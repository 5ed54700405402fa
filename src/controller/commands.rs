//! What the operator asks for by hand: `sync`, `diff` and `rollback`. Each
//! takes the repository's lock, so it never interleaves with `kedge serve`,
//! and leaves its result in the store, where `serve` picks it up.

use std::sync::Arc;

use super::Shared;
use super::deploy::{Source, apply_rendered, deploy, render_commit};
use super::heal;
use super::lock::RepoLock;
use super::remote::pin_view;
use super::task::{Outcome, ReconcileError, RepoTask, Trigger};
use crate::desired::kedge_yaml::Mode;
use crate::events::{EventKind, NewEvent};
use crate::model::report::{DiffReport, Pending, RollbackReport, SyncReport};
use crate::plan::rollout::rollout;
use crate::record::{DeploymentStatus, Repo};
use crate::{error_chain, short};

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Reconcile(#[from] ReconcileError),
    #[error("commit {} cannot be deployed: {error}", short(commit))]
    Refused { commit: String, error: String },
    #[error(
        "no deployed commit of {repo} matches {prefix:?}{}",
        candidates_text(candidates)
    )]
    UnknownCommit {
        repo: String,
        prefix: String,
        candidates: Vec<String>,
    },
    #[error(
        "{prefix:?} matches several deployed commits of {repo}{}",
        candidates_text(candidates)
    )]
    AmbiguousCommit {
        repo: String,
        prefix: String,
        candidates: Vec<String>,
    },
    #[error("a commit prefix needs at least 4 characters, got {0:?}")]
    ShortPrefix(String),
    #[error(
        "an apply is in progress on {repo} (waited {} s): ask again once it has finished",
        waited.as_secs()
    )]
    Busy {
        repo: String,
        waited: std::time::Duration,
    },
    #[error(
        "{repo}'s task is stopping (serve is shutting down, or the repository was removed): the command was not run"
    )]
    Stopping { repo: String },
    #[error(
        "commit {} of {repo} waits for its sync window ({}): `kedge sync --force` deploys it now",
        short(commit),
        super::windows::until_text(*opens)
    )]
    Window {
        repo: String,
        commit: String,
        opens: Option<i64>,
    },
}

fn candidates_text(candidates: &[String]) -> String {
    if candidates.is_empty() {
        "; nothing has been deployed yet".into()
    } else {
        format!("; candidates:\n  {}", candidates.join("\n  "))
    }
}

async fn locked(shared: &Shared, repo: &Repo) -> Result<RepoLock, ReconcileError> {
    Ok(RepoLock::acquire_announced(&shared.settings.data_dir, &repo.name).await?)
}

/// The repository locked, with its clone in place; the task holds the lock.
pub(super) async fn prepare(shared: &Arc<Shared>, task: &mut RepoTask) -> Result<(), CommandError> {
    let lock = locked(shared, &task.repo).await?;
    super::fail_interrupted(shared, &task.repo.name, task.stack_name(), task.id()).await;
    task.lock = Some(lock);
    task.git
        .clone_if_missing()
        .await
        .map_err(ReconcileError::from)?;
    Ok(())
}

/// Takes a command up, unless its asker has given up on it, and answers it.
pub async fn execute(shared: &Arc<Shared>, task: &mut RepoTask, command: super::inbox::Command) {
    let super::inbox::Command {
        request,
        started,
        begun,
        reply,
    } = command;
    if started.send(()).is_err() {
        tracing::info!(repo = %task.repo.name, command = request.name(), "command withdrawn before it started: not run");
        return;
    }
    task.announce = Some(begun);
    let answer = run(shared, task, request).await;
    let _ = reply.send(answer);
}

/// Runs `request` on `task` (serve's own task for the repository, or one
/// made for a command run without serve) and lets the lock go after it,
/// however it ended.
pub async fn run(
    shared: &Arc<Shared>,
    task: &mut RepoTask,
    request: super::inbox::Request,
) -> Result<super::inbox::Answer, CommandError> {
    use super::inbox::{Answer, Request};
    // The stack's host first: nothing is tried on one that does not answer.
    if let Err(e) = task.reach(shared).await {
        task.lock = None;
        return Err(ReconcileError::Host(e).into());
    }
    let answer = match request {
        Request::Sync(how) => {
            task.skip_gate = how.no_wait;
            task.force_window = how.force;
            sync(shared, task, how.dry_run).await.map(Answer::Sync)
        }
        Request::Rollback { commit } => rollback(shared, task, &commit).await.map(Answer::Rollback),
        Request::Diff { within } => diff(shared, task, within)
            .await
            .map(|r| Answer::Diff(Box::new(r))),
        Request::ImageUpdate { changes } => {
            super::image_update::deploy_images(shared, task, changes)
                .await
                .map(Answer::ImageUpdate)
        }
    };
    task.lock = None;
    task.skip_gate = false;
    task.force_window = false;
    task.announce = None;
    answer
}

async fn sync(
    shared: &Arc<Shared>,
    task: &mut RepoTask,
    dry_run: bool,
) -> Result<SyncReport, CommandError> {
    prepare(shared, task).await?;
    let id = task.id();
    let head = task.git.fetch().await.map_err(ReconcileError::from)?;
    tracing::debug!(commit = short(&head), "fetched");
    let state = shared
        .db
        .read(|s| s.repo_state(id))
        .map_err(ReconcileError::from)?;
    let released_pin = state.pinned_commit.clone();

    let (changed, heals) = if dry_run {
        let rendered = render_commit(task, &head)
            .await
            .map_err(ReconcileError::from)?;
        let mut rendered = rendered.map_err(|(_, e)| CommandError::Refused {
            commit: head.clone(),
            error: error_chain(&e),
        })?;
        super::image_update::run_instead(shared, task, &mut rendered.desired).await?;
        let previous = shared
            .db
            .read(|s| s.services(id))
            .map_err(ReconcileError::from)?;
        let changed = rollout(&rendered.desired, &previous, &head).changed;
        let heals = match heal::drift_plan(shared, task, Some(Mode::Auto)).await? {
            Some(view) => view.plan.heals.iter().map(heal::describe_heal).collect(),
            None => Vec::new(),
        };
        (changed, heals)
    } else {
        let store_err = |e| CommandError::from(ReconcileError::from(e));
        let checked = head.clone();
        shared
            .db
            .write(move |s| s.mark_checked(id, &checked))
            .await
            .map_err(store_err)?;
        if let Some(pinned) = &state.pinned_commit {
            shared
                .db
                .write(move |s| s.release_pin(id))
                .await
                .map_err(store_err)?;
            task.emit(
                shared,
                NewEvent::new(
                    &task.repo.name,
                    EventKind::PinReleased,
                    format!("`kedge sync` released the pin to {}", short(pinned)),
                )
                .commit(pinned),
            );
        }
        let changed = match deploy(shared, task, &head, Trigger::Sync).await? {
            Outcome::Deployed { changed } => changed,
            Outcome::Refused { error } => {
                return Err(CommandError::Refused {
                    commit: head,
                    error,
                });
            }
            Outcome::Waiting { opens } => {
                return Err(CommandError::Window {
                    repo: task.address(),
                    commit: head,
                    opens,
                });
            }
            Outcome::Deferred { .. } | Outcome::Unchanged => unreachable!("sync is forced"),
        };
        (changed, heal::check(shared, task, Some(Mode::Auto)).await?)
    };
    Ok(SyncReport {
        repo: task.repo.name.clone(),
        commit: head,
        dry_run,
        gated: task.gated,
        changed,
        heals,
        released_pin,
    })
}

/// What differs between the containers and the deployed commit, and what
/// the branch head would change, service by service. Changes nothing that
/// runs: the head is rendered in the render worktree.
/// `within`: how long to wait for an apply in flight (`None`: as long as it
/// takes, saying so on stderr).
async fn diff(
    shared: &Arc<Shared>,
    task: &RepoTask,
    within: Option<std::time::Duration>,
) -> Result<DiffReport, CommandError> {
    let id = task.id();
    let before = shared
        .db
        .read(|s| s.repo_state(id))
        .map_err(ReconcileError::from)?;
    // Asked before the lock is taken: a hanging remote holds up no one else.
    let remote = super::remote::current_head(shared, &task.git, id, &before).await;
    let _lock = match within {
        None => locked(shared, &task.repo).await?,
        Some(limit) => RepoLock::acquire_within(&shared.settings.data_dir, &task.repo.name, limit)
            .await
            .map_err(ReconcileError::from)?
            .ok_or_else(|| CommandError::Busy {
                repo: task.repo.name.clone(),
                waited: limit,
            })?,
    };
    let drifts = match heal::drift_plan(shared, task, Some(Mode::Auto)).await? {
        Some(view) => view.plan.drifts,
        None => Vec::new(),
    };
    let state = shared
        .db
        .read(|s| s.repo_state(id))
        .map_err(ReconcileError::from)?;
    let (head, remote_error) = (remote.head, remote.error);
    let pin = pin_view(&state, head.as_deref());
    let mut pending = None;
    // What the next pass (or `kedge sync`) would deploy: the head, unless a
    // pin holds it back. The deployed head too: what it renders to may have
    // changed outside git (an env file or a variable of the host), which
    // `sync --dry-run` would show.
    if let Some(head) = &head
        && !pin
            .as_ref()
            .is_some_and(crate::model::report::PinView::holds)
        && remote_error.is_none()
    {
        let fetched = if state.runs(head) && task.git.is_cloned() {
            // In the clone already: no fetch.
            head.clone()
        } else {
            task.git
                .clone_if_missing()
                .await
                .map_err(ReconcileError::from)?;
            task.git.fetch().await.map_err(ReconcileError::from)?
        };
        pending = Some(
            match render_commit(task, &fetched)
                .await
                .map_err(ReconcileError::from)?
            {
                Ok(mut rendered) => {
                    super::image_update::run_instead(shared, task, &mut rendered.desired).await?;
                    let moves_from = state
                        .project
                        .clone()
                        .filter(|p| *p != rendered.desired.project);
                    let previous = match moves_from {
                        Some(_) => Default::default(),
                        None => shared
                            .db
                            .read(|s| s.services(id))
                            .map_err(ReconcileError::from)?,
                    };
                    let now = rendered
                        .desired
                        .secrets
                        .as_ref()
                        .map(|s| s.prints())
                        .unwrap_or_default();
                    let secrets_changed =
                        crate::desired::secrets::stack::changes(&state.secrets, &now)
                            .into_iter()
                            .map(|(file, values)| crate::model::report::SecretChange {
                                file,
                                values,
                            })
                            .collect();
                    Pending {
                        changes: rollout(&rendered.desired, &previous, &fetched).changes,
                        commit: fetched,
                        error: None,
                        moves_from,
                        secrets_changed,
                    }
                }
                Err((_, e)) => Pending {
                    commit: fetched,
                    changes: Vec::new(),
                    error: Some(error_chain(&e)),
                    moves_from: None,
                    secrets_changed: Vec::new(),
                },
            },
        );
    }
    // The deployed head renders as it was deployed: nothing is pending.
    if pending.as_ref().is_some_and(|p| {
        state.runs(&p.commit)
            && p.changes.is_empty()
            && p.error.is_none()
            && p.secrets_changed.is_empty()
    }) {
        pending = None;
    }
    Ok(DiffReport {
        repo: task.repo.name.clone(),
        mode: state.mode,
        deployed_commit: state.deployed_commit.clone(),
        remote_head: head,
        pinned_commit: state.pinned_commit.clone(),
        pin,
        drifts,
        pending,
        remote_error,
    })
}

/// Resolves a full hash or a unique prefix (at least 4 characters) among
/// the commits that were deployed successfully.
pub fn resolve_commit(
    repo: &str,
    prefix: &str,
    deployed: &[(String, DeploymentStatus, i64)],
) -> Result<String, CommandError> {
    let p = prefix.to_ascii_lowercase();
    if p.len() < 4 {
        return Err(CommandError::ShortPrefix(prefix.to_string()));
    }
    let mut seen: Vec<&(String, DeploymentStatus, i64)> = Vec::new();
    for d in deployed {
        if matches!(
            d.1,
            DeploymentStatus::Success | DeploymentStatus::RolledBack
        ) && !seen.iter().any(|s| s.0 == d.0)
        {
            seen.push(d);
        }
    }
    let listing = |items: &[&(String, DeploymentStatus, i64)]| {
        items
            .iter()
            .map(|(c, s, at)| {
                format!(
                    "{}  {}  {}",
                    short(c),
                    s.as_str(),
                    crate::record::local_time(*at)
                )
            })
            .collect::<Vec<_>>()
    };
    let matches: Vec<&(String, DeploymentStatus, i64)> = seen
        .iter()
        .copied()
        .filter(|d| d.0.starts_with(&p))
        .collect();
    match matches.len() {
        1 => Ok(matches[0].0.clone()),
        0 => Err(CommandError::UnknownCommit {
            repo: repo.to_string(),
            prefix: prefix.to_string(),
            candidates: listing(&seen),
        }),
        _ => Err(CommandError::AmbiguousCommit {
            repo: repo.to_string(),
            prefix: prefix.to_string(),
            candidates: listing(&matches),
        }),
    }
}

async fn rollback(
    shared: &Arc<Shared>,
    task: &mut RepoTask,
    prefix: &str,
) -> Result<RollbackReport, CommandError> {
    let deployed: Vec<(String, DeploymentStatus, i64)> = shared
        .db
        .read(|s| s.deployments(task.id(), usize::MAX >> 1))
        .map_err(ReconcileError::from)?
        .into_iter()
        .map(|d| (d.commit, d.status, d.started_at))
        .collect();
    let commit = resolve_commit(&task.repo.name, prefix, &deployed)?;
    prepare(shared, task).await?;
    let id = task.id();
    // The head now is what the pin holds against.
    let head = match task.git.fetch().await {
        Ok(h) => Some(h),
        Err(e) => {
            tracing::warn!(repo = %task.repo.name, "cannot fetch: {}", error_chain(&e));
            shared
                .db
                .read(|s| s.repo_state(id))
                .map_err(ReconcileError::from)?
                .remote_head
        }
    };
    // Images an update deployed in place of Git's go back to what ran
    // before them, as the rest of the stack does.
    super::image_update::step_back(shared, task, None).await?;
    let from_snapshot = !task.git.has_commit(&commit).await;
    let outcome = if from_snapshot {
        rollback_from_snapshot(shared, task, &commit).await
    } else {
        deploy(shared, task, &commit, Trigger::Rollback)
            .await
            .map_err(CommandError::from)
    };
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(e) => {
            // A rollback whose gate failed is left running (nothing to roll
            // a rollback back to): pinned all the same, or the next pass
            // would deploy the head the operator rolled away from.
            let state = shared
                .db
                .read(|s| s.repo_state(id))
                .map_err(ReconcileError::from)?;
            if state.deployed_commit.as_deref() == Some(commit.as_str()) {
                let (pinned, at) = (commit.clone(), head.clone());
                shared
                    .db
                    .write(move |s| s.pin(id, &pinned, at.as_deref()))
                    .await
                    .map_err(ReconcileError::from)?;
            }
            return Err(e);
        }
    };
    let changed = match outcome {
        Outcome::Deployed { changed } => changed,
        Outcome::Refused { error } => return Err(CommandError::Refused { commit, error }),
        Outcome::Deferred { .. } | Outcome::Unchanged | Outcome::Waiting { .. } => {
            unreachable!("rollback is forced")
        }
    };
    let (pinned, at) = (commit.clone(), head.clone());
    shared
        .db
        .write(move |s| s.pin(id, &pinned, at.as_deref()))
        .await
        .map_err(ReconcileError::from)?;
    Ok(RollbackReport {
        repo: task.repo.name.clone(),
        commit,
        changed,
        pinned_at_head: head,
        from_snapshot,
    })
}

/// A commit gone from the repository (force-pushed away, clone lost) is
/// restored from the compose snapshot stored with its deployment. Files it
/// bind-mounts from the repository are those of the current checkout.
async fn rollback_from_snapshot(
    shared: &Arc<Shared>,
    task: &mut RepoTask,
    commit: &str,
) -> Result<Outcome, CommandError> {
    let id = task.id();
    let found = shared
        .db
        .read(|s| s.deployments(id, usize::MAX >> 1))
        .map_err(ReconcileError::from)?
        .into_iter()
        .find(|d| {
            d.commit == commit
                && d.snapshot.is_some()
                && matches!(
                    d.status,
                    DeploymentStatus::Success | DeploymentStatus::RolledBack
                )
        });
    let Some(deployment) = found else {
        return Err(CommandError::Refused {
            commit: commit.to_string(),
            error: "the commit is gone from the repository and no compose snapshot of it is stored"
                .into(),
        });
    };
    let stored = match &deployment.snapshot {
        Some(key) => shared
            .db
            .read(|s| s.snapshot(key))
            .map_err(ReconcileError::from)?,
        None => None,
    };
    let Some(snapshot) = stored else {
        return Err(CommandError::Refused {
            commit: commit.to_string(),
            error: "the commit is gone from the repository and no compose snapshot of it is stored"
                .into(),
        });
    };
    tracing::warn!(
        repo = %task.repo.name,
        commit = short(commit),
        "the commit is gone from the repository: applying the compose snapshot stored with its deployment"
    );
    let doc: serde_json::Value =
        serde_json::from_str(&snapshot).map_err(|e| CommandError::Refused {
            commit: commit.to_string(),
            error: format!("the stored compose snapshot is unreadable: {e}"),
        })?;
    let file = task.snapshot_path();
    tokio::fs::write(&file, &snapshot)
        .await
        .map_err(|e| CommandError::Refused {
            commit: commit.to_string(),
            error: format!("cannot write {}: {e}", file.display()),
        })?;
    // A snapshot keeps the ciphertext of SOPS values; the files that open
    // them left with the commit.
    if snapshot.contains("ENC[AES256_GCM,") {
        return Err(CommandError::Refused {
            commit: commit.to_string(),
            error: "the commit is gone from the repository and its stored snapshot holds SOPS-encrypted values, which only the commit's files can open".into(),
        });
    }
    let state = shared
        .db
        .read(|s| s.repo_state(id))
        .map_err(ReconcileError::from)?;
    let project = doc["name"]
        .as_str()
        .map(String::from)
        .or(state.project.clone())
        .unwrap_or_else(|| task.repo.name.clone());
    // Every service of a snapshot was enabled when it was rendered: the
    // profiles they name turn them on again.
    let mut profiles: Vec<String> = doc["services"]
        .as_object()
        .into_iter()
        .flat_map(|m| m.values())
        .flat_map(|svc| svc["profiles"].as_array().into_iter().flatten())
        .filter_map(|p| p.as_str().map(String::from))
        .collect();
    profiles.sort();
    profiles.dedup();
    let kedge = crate::desired::kedge_yaml::KedgeYaml {
        project_name: Some(project.clone()),
        compose_files: Vec::new(),
        profiles,
        mode: heal::mode_of(&state),
        prune: state.prune.unwrap_or(true),
        unhealthy: heal::unhealthy_of(&state),
        ..Default::default()
    };
    let desired = crate::desired::render::Desired {
        commit: commit.to_string(),
        services: crate::desired::render::service_specs(
            &doc,
            &task.git.clone,
            &Default::default(),
            crate::desired::inputs::Resolved {
                env: &Default::default(),
                key: &task.fingerprint_key,
            },
        ),
        project,
        kedge,
        files: vec![file],
        stack_dir: task.stack_name().map(|_| task.stack.path.clone()),
        env_files: state.env_files.clone().unwrap_or_default(),
        dormant: state.dormant.clone().unwrap_or_default(),
        rendered: snapshot,
        // A snapshot's inputs are not the commit's: the next commit renders.
        inputs: None,
        secrets: None,
        images: Default::default(),
    };
    let message = format!(
        "{} [restored from the stored compose snapshot]",
        deployment.message
    );
    Ok(apply_rendered(
        shared,
        task,
        &desired,
        &message,
        Trigger::Rollback,
        Source::Snapshot,
    )
    .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(c: &str, s: DeploymentStatus) -> (String, DeploymentStatus, i64) {
        (c.to_string(), s, 1_700_000_000_000)
    }

    #[test]
    fn commit_prefixes_resolve_among_deployed_commits() {
        let history = vec![
            d("abcd1111aaaa", DeploymentStatus::Success),
            d("abcd2222bbbb", DeploymentStatus::RolledBack),
            d("ffff0000cccc", DeploymentStatus::Failed),
            d("abcd1111aaaa", DeploymentStatus::Success),
        ];
        assert_eq!(
            resolve_commit("app", "abcd1", &history).unwrap(),
            "abcd1111aaaa"
        );
        assert_eq!(
            resolve_commit("app", "ABCD2", &history).unwrap(),
            "abcd2222bbbb"
        );
        assert_eq!(
            resolve_commit("app", "abcd1111aaaa", &history).unwrap(),
            "abcd1111aaaa"
        );
        match resolve_commit("app", "abcd", &history) {
            Err(CommandError::AmbiguousCommit { candidates, .. }) => {
                assert_eq!(candidates.len(), 2)
            }
            other => panic!("{other:?}"),
        }
        // A failed deployment is not something to roll back to.
        assert!(matches!(
            resolve_commit("app", "ffff", &history),
            Err(CommandError::UnknownCommit { .. })
        ));
        assert!(matches!(
            resolve_commit("app", "abc", &history),
            Err(CommandError::ShortPrefix(_))
        ));
        let err = resolve_commit("app", "9999", &history)
            .unwrap_err()
            .to_string();
        assert!(err.contains("abcd111") && err.contains("abcd222"), "{err}");
    }
}
