//! ops: what `/metrics` shows of each repository at a scrape — its sync
//! state, deployed commit, drift and last deployment — read from the store
//! and from `serve`'s snapshots only: never the engine, never git, so a
//! scrape costs three short queries whatever the repositories do.

use std::collections::BTreeMap;

use super::{Ops, OpsError};
use crate::plan::Drift;

/// Part of the report: how a repository's remote checks went.
pub use crate::model::report::GitChecks;

/// One scrape's worth of state.
#[derive(Debug, Clone, Default)]
pub struct MetricsReport {
    /// Every registered repository, by name.
    pub repos: Vec<RepoMetrics>,
    /// `serve`'s remote checks since it started, by repository name.
    pub git_checks: BTreeMap<String, GitChecks>,
    /// `serve`'s notifications since it started, by (sink, result).
    pub notifications: BTreeMap<(String, &'static str), u64>,
    /// Services with a newer image found by the last update check:
    /// (repo, stack, service).
    pub updates_available: Vec<(String, String, String)>,
    /// Each configured host, and whether its engine answered the last look.
    pub hosts_up: std::collections::BTreeMap<String, bool>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct RepoMetrics {
    pub name: String,
    /// A declared stack of the repository (fleet.md §1).
    pub stack: Option<String>,
    /// One of [`super::status::SYNC_STATES`], as `kedge status` computes it.
    pub sync_state: super::status::SyncState,
    pub deployed_commit: Option<String>,
    /// Per drift kind ([`Drift::KINDS`]), how many services have it.
    pub drift_services: BTreeMap<&'static str, usize>,
    /// When the newest deployment that left the stack running finished (ms).
    pub last_deployed_at: Option<i64>,
}

impl Ops {
    /// The state of every repository for a scrape. Drift is what `serve`'s
    /// last pass found (none before its first pass); the rest is the
    /// store's. Each query takes the store's lock on its own, so a pass
    /// waits for one query at most.
    pub fn metrics(&self) -> Result<MetricsReport, OpsError> {
        let shared = self.shared()?;
        let repos = shared.db.read(|s| s.repos())?;
        let stacks = shared.db.read(|s| s.stacks(None))?;
        let states = shared.db.read(|s| s.repo_states())?;
        let summaries = shared.db.read(|s| s.deploy_summaries())?;
        let out = super::stacks::deployed_units(&repos, &stacks)
            .into_iter()
            .map(|(repo, stack)| {
                let state = super::stacks::state_of(&states, repo, stack);
                let summary = summaries.get(&stack.id).cloned().unwrap_or_default();
                let snapshot = shared.hub.snapshot(&stack.address());
                let (drifts, observed) = match &snapshot {
                    Some(rx) => {
                        let s = rx.borrow();
                        (s.drifts.clone(), s.containers.is_some())
                    }
                    None => (Vec::new(), false),
                };
                RepoMetrics {
                    sync_state: super::status::sync_state(
                        &state,
                        summary.last_status.zip(summary.last_commit.as_deref()),
                        &drifts,
                        observed,
                    ),
                    deployed_commit: state.deployed_commit,
                    drift_services: drift_services(&drifts),
                    last_deployed_at: summary.last_deployed_at,
                    name: repo.name.clone(),
                    stack: (!stack.root).then(|| stack.name.clone()),
                }
            })
            .collect();
        let updates_available = shared
            .db
            .read(|s| s.updates(None))?
            .into_iter()
            // Applied ones are on their way in; errors found nothing.
            .filter(|u| {
                u.candidate.is_some()
                    && matches!(u.state.as_str(), "available" | "waiting" | "failed")
            })
            .map(|u| (u.repo, u.stack, u.service))
            .collect();
        Ok(MetricsReport {
            updates_available,
            hosts_up: shared.hub.hosts_up(),
            repos: out,
            git_checks: shared.hub.git_checks(),
            notifications: shared.hub.notifications(),
        })
    }
}

/// Distinct services per drift kind, every kind present (0 when none).
fn drift_services(drifts: &[Drift]) -> BTreeMap<&'static str, usize> {
    let mut services: BTreeMap<&'static str, std::collections::BTreeSet<&str>> = Drift::KINDS
        .iter()
        .map(|k| (*k, Default::default()))
        .collect();
    for d in drifts {
        services.entry(d.kind()).or_default().insert(d.service());
    }
    services.into_iter().map(|(k, s)| (k, s.len())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drift_is_counted_in_services_per_kind_and_every_kind_is_there() {
        let stopped = |service: &str, container: &str| Drift::Stopped {
            service: service.into(),
            container: container.into(),
            state: "exited".into(),
            exit_code: Some(137),
        };
        let drifts = [
            stopped("web", "app-web-1"),
            stopped("web", "app-web-2"),
            stopped("api", "app-api-1"),
            Drift::Missing {
                service: "db".into(),
                expected: 1,
                actual: 0,
            },
        ];
        let counts = drift_services(&drifts);
        assert_eq!(counts.len(), Drift::KINDS.len());
        assert_eq!(counts["stopped"], 2, "two services, three containers");
        assert_eq!(counts["missing"], 1);
        assert_eq!(counts["wrong_image"], 0);
        for d in &drifts {
            assert!(Drift::KINDS.contains(&d.kind()));
        }
    }
}
