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
    if !task.stack.root {
        return reconcile_stack(shared, task).await;
    }
    if task.source_due(shared) {
        task.window_until = None;
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
    // Next: the remote check when due (at the latest when a sync window
    // opens for a commit that waits), else the full drift check.
    let now = Instant::now();
    if let Some(until) = task.window_until {
        task.next_source = task.next_source.min(now + until_instant(until));
    }
    let next = task.next_source.min(now + shared.settings.check_interval);
    Ok(Action::Requeue(next.saturating_duration_since(now)))
}

/// A declared stack's pass: it follows the head its repository's task
/// fetched (no network), then looks at its containers.
async fn reconcile_stack(
    shared: &Arc<Shared>,
    task: &mut RepoTask,
) -> Result<Action, ReconcileError> {
    // The repository's task may have moved it (`path`, `after`).
    let (root, stacks) = shared
        .db
        .read(|s| Ok((s.repo_state(task.repo.id)?, s.stacks(Some(task.repo.id))?)))?;
    if let Some(row) = stacks.into_iter().find(|s| s.id == task.stack.id) {
        task.stack = row;
    }
    let head = root.target_commit;
    let mut next = shared.settings.check_interval;
    task.window_until = None;
    if let Some(head) = head {
        match advance(shared, task, head, false).await {
            Ok(Advanced::Waiting) => next = next.min(AFTER_WAIT),
            Ok(Advanced::Done) => task.source_failures = 0,
            // Said once by the host watch; the host's return wakes it.
            Err(ReconcileError::Host(e)) => {
                tracing::debug!(repo = %task.repo.name, stack = %task.stack.name, "{e}")
            }
            Err(e) => {
                let retry = backoff(task.source_failures.saturating_add(1));
                task.source_failures += 1;
                tracing::warn!(repo = %task.repo.name, stack = %task.stack.name, retry_in = ?retry, "{}", error_chain(&e));
                next = next.min(retry);
            }
        }
    }
    if let Some(until) = task.window_until {
        next = next.min(until_instant(until));
    }
    super::heal::check(shared, task, None).await?;
    Ok(Action::Requeue(next))
}

/// How long until `until` (milliseconds since the epoch), and a moment
/// more, so that the window is open when the pass looks.
fn until_instant(until: i64) -> std::time::Duration {
    let ms = until.saturating_sub(crate::time::now_ms()).max(0) as u64;
    std::time::Duration::from_millis(ms + 500)
}

/// How often a stack waiting for the stacks it comes `after` looks again
/// (their deployments also wake it).
const AFTER_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// What came of following a head.
enum Advanced {
    Done,
    /// Held back until the stacks it comes after have deployed the head.
    Waiting,
}

/// Kedge is done with `commit`, which deployed nothing for `error`: the
/// stack's state says so, and `event` tells it.
async fn settle_failed(
    shared: &Arc<Shared>,
    task: &RepoTask,
    commit: &str,
    error: String,
    event: NewEvent,
) -> Result<(), ReconcileError> {
    let (id, settled) = (task.id(), commit.to_string());
    shared
        .db
        .write(move |s| s.mark_settled(id, &settled, Some(&error)))
        .await?;
    task.emit(shared, event);
    Ok(())
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
    let id = task.id();
    let head = match head {
        Ok(head) => head,
        Err(e) => return Err(record_git_error(shared, id, e, true).await),
    };
    let checked = head.clone();
    shared
        .db
        .write(move |s| s.mark_checked(id, &checked))
        .await?;
    advance(shared, task, head, true).await.map(drop)
}

/// The branch head `head` (fetched when `fetch`, by the repository's own
/// task; a declared stack's task finds it in the clone already): deployed
/// when new, unless a pin holds it back or, for a repository with several
/// stacks, fanned out to them.
async fn advance(
    shared: &Arc<Shared>,
    task: &mut RepoTask,
    head: String,
    fetch: bool,
) -> Result<Advanced, ReconcileError> {
    let id = task.id();
    let name = task.repo.name.clone();
    let state = shared.db.read(|s| s.repo_state(id))?;
    let mut target = state.target_commit.clone();
    if let Some(pinned) = &state.pinned_commit {
        if state.pinned_at_head.as_deref() == Some(head.as_str()) {
            // A rollback holds until the branch moves.
            if state.last_error.is_some() {
                shared.db.write(move |s| s.clear_error(id)).await?;
            }
            task.first = None;
            return Ok(Advanced::Done);
        }
        tracing::info!(repo = %task.repo.name, commit = short(&head), "the branch moved: releasing the rollback pin");
        shared.db.write(move |s| s.release_pin(id)).await?;
        target = None;
        task.emit(
            shared,
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
        return Ok(Advanced::Done);
    }

    let fetched = match (task.fetched.take(), task.git.clone_if_missing().await) {
        (_, Ok(())) if !fetch => Ok(head.clone()),
        (Some(fetched), Ok(())) if fetched == head => Ok(fetched),
        (_, Ok(())) => task.git.fetch().await,
        (_, Err(e)) => Err(e),
    };
    let commit = match fetched {
        Ok(commit) => commit,
        Err(e) => return Err(record_git_error(shared, id, e, false).await),
    };
    if fetch {
        // The repository's own task: a commit that declares stacks is
        // theirs to deploy.
        let tree = task.tree(&commit).await?;
        match super::fan_out::layout_at(task, &tree).await {
            Ok(None) => {}
            Ok(Some(layout)) => {
                super::fan_out::apply(shared, task, &commit, layout).await?;
                task.first = None;
                return Ok(Advanced::Done);
            }
            Err(text) => {
                tracing::error!(repo = %name, commit = short(&commit), "invalid stacks: {text}");
                let event = NewEvent::new(&name, EventKind::DeployFailed, text.clone())
                    .commit(&commit)
                    .field("step", "render");
                settle_failed(shared, task, &commit, text, event).await?;
                task.first = None;
                return Ok(Advanced::Done);
            }
        }
    }
    let trigger = match (&task.failed_commit, task.first) {
        (Some((c, _)), _) if *c == commit => Trigger::Retry,
        (_, Some(first)) => first,
        _ => Trigger::NewCommit,
    };
    if !task.stack.root && trigger.detects() {
        match super::fan_out::after_ready(shared, task, &commit)? {
            None => {}
            Some(Ok(())) => return Ok(Advanced::Waiting),
            Some(Err(dep)) => {
                let text = format!(
                    "not deployed: stack {dep}, which this stack comes after, did not deploy {}",
                    short(&commit)
                );
                tracing::warn!(repo = %name, stack = %task.stack.name, "{text}");
                let state = shared.db.read(|s| s.repo_state(id))?;
                if state.target_commit.as_deref() != Some(commit.as_str()) {
                    let event = NewEvent::new(&name, EventKind::DeployFailed, text.clone())
                        .commit(&commit)
                        .field("step", "after")
                        .field("after", dep);
                    settle_failed(shared, task, &commit, text, event).await?;
                }
                task.first = None;
                return Ok(Advanced::Done);
            }
        }
    }
    // Waiting for its sync window: nothing to render before it opens. (The
    // state read above: nothing since touched what waits.)
    if let Some(until) = super::windows::still_waiting(&state, &commit) {
        task.window_until = Some(until);
        return Ok(Advanced::Done);
    }
    task.first = None;
    tracing::info!(repo = %name, stack = task.stack_name(), commit = short(&commit), "new commit {}", short(&commit));
    let deployed = deploy(shared, task, &commit, trigger).await;
    task.window_until = match &deployed {
        // Not within a week: looked at again at the next check.
        Ok(super::task::Outcome::Waiting { opens }) => *opens,
        _ => None,
    };
    if !task.stack.root {
        // Its `after:` dependents may go on, or learn that it failed.
        shared.wake_stacks_of(task.repo.id);
    }
    match deployed {
        Ok(_) => {
            task.failed_commit = None;
            Ok(Advanced::Done)
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
            let settled = restored.is_some()
                || matches!(**source, StepError::Gate(_) | StepError::Hook { .. });
            // An engine that does not answer is an outage, not a broken
            // commit: it uses up none of the commit's attempts, and its
            // return triggers a retry (see `reconcile`). A commit whose `up`
            // failed and was undone is not tried again: trying would only
            // break and restore the stack once more.
            let counted = u32::from(task.engine(shared).ping().await);
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
