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
mod shared;
pub mod task;
pub mod updates;
pub mod view;
pub mod windows;
mod write_back;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::config::Settings;
use crate::error_chain;
use crate::events::{EventKind, NewEvent};
use crate::observe::Engine;
use crate::record::{Repo, Store, StoreError};
use reconcile::reconcile;
use shared::Waker;
pub use shared::{Reason, Shared};
use task::{Action, RepoTask, backoff};

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
