//! One repository's reconcile: level-triggered and idempotent. It looks at
//! the branch head and what is deployed, deploys what differs, and returns
//! what to do next; errors go to the error policy, which picks the backoff.

use std::sync::Arc;
use std::time::Instant;

use super::Shared;
use super::deploy::deploy;
use super::task::{
    Action, MAX_APPLY_ATTEMPTS, ReconcileError, RepoTask, StepError, Trigger, backoff,
};
use crate::events::{EventKind, NewEvent};
use crate::source::git::GitError;
use crate::{error_chain, short};

/// One pass: the remote when its check is due, then the containers (engine
/// API only: a pass with nothing to do starts no process).
pub async fn reconcile(
    shared: &Arc<Shared>,
    task: &mut RepoTask,
) -> Result<Action, ReconcileError> {
    if task.source_due(shared) {
        let head = match task.remote_head.take() {
            Some(head) => head,
            // Announced: the fetch (under the lock: it writes the clone)
            // brings the head, one git process instead of two.
            None if task.fetch_first() => {
                let fetched = task.git.fetch().await;
                task.fetched = fetched.as_ref().ok().cloned();
                fetched
            }
            None => task.git.remote_head().await,
        };
        task.announced = false;
        shared.hub.count_git_check(&task.repo.name, head.is_ok());
        let checked = check_source(shared, task, head).await;
        task.fetched = None;
        match checked {
            Ok(()) => {
                task.source_failures = 0;
                task.next_source = Instant::now() + shared.settings.poll_interval;
            }
            Err(e) => {
                task.source_failures += 1;
                let retry = backoff(task.source_failures);
                // A store that cannot be written (a full disk) is retried at
                // least every check interval: recovery must not wait for the
                // backoff's cap.
                let retry = match e {
                    ReconcileError::Store(_) => retry.min(shared.settings.check_interval),
                    _ => retry,
                };
                tracing::warn!(repo = %task.repo.name, failures = task.source_failures, retry_in = ?retry, "{}", error_chain(&e));
                task.next_source = Instant::now() + retry;
            }
        }
    }
    super::heal::check(shared, task, None).await?;
    // Next: the remote check when due, else the full drift check.
    let now = Instant::now();
    let next = task.next_source.min(now + shared.settings.check_interval);
    Ok(Action::Requeue(next.saturating_duration_since(now)))
}

/// A git error of the remote check (`at_check`), clone or fetch: recorded
/// for `status`. A failed check moves `checked_at` but not `remote_ok_at`.
async fn record_git_error(shared: &Shared, id: i64, e: GitError, at_check: bool) -> ReconcileError {
    let (text, refusal) = (error_chain(&e), e.is_refusal());
    match shared
        .db
        .write(move |s| s.mark_git_error(id, &text, at_check, refusal))
        .await
    {
        Ok(()) => e.into(),
        Err(store) => store.into(),
    }
}

/// Whether the newest deployment of the repository that is not a restore
/// after a failure is a failed one of `head`.
fn head_failed_last(shared: &Shared, id: i64, head: &str) -> Result<bool, ReconcileError> {
    let newest = shared.db.read(|s| s.deployments(id, 4))?;
    Ok(newest
        .iter()
        .find(|d| d.trigger != crate::record::Trigger::AutoRollback)
        .is_some_and(|d| d.status == crate::record::DeploymentStatus::Failed && d.commit == head))
}

/// The remote: a new branch head is fetched, rendered and, in `auto` mode, deployed.
async fn check_source(
    shared: &Arc<Shared>,
    task: &mut RepoTask,
    head: Result<String, GitError>,
) -> Result<(), ReconcileError> {
    let id = task.repo.id;
    let name = task.repo.name.clone();

    let head = match head {
        Ok(head) => head,
        Err(e) => return Err(record_git_error(shared, id, e, true).await),
    };
    let checked = head.clone();
    shared
        .db
        .write(move |s| s.mark_checked(id, &checked))
        .await?;
    let state = shared.db.read(|s| s.repo_state(id))?;
    let mut target = state.target_commit.clone();
    if let Some(pinned) = &state.pinned_commit {
        if state.pinned_at_head.as_deref() == Some(head.as_str()) {
            // A rollback holds until the branch moves.
            if state.last_error.is_some() {
                shared.db.write(move |s| s.clear_error(id)).await?;
            }
            task.first = None;
            return Ok(());
        }
        tracing::info!(repo = %task.repo.name, commit = short(&head), "the branch moved: releasing the rollback pin");
        shared.db.write(move |s| s.release_pin(id)).await?;
        target = None;
        shared.emit(
            NewEvent::new(
                &name,
                EventKind::PinReleased,
                format!(
                    "the branch moved to {}: the pin to {} is released",
                    short(&head),
                    short(pinned)
                ),
            )
            .commit(pinned)
            .field("head", head.clone()),
        );
    }
    if target.as_deref() == Some(head.as_str()) && task.git.is_cloned() {
        // Nothing new on the branch; a git error that has cleared is
        // cleared. A failed deployment of the head is no git error: its
        // error stays until a deployment succeeds.
        if state.last_error.is_some() && state.runs(&head) && !head_failed_last(shared, id, &head)?
        {
            shared.db.write(move |s| s.clear_error(id)).await?;
        }
        task.first = None;
        return Ok(());
    }

    let fetched = match (task.fetched.take(), task.git.clone_if_missing().await) {
        (Some(fetched), Ok(())) if fetched == head => Ok(fetched),
        (_, Ok(())) => task.git.fetch().await,
        (_, Err(e)) => Err(e),
    };
    let commit = match fetched {
        Ok(commit) => commit,
        Err(e) => return Err(record_git_error(shared, id, e, false).await),
    };
    let trigger = match (&task.failed_commit, task.first) {
        (Some((c, _)), _) if *c == commit => Trigger::Retry,
        (_, Some(first)) => first,
        _ => Trigger::NewCommit,
    };
    task.first = None;
    tracing::info!(repo = %name, commit = short(&commit), "new commit {}", short(&commit));
    match deploy(shared, task, &commit, trigger).await {
        Ok(_) => {
            task.failed_commit = None;
            Ok(())
        }
        Err(e @ ReconcileError::Apply { .. }) => {
            let ReconcileError::Apply {
                restored, source, ..
            } = &e
            else {
                unreachable!()
            };
            // A failed health gate is the commit's own verdict: trying it
            // again would only break the stack once more.
            let settled = restored.is_some() || matches!(**source, StepError::Gate(_));
            // An engine that does not answer is an outage, not a broken
            // commit: it uses up none of the commit's attempts, and its
            // return triggers a retry (see `reconcile`). A commit whose `up`
            // failed and was undone is not tried again: trying would only
            // break and restore the stack once more.
            let counted = u32::from(shared.engine.ping().await);
            let attempts = match &task.failed_commit {
                _ if settled => MAX_APPLY_ATTEMPTS,
                Some((c, n)) if *c == commit => n + counted,
                _ => counted,
            };
            task.failed_commit = Some((commit.clone(), attempts));
            if attempts >= MAX_APPLY_ATTEMPTS {
                tracing::warn!(repo = %name, commit = short(&commit), attempts, "giving up on this commit until the branch moves or `kedge sync`");
                let settled = commit.clone();
                shared
                    .db
                    .write(move |s| s.mark_settled(id, &settled, None))
                    .await?;
            }
            Err(e)
        }
        Err(e) => Err(e),
    }
}
