//! controller: a repository's task as the passes see it — what a pass
//! returns (`Action`), its errors and their policy (`backoff`), how a
//! deployment came about (`Trigger`), and the state a task keeps between
//! passes (`RepoTask`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::Shared;
use crate::apply::ApplyError;
use crate::desired::kedge_yaml::Mode;
use crate::record::{Repo, Stack, StoreError};
use crate::short;
use crate::source::git::{GitError, Repository};

/// A commit's paths and their git object ids, trees included.
pub type Tree = std::sync::Arc<std::collections::HashMap<String, String>>;

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
    /// The stack's host does not answer: nothing is changed or recorded.
    #[error(transparent)]
    Host(#[from] crate::target::pool::PoolError),
    #[error("deployment of {} failed{}{}", short(commit), match restored {
        Some(c) if c == commit => "; its last successful deployment is back".to_string(),
        Some(c) => format!("; rolled back to {} (the last successful deployment)", short(c)),
        None => String::new(),
    }, match note {
        Some(note) => format!("; {note}"),
        None => String::new(),
    })]
    Apply {
        commit: String,
        /// What else the operator should know: the stack was left as it is,
        /// or there was nothing to roll back to.
        note: Option<&'static str>,
        /// The failed `up` or gate was followed by re-applying the last
        /// successful deployment, of this commit: the failed commit is not
        /// retried until the branch moves.
        restored: Option<String>,
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
    #[error(transparent)]
    Gate(#[from] crate::target::gate::GateFailure),
    /// An outage, not the commit's verdict: retried when the engine is back.
    #[error("the engine stopped answering during the health gate")]
    GateEngine(#[source] crate::target::gate::GateFailure),
    /// A deploy hook failed: the runs so far, the failed one last.
    #[error("{}", runs.last().map(crate::model::hooks::HookRun::failure).unwrap_or_default())]
    Hook {
        runs: Vec<crate::model::hooks::HookRun>,
    },
}

impl StepError {
    /// A failure that is the commit's own verdict (a failed gate or
    /// `deploy.after` hook): its new images are not proposed again, and a
    /// write-back commit is reverted.
    pub fn judges_the_commit(&self) -> bool {
        match self {
            StepError::Gate(_) => true,
            StepError::Hook { runs } => runs
                .last()
                .is_some_and(|r| r.phase == crate::model::hooks::HookPhase::After),
            _ => false,
        }
    }
}

impl From<crate::target::TargetError> for StepError {
    fn from(e: crate::target::TargetError) -> Self {
        match e {
            crate::target::TargetError::Apply(e) => StepError::Apply(e),
            crate::target::TargetError::Checkout(e) => StepError::Checkout(e),
            crate::target::TargetError::Hook { runs } => StepError::Hook { runs },
        }
    }
}

/// Apply failures of one commit are retried this many times, then left
/// until the branch moves or `kedge sync` is run.
pub const MAX_APPLY_ATTEMPTS: u32 = 3;

/// The error policy: exponential backoff from 2 s, at most 5 minutes.
pub fn backoff(failures: u32) -> Duration {
    let secs = 2u64.saturating_mul(1 << failures.saturating_sub(1).min(8));
    Duration::from_secs(secs.min(300))
}

pub use crate::record::Trigger;

impl Trigger {
    /// Whether the deployment starts from a commit `serve` found on the
    /// branch (rather than one an operator or a retry named).
    pub fn detects(self) -> bool {
        matches!(self, Trigger::NewCommit | Trigger::Startup | Trigger::Added)
    }

    /// Sync and rollback are the operator's explicit word: they apply
    /// whatever the mode.
    pub fn forced(self) -> bool {
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
    /// Not rendered: the commit changes none of the stack's inputs.
    Unchanged,
    /// Not deployed: its sync windows are closed; they open at `opens`
    /// (`None`: not within a week).
    Waiting {
        opens: Option<i64>,
    },
}

/// Per-stack state that lives as long as its task. The repository's own
/// stack's task also follows the remote: it fetches for every stack.
pub struct RepoTask {
    pub repo: Repo,
    /// The stack this task deploys: the repository's root stack (same id
    /// and name as the repository), or one it declares.
    pub stack: Stack,
    pub git: Repository,
    /// The trigger of this task's first deployment: `startup`, or `added`
    /// for a repository registered while `serve` runs; `None` after it.
    pub(super) first: Option<Trigger>,
    pub(super) failed_commit: Option<(String, u32)>,
    /// When the remote is checked next; sooner after a failure is retried.
    pub(super) next_source: Instant,
    pub(super) source_failures: u32,
    pub drift: super::heal::DriftState,
    /// What the last drift check saw: the pass's snapshot is made of it.
    pub observed: Option<super::heal::DriftView>,
    /// When the stack last changed under Kedge's eyes (an engine event, a
    /// command, a heal): a check soon after looks at its project itself
    /// rather than at the shared view (see `view`).
    pub touched: Option<Instant>,
    /// `Shared::engine_returns` when this task last looked.
    pub(super) engine_returns_seen: u64,
    /// The repository's lock, while a pass or a command holds it.
    pub lock: Option<super::lock::RepoLock>,
    /// The branch head read for the coming pass, before the lock was taken.
    pub(super) remote_head: Option<Result<String, GitError>>,
    /// `render.max_compose_size`.
    pub(super) max_compose_size: u64,
    /// The key of secret fingerprints.
    pub(super) fingerprint_key: [u8; 32],
    pub(super) sops: std::sync::Arc<crate::desired::secrets::KeyRing>,
    /// The last commit's tree as `git ls-tree` listed it: the stack inputs'
    /// check, the layout and the render of one commit read it once.
    tree: std::sync::Mutex<Option<(String, Tree)>>,
    /// The root `kedge.yaml`'s layout keys, by its object id.
    pub(super) layout: std::sync::Mutex<Option<(String, crate::desired::layout::Declared)>>,
    /// Each declared stack's `target.hosts`, by the object ids of the root
    /// file and of its own `kedge.yaml`.
    pub(super) hosts_of: std::sync::Mutex<HashMap<String, Vec<String>>>,
    /// A push was announced (webhook, operator): fetch rather than ask.
    pub(super) announced: bool,
    /// The head a fetch already brought in this pass.
    pub(super) fetched: Option<String>,
    /// `kedge sync --no-wait`: this task's deployments skip the health gate.
    pub skip_gate: bool,
    /// `kedge sync --force`: deploy whatever the sync windows say.
    pub force_window: bool,
    /// When the sync window a waiting commit waits for opens.
    pub(super) window_until: Option<i64>,
    /// The deployment message of an image update in progress (it has no
    /// commit message of its own).
    pub update_message: Option<String>,
    /// The last deployment of this task went through the health gate.
    pub gated: bool,
    /// A command waits to hear the id of the deployment it records.
    pub announce: Option<tokio::sync::oneshot::Sender<i64>>,
    /// The way to the stack's host for this pass (`None`: this machine's
    /// engine, as Kedge talks to it).
    pub way: Option<crate::target::pool::Way>,
}

impl RepoTask {
    pub fn new(shared: &Shared, repo: Repo) -> Self {
        let stack = Stack::root_of(&repo);
        RepoTask::of_stack(shared, repo, stack)
    }

    /// The task of `stack` of `repo`: a stack other than the root one runs
    /// from its own worktree of the repository's clone.
    pub fn of_stack(shared: &Shared, repo: Repo, stack: Stack) -> Self {
        let now = Instant::now();
        let git = shared.repository(&repo);
        let git = if stack.root {
            git
        } else {
            let clone = git.clone.clone();
            let dir = clone.with_file_name(stack.file_name());
            git.worktree_of(clone, dir)
        };
        RepoTask {
            git,
            repo,
            stack,
            first: Some(Trigger::Startup),
            failed_commit: None,
            next_source: now,
            source_failures: 0,
            drift: Default::default(),
            observed: None,
            touched: None,
            announced: false,
            fetched: None,
            skip_gate: false,
            force_window: false,
            window_until: None,
            update_message: None,
            gated: false,
            announce: None,
            way: None,
            engine_returns_seen: shared.engine_returns(),
            lock: None,
            remote_head: None,
            max_compose_size: shared.settings.max_compose_size,
            fingerprint_key: shared.fingerprint_key(),
            sops: shared.sops(),
            tree: std::sync::Mutex::new(None),
            layout: std::sync::Mutex::new(None),
            hosts_of: Default::default(),
        }
    }

    /// `commit`'s paths and their object ids (one `git ls-tree`, then
    /// kept for the same commit).
    pub async fn tree(&self, commit: &str) -> Result<Tree, GitError> {
        if let Some((c, tree)) = self.tree.lock().unwrap_or_else(|p| p.into_inner()).as_ref()
            && c == commit
        {
            return Ok(tree.clone());
        }
        let tree = std::sync::Arc::new(self.git.object_ids(commit).await?);
        *self.tree.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((commit.to_string(), tree.clone()));
        Ok(tree)
    }

    /// The key of the stack's state, services and deployments.
    pub fn id(&self) -> i64 {
        self.stack.id
    }

    /// The stack's name, but for the repository's own stack (`None`).
    pub fn stack_name(&self) -> Option<&str> {
        (!self.stack.root).then_some(self.stack.name.as_str())
    }

    /// How the stack is addressed and logged: `repo`, or `repo/stack`.
    pub fn address(&self) -> String {
        self.stack.address()
    }

    /// The stack's lock: one apply at a time per stack (`repo`, or
    /// `repo@stack`).
    pub fn lock_name(&self) -> String {
        self.stack.file_name()
    }

    /// Emits an event of this stack (see `Shared::emit`).
    /// Records an event of this stack; one on a remote host says which
    /// (`fields.host`), for notifications and the event stream.
    pub fn emit(&self, shared: &Shared, event: crate::events::NewEvent) {
        let event = event.stack(self.stack_name());
        let event = match &self.way {
            Some(w)
                if w.host != crate::config::hosts::LOCAL && !event.fields.contains_key("host") =>
            {
                event.field("host", w.host.clone())
            }
            _ => event,
        };
        shared.emit(event);
    }

    /// An event of this stack.
    pub fn event(
        &self,
        kind: crate::events::EventKind,
        message: impl Into<String>,
    ) -> crate::events::NewEvent {
        crate::events::NewEvent::new(&self.repo.name, kind, message).stack(self.stack_name())
    }

    /// The next pass asks the remote, whenever its poll would be due.
    /// A webhook or an operator said the branch moved: the next pass
    /// fetches at once, without asking for the head first (`ls-remote`).
    pub fn check_remote_now(&mut self) {
        self.next_source = Instant::now();
        self.announced = true;
    }

    /// Whether the next remote check may go straight to a fetch: announced,
    /// and there is a clone to fetch into.
    pub fn fetch_first(&self) -> bool {
        self.announced && self.git.is_cloned()
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

    /// Compose for this repository's applies: holding its lock, pulling
    /// with the registries' credentials.
    pub fn compose(
        &self,
        shared: &Shared,
        project: &str,
        dir: &std::path::Path,
        files: Vec<PathBuf>,
    ) -> crate::compose::Compose {
        self.site(shared).compose(project, dir, files)
    }

    /// Reaches the host the stack was last rendered for (`local` before
    /// its first deployment), for a pass or a command: refused while that
    /// host does not answer.
    pub async fn reach(&mut self, shared: &Shared) -> Result<(), crate::target::pool::PoolError> {
        let id = self.id();
        let host = shared
            .db
            .read(|s| s.repo_state(id))
            .ok()
            .and_then(|s| s.host)
            .unwrap_or_else(|| crate::config::hosts::LOCAL.to_string());
        match shared.hosts.way(&host).await {
            Ok(way) => {
                self.way = Some(way);
                Ok(())
            }
            Err(e) => {
                self.way = None;
                Err(e)
            }
        }
    }

    /// The engine of the stack's host, as reached for this pass.
    pub fn engine<'a>(&'a self, shared: &'a Shared) -> &'a crate::observe::Engine {
        self.way.as_ref().map_or(&shared.engine, |w| &w.engine)
    }

    /// What the stack's target works with: the engine, the clone, the
    /// stack's own files and the lock its children hold.
    pub fn site<'a>(&'a self, shared: &'a Shared) -> crate::target::Site<'a> {
        crate::target::Site {
            host: self.way.as_ref().map_or_else(
                || crate::config::hosts::LOCAL.to_string(),
                |w| w.host.clone(),
            ),
            engine: self.engine(shared),
            docker_host: self.way.as_ref().and_then(|w| w.socket.clone()),
            control: self.way.as_ref().and_then(|w| w.control.clone()),
            git: &self.git,
            lock_fd: self.lock_fd(),
            registry_config: shared.registry_config(),
            stack_dir: self.stack_name().map(|_| PathBuf::from(&self.stack.path)),
            override_path: self.override_path(),
            stack_path: self.stack_path(),
            secrets_dir: shared.secrets_dir(self.id()),
        }
    }

    /// The stack file of the deployed commit (`docker.target: swarm`):
    /// what heals and restores deploy again.
    pub fn stack_path(&self) -> PathBuf {
        self.state_file("kedge-stack.json")
    }

    pub fn override_path(&self) -> PathBuf {
        self.state_file("kedge-override.json")
    }

    /// Where a rollback to a stored snapshot writes it.
    pub fn snapshot_path(&self) -> PathBuf {
        self.state_file("kedge-snapshot.json")
    }

    /// A file of Kedge's own beside the stack's files: in the clone's git
    /// directory, or for a stack's worktree (whose `.git` is a file), a
    /// hidden sibling of the worktree.
    fn state_file(&self, name: &str) -> PathBuf {
        if self.stack.root {
            return self.git.clone.join(".git").join(name);
        }
        let dir = self
            .git
            .clone
            .file_name()
            .unwrap_or_default()
            .to_string_lossy();
        self.git.clone.with_file_name(format!(".{dir}.{name}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(backoff(1), Duration::from_secs(2));
        assert_eq!(backoff(2), Duration::from_secs(4));
        assert_eq!(backoff(5), Duration::from_secs(32));
        assert_eq!(backoff(50), Duration::from_secs(300));
    }

    /// Regression: a failed deployment of the commit already deployed,
    /// undone, said "rolled back to X" of X itself.
    #[test]
    fn a_failed_deployment_undone_to_its_own_commit_says_what_is_back() {
        let failed = |restored: &str| ReconcileError::Apply {
            commit: "fde66d0aaaa".into(),
            note: None,
            restored: Some(restored.into()),
            source: Box::new(StepError::Apply(crate::apply::ApplyError::Up(
                crate::apply::Said {
                    reason: "port is already allocated".into(),
                },
            ))),
        };
        assert_eq!(
            failed("fde66d0aaaa").to_string(),
            "deployment of fde66d0 failed; its last successful deployment is back"
        );
        assert_eq!(
            failed("0123456789").to_string(),
            "deployment of fde66d0 failed; rolled back to 0123456 (the last successful deployment)"
        );
    }
}
