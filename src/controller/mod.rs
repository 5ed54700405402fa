//! controller: drives the flow (source → desired → observe → plan → apply →
//! record). One task per repository, each level-triggered: triggers only
//! wake a task, the reconcile decides what to do.

pub mod commands;
pub mod deploy;
pub mod fan_out;
pub mod heal;
pub mod hosts;
pub mod hub;
pub mod image_update;
pub mod in_flight;
pub mod inbox;
pub mod lock;
mod moves;
pub mod reconcile;
pub mod remote;
mod restore;
pub mod task;
pub mod updates;
pub mod view;
pub mod windows;
mod write_back;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::config::Settings;
use crate::error_chain;
use crate::events::{EventKind, NewEvent};
use crate::observe::Engine;
use crate::record::{Db, Repo, Store, StoreError};
use reconcile::reconcile;
use task::{Action, RepoTask, backoff};

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
struct Waker {
    /// The stack's address: its repository's name for the repository's
    /// own stack (the one webhooks and `wake` reach), `repo/stack` else.
    repo: String,
    repo_id: i64,
    /// The host its project runs on (`local` until rendered).
    host: String,
    project: String,
    tx: mpsc::Sender<Reason>,
    commands: mpsc::Sender<inbox::Command>,
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
    engine_returns: AtomicU64,
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
    sops: std::sync::OnceLock<Arc<crate::desired::secrets::KeyRing>>,
    /// The registry client of image update checks (its cache and
    /// backoffs), made at the first check.
    registry: std::sync::OnceLock<Arc<crate::registry::Client>>,
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

    fn wakers(&self) -> MutexGuard<'_, HashMap<i64, Waker>> {
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

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Owned(#[from] lock::ServeLockError),
    #[error(transparent)]
    Faces(#[from] FacesError),
    #[error("cannot listen for signals")]
    Signals(#[source] std::io::Error),
    #[error("cannot load the SOPS age keys")]
    Keys(#[from] crate::desired::secrets::KeysError),
}

/// What keeps `serve`'s outside faces from starting.
#[derive(Debug, thiserror::Error)]
#[error("{what}")]
pub struct FacesError {
    pub what: String,
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

struct Running {
    name: String,
    stop: watch::Sender<bool>,
    handle: JoinHandle<()>,
}

/// Runs every registered repository until SIGINT/SIGTERM. The first signal
/// lets applies in flight finish; a second one exits at once.
/// `faces` starts what serves the outside world (the HTTP listener) once
/// the controller's shared state exists; it gets the shutdown signal and
/// its task is awaited after the repositories' tasks have stopped.
pub async fn serve<F, Fut>(settings: Settings, faces: F) -> Result<(), ServeError>
where
    F: FnOnce(Arc<Shared>, watch::Receiver<bool>) -> Fut,
    Fut: std::future::Future<Output = Result<Option<JoinHandle<()>>, FacesError>>,
{
    // A key file that is missing or open to others is refused before
    // anything starts: better no serve than stacks failing one by one.
    let keys = crate::desired::secrets::KeyRing::load(settings.sops_age_key_file.as_deref())?;
    let loaded = keys.current();
    if !loaded.is_empty() {
        tracing::info!(sources = ?loaded.sources, "SOPS age keys loaded");
    }
    let store = Store::open(&settings.data_dir)?;
    // Before anything else: a second serve must not touch the first one's work.
    let _owner = lock::ServeLock::acquire(&settings.data_dir)?;
    let engine = Engine::new();
    if let Err(e) = engine.warm_up().await {
        tracing::warn!("docker engine not answering yet: {}", error_chain(&e));
    }
    let shared = Arc::new(Shared::new(settings, store, engine));
    // The ring just checked, not a second read of the key file.
    let _ = shared.sops.set(Arc::new(keys));
    tokio::spawn(hosts::follow_events(
        shared.clone(),
        crate::config::hosts::LOCAL.to_string(),
    ));
    tokio::spawn(hub::tail(shared.clone()));
    tokio::spawn(hub::retention(shared.clone()));
    tokio::spawn(updates::run(shared.clone()));
    tokio::spawn(hosts::watch(shared.clone()));
    let (shutdown_tx, mut shutdown) = watch::channel(false);
    spawn_signal_handler(shutdown_tx)?;
    let faces = faces(shared.clone(), shutdown.clone()).await?;
    tracing::info!(
        data_dir = %shared.settings.data_dir.display(),
        poll_interval = ?shared.settings.poll_interval,
        "kedge serve started"
    );

    let mut running: HashMap<i64, Running> = HashMap::new();
    let mut started = false;
    // A repository added or removed by the CLI or the API is stored with an
    // event, which the hub broadcasts within its tail interval: the
    // supervisor looks again then, not at the next poll.
    let mut registry = shared.hub.subscribe();
    loop {
        match shared.db.read(|s| Ok((s.repos()?, s.stacks(None)?))) {
            Ok((repos, stacks)) => {
                if !started && repos.is_empty() {
                    tracing::info!("{}", no_repo_hint(&shared.settings.data_dir));
                }
                supervise(&shared, &mut running, repos, stacks, started);
                started = true;
            }
            Err(e) => tracing::error!("cannot read repositories: {}", error_chain(&e)),
        }
        tokio::select! {
            _ = tokio::time::sleep(shared.settings.poll_interval) => {}
            _ = registry_changed(&mut registry) => {}
            _ = shutdown.changed() => break,
        }
    }

    tracing::info!("shutting down: waiting for applies in flight");
    for r in running.values() {
        let _ = r.stop.send(true);
    }
    for (_, r) in running {
        let _ = r.handle.await;
    }
    // Syncs and rollbacks started over HTTP finish too.
    shared.commands.idle().await;
    if let Some(faces) = faces {
        let _ = faces.await;
    }
    tracing::info!("stopped");
    Ok(())
}

/// Commands waiting for a task beyond this are refused as busy.
const COMMAND_QUEUE: usize = 16;

/// Returns once a repository was added or removed (or events were missed,
/// which may have been such one); never when the hub has closed.
/// The registration is stored before its event is emitted: announced or
/// stored, the event finds the repository in the store.
async fn registry_changed(events: &mut tokio::sync::broadcast::Receiver<crate::events::Live>) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        match events.recv().await {
            Ok(e)
                if matches!(
                    e.event().kind,
                    EventKind::RepoAdded
                        | EventKind::RepoRemoved
                        | EventKind::RepoRenamed
                        | EventKind::StackAdded
                        | EventKind::StackOrphaned
                        | EventKind::StackRemoved
                ) =>
            {
                return;
            }
            Ok(_) => {}
            Err(RecvError::Lagged(_)) => return,
            Err(RecvError::Closed) => std::future::pending::<()>().await,
        }
    }
}

/// What a `serve` with nothing to do says once: the command that gives it
/// something, with `--data-dir` when the data directory is not the default
/// one of the working directory.
fn no_repo_hint(data_dir: &std::path::Path) -> String {
    let default = std::env::current_dir()
        .map(|cwd| cwd.join(crate::config::DEFAULT_DATA_DIR))
        .ok();
    let flag = if default.as_deref() == Some(data_dir) {
        String::new()
    } else {
        format!(" --data-dir {}", data_dir.display())
    };
    format!(
        "no repository registered yet: add one with `kedge{flag} repo add URL` \
         (picked up while serve runs)"
    )
}

/// Starts tasks for new repositories and stacks, and stops those of
/// removed (or orphaned) ones. `added`: the repositories found now were
/// registered while `serve` ran.
fn supervise(
    shared: &Arc<Shared>,
    running: &mut HashMap<i64, Running>,
    repos: Vec<Repo>,
    stacks: Vec<crate::record::Stack>,
    added: bool,
) {
    // Each task by its stack's id and address: a renamed repository's
    // tasks stop, and ones under the new name start (its clone, locks and
    // events are the new name's).
    let by_id: HashMap<i64, &Repo> = repos.iter().map(|r| (r.id, r)).collect();
    let units: Vec<(Repo, crate::record::Stack)> = stacks
        .into_iter()
        .filter(|s| s.orphaned_at.is_none())
        .filter_map(|s| Some(((*by_id.get(&s.repo_id)?).clone(), s)))
        .collect();
    let names: HashMap<i64, String> = units.iter().map(|(_, s)| (s.id, s.address())).collect();
    running.retain(|id, r| {
        let registered = names.get(id) == Some(&r.name);
        let keep = registered && !r.handle.is_finished();
        if !keep {
            // Said here too: the task may stop at this signal before it
            // finds out for itself.
            if !registered && !r.handle.is_finished() {
                match names.get(id) {
                    Some(now) => {
                        tracing::info!(repo = %r.name, now = %now, "registered under another name now: its task stops");
                    }
                    None => tracing::info!(repo = %r.name, "no longer registered: its task stops"),
                }
            }
            let _ = r.stop.send(true);
        }
        keep
    });
    for (repo, stack) in units {
        if running.contains_key(&stack.id) {
            continue;
        }
        if stack.root {
            tracing::info!(repo = %repo.name, url = %repo.url, branch = %repo.branch, "watching");
        } else {
            tracing::info!(repo = %repo.name, stack = %stack.name, path = %stack.path, "deploying stack");
        }
        let (stop, stop_rx) = watch::channel(false);
        let id = stack.id;
        let name = stack.address();
        let handle = tokio::spawn(run_repo(shared.clone(), repo, stack, added, stop_rx));
        running.insert(id, Running { name, stop, handle });
    }
}

async fn run_repo(
    shared: Arc<Shared>,
    repo: Repo,
    stack: crate::record::Stack,
    added: bool,
    mut stop: watch::Receiver<bool>,
) {
    let name = stack.address();
    let lock_name = stack.file_name();
    let id = stack.id;
    let repo_id = repo.id;
    let (wake_tx, mut wake) = mpsc::channel::<Reason>(8);
    let (commands_tx, mut commands) = mpsc::channel::<inbox::Command>(COMMAND_QUEUE);
    // Reachable from the start: a hook for a push that lands during the
    // first pass (after its remote check) is kept for the next one.
    let known = shared.db.read(|s| s.repo_state(id)).ok();
    let known_host = known.as_ref().and_then(|s| s.host.clone());
    let known_project = known.and_then(|s| s.project);
    shared.wakers().insert(
        id,
        Waker {
            repo: name.clone(),
            repo_id,
            host: known_host.unwrap_or_else(|| crate::config::hosts::LOCAL.to_string()),
            project: known_project.unwrap_or_else(|| name.clone()),
            tx: wake_tx.clone(),
            commands: commands_tx.clone(),
        },
    );
    let mut task = RepoTask::of_stack(&shared, repo, stack);
    if added {
        task = task.added();
    }
    let mut failures = 0u32;
    let mut woken = false;
    // Deployments left unfinished are closed once, under the lock.
    loop {
        if *stop.borrow() {
            break;
        }
        // The network read comes before the lock: a remote that hangs must
        // neither keep the repository's commands waiting nor delay a stop.
        if task.source_due(&shared) && !task.fetch_first() {
            tokio::select! {
                () = task.read_remote_head() => {}
                _ = stop.changed() => break,
            }
        }
        let lock = tokio::select! {
            lock = lock::RepoLock::acquire(&shared.settings.data_dir, &lock_name, || {
                tracing::info!(repo = %name, "waiting for another apply on this repository to finish");
            }) => lock,
            _ = stop.changed() => break,
        };
        // `repo remove` holds the lock while it unregisters: a task that gets
        // the lock after it stops here, before it writes for a repository
        // that is gone (foreign key errors, retries).
        if lock.is_ok() && !still_registered(&shared, repo_id, id, &name, task.stack.root) {
            tracing::info!(repo = %name, "no longer registered: its task stops");
            break;
        }
        let result = match lock {
            Ok(held) => {
                // At every pass, not only the first: a `kedge sync` killed
                // while serve runs leaves its row behind too.
                fail_interrupted(&shared, &task.repo.name, task.stack_name(), id).await;
                task.lock = Some(held);
                // Nothing is looked at or changed on a host that does not
                // answer: its stacks wait (the host watch wakes them).
                let result = match task.reach(&shared).await {
                    Ok(()) => {
                        // Boxed: a pass's future is large and short-lived;
                        // inline, a thousand resting tasks would each hold
                        // its size.
                        Box::pin(reconcile(&shared, &mut task)).await
                    }
                    Err(e) => {
                        task.observed = None;
                        Err(e.into())
                    }
                };
                task.lock = None;
                result
            }
            Err(e) => Err(e.into()),
        };
        let delay = match result {
            Ok(Action::Requeue(after)) => {
                failures = 0;
                after
            }
            // Said by the host watch, once per outage; looked at again
            // when it answers (or at the next check).
            Err(task::ReconcileError::Host(e)) => {
                tracing::debug!(repo = %name, "{e}");
                shared.settings.check_interval
            }
            Err(e) => {
                failures += 1;
                // What failed is retried; drift is still checked at least
                // every check interval whatever failed (a full disk, say).
                let retry = backoff(failures).min(shared.settings.check_interval);
                tracing::warn!(repo = %name, failures, retry_in = ?retry, "{}", error_chain(&e));
                retry
            }
        };
        // Events are routed by project, which the last render may have named.
        let state = shared.db.read(|s| s.repo_state(id)).ok();
        let project = state
            .as_ref()
            .and_then(|s| s.project.clone())
            .unwrap_or_else(|| name.clone());
        let host = state
            .as_ref()
            .and_then(|s| s.host.clone())
            .unwrap_or_else(|| crate::config::hosts::LOCAL.to_string());
        if let Some(state) = state {
            shared
                .hub
                .publish(hub::RepoSnapshot::new(&name, state, task.observed.as_ref()));
        }
        // The engine announces a death before its container list shows it:
        // look once more shortly after every event.
        let delay = if std::mem::take(&mut woken) {
            delay.min(EVENT_FOLLOW_UP)
        } else {
            delay
        };
        tracing::debug!(repo = %name, %project, ?delay, "pass done");
        shared.wakers().insert(
            id,
            Waker {
                repo: name.clone(),
                repo_id,
                host,
                project,
                tx: wake_tx.clone(),
                commands: commands_tx.clone(),
            },
        );
        let reason = tokio::select! {
            _ = tokio::time::sleep(delay) => Reason::Timer,
            Some(command) = commands.recv() => {
                // The task's own: one after another, never beside a pass.
                tracing::debug!(repo = %name, command = command.request.name(), "command");
                Box::pin(commands::execute(&shared, &mut task, command)).await;
                task.touched = Some(Instant::now());
                Reason::Cli
            }
            Some(reason) = wake.recv() => {
                // Let a burst (kill, die, stop; several hooks) arrive, then one pass.
                tokio::time::sleep(EVENT_SETTLE).await;
                let mut reasons = vec![reason];
                while let Ok(r) = wake.try_recv() {
                    reasons.push(r);
                }
                if reasons.iter().any(|r| r.checks_remote()) {
                    task.check_remote_now();
                }
                woken = reasons.contains(&Reason::EngineEvent);
                if woken {
                    task.touched = Some(Instant::now());
                }
                reasons.into_iter().find(|r| r.checks_remote()).unwrap_or(reason)
            }
            _ = stop.changed() => Reason::Timer,
        };
        match reason {
            Reason::Timer => {}
            Reason::EngineEvent => tracing::debug!(repo = %name, "woken by an engine event"),
            other => tracing::debug!(repo = %name, reason = ?other, "woken"),
        }
    }
    shared.wakers().remove(&id);
    shared.hub.forget(&name);
    tracing::debug!(repo = %name, "task stopped");
}

/// Whether the repository with this id is still registered under `name`
/// (a read error counts as yes: the pass will say what is wrong).
fn still_registered(shared: &Shared, repo_id: i64, id: i64, name: &str, root: bool) -> bool {
    if root {
        return shared
            .db
            .read(|s| s.repo_by_id(id))
            .map_or(true, |r| r.is_some_and(|r| r.name == name));
    }
    // This repository's stacks only: a thousand stacks' passes would
    // otherwise each read every stack.
    shared
        .db
        .read(|s| s.stacks(Some(repo_id)))
        .map_or(true, |all| {
            all.iter()
                .any(|s| s.id == id && s.orphaned_at.is_none() && s.address() == name)
        })
}

/// Marks this repository's unfinished deployments `failed`, each with its
/// `deploy_failed` event: called with its lock held, so whoever started
/// them is gone (a crash, a kill -9, a `kedge sync` interrupted).
pub async fn fail_interrupted(shared: &Shared, name: &str, stack: Option<&str>, id: i64) {
    // Read first: a pass with nothing to close waits for no writer.
    let closed = match shared.db.read(|s| s.interrupted(id)) {
        Ok(open) if open.is_empty() => Ok(open),
        _ => shared.db.write(move |s| s.fail_interrupted(id)).await,
    };
    match closed {
        Ok(closed) => {
            for (deployment, commit) in closed {
                tracing::warn!(repo = %name, deployment, commit = crate::short(&commit), "an interrupted deployment marked failed");
                shared.emit(
                    NewEvent::new(
                        name,
                        EventKind::DeployFailed,
                        crate::record::INTERRUPTED.to_string(),
                    )
                    .stack(stack)
                    .commit(&commit)
                    .field("deployment", deployment)
                    .field("step", "interrupted"),
                );
            }
        }
        Err(e) => {
            tracing::warn!(repo = %name, "cannot close interrupted deployments: {}", error_chain(&e))
        }
    }
}

/// How long a task waits after an engine event before it looks.
const EVENT_SETTLE: std::time::Duration = std::time::Duration::from_millis(20);
/// When it looks again after an event.
const EVENT_FOLLOW_UP: std::time::Duration = std::time::Duration::from_millis(250);

fn spawn_signal_handler(shutdown: watch::Sender<bool>) -> Result<(), ServeError> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).map_err(ServeError::Signals)?;
    let mut int = signal(SignalKind::interrupt()).map_err(ServeError::Signals)?;
    tokio::spawn(async move {
        let mut seen = 0;
        loop {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            seen += 1;
            if seen == 1 {
                tracing::info!("signal received: finishing applies in flight (again to abort)");
                let _ = shutdown.send(true);
            } else {
                tracing::warn!("second signal: aborting");
                // Children lead their own process groups: no signal reaches them
                // unless sent, and exit runs no destructor that would.
                crate::process::kill_all();
                std::process::exit(130);
            }
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::no_repo_hint;

    #[test]
    fn the_hint_names_the_data_dir_only_when_it_is_not_the_default() {
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(
            no_repo_hint(&cwd.join(".kedge")),
            "no repository registered yet: add one with `kedge repo add URL` (picked up while serve runs)"
        );
        assert_eq!(
            no_repo_hint(std::path::Path::new("/var/lib/kedge")),
            "no repository registered yet: add one with `kedge --data-dir /var/lib/kedge repo add URL` (picked up while serve runs)"
        );
    }
}
