//! controller: what every stack's task shares — the store, the engines,
//! the event hub, how to wake a task, the apply permits — and the reasons
//! a task wakes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::mpsc;

use super::{hub, in_flight, inbox, lock, view};
use crate::config::Settings;
use crate::events::NewEvent;
use crate::observe::Engine;
use crate::record::{Db, Repo, Store, StoreError};

/// Why a repository's task runs a pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Its poll or drift-check time came.
    Timer,
    /// The engine reported a change to one of its containers.
    EngineEvent,
    /// A git host announced a push: the remote is checked now.
    Webhook,
    /// An operator asked (API or dashboard): the remote is checked now.
    Cli,
}

impl Reason {
    /// Whether the remote is checked at once rather than when its poll is due.
    pub fn checks_remote(self) -> bool {
        matches!(self, Reason::Webhook | Reason::Cli)
    }
}

/// How a stack's task is reached.
pub(super) struct Waker {
    /// The stack's address: its repository's name for the repository's
    /// own stack (the one webhooks and `wake` reach), `repo/stack` else.
    pub(super) repo: String,
    pub(super) repo_id: i64,
    /// The host its project runs on (`local` until rendered).
    pub(super) host: String,
    pub(super) project: String,
    pub(super) tx: mpsc::Sender<Reason>,
    pub(super) commands: mpsc::Sender<inbox::Command>,
}

/// What every repository task shares.
pub struct Shared {
    pub settings: Settings,
    /// The store: reads at once, writes through its one writer.
    pub db: Db,
    /// This process among the ones that share the event log, and how many
    /// events it has emitted: an event's origin.
    origin: String,
    emitted: AtomicU64,
    pub engine: Engine,
    /// The ways to the configured hosts' engines (`local` is `engine`).
    pub hosts: crate::target::pool::Pool,
    /// Per repository: its name, its compose project and how to wake its task.
    wakers: Mutex<HashMap<i64, Waker>>,
    /// How often the engine has come back after not answering.
    pub(super) engine_returns: AtomicU64,
    /// The event broadcast and the repositories' snapshots.
    /// Shared with the notification sinks' tasks, which need nothing else.
    pub hub: Arc<hub::Hub>,
    /// Whether a `serve` owns the data directory, looked up once.
    serving: std::sync::OnceLock<bool>,
    /// Commands started over HTTP, which shutdown waits for.
    pub commands: Arc<in_flight::InFlight>,
    /// The key of secret fingerprints, read or made once.
    fingerprint_key: std::sync::OnceLock<[u8; 32]>,
    /// The age identities that open SOPS files, loaded once and again
    /// when the key file changes.
    pub(super) sops: std::sync::OnceLock<Arc<crate::desired::secrets::KeyRing>>,
    /// The registry client of image update checks (its cache and
    /// backoffs), made at the first check.
    pub(super) registry: std::sync::OnceLock<Arc<crate::registry::Client>>,
    /// One permit per apply in flight: `serve.max_parallel_deploys`.
    applies: tokio::sync::Semaphore,
    /// The containers as one list showed them, for the periodic checks.
    pub views: view::Views,
}

impl Shared {
    /// `DOCKER_CONFIG` for compose, written afresh from `registries:`
    /// (`None` without them). A failure to write it is logged; the pull
    /// then says what the registry answered.
    pub fn registry_config(&self) -> Option<std::path::PathBuf> {
        crate::apply::registry::prepare(&self.settings.data_dir, &self.settings.registries)
            .unwrap_or_else(|e| {
                tracing::warn!("{}", crate::error_chain(&e));
                None
            })
    }

    /// The data directory's key for secret fingerprints. When it can be
    /// neither read nor made, a key for this process only: services using
    /// secrets then look changed once after each restart, which is logged.
    pub fn fingerprint_key(&self) -> [u8; 32] {
        *self.fingerprint_key.get_or_init(|| {
            crate::desired::inputs::load_key(&self.settings.data_dir).unwrap_or_else(|e| {
                tracing::warn!("{}", crate::error_chain(&e));
                rand::random()
            })
        })
    }

    /// The SOPS identities (`serve` refused to start when they could not
    /// be loaded; a one-off command logs why and has none until fixed).
    pub fn sops(&self) -> Arc<crate::desired::secrets::KeyRing> {
        self.sops
            .get_or_init(|| {
                let file = self.settings.sops_age_key_file.as_deref();
                Arc::new(crate::desired::secrets::KeyRing::lenient(file))
            })
            .clone()
    }

    /// The private directory of a stack's decrypted secrets.
    /// The repository's remote and clone, with its credentials.
    pub fn repository(&self, repo: &Repo) -> crate::source::git::Repository {
        let clone = crate::source::clone_dir(&self.settings.data_dir, &repo.name);
        crate::source::git::Repository::new(repo.url.expose(), &repo.branch, clone)
            .with_timeout(self.settings.git_timeout)
            .with_auth(
                &crate::source::auth::effective(
                    &repo.auth,
                    repo.credential.as_deref(),
                    repo.url.expose(),
                    &self.settings.credentials,
                ),
                &self.settings.data_dir,
                self.settings.poll_interval,
            )
    }

    pub fn secrets_dir(&self, stack_id: i64) -> std::path::PathBuf {
        crate::desired::secrets::private::stack_dir(&self.settings.data_dir, stack_id)
    }

    pub fn new(settings: Settings, store: Store, engine: Engine) -> Self {
        // Every repository's token variable is kept from every child before
        // the first one starts, whichever repository it is for.
        for repo in store.repos().unwrap_or_default() {
            crate::source::auth::hide_token_env(&repo.auth);
        }
        let settings_parallel = settings.max_parallel_deploys.max(1);
        let hosts =
            crate::target::pool::Pool::new(&settings.hosts, engine.clone(), &settings.data_dir);
        Shared {
            settings,
            db: Db::new(store),
            origin: format!("{:016x}", rand::random::<u64>()),
            emitted: AtomicU64::new(0),
            hosts,
            engine,
            wakers: Mutex::new(HashMap::new()),
            engine_returns: AtomicU64::new(0),
            hub: Arc::default(),
            serving: std::sync::OnceLock::new(),
            commands: Arc::default(),
            fingerprint_key: std::sync::OnceLock::new(),
            sops: std::sync::OnceLock::new(),
            registry: std::sync::OnceLock::new(),
            applies: tokio::sync::Semaphore::new(settings_parallel),
            views: view::Views::default(),
        }
    }

    /// A turn to apply (`serve.max_parallel_deploys` at once, across all
    /// stacks; a stack's own applies are one at a time already). Held for
    /// the pull and `up` of a deployment, not its health gate: a gate waits
    /// on containers and costs nothing, and would starve the others.
    pub async fn apply_turn(&self) -> tokio::sync::SemaphorePermit<'_> {
        self.applies
            .acquire()
            .await
            .expect("the semaphore of applies is never closed")
    }

    pub(super) fn wakers(&self) -> MutexGuard<'_, HashMap<i64, Waker>> {
        self.wakers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An engine event for `project` on `host`: wake the task that owns
    /// it. A full channel means wake-ups are pending already.
    pub fn wake_project(&self, host: &str, project: &str) {
        for w in self.wakers().values() {
            if w.project == project && w.host == host {
                let _ = w.tx.try_send(Reason::EngineEvent);
            }
        }
    }

    /// Wakes the tasks of a repository's declared stacks: its task has
    /// fetched a new head for them, or one of them has deployed (its
    /// `after:` dependents may go on).
    pub fn wake_stacks_of(&self, repo_id: i64) {
        for (id, w) in self.wakers().iter() {
            if w.repo_id == repo_id && *id != repo_id {
                let _ = w.tx.try_send(Reason::Cli);
            }
        }
    }

    /// Wakes the tasks of the stacks on `host`, for a full check.
    pub fn wake_host(&self, host: &str) {
        for w in self.wakers().values() {
            if w.host == host {
                let _ = w.tx.try_send(Reason::EngineEvent);
            }
        }
    }

    /// The stacks whose tasks run here on `host`: (repository, stack name
    /// for a declared stack).
    pub fn stacks_on(&self, host: &str) -> Vec<(String, Option<String>)> {
        self.wakers()
            .values()
            .filter(|w| w.host == host)
            .map(|w| match w.repo.split_once('/') {
                Some((repo, stack)) => (repo.to_string(), Some(stack.to_string())),
                None => (w.repo.clone(), None),
            })
            .collect()
    }

    /// Wakes a repository's task by name; false when no task runs for it.
    /// A webhook or a command makes the task ask its remote at once.
    pub fn wake(&self, repo: &str, reason: Reason) -> bool {
        self.wakers()
            .values()
            .find(|w| w.repo == repo)
            .map(|w| {
                let _ = w.tx.try_send(reason);
            })
            .is_some()
    }

    /// Hands a command to the task that owns the repository: `Ok(None)`
    /// when no task runs for it here (no serve in this process, or not
    /// started yet), `Err` when its inbox is full.
    pub fn send_command(
        &self,
        repo_id: i64,
        request: inbox::Request,
    ) -> Result<Option<inbox::Ticket>, inbox::InboxFull> {
        let Some(sender) = self.wakers().get(&repo_id).map(|w| w.commands.clone()) else {
            return Ok(None);
        };
        let (command, ticket) = inbox::Command::new(request);
        match sender.try_send(command) {
            Ok(()) => Ok(Some(ticket)),
            Err(mpsc::error::TrySendError::Full(_)) => Err(inbox::InboxFull),
            Err(mpsc::error::TrySendError::Closed(_)) => Ok(None),
        }
    }

    pub fn engine_returns(&self) -> u64 {
        self.engine_returns.load(Ordering::Relaxed)
    }

    /// Whether a `serve` owns the data directory (this process, or another
    /// one). Looked up once: a command is short, and `serve` is for life.
    pub fn serve_running(&self) -> bool {
        *self
            .serving
            .get_or_init(|| lock::ServeLock::is_held(&self.settings.data_dir))
    }

    /// Records an event without waiting for the disk: it is broadcast at
    /// once and stored by the writer in emit order. Observing never fails
    /// what it observes: a store that cannot be written (a full disk,
    /// another process's lock for minutes) is logged, and the work goes on.
    pub fn emit(&self, event: NewEvent) {
        let n = self.emitted.fetch_add(1, Ordering::Relaxed);
        let event = crate::events::Event::emitted(
            event,
            crate::record::now_ms(),
            format!("{}/{n}", self.origin),
        );
        self.hub.announce(event.clone());
        self.db
            .write_later("record an event", move |s| s.store_event(&event).map(drop));
    }

    /// [`Store::begin_deployment`] on the writer; its id once stored.
    pub async fn begin_deployment(
        &self,
        d: &crate::record::NewDeployment<'_>,
    ) -> Result<i64, StoreError> {
        let (stack_id, trigger) = (d.stack_id, d.trigger);
        let (commit, message) = (d.commit.to_string(), d.message.to_string());
        let snapshot = d.compose_snapshot.map(String::from);
        let from = d.rolled_back_from.map(String::from);
        self.db
            .write(move |s| {
                s.begin_deployment(&crate::record::NewDeployment {
                    stack_id,
                    commit: &commit,
                    message: &message,
                    trigger,
                    compose_snapshot: snapshot.as_deref(),
                    rolled_back_from: from.as_deref(),
                })
            })
            .await
    }

    /// Whether `event` was emitted (and announced) by this process.
    pub fn emitted_here(&self, event: &crate::events::Event) -> bool {
        event
            .origin
            .as_deref()
            .and_then(|o| o.split_once('/'))
            .is_some_and(|(serve, _)| serve == self.origin)
    }
}
