//! controller: what `serve` publishes for the faces that watch it. The
//! event log followed and broadcast (rows any process stored, in id order),
//! retention, each repository's snapshot after every pass, and how its
//! remote checks went and the notifications sent (counted in memory for
//! `/metrics`). Readers
//! never take a repository's lock nor wait on an apply; a slow reader only
//! misses broadcasts (it can re-read the log by id), never slows a deploy.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{broadcast, watch};

use super::Shared;
use super::heal::DriftView;
use crate::error_chain;
use crate::events::{Event, Live};
pub use crate::model::report::GitChecks;
use crate::observe::ContainerState;
use crate::plan::Drift;
use crate::record::{EventQuery, RepoState, now_ms};

/// How often the log is read for rows stored since the last look.
const TAIL_EVERY: Duration = Duration::from_millis(250);
/// How often retention runs.
const RETENTION_EVERY: Duration = Duration::from_secs(3600);
/// Broadcast events a slow reader may fall behind by before it misses some.
pub const BROADCAST_CAPACITY: usize = 1024;

/// A repository as its last pass left it: what `status` shows.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RepoSnapshot {
    pub repo: String,
    pub state: RepoState,
    /// `None` until a pass has looked at a deployed stack.
    pub containers: Option<Vec<ContainerState>>,
    pub drifts: Vec<Drift>,
    /// When the pass ended (ms since the epoch).
    pub at: i64,
}

impl RepoSnapshot {
    pub fn new(repo: &str, state: RepoState, observed: Option<&DriftView>) -> RepoSnapshot {
        RepoSnapshot {
            repo: repo.to_string(),
            state,
            containers: observed.map(|v| v.containers.clone()),
            drifts: observed.map(|v| v.plan.drifts.clone()).unwrap_or_default(),
            at: now_ms(),
        }
    }
}

/// The channels the faces read.
pub struct Hub {
    events: broadcast::Sender<Live>,
    snapshots:
        std::sync::Mutex<std::collections::HashMap<String, watch::Sender<Arc<RepoSnapshot>>>>,
    /// Not events: a check that finds nothing new stores nothing, so these
    /// are counted here, in memory, by the pass that made the check.
    git_checks: std::sync::Mutex<std::collections::BTreeMap<String, GitChecks>>,
    /// Notifications by sink and result, counted by the sinks' tasks.
    notifications: std::sync::Mutex<std::collections::BTreeMap<(String, &'static str), u64>>,
    /// Whether each configured host's engine answered its last look.
    hosts_up: std::sync::Mutex<std::collections::BTreeMap<String, bool>>,
}

impl Default for Hub {
    fn default() -> Self {
        Hub {
            events: broadcast::channel(BROADCAST_CAPACITY).0,
            snapshots: Default::default(),
            git_checks: Default::default(),
            notifications: Default::default(),
            hosts_up: Default::default(),
        }
    }
}

impl Hub {
    /// Every event stored from now on, by any process, and the ones this
    /// process emits as they are emitted (see [`Live`]).
    pub fn subscribe(&self) -> broadcast::Receiver<Live> {
        self.events.subscribe()
    }

    /// Broadcasts an event this process has just emitted, before it is
    /// stored. No receiver is no one listening: nothing to do.
    pub fn announce(&self, event: Event) {
        let _ = self.events.send(Live::Announced(event));
    }

    /// A repository's latest snapshot, and its changes.
    pub fn snapshot(&self, repo: &str) -> Option<watch::Receiver<Arc<RepoSnapshot>>> {
        self.lock().get(repo).map(watch::Sender::subscribe)
    }

    pub fn publish(&self, snapshot: RepoSnapshot) {
        let mut all = self.lock();
        let name = snapshot.repo.clone();
        let snapshot = Arc::new(snapshot);
        match all.get(&name) {
            Some(tx) => {
                tx.send_replace(snapshot);
            }
            None => {
                all.insert(name, watch::channel(snapshot).0);
            }
        }
    }

    pub fn forget(&self, repo: &str) {
        self.lock().remove(repo);
    }

    /// Counts one remote check of `repo`: a map update, no I/O.
    pub fn count_git_check(&self, repo: &str, ok: bool) {
        let mut all = self.git_checks.lock().unwrap_or_else(|p| p.into_inner());
        let counts = match all.get_mut(repo) {
            Some(counts) => counts,
            None => all.entry(repo.to_string()).or_default(),
        };
        if ok {
            counts.success += 1;
        } else {
            counts.failure += 1;
        }
    }

    /// Every repository's remote checks so far, by name.
    /// `host`'s engine answered (or not) just now; the state it had
    /// before, if it had been looked at.
    pub fn set_host_up(&self, host: &str, up: bool) -> Option<bool> {
        self.hosts_up
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(host.to_string(), up)
    }

    pub fn hosts_up(&self) -> std::collections::BTreeMap<String, bool> {
        self.hosts_up
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn git_checks(&self) -> std::collections::BTreeMap<String, GitChecks> {
        self.git_checks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Counts one notification of `sink`: `success`, `failure` (given up
    /// after its tries) or `suppressed` (`repeat_interval`). `by` 0 makes
    /// the series exist at zero.
    pub fn count_notification(&self, sink: &str, result: &'static str, by: u64) {
        *self
            .notifications
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((sink.to_string(), result))
            .or_default() += by;
    }

    /// Every sink's notifications so far, by (sink, result).
    pub fn notifications(&self) -> std::collections::BTreeMap<(String, &'static str), u64> {
        self.notifications
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<
        '_,
        std::collections::HashMap<String, watch::Sender<Arc<RepoSnapshot>>>,
    > {
        self.snapshots.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Follows the event log and broadcasts each new row, whoever stored it.
pub async fn tail(shared: Arc<Shared>) {
    let mut last = match shared.db.read(|s| s.last_event_id()) {
        Ok(id) => id,
        Err(e) => {
            tracing::warn!("cannot read the event log: {}", error_chain(&e));
            0
        }
    };
    loop {
        tokio::time::sleep(TAIL_EVERY).await;
        let page = shared.db.read(|s| {
            s.events(&EventQuery {
                after_id: Some(last),
                limit: 1000,
                ..Default::default()
            })
        });
        match page {
            Ok(page) => {
                for event in page {
                    last = event.id;
                    // No receiver is no one listening: nothing to do.
                    let _ = shared.hub.events.send(Live::Stored(event));
                }
            }
            Err(e) => tracing::debug!("cannot read the event log: {}", error_chain(&e)),
        }
    }
}

/// Deletes events older than `events.retention`, and deployments older
/// than `history.retention` with the snapshots left unused, now and every
/// hour.
pub async fn retention(shared: Arc<Shared>) {
    let ago =
        |keep: Duration| now_ms().saturating_sub(keep.as_millis().min(i64::MAX as u128) as i64);
    loop {
        let keep = shared.settings.events_retention;
        let before = ago(keep);
        match shared
            .db
            .write(move |s| s.delete_events_before(before))
            .await
        {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, retention = ?keep, "old events deleted"),
            Err(e) => tracing::warn!("cannot delete old events: {}", error_chain(&e)),
        }
        let keep = shared.settings.history_retention;
        let before = ago(keep);
        match shared
            .db
            .write(move |s| s.delete_deployments_before(before))
            .await
        {
            Ok((0, _)) => {}
            Ok((deployments, snapshots)) => tracing::info!(
                deployments,
                snapshots,
                retention = ?keep,
                "old deployments deleted"
            ),
            Err(e) => tracing::warn!("cannot delete old deployments: {}", error_chain(&e)),
        }
        tokio::time::sleep(RETENTION_EVERY).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_is_read_without_waiting_and_follows_each_pass() {
        let hub = Hub::default();
        assert!(hub.snapshot("app").is_none(), "no pass yet");
        let state = RepoState {
            deployed_commit: Some("c1".into()),
            ..Default::default()
        };
        hub.publish(RepoSnapshot::new("app", state.clone(), None));
        let mut seen = hub.snapshot("app").unwrap();
        assert_eq!(seen.borrow().state.deployed_commit.as_deref(), Some("c1"));
        hub.publish(RepoSnapshot::new(
            "app",
            RepoState {
                deployed_commit: Some("c2".into()),
                ..state
            },
            None,
        ));
        assert!(seen.has_changed().unwrap());
        assert_eq!(
            seen.borrow_and_update().state.deployed_commit.as_deref(),
            Some("c2")
        );
        hub.forget("app");
        assert!(hub.snapshot("app").is_none());
    }

    #[test]
    fn remote_checks_are_counted_per_repository() {
        let hub = Hub::default();
        hub.count_git_check("app", true);
        hub.count_git_check("app", true);
        hub.count_git_check("app", false);
        hub.count_git_check("db", false);
        let counts = hub.git_checks();
        assert_eq!(
            counts["app"],
            GitChecks {
                success: 2,
                failure: 1
            }
        );
        assert_eq!(
            counts["db"],
            GitChecks {
                success: 0,
                failure: 1
            }
        );
    }
}
