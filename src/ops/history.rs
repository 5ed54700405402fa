//! ops: `history`, a repository's deployments, newest first.

use serde::Serialize;

use super::events::MAX_LIMIT;
use super::{Ops, OpsError};
use crate::record::{DeployStep, DeploymentStatus, Trigger, rfc3339_ms};

/// One deployment as every face shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct HistoryRow {
    pub id: i64,
    /// The stack, for a repository that declares several (fleet.md §1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stack: Option<String>,
    pub commit: String,
    pub status: DeploymentStatus,
    /// When it finished (when it started, while it runs).
    pub deployed_at: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub message: String,
    #[schema(value_type = String)]
    pub trigger: Trigger,
    pub duration_ms: Option<i64>,
    pub services_changed: Option<Vec<String>>,
    pub error: Option<String>,
    /// On a failed deployment: the step that failed (`render`, `apply`,
    /// `health_gate`, `before_hook`, `after_hook`).
    #[schema(value_type = Option<String>)]
    pub failed_step: Option<DeployStep>,
    /// On an automatic rollback: the commit whose failure it undid.
    pub rolled_back_from: Option<String>,
    /// Its deploy hooks' runs (`deploy.before`/`deploy.after`), their
    /// output cut to its last 2 KiB.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hooks: Vec<crate::model::hooks::HookRun>,
    /// Milliseconds since the epoch, for faces that format times themselves.
    #[serde(skip)]
    pub finished_ms: Option<i64>,
}

impl Ops {
    /// The newest deployment's id (0 when there is none).
    pub fn last_deployment_id(&self, repo: &str) -> Result<i64, OpsError> {
        Ok(self.history(repo, 1)?.first().map_or(0, |d| d.id))
    }

    /// The deployments after `after_id`, oldest first.
    pub fn deployments_after(
        &self,
        repo: &str,
        after_id: i64,
    ) -> Result<Vec<HistoryRow>, OpsError> {
        let mut rows: Vec<HistoryRow> = self
            .history(repo, 50)?
            .into_iter()
            .filter(|d| d.id > after_id)
            .collect();
        rows.reverse();
        Ok(rows)
    }

    /// The newest `limit` deployments, at most [`MAX_LIMIT`] like events.
    /// A repository that declares stacks: all of theirs, each with its
    /// stack, newest first.
    pub fn history(&self, repo: &str, limit: usize) -> Result<Vec<HistoryRow>, OpsError> {
        let limit = limit.min(MAX_LIMIT);
        let mut deployments = Vec::new();
        for (_, stack) in self.units(repo)? {
            let name = (!stack.root).then_some(stack.name);
            let of_stack = self.shared()?.db.read(|s| s.deployments(stack.id, limit))?;
            deployments.extend(of_stack.into_iter().map(|d| (name.clone(), d)));
        }
        deployments.sort_by_key(|(_, d)| std::cmp::Reverse(d.id));
        deployments.truncate(limit);
        Ok(deployments
            .into_iter()
            .map(|(stack, d)| HistoryRow {
                id: d.id,
                stack,
                deployed_at: rfc3339_ms(d.finished_at.unwrap_or(d.started_at)),
                started_at: rfc3339_ms(d.started_at),
                finished_at: d.finished_at.map(rfc3339_ms),
                finished_ms: d.finished_at,
                commit: d.commit,
                status: d.status,
                message: d.message,
                trigger: d.trigger,
                duration_ms: d.duration_ms,
                services_changed: d.services_changed,
                error: d.error,
                failed_step: d.failed_step,
                rolled_back_from: d.rolled_back_from,
                hooks: d.hooks,
            })
            .collect())
    }
}
