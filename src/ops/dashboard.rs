//! ops: the dashboard's overview — one row per repository, read from the
//! store and from `serve`'s snapshots only (never the engine, never git),
//! so the page costs a handful of short queries however many stacks run.

use super::{Ops, OpsError};

/// One repository as the overview shows it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OverviewRow {
    /// The repository, or `repo/stack` for a stack of one with several.
    pub name: String,
    /// The repository the stack belongs to.
    pub repo: String,
    pub branch: String,
    /// `auto`, `notify` or `manual` (None before the first deployment).
    pub mode: Option<crate::desired::kedge_yaml::Mode>,
    pub deployed_commit: Option<String>,
    /// The deployed commit's message.
    pub deployed_message: Option<String>,
    /// The branch head at the last check.
    pub remote_head: Option<String>,
    /// The newest commit what runs equals (see `RepoStatus::synced_commit`).
    pub synced_commit: Option<String>,
    pub pinned_commit: Option<String>,
    /// One of [`super::status::SYNC_STATES`], as `kedge status` computes it.
    pub sync_state: super::status::SyncState,
    /// Deployed services up (a running container, or a one-shot's that
    /// completed: no drift), and all deployed services; None until `serve`
    /// has looked at the containers.
    pub services: Option<(usize, usize)>,
    /// Drifted services at `serve`'s last pass.
    pub drift_count: usize,
    /// When the newest deployment that left the stack running finished (ms).
    pub last_deployed_at: Option<i64>,
    pub last_error: Option<String>,
}

impl Ops {
    /// Every registered repository's row, by name. Drift and containers
    /// are what `serve`'s last pass saw (unknown before its first pass, or
    /// without `serve`); the rest is the store's.
    pub fn overview(&self) -> Result<Vec<OverviewRow>, OpsError> {
        let shared = self.shared()?;
        let (repos, stacks, states, summaries, mut messages, mut names) =
            shared.db.read(|store| {
                Ok((
                    store.repos()?,
                    store.stacks(None)?,
                    store.repo_states()?,
                    store.deploy_summaries()?,
                    store.deployed_messages()?,
                    store.service_names()?,
                ))
            })?;
        Ok(super::stacks::deployed_units(&repos, &stacks)
            .into_iter()
            .map(|(repo, stack)| {
                let state = super::stacks::state_of(&states, repo, stack);
                let summary = summaries.get(&stack.id).cloned().unwrap_or_default();
                let deployed = names.remove(&stack.id).unwrap_or_default();
                let (drifts, containers) = match shared.hub.snapshot(&stack.address()) {
                    Some(rx) => {
                        let s = rx.borrow();
                        (s.drifts.clone(), s.containers.clone())
                    }
                    None => (Vec::new(), None),
                };
                let mut drifted: Vec<&str> = drifts.iter().map(|d| d.service()).collect();
                drifted.sort_unstable();
                drifted.dedup();
                let services = containers.as_ref().map(|cs| {
                    let up = deployed
                        .iter()
                        .filter(|s| {
                            cs.iter().any(|c| {
                                &c.service == *s
                                    && (c.state == crate::observe::RunState::Running
                                        || (crate::plan::completed(c)
                                            && !drifted.contains(&s.as_str())))
                            })
                        })
                        .count();
                    (up, deployed.len())
                });
                OverviewRow {
                    sync_state: super::status::sync_state(
                        &state,
                        summary.last_status.zip(summary.last_commit.as_deref()),
                        &drifts,
                        containers.is_some(),
                    ),
                    deployed_message: messages.remove(&stack.id),
                    services,
                    drift_count: drifted.len(),
                    last_deployed_at: summary.last_deployed_at,
                    mode: state.mode,
                    deployed_commit: state.deployed_commit,
                    remote_head: state.remote_head,
                    synced_commit: state.synced_commit,
                    pinned_commit: state.pinned_commit,
                    last_error: state.last_error,
                    name: stack.address(),
                    repo: repo.name.clone(),
                    branch: repo.branch.clone(),
                }
            })
            .collect())
    }
}
