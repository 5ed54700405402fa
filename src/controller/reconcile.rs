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
use crate::record::{DeploymentStatus, NewDeployment, Repo, RepoState, ServiceRecord, StoreError};
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
    #[error("deployment of {} failed", short(commit))]
    Apply {
        commit: String,
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
    Retry,
    Sync,
    Rollback,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::NewCommit => "new_commit",
            Trigger::Startup => "startup",
            Trigger::Retry => "retry",
            Trigger::Sync => "sync",
            Trigger::Rollback => "rollback",
        }
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
    first: bool,
    failed_commit: Option<(String, u32)>,
    /// When the remote is checked next; sooner after a failure is retried.
    next_source: Instant,
    source_failures: u32,
    pub drift: super::heal::DriftState,
    /// `Shared::engine_returns` when this task last looked.
    engine_returns_seen: u64,
    /// The repository's lock, while a pass or a command holds it.
    pub lock: Option<super::lock::RepoLock>,
    /// The branch head read for the coming pass, before the lock was taken.
    remote_head: Option<Result<String, GitError>>,
}

impl RepoTask {
    pub fn new(shared: &Shared, repo: Repo) -> Self {
        let clone = clone_dir(&shared.settings.data_dir, &repo.name);
        let now = Instant::now();
        RepoTask {
            git: Repository::new(&repo.url, &repo.branch, clone)
                .with_timeout(shared.settings.git_timeout),
            repo,
            first: true,
            failed_commit: None,
            next_source: now,
            source_failures: 0,
            drift: Default::default(),
            engine_returns_seen: shared.engine_returns(),
            lock: None,
            remote_head: None,
        }
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

fn load_state(shared: &Shared, repo_id: i64) -> Result<RepoState, StoreError> {
    shared.store().repo_state(repo_id)
}

fn save_state(shared: &Shared, repo_id: i64, state: &RepoState) -> Result<(), StoreError> {
    shared.store().save_repo_state(repo_id, state)
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
            Err(ReconcileError::Store(e)) => return Err(ReconcileError::Store(e)),
            Err(e) => {
                task.source_failures += 1;
                let retry = backoff(task.source_failures);
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
    let saved = load_state(shared, id).and_then(|mut state| {
        state.last_error = Some(error_chain(&e));
        if at_check {
            state.checked_at = Some(crate::record::now_ms());
        }
        save_state(shared, id, &state)
    });
    match saved {
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
    let mut state = load_state(shared, id)?;
    state.remote_head = Some(head.clone());
    state.checked_at = Some(crate::record::now_ms());
    state.remote_ok_at = state.checked_at;

    if state.pinned_commit.is_some() {
        if state.pinned_at_head.as_deref() == Some(head.as_str()) {
            // A rollback holds until the branch moves.
            state.last_error = None;
            save_state(shared, id, &state)?;
            task.first = false;
            return Ok(());
        }
        tracing::info!(repo = %task.repo.name, commit = short(&head), "the branch moved: releasing the rollback pin");
        state.pinned_commit = None;
        state.pinned_at_head = None;
        state.target_commit = None;
    }
    let settled = state.target_commit.as_deref() == Some(head.as_str());
    if settled && task.git.is_cloned() {
        // Nothing new on the branch; a git error that has cleared is cleared.
        if state.last_error.is_some() && state.deployed_commit.as_deref() == Some(head.as_str()) {
            state.last_error = None;
        }
        save_state(shared, id, &state)?;
        task.first = false;
        return Ok(());
    }
    save_state(shared, id, &state)?;

    let fetched = match task.git.clone_if_missing().await {
        Ok(()) => task.git.fetch().await,
        Err(e) => Err(e),
    };
    let commit = fetched.map_err(|e| record_git_error(shared, id, e, false))?;
    let trigger = match (&task.failed_commit, task.first) {
        (Some((c, _)), _) if *c == commit => Trigger::Retry,
        (_, true) => Trigger::Startup,
        _ => Trigger::NewCommit,
    };
    task.first = false;
    tracing::info!(repo = %name, commit = short(&commit), "new commit {}", short(&commit));
    match deploy(shared, task, &commit, trigger).await {
        Ok(_) => {
            task.failed_commit = None;
            Ok(())
        }
        Err(e @ ReconcileError::Apply { .. }) => {
            // An engine that does not answer is an outage, not a broken
            // commit: it uses up none of the commit's attempts, and its
            // return triggers a retry (see `reconcile`).
            let counted = u32::from(shared.engine.ping().await);
            let attempts = match &task.failed_commit {
                Some((c, n)) if *c == commit => n + counted,
                _ => counted,
            };
            task.failed_commit = Some((commit.clone(), attempts));
            if attempts >= MAX_APPLY_ATTEMPTS {
                tracing::warn!(repo = %name, commit = short(&commit), attempts, "giving up on this commit until the branch moves or `kedge sync`");
                let mut state = load_state(shared, id)?;
                state.target_commit = Some(commit);
                save_state(shared, id, &state)?;
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
        Err((info, e)) => return refuse(shared, id, &name, &info.message, commit, trigger, &e),
    };

    let mut state = load_state(shared, id)?;
    state.mode = Some(desired.kedge.mode.as_str().to_string());
    state.prune = Some(desired.kedge.prune);
    if desired.kedge.mode != Mode::Auto && !trigger.forced() {
        tracing::info!(repo = %name, commit = short(commit), mode = %desired.kedge.mode, "new commit not deployed: mode is {}", desired.kedge.mode);
        state.target_commit = Some(commit.to_string());
        save_state(shared, id, &state)?;
        return Ok(Outcome::Deferred {
            mode: desired.kedge.mode,
        });
    }
    save_state(shared, id, &state)?;
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

    tracing::debug!(commit = short(commit), "rendered");
    let previous = shared.store().services(id)?;
    let (mut records, changed, rebuild) = label_commits(desired, &previous, commit);
    let result = apply_desired(shared, task, desired, &source, &records, &rebuild).await;
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
            let mut state = load_state(shared, id)?;
            state.deployed_commit = Some(commit.to_string());
            state.target_commit = Some(commit.to_string());
            state.project = Some(desired.project.clone());
            state.compose_files = Some(
                desired
                    .files
                    .iter()
                    .map(|f| f.to_string_lossy().into_owned())
                    .collect(),
            );
            state.last_error = None;
            save_state(shared, id, &state)?;
            task.drift.after_apply();
            tracing::info!(
                repo = %name,
                commit = short(commit),
                changed = ?changed,
                "deployed in {:.1} s",
                elapsed.as_secs_f64()
            );
            Ok(Outcome::Deployed { changed })
        }
        Err(e) => {
            let message = error_chain(&e);
            tracing::error!(repo = %name, commit = short(commit), "deploy failed: {message}");
            // The clone goes back to what is running: its files are bind-mounted.
            if let Some(deployed) = load_state(shared, id)?.deployed_commit
                && let Err(e) = task.git.checkout_deployed(&deployed).await
            {
                tracing::warn!(repo = %name, "cannot restore the deployed checkout: {}", error_chain(&e));
            }
            shared.store().finish_deployment(
                deployment,
                DeploymentStatus::Failed,
                &changed,
                Some(&message),
            )?;
            let mut state = load_state(shared, id)?;
            state.last_error = Some(message);
            save_state(shared, id, &state)?;
            Err(ReconcileError::Apply {
                commit: commit.to_string(),
                source: Box::new(e),
            })
        }
    }
}

async fn apply_desired(
    shared: &Shared,
    task: &RepoTask,
    desired: &Desired,
    source: &Source,
    records: &BTreeMap<String, ServiceRecord>,
    rebuild: &[String],
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
    let override_path = task.override_path();
    apply::write_label_override(&override_path, &desired.project, &commits)?;
    let project = Compose::new(&desired.project, &task.git.clone, desired.files.clone())
        .with_file(override_path)
        .holding(task.lock_fd());
    tracing::debug!(commit = short(&desired.commit), "deployed tree checked out");
    apply::up(&project, rebuild, desired.kedge.prune).await?;
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

/// The commit each service's `io.kedge.commit` label carries: the one that
/// last changed the service. Returns the records, the changed services
/// (sorted; removed ones included) and the changed services to rebuild.
pub fn label_commits(
    desired: &Desired,
    previous: &BTreeMap<String, ServiceRecord>,
    commit: &str,
) -> (BTreeMap<String, ServiceRecord>, Vec<String>, Vec<String>) {
    let mut records = BTreeMap::new();
    let mut changed = Vec::new();
    let mut rebuild = Vec::new();
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
                if spec.build.is_some() {
                    rebuild.push(name.clone());
                }
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
    (records, changed, rebuild)
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
    let mut state = store.repo_state(id)?;
    state.target_commit = Some(commit.to_string());
    state.last_error = Some(text.clone());
    store.save_repo_state(id, &state)?;
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
        let (records, changed, rebuild) = label_commits(&d, &previous, "c2");
        let got = |n: &str| (records[n].spec.hash.as_str(), records[n].commit.as_str());
        assert_eq!(got("web"), ("h-web", "c1"));
        assert_eq!(got("api"), ("h-api2", "c2"));
        assert_eq!(got("new"), ("h-new", "c2"));
        assert!(!records.contains_key("old"));
        assert_eq!(changed, ["api", "new", "old"]);
        assert_eq!(rebuild, ["api"]);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(backoff(1), Duration::from_secs(2));
        assert_eq!(backoff(2), Duration::from_secs(4));
        assert_eq!(backoff(5), Duration::from_secs(32));
        assert_eq!(backoff(50), Duration::from_secs(300));
    }
}
