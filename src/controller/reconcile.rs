//! One repository's reconcile: level-triggered and idempotent. It looks at
//! the branch head and what is deployed, deploys what differs, and returns
//! what to do next; errors go to the error policy, which picks the backoff.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Shared;
use crate::apply::{self, ApplyError};
use crate::compose::Compose;
use crate::desired::kedge_yaml::Mode;
use crate::desired::render::{self, Desired, RenderError};
use crate::events::{EventKind, NewEvent, Severity};
use crate::plan::build::build_reason;
use crate::record::{DeploymentStatus, NewDeployment, Repo, ServiceRecord, StoreError};
use crate::source::clone_dir;
use crate::source::git::{GitError, Repository};
use crate::{error_chain, short};

/// What the controller does after a reconcile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Run again after this long (the poll interval, or sooner).
    Requeue(Duration),
}

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Git(#[from] GitError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Lock(#[from] super::lock::LockError),
    #[error("deployment of {} failed{}", short(commit), if *restored { "; the last successful deployment was restored" } else { "" })]
    Apply {
        commit: String,
        /// The failed `up` was followed by re-applying the last successful
        /// deployment: the commit is not retried until the branch moves.
        restored: bool,
        #[source]
        source: Box<StepError>,
    },
}

/// A failed step of applying a rendered commit.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error(transparent)]
    Apply(#[from] ApplyError),
    #[error(transparent)]
    Checkout(#[from] GitError),
}

/// Apply failures of one commit are retried this many times, then left
/// until the branch moves or `kedge sync` is run.
pub const MAX_APPLY_ATTEMPTS: u32 = 3;

/// The error policy: exponential backoff from 2 s, at most 5 minutes.
pub fn backoff(failures: u32) -> Duration {
    let secs = 2u64.saturating_mul(1 << failures.saturating_sub(1).min(8));
    Duration::from_secs(secs.min(300))
}

/// How a deployment came about, as history records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    NewCommit,
    Startup,
    /// The first deployment of a repository registered while `serve` runs.
    Added,
    /// The last successful deployment re-applied after a failed one.
    AutoRollback,
    Retry,
    Sync,
    Rollback,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::NewCommit => "new_commit",
            Trigger::Startup => "startup",
            Trigger::Added => "added",
            Trigger::AutoRollback => "auto_rollback",
            Trigger::Retry => "retry",
            Trigger::Sync => "sync",
            Trigger::Rollback => "rollback",
        }
    }

    /// Whether the deployment starts from a commit `serve` found on the
    /// branch (rather than one an operator or a retry named).
    fn detects(self) -> bool {
        matches!(self, Trigger::NewCommit | Trigger::Startup | Trigger::Added)
    }

    /// Sync and rollback are the operator's explicit word: they apply
    /// whatever the mode.
    fn forced(self) -> bool {
        matches!(self, Trigger::Sync | Trigger::Rollback)
    }
}

/// What came of a deployment attempt that did not error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Deployed {
        changed: Vec<String>,
    },
    /// The commit could not be rendered; recorded as failed, nothing applied.
    Refused {
        error: String,
    },
    /// Not deployed: the mode leaves it to `kedge sync`.
    Deferred {
        mode: Mode,
    },
}

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
        &|k| std::env::var(k).ok(),
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

/// Per-repository state that lives as long as its task.
pub struct RepoTask {
    pub repo: Repo,
    pub git: Repository,
    /// The trigger of this task's first deployment: `startup`, or `added`
    /// for a repository registered while `serve` runs; `None` after it.
    first: Option<Trigger>,
    failed_commit: Option<(String, u32)>,
    /// When the remote is checked next; sooner after a failure is retried.
    next_source: Instant,
    source_failures: u32,
    pub drift: super::heal::DriftState,
    /// What the last drift check saw: the pass's snapshot is made of it.
    pub observed: Option<super::heal::DriftView>,
    /// `Shared::engine_returns` when this task last looked.
    engine_returns_seen: u64,
    /// The repository's lock, while a pass or a command holds it.
    pub lock: Option<super::lock::RepoLock>,
    /// The branch head read for the coming pass, before the lock was taken.
    remote_head: Option<Result<String, GitError>>,
    /// `render.max_compose_size`.
    max_compose_size: u64,
}

impl RepoTask {
    pub fn new(shared: &Shared, repo: Repo) -> Self {
        let clone = clone_dir(&shared.settings.data_dir, &repo.name);
        let now = Instant::now();
        RepoTask {
            git: Repository::new(&repo.url, &repo.branch, clone)
                .with_timeout(shared.settings.git_timeout),
            repo,
            first: Some(Trigger::Startup),
            failed_commit: None,
            next_source: now,
            source_failures: 0,
            drift: Default::default(),
            observed: None,
            engine_returns_seen: shared.engine_returns(),
            lock: None,
            remote_head: None,
            max_compose_size: shared.settings.max_compose_size,
        }
    }

    /// The next pass asks the remote, whenever its poll would be due.
    pub fn check_remote_now(&mut self) {
        self.next_source = Instant::now();
    }

    /// A task for a repository registered while `serve` runs.
    pub fn added(mut self) -> Self {
        self.first = Some(Trigger::Added);
        self
    }

    /// Whether the remote check is due. The engine back after an outage
    /// makes the retry of a commit that failed on it due at once.
    pub fn source_due(&mut self, shared: &Shared) -> bool {
        let returns = shared.engine_returns();
        if returns != self.engine_returns_seen {
            self.engine_returns_seen = returns;
            if self.failed_commit.is_some() {
                self.next_source = Instant::now();
            }
        }
        Instant::now() >= self.next_source
    }

    /// Reads the branch head for the coming pass. `serve` does this before
    /// taking the lock: the read may hang until `git.timeout`, and commands
    /// on the repository must not wait for it.
    pub async fn read_remote_head(&mut self) {
        self.remote_head = Some(self.git.remote_head().await);
    }

    /// For the compose calls that change the project: they hold the lock
    /// until they exit.
    pub fn lock_fd(&self) -> Option<std::os::fd::RawFd> {
        self.lock.as_ref().map(super::lock::RepoLock::fd)
    }

    pub fn override_path(&self) -> PathBuf {
        self.git.clone.join(".git/kedge-override.json")
    }
}

/// One pass: the remote when its check is due, then the containers (engine
/// API only: a pass with nothing to do starts no process).
pub async fn reconcile(
    shared: &Arc<Shared>,
    task: &mut RepoTask,
) -> Result<Action, ReconcileError> {
    if task.source_due(shared) {
        let head = match task.remote_head.take() {
            Some(head) => head,
            None => task.git.remote_head().await,
        };
        match check_source(shared, task, head).await {
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
fn record_git_error(shared: &Shared, id: i64, e: GitError, at_check: bool) -> ReconcileError {
    match shared
        .store()
        .mark_git_error(id, &error_chain(&e), at_check)
    {
        Ok(()) => e.into(),
        Err(store) => store.into(),
    }
}

/// The remote: a new branch head is fetched, rendered and, in `auto` mode, deployed.
async fn check_source(
    shared: &Arc<Shared>,
    task: &mut RepoTask,
    head: Result<String, GitError>,
) -> Result<(), ReconcileError> {
    let id = task.repo.id;
    let name = task.repo.name.clone();

    let head = head.map_err(|e| record_git_error(shared, id, e, true))?;
    shared.store().mark_checked(id, &head)?;
    let state = shared.store().repo_state(id)?;
    let mut target = state.target_commit.clone();
    if let Some(pinned) = &state.pinned_commit {
        if state.pinned_at_head.as_deref() == Some(head.as_str()) {
            // A rollback holds until the branch moves.
            if state.last_error.is_some() {
                shared.store().clear_error(id)?;
            }
            task.first = None;
            return Ok(());
        }
        tracing::info!(repo = %task.repo.name, commit = short(&head), "the branch moved: releasing the rollback pin");
        shared.store().release_pin(id)?;
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
        // Nothing new on the branch; a git error that has cleared is cleared.
        if state.last_error.is_some() && state.deployed_commit.as_deref() == Some(head.as_str()) {
            shared.store().clear_error(id)?;
        }
        task.first = None;
        return Ok(());
    }

    let fetched = match task.git.clone_if_missing().await {
        Ok(()) => task.git.fetch().await,
        Err(e) => Err(e),
    };
    let commit = fetched.map_err(|e| record_git_error(shared, id, e, false))?;
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
        Err(e @ ReconcileError::Apply { restored, .. }) => {
            // An engine that does not answer is an outage, not a broken
            // commit: it uses up none of the commit's attempts, and its
            // return triggers a retry (see `reconcile`). A commit whose `up`
            // failed and was undone is not tried again: trying would only
            // break and restore the stack once more.
            let counted = u32::from(shared.engine.ping().await);
            let attempts = match &task.failed_commit {
                _ if restored => MAX_APPLY_ATTEMPTS,
                Some((c, n)) if *c == commit => n + counted,
                _ => counted,
            };
            task.failed_commit = Some((commit.clone(), attempts));
            if attempts >= MAX_APPLY_ATTEMPTS {
                tracing::warn!(repo = %name, commit = short(&commit), attempts, "giving up on this commit until the branch moves or `kedge sync`");
                shared.store().mark_settled(id, &commit, None)?;
            }
            Err(e)
        }
        Err(e) => Err(e),
    }
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

    let waits = desired.kedge.mode != Mode::Auto && !trigger.forced();
    if trigger.detects() {
        let mode = waits.then_some(desired.kedge.mode);
        shared.emit(commit_detected(&name, commit, &info.message, mode));
    }
    shared
        .store()
        .set_rendered(id, desired.kedge.mode.as_str(), desired.kedge.prune)?;
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
    })?;
    shared.emit(
        NewEvent::new(
            &name,
            EventKind::DeployStarted,
            format!("deploying {}: {}", short(commit), first_line(message)),
        )
        .commit(commit)
        .field("trigger", trigger.as_str())
        .field("deployment", deployment),
    );

    tracing::debug!(commit = short(commit), "rendered");
    let previous = shared.store().services(id)?;
    let (mut records, changed) = label_commits(desired, &previous, commit);
    let result = apply_desired(shared, task, desired, &source, &records, &previous).await;
    let elapsed = started.elapsed();
    match result {
        Ok(()) => {
            // The labels compose wrote are the truth about what it applied.
            record_config_hashes(shared, &desired.project, &mut records).await;
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
            let files: Vec<String> = desired
                .files
                .iter()
                .map(|f| f.to_string_lossy().into_owned())
                .collect();
            shared
                .store()
                .mark_deployed(id, commit, &desired.project, &files)?;
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
                .field("trigger", trigger.as_str())
                .field("deployment", deployment)
                .field("changed", changed.clone())
                .field("duration_ms", elapsed.as_millis() as u64),
            );
            Ok(Outcome::Deployed { changed })
        }
        Err(e) => {
            let message = error_chain(&e);
            tracing::error!(repo = %name, commit = short(commit), "deploy failed: {message}");
            // The clone goes back to what is running: its files are bind-mounted.
            let deployed = shared.store().repo_state(id)?.deployed_commit;
            if let Some(deployed) = &deployed
                && let Err(e) = task.git.checkout_deployed(deployed).await
            {
                tracing::warn!(repo = %name, "cannot restore the deployed checkout: {}", error_chain(&e));
            }
            shared.store().finish_deployment(
                deployment,
                DeploymentStatus::Failed,
                &changed,
                Some(&message),
            )?;
            shared.emit(
                NewEvent::new(&name, EventKind::DeployFailed, message.clone())
                    .commit(commit)
                    .field("trigger", trigger.as_str())
                    .field("deployment", deployment)
                    .field("step", "apply"),
            );
            shared.store().mark_failed(id, &message)?;
            // A failed `up` may have changed part of the stack: put the last
            // successful deployment back. Earlier steps change nothing.
            let restored = matches!(e, StepError::Apply(ApplyError::Up(_)))
                && restore_previous(shared, task, commit, &changed).await?;
            Err(ReconcileError::Apply {
                commit: commit.to_string(),
                restored,
                source: Box::new(e),
            })
        }
    }
}

/// Re-applies the deployed commit after a failed `up` of `failed`, recorded
/// as a `rolled_back` deployment (trigger `auto_rollback`). The clone holds
/// the deployed tree again; its services' records are still the store's.
/// False when there is nothing to restore (a first deployment) or the
/// restore failed too (logged: the failed deployment says what broke).
async fn restore_previous(
    shared: &Arc<Shared>,
    task: &RepoTask,
    failed: &str,
    changed: &[String],
) -> Result<bool, ReconcileError> {
    let id = task.repo.id;
    let name = &task.repo.name;
    let state = shared.store().repo_state(id)?;
    let Some(deployed) = state.deployed_commit.clone() else {
        return Ok(false);
    };
    let records = shared.store().services(id)?;
    let Some(previous) = shared
        .store()
        .deployments(id, 50)?
        .into_iter()
        .find(|d| d.commit == deployed && d.status != DeploymentStatus::Failed)
    else {
        return Ok(false);
    };
    if records.is_empty() {
        return Ok(false);
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
    let restore = shared.store().begin_deployment(&NewDeployment {
        repo_id: id,
        commit: &deployed,
        message: &message,
        trigger: Trigger::AutoRollback.as_str(),
        compose_snapshot: previous.compose_snapshot.as_deref(),
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
    let mut result = apply::write_label_override(&override_path, &project, &commits, &fingerprints);
    if result.is_ok() {
        let compose = Compose::new(&project, &task.git.clone, files)
            .with_file(override_path)
            .holding(task.lock_fd());
        // The engine may still be creating what the aborted `up` asked for
        // when compose exits: a leftover can appear after the first look.
        for attempt in 1..=RESTORE_ATTEMPTS {
            remove_recreate_leftovers(shared, &project).await;
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
                .field("deployment", restore),
            );
            shared.store().finish_deployment(
                restore,
                DeploymentStatus::RolledBack,
                changed,
                None,
            )?;
            Ok(true)
        }
        Err(e) => {
            let text = error_chain(&e);
            tracing::error!(repo = %name, restored = short(&deployed), "cannot restore the last successful deployment: {text}");
            shared.store().finish_deployment(
                restore,
                DeploymentStatus::Failed,
                changed,
                Some(&text),
            )?;
            Ok(false)
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
    .commit(commit);
    match waits {
        Some(mode) => event
            .severity(Severity::Warning)
            .field("waits", true)
            .field("mode", mode.as_str()),
        None => event.field("waits", false),
    }
}

/// Compose recreates a container by creating the new one under a temporary
/// name, `<old id, 12 hex>_<name>`, then renaming it. An `up` aborted midway
/// can leave such a container behind, which the next `up` takes for a
/// second replica and trips over (a name conflict): remove them first.
async fn remove_recreate_leftovers(shared: &Shared, project: &str) {
    let Ok(containers) = shared.engine.project_containers(project).await else {
        return;
    };
    for c in containers.iter().filter(|c| is_recreate_leftover(&c.name)) {
        match shared.engine.remove(&c.id).await {
            Ok(()) => {
                tracing::info!(%project, container = %c.name, "removed a leftover of an interrupted recreate")
            }
            Err(e) => tracing::debug!(%project, container = %c.name, "{}", error_chain(&e)),
        }
    }
}

/// `0123456789ab_project-web-1`: compose's temporary name while recreating.
fn is_recreate_leftover(name: &str) -> bool {
    let name = name.trim_start_matches('/');
    name.len() > 13
        && name.as_bytes()[12] == b'_'
        && name[..12].bytes().all(|b| b.is_ascii_hexdigit())
}

async fn apply_desired(
    shared: &Shared,
    task: &RepoTask,
    desired: &Desired,
    source: &Source,
    records: &BTreeMap<String, ServiceRecord>,
    previous: &BTreeMap<String, ServiceRecord>,
) -> Result<(), StepError> {
    // Images first, from the render checkout: a missing image fails here,
    // before the deployed checkout or any container changes.
    let (services, images) = missing_images(shared, desired).await;
    match source {
        Source::Checkout(render_dir) => {
            let render = Compose::new(&desired.project, render_dir, desired.files.clone())
                .holding(task.lock_fd());
            apply::pull(&render, &services, &images).await?;
            task.git.checkout_deployed(&desired.commit).await?;
        }
        Source::Snapshot => {
            let snapshot = Compose::new(&desired.project, &task.git.clone, desired.files.clone())
                .holding(task.lock_fd());
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
    let rebuild = builds(shared, desired, previous).await;
    let override_path = task.override_path();
    apply::write_label_override(&override_path, &desired.project, &commits, &fingerprints)?;
    let project = Compose::new(&desired.project, &task.git.clone, desired.files.clone())
        .with_file(override_path)
        .holding(task.lock_fd());
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

/// Services whose image is not on the host (all of them without an engine
/// connection: compose then skips what it has), with those images.
async fn missing_images(shared: &Shared, desired: &Desired) -> (Vec<String>, Vec<String>) {
    let pulled: Vec<(&String, &String)> = desired
        .services
        .values()
        .filter(|spec| spec.build.is_none())
        .filter_map(|spec| Some((&spec.name, spec.image.as_ref()?)))
        .collect();
    // One inspection per service, side by side.
    let present = futures_util::future::join_all(
        pulled
            .iter()
            .map(|(_, image)| async { shared.engine.image_id(image).await.is_some() }),
    )
    .await;
    let mut services = Vec::new();
    let mut images = Vec::new();
    for ((service, image), present) in pulled.into_iter().zip(present) {
        if !present {
            services.push(service.clone());
            images.push(image.clone());
        }
    }
    images.sort();
    images.dedup();
    (services, images)
}

/// The build services to build before `up`: those whose build inputs
/// changed or whose image is not on the host (see `plan::build`).
async fn builds(
    shared: &Shared,
    desired: &Desired,
    previous: &BTreeMap<String, ServiceRecord>,
) -> Vec<String> {
    let built: Vec<_> = desired
        .services
        .values()
        .filter(|spec| spec.build.is_some())
        .collect();
    let images = futures_util::future::join_all(built.iter().map(|spec| async {
        let image = spec.image_ref(&desired.project);
        shared.engine.image_on_host(&image).await
    }))
    .await;
    let mut rebuild = Vec::new();
    for (spec, image) in built.into_iter().zip(images) {
        let before = previous.get(&spec.name).map(|r| &r.spec);
        if let Some(reason) = build_reason(spec, before, &image) {
            tracing::info!(service = %spec.name, "building {}: {}", spec.name, reason.as_str());
            rebuild.push(spec.name.clone());
        }
    }
    rebuild
}

/// The commit each service's `io.kedge.commit` label carries: the one that
/// last changed the service. Returns the records and the changed services
/// (sorted; removed ones included).
pub fn label_commits(
    desired: &Desired,
    previous: &BTreeMap<String, ServiceRecord>,
    commit: &str,
) -> (BTreeMap<String, ServiceRecord>, Vec<String>) {
    let mut records = BTreeMap::new();
    let mut changed = Vec::new();
    for (name, spec) in &desired.services {
        let kept = previous.get(name).filter(|p| p.spec.hash == spec.hash);
        let record = match kept {
            Some(p) => ServiceRecord {
                spec: spec.clone(),
                commit: p.commit.clone(),
                config_hash: p.config_hash.clone(),
            },
            None => {
                changed.push(name.clone());
                ServiceRecord {
                    spec: spec.clone(),
                    commit: commit.to_string(),
                    config_hash: None,
                }
            }
        };
        records.insert(name.clone(), record);
    }
    changed.extend(
        previous
            .keys()
            .filter(|k| !desired.services.contains_key(*k))
            .cloned(),
    );
    changed.sort();
    (records, changed)
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
    })?;
    store.finish_deployment(deployment, DeploymentStatus::Failed, &[], Some(&text))?;
    drop(store);
    shared.emit(
        NewEvent::new(name, EventKind::DeployFailed, text.clone())
            .commit(commit)
            .field("trigger", trigger.as_str())
            .field("deployment", deployment)
            .field("step", "render"),
    );
    shared.store().mark_settled(id, commit, Some(&text))?;
    Ok(Outcome::Refused { error: text })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::kedge_yaml::KedgeYaml;
    use crate::desired::render::ServiceSpec;

    fn desired(services: &[(&str, &str, bool)]) -> Desired {
        Desired {
            commit: "c2".into(),
            project: "p".into(),
            kedge: KedgeYaml::default(),
            files: vec![],
            rendered: String::new(),
            services: services
                .iter()
                .map(|(n, h, build)| {
                    (
                        n.to_string(),
                        ServiceSpec {
                            name: n.to_string(),
                            hash: h.to_string(),
                            image: None,
                            build: build.then(|| "ctx".to_string()),
                            build_fingerprint: None,
                            replicas: 1,
                            restart: None,
                            ignored: false,
                        },
                    )
                })
                .collect(),
        }
    }

    fn rec(hash: &str, commit: &str) -> ServiceRecord {
        ServiceRecord {
            spec: ServiceSpec {
                name: String::new(),
                hash: hash.into(),
                image: None,
                build: None,
                build_fingerprint: None,
                replicas: 1,
                restart: None,
                ignored: false,
            },
            commit: commit.into(),
            config_hash: None,
        }
    }

    #[test]
    fn only_changed_services_get_the_new_commit() {
        let previous = BTreeMap::from([
            ("web".to_string(), rec("h-web", "c1")),
            ("api".to_string(), rec("h-api", "c0")),
            ("old".to_string(), rec("h-old", "c0")),
        ]);
        let d = desired(&[
            ("web", "h-web", false),
            ("api", "h-api2", true),
            ("new", "h-new", false),
        ]);
        let (records, changed) = label_commits(&d, &previous, "c2");
        let got = |n: &str| (records[n].spec.hash.as_str(), records[n].commit.as_str());
        assert_eq!(got("web"), ("h-web", "c1"));
        assert_eq!(got("api"), ("h-api2", "c2"));
        assert_eq!(got("new"), ("h-new", "c2"));
        assert!(!records.contains_key("old"));
        assert_eq!(changed, ["api", "new", "old"]);
    }

    #[test]
    fn recreate_leftovers_are_told_by_their_temporary_name() {
        for (name, leftover) in [
            ("520c29f1b924_app-web-1", true),
            ("/520c29f1b924_app-web-1", true),
            ("app-web-1", false),
            ("520c29f1b92_app-web-1", false),
            ("520c29f1b92x_app-web-1", false),
            ("520c29f1b924_", false),
        ] {
            assert_eq!(is_recreate_leftover(name), leftover, "{name}");
        }
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(backoff(1), Duration::from_secs(2));
        assert_eq!(backoff(2), Duration::from_secs(4));
        assert_eq!(backoff(5), Duration::from_secs(32));
        assert_eq!(backoff(50), Duration::from_secs(300));
    }
}
