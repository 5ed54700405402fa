//! ops: `status`, what every face shows of a repository: sync state,
//! branch head, deployed commit, pin, services, drift and recent events.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use super::{Ops, OpsError};
use crate::config::hosts::LOCAL;
use crate::controller::Shared;
use crate::controller::heal;
use crate::controller::remote::{RemoteHead, current_head, pin_view};
use crate::controller::task::{RepoTask, Trigger};
use crate::desired::kedge_yaml::Mode;
use crate::error_chain;
use crate::model::report::PinView;
use crate::observe::ContainerState;
use crate::record::{DeployStep, DeploymentStatus, Repo, RepoState, rfc3339};
use crate::target::pool::Way;

/// A host's containers, by compose project.
type ProjectLists = BTreeMap<String, Vec<ContainerState>>;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RepoStatus {
    pub name: String,
    /// The stack, for a repository that declares several (fleet.md §1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stack: Option<String>,
    pub branch: String,
    #[schema(value_type = Option<String>)]
    pub mode: Option<Mode>,
    /// The Docker host the stack runs on (`local`: this machine).
    pub host: String,
    /// Why its host could not be asked, when it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_error: Option<String>,
    pub project: String,
    pub remote_head: Option<String>,
    pub deployed_commit: Option<String>,
    /// The newest commit what runs equals: the deployed commit, or a later
    /// one that changed none of the stack's inputs (not deployed).
    pub synced_commit: Option<String>,
    pub pinned_commit: Option<String>,
    /// The rollback pin, and whether the branch moved past it.
    pub pin: Option<PinView>,
    /// synced, out_of_sync, waiting_for_window, drifted, pinned, failed,
    /// unknown or orphaned
    #[schema(value_type = String)]
    pub sync_state: SyncState,
    /// A new commit held back by the stack's closed sync windows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window: Option<WindowWait>,
    pub last_error: Option<String>,
    pub checked_at: Option<String>,
    /// When the remote last answered a check.
    pub last_successful_check: Option<String>,
    /// The last check of the remote failed (`last_error` says why).
    pub remote_failing: bool,
    #[serde(skip)]
    pub remote_ok_at: Option<i64>,
    pub last_deployment: Option<LastDeployment>,
    /// A failed deployment undone by an automatic rollback, while the
    /// failed commit is held back (until the branch moves or `kedge sync`).
    pub auto_rollback: Option<AutoRollback>,
    pub services: Vec<ServiceStatus>,
    pub drifts: Vec<crate::plan::Drift>,
    /// The newest few, oldest first.
    pub events: Vec<crate::events::Event>,
    /// Newer images the last update check found (fleet.md §3).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub updates: Vec<crate::model::updates::UpdateRow>,
    /// Images an update deployed without a commit: the stack is ahead of
    /// the tags Git names (`updates.apply: deploy`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ahead_of_git: Vec<crate::model::updates::ImageOverride>,
}

/// A commit waiting for a sync window (`reconciliation.windows`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WindowWait {
    pub commit: String,
    /// When the windows next open (RFC 3339); absent when not within a week.
    pub opens_at: Option<String>,
    /// "abc1234 waits for the sync window (opens 2026-12-08 08:00:00)"
    pub text: String,
}

impl WindowWait {
    fn of(state: &RepoState) -> Option<WindowWait> {
        let (commit, opens) = state.waiting.clone()?;
        Some(WindowWait {
            text: format!(
                "{} waits for the sync window ({})",
                crate::short(&commit),
                crate::controller::windows::until_text(opens)
            ),
            commit,
            opens_at: opens.map(rfc3339),
        })
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LastDeployment {
    pub commit: String,
    pub status: DeploymentStatus,
    pub deployed_at: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AutoRollback {
    pub failed_commit: String,
    /// The step that failed: `health_gate` or `apply`.
    #[schema(value_type = Option<String>)]
    pub failed_step: Option<DeployStep>,
    /// What runs instead.
    pub running_commit: String,
    /// "abc1234 failed health gate; running def5678 (auto rollback)"
    pub text: String,
}

impl AutoRollback {
    /// From the newest deployments (newest first), when the newest is an
    /// automatic rollback that still holds: what runs is what it restored,
    /// and the commit it undid is still the one Kedge is done with.
    pub fn find(state: &RepoState, newest: &[crate::record::Deployment]) -> Option<AutoRollback> {
        let restore = newest.first()?;
        let failed_commit = restore.rolled_back_from.clone()?;
        if restore.trigger != Trigger::AutoRollback
            || restore.status != DeploymentStatus::RolledBack
            || state.deployed_commit.as_ref() != Some(&restore.commit)
            || state.target_commit.as_ref() != Some(&failed_commit)
        {
            return None;
        }
        let failed_step = newest
            .iter()
            .skip(1)
            .find(|d| d.commit == failed_commit && d.status == DeploymentStatus::Failed)
            .and_then(|d| d.failed_step);
        let what = match failed_step {
            Some(DeployStep::HealthGate) => "failed health gate",
            _ => "failed to deploy",
        };
        Some(AutoRollback {
            text: format!(
                "{} {what}; running {} (auto rollback)",
                crate::short(&failed_commit),
                crate::short(&restore.commit)
            ),
            failed_commit,
            failed_step,
            running_commit: restore.commit.clone(),
        })
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ServiceStatus {
    pub service: String,
    pub container: Option<String>,
    pub state: String,
    pub image: Option<String>,
    pub commit: Option<String>,
}

impl RepoStatus {
    /// `repo`, or `repo/stack` for a declared stack.
    pub fn address(&self) -> String {
        match &self.stack {
            Some(stack) => format!("{}/{stack}", self.name),
            None => self.name.clone(),
        }
    }
}

impl Ops {
    /// Every repository's status (or one's), and why container states are
    /// unknown when the engine does not answer.
    pub async fn status(
        &self,
        repo: Option<&str>,
    ) -> Result<(Vec<RepoStatus>, Option<String>), OpsError> {
        let shared = self.shared()?;
        let units = match repo {
            Some(address) => self.units(address)?,
            None => {
                let mut all = Vec::new();
                for repo in shared.db.read(|s| s.repos())? {
                    all.extend(self.units(&repo.name)?);
                }
                all
            }
        };
        collect(shared, units).await
    }

    /// The commits waiting for their sync windows among the stacks
    /// `address` names: from the store alone, no engine asked.
    pub fn window_waits(&self, address: &str) -> Result<Vec<WindowWait>, OpsError> {
        let shared = self.shared()?;
        let mut out = Vec::new();
        for (_, stack) in self.units(address)? {
            let state = shared.db.read(|s| s.repo_state(stack.id))?;
            out.extend(WindowWait::of(&state));
        }
        Ok(out)
    }
}

async fn collect(
    shared: &Shared,
    units: Vec<(Repo, crate::record::Stack)>,
) -> Result<(Vec<RepoStatus>, Option<String>), OpsError> {
    let engine = shared.engine.clone();
    // One list of every project's containers, one inspect per distinct
    // image. The engine makes the list (≈ 90 ms at 1,000 containers) while
    // the store is read: the reads yield after each stack, so the request
    // goes out at once.
    let listing = engine.containers_by_project();
    let reads = async {
        let mut out = Vec::with_capacity(units.len());
        for (repo, stack) in &units {
            let id = stack.id;
            out.push(shared.db.read(|store| {
                Ok((
                    store.deployments(id, 2)?,
                    store.services(id)?,
                    store.events(&crate::record::EventQuery {
                        repo: Some(repo.name.clone()),
                        stack: (!stack.root).then(|| stack.name.clone()),
                        limit: 5,
                        ..Default::default()
                    })?,
                ))
            })?);
            tokio::task::yield_now().await;
        }
        Ok::<_, OpsError>(out)
    };
    // Every stack's state in one query: a thousand stacks would otherwise
    // cost three thousand.
    let states = shared.db.read(|s| s.repo_states())?;
    let state_of = |id: i64| states.get(&id).cloned().unwrap_or_default();
    let host_of = |id: i64| {
        states
            .get(&id)
            .and_then(|s| s.host.clone())
            .unwrap_or_else(|| LOCAL.to_string())
    };
    // The other hosts' containers, one list per host, beside the local one.
    let remote_hosts: std::collections::BTreeSet<String> = units
        .iter()
        .map(|(_, s)| host_of(s.id))
        .filter(|h| h != LOCAL)
        .collect();
    let remote_lists = futures_util::future::join_all(remote_hosts.into_iter().map(|host| async {
        let listed = match shared.hosts.way(&host).await {
            Ok(way) => match way.engine.containers_by_project().await {
                Ok(all) => Ok((way, all)),
                Err(e) => Err(format!("host {host}: {}", error_chain(&e))),
            },
            Err(e) => Err(e.to_string()),
        };
        (host, listed)
    }));
    let (listed, reads, remote_lists) = tokio::join!(listing, reads, remote_lists);
    let reads = reads?;
    let (mut all, engine_error) = match listed {
        Ok(all) => (Some(all), None),
        Err(e) => (None, Some(error_chain(&e))),
    };
    let mut hosts: HashMap<String, Result<(Way, ProjectLists), String>> =
        remote_lists.into_iter().collect();
    let mut images = heal::ImageIds::new();
    let mut out = Vec::with_capacity(units.len());
    let mut updates = shared.db.read(|s| s.updates(None))?;
    updates.retain(|u| u.candidate.is_some() && u.state != "error");
    let overrides = shared.db.read(|s| s.all_image_overrides())?;
    // The branch heads, as `diff` reads them: with `serve` running, what it
    // checked; otherwise the remotes, asked side by side.
    let tasks: Vec<RepoTask> = units
        .iter()
        .map(|(repo, stack)| {
            let mut task = RepoTask::of_stack(shared, repo.clone(), stack.clone());
            if let Some(Ok((way, _))) = hosts.get(&host_of(stack.id)) {
                task.way = Some(way.clone());
            }
            task
        })
        .collect();
    let heads: Vec<RemoteHead> = {
        use futures_util::StreamExt;
        let asks: Vec<_> = tasks
            .iter()
            .map(|task| {
                // The repository's own state: its task fetches for all.
                let state = state_of(task.repo.id);
                async move {
                    match state {
                        state if !task.stack.root => RemoteHead {
                            head: state.target_commit.clone().or(state.remote_head),
                            error: None,
                            live: false,
                            refused: false,
                        },
                        state => current_head(shared, &task.git, task.repo.id, &state).await,
                    }
                }
            })
            .collect();
        futures_util::stream::iter(asks).buffered(8).collect().await
    };
    let rows = units.into_iter().zip(&tasks).zip(heads).zip(reads);
    for ((((repo, stack), task), remote), (newest, recorded, events)) in rows {
        let id = stack.id;
        let (mut state, root) = (state_of(id), state_of(repo.id));
        if !stack.root {
            super::stacks::follow_root(&mut state, &root);
        }
        let auto_rollback = AutoRollback::find(&state, &newest);
        // A restore after a failed deployment does not hide the failure.
        let last = newest
            .into_iter()
            .find(|d| d.trigger != Trigger::AutoRollback);
        if remote.live {
            let now = crate::record::now_ms();
            state.checked_at = Some(now);
            state.access_refused = remote.refused;
            match remote.error {
                // Asked just now and no answer: that is the news.
                Some(error) => state.last_error = Some(error),
                None => {
                    state.remote_head = remote.head.clone();
                    state.remote_ok_at = Some(now);
                }
            }
        }
        let pin = pin_view(&state, state.remote_head.as_deref());
        let project = state.project.clone().unwrap_or_else(|| match stack.root {
            true => repo.name.clone(),
            false => format!("{}-{}", repo.name, stack.name),
        });
        let host = host_of(id);
        let (containers, host_error) = if host == LOCAL {
            let listed = all
                .as_mut()
                .map(|all| all.remove(&project).unwrap_or_default());
            (listed, None)
        } else {
            match hosts.get_mut(&host) {
                Some(Ok((_, lists))) => (Some(lists.remove(&project).unwrap_or_default()), None),
                Some(Err(e)) => (None, Some(e.clone())),
                None => (None, None),
            }
        };
        let target = crate::target::Target::of_state(&state);
        let services = match target.orchestrated(task.engine(shared), &project).await {
            // Services, not containers: tasks run on other nodes too.
            Some(services) => services
                .into_iter()
                .map(|s| ServiceStatus {
                    state: format!("running {}/{}", s.running, s.desired),
                    service: s.service,
                    container: Some(s.name),
                    image: Some(s.image),
                    commit: s.commit,
                })
                .collect(),
            None if host_error.is_some() => Vec::new(),
            None => service_statuses(&recorded, containers.as_deref()),
        };
        let observed = heal::drift_plan_of(
            shared,
            task,
            Some(Mode::Auto),
            state.clone(),
            &recorded,
            containers.clone(),
            &mut images,
        );
        // A host that could not be asked shows nothing: its stack is
        // `unknown`, not drifted from an engine that is not its own.
        let drifts = match host_error {
            Some(_) => Vec::new(),
            None => match observed.await? {
                Some(view) => view.plan.drifts,
                None => Vec::new(),
            },
        };
        let sync_state = match stack.orphaned_at {
            Some(_) => SyncState::Orphaned,
            // Its host did not answer: what runs there is not known.
            None if host_error.is_some() => SyncState::Unknown,
            None => sync_state(
                &state,
                last.as_ref().map(|d| (d.status, d.commit.as_str())),
                &drifts,
                containers.is_some(),
            ),
        };
        let stack_updates = updates
            .iter()
            .filter(|u| u.repo == repo.name && u.stack == stack.name)
            .cloned()
            .collect();
        let ahead_of_git = overrides
            .iter()
            .filter(|(id, _)| *id == stack.id)
            .map(|(_, o)| o.clone())
            .collect();
        out.push(RepoStatus {
            updates: stack_updates,
            ahead_of_git,
            name: repo.name,
            stack: (!stack.root).then_some(stack.name),
            branch: repo.branch,
            mode: state.mode,
            host,
            host_error,
            project,
            remote_head: state.remote_head.clone(),
            deployed_commit: state.deployed_commit.clone(),
            synced_commit: state.synced_commit.clone(),
            pinned_commit: state.pinned_commit.clone(),
            pin,
            sync_state,
            window: WindowWait::of(&state),
            last_error: state.last_error.clone(),
            checked_at: state.checked_at.map(rfc3339),
            last_successful_check: state.remote_ok_at.map(rfc3339),
            remote_failing: state.remote_failing(),
            remote_ok_at: state.remote_ok_at,
            last_deployment: last.map(|d| LastDeployment {
                commit: d.commit,
                status: d.status,
                deployed_at: rfc3339(d.started_at),
            }),
            auto_rollback,
            services,
            drifts,
            events,
        });
    }
    Ok((out, engine_error))
}

/// Every deployed service with its containers; services the engine has
/// but Kedge did not deploy are listed too.
fn service_statuses(
    recorded: &BTreeMap<String, crate::record::ServiceRecord>,
    containers: Option<&[ContainerState]>,
) -> Vec<ServiceStatus> {
    let mut out = Vec::new();
    let containers = containers.unwrap_or_default();
    for name in recorded.keys() {
        let mine: Vec<&ContainerState> = containers.iter().filter(|c| &c.service == name).collect();
        if mine.is_empty() {
            out.push(ServiceStatus {
                service: name.clone(),
                container: None,
                state: "missing".into(),
                image: None,
                commit: None,
            });
        }
        let one_shot = recorded.get(name).is_some_and(|r| r.spec.one_shot());
        out.extend(mine.into_iter().map(|c| {
            let mut row = service_of(c);
            if one_shot && crate::plan::completed(c) {
                row.state = COMPLETED.into();
            }
            row
        }));
    }
    out.extend(
        containers
            .iter()
            .filter(|c| !recorded.contains_key(&c.service))
            .map(service_of),
    );
    out
}

/// A one-shot's container that ran to success: done, not down.
pub const COMPLETED: &str = "completed";

fn service_of(c: &ContainerState) -> ServiceStatus {
    ServiceStatus {
        service: c.service.clone(),
        container: Some(c.name.clone()),
        state: c.state.to_string(),
        image: Some(c.image.clone()),
        commit: c.commit.clone(),
    }
}

/// Where a repository stands against its branch (operations.md, status).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SyncState {
    Synced,
    OutOfSync,
    /// A new commit waits for the stack's sync windows to open.
    WaitingForWindow,
    Drifted,
    Pinned,
    Failed,
    /// Also what a row not worked out yet says.
    #[default]
    Unknown,
    /// A stack whose directory or entry left Git (`stacks_removed: keep`).
    Orphaned,
}

impl SyncState {
    pub fn as_str(self) -> &'static str {
        match self {
            SyncState::Synced => "synced",
            SyncState::OutOfSync => "out_of_sync",
            SyncState::WaitingForWindow => "waiting_for_window",
            SyncState::Drifted => "drifted",
            SyncState::Pinned => "pinned",
            SyncState::Failed => "failed",
            SyncState::Unknown => "unknown",
            SyncState::Orphaned => "orphaned",
        }
    }
}

impl std::fmt::Display for SyncState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Every sync state `sync_state` returns, in the order metrics list them.
pub const SYNC_STATES: [SyncState; 8] = [
    SyncState::Synced,
    SyncState::OutOfSync,
    SyncState::WaitingForWindow,
    SyncState::Drifted,
    SyncState::Pinned,
    SyncState::Failed,
    SyncState::Unknown,
    SyncState::Orphaned,
];

/// The worst of: credentials the remote refuses, a failed deployment of
/// the head, drift, a rollback pin,
/// a head not deployed yet. Whether the last known head still is the
/// head is unknown while the remote does not answer.
pub(crate) fn sync_state(
    state: &RepoState,
    last: Option<(DeploymentStatus, &str)>,
    drifts: &[crate::plan::Drift],
    observed: bool,
) -> SyncState {
    if state.access_refused {
        return SyncState::Failed;
    }
    let pinned = state.pinned_commit.is_some();
    let head_deployed = state.remote_head.as_deref().is_some_and(|h| state.runs(h));
    // Failed: the head's deployment failed, and either something else runs
    // or the failure was left running (a failed health gate without rollback).
    if let Some((DeploymentStatus::Failed, commit)) = last
        && !pinned
        && (!head_deployed || state.remote_head.as_deref() == Some(commit))
    {
        return SyncState::Failed;
    }
    if !drifts.is_empty() {
        return SyncState::Drifted;
    }
    if pinned {
        return SyncState::Pinned;
    }
    if state.remote_head.is_none() {
        return SyncState::Unknown;
    }
    if state.waiting.is_some() {
        return SyncState::WaitingForWindow;
    }
    if !head_deployed {
        return SyncState::OutOfSync;
    }
    if !observed || state.remote_failing() {
        return SyncState::Unknown;
    }
    SyncState::Synced
}

impl Ops {
    /// Whether the Docker engine answers a ping now.
    pub async fn engine_answers(&self) -> Result<bool, OpsError> {
        Ok(self.shared()?.engine.ping().await)
    }

    /// Whether `serve` has finished its first pass over the repository
    /// (it has a snapshot of it).
    pub fn first_pass_done(&self, repo: &str) -> Result<bool, OpsError> {
        Ok(self.shared()?.hub.snapshot(repo).is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: `status` said `synced` while the remote did not answer.
    #[test]
    fn status_says_synced_while_the_remote_is_unreachable() {
        let synced = RepoState {
            remote_head: Some("c1".into()),
            deployed_commit: Some("c1".into()),
            checked_at: Some(1_000),
            remote_ok_at: Some(1_000),
            ..RepoState::default()
        };
        assert_eq!(sync_state(&synced, None, &[], true), SyncState::Synced);
        let unreachable = RepoState {
            checked_at: Some(200_000),
            last_error: Some("cannot reach remote x".into()),
            ..synced.clone()
        };
        assert_eq!(
            sync_state(&unreachable, None, &[], true),
            SyncState::Unknown
        );
        // A known newer head is still known.
        let behind = RepoState {
            remote_head: Some("c2".into()),
            ..unreachable.clone()
        };
        assert_eq!(sync_state(&behind, None, &[], true), SyncState::OutOfSync);
        // The strings every face and the metrics print.
        let printed: Vec<String> = SYNC_STATES.iter().map(|s| s.to_string()).collect();
        assert_eq!(
            printed,
            [
                "synced",
                "out_of_sync",
                "waiting_for_window",
                "drifted",
                "pinned",
                "failed",
                "unknown",
                "orphaned"
            ]
        );
        assert_eq!(
            serde_json::to_string(&SyncState::OutOfSync).unwrap(),
            "\"out_of_sync\""
        );
    }
}
