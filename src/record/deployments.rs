//! record: the deployment history, with compose snapshots stored once per content.

use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use super::{Store, StoreError, known, known_opt, now_ms, query};

/// The key a compose snapshot is stored under: the sha256 of its text.
pub fn snapshot_key(content: &str) -> String {
    crate::model::digest::sha256_hex(content.as_bytes())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeploymentStatus {
    InProgress,
    Success,
    Failed,
    RolledBack,
}

impl DeploymentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeploymentStatus::InProgress => "in_progress",
            DeploymentStatus::Success => "success",
            DeploymentStatus::Failed => "failed",
            DeploymentStatus::RolledBack => "rolled_back",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "in_progress" => DeploymentStatus::InProgress,
            "success" => DeploymentStatus::Success,
            "failed" => DeploymentStatus::Failed,
            "rolled_back" => DeploymentStatus::RolledBack,
            _ => return None,
        })
    }
}

/// How a deployment came about, as history records it (`trigger`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    NewCommit,
    Startup,
    /// The first deployment of a repository registered while `serve` runs.
    Added,
    /// The last successful deployment re-applied after a failed one.
    AutoRollback,
    Retry,
    Sync,
    Rollback,
    /// A newer image deployed without a commit (`updates.apply: deploy`).
    ImageUpdate,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::NewCommit => "new_commit",
            Trigger::Startup => "startup",
            Trigger::Added => "added",
            Trigger::AutoRollback => "auto_rollback",
            Trigger::Retry => "retry",
            Trigger::Sync => "sync",
            Trigger::Rollback => "rollback",
            Trigger::ImageUpdate => "image_update",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "new_commit" => Trigger::NewCommit,
            "startup" => Trigger::Startup,
            "added" => Trigger::Added,
            "auto_rollback" => Trigger::AutoRollback,
            "retry" => Trigger::Retry,
            "sync" => Trigger::Sync,
            "rollback" => Trigger::Rollback,
            "image_update" => Trigger::ImageUpdate,
            _ => return None,
        })
    }
}

impl std::fmt::Display for Trigger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The step a deployment failed at (`failed_step`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeployStep {
    /// Reading and rendering the commit.
    Render,
    /// Pulling, checking out, `up` or `docker stack deploy`.
    Apply,
    /// Applied, but the changed services did not come up.
    HealthGate,
    /// A `deploy.before` hook failed (nothing changed).
    BeforeHook,
    /// A `deploy.after` hook failed.
    AfterHook,
}

impl DeployStep {
    pub fn as_str(self) -> &'static str {
        match self {
            DeployStep::Render => "render",
            DeployStep::Apply => "apply",
            DeployStep::HealthGate => "health_gate",
            DeployStep::BeforeHook => "before_hook",
            DeployStep::AfterHook => "after_hook",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "render" => DeployStep::Render,
            "apply" => DeployStep::Apply,
            "health_gate" => DeployStep::HealthGate,
            "before_hook" => DeployStep::BeforeHook,
            "after_hook" => DeployStep::AfterHook,
            _ => return None,
        })
    }
}

impl std::fmt::Display for DeployStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What `/metrics` reads of a repository's deployments.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeploySummary {
    pub last_status: Option<DeploymentStatus>,
    /// The commit of that deployment.
    pub last_commit: Option<String>,
    /// When the newest deployment that left the stack running finished (ms).
    pub last_deployed_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Deployment {
    pub id: i64,
    pub stack_id: i64,
    pub commit: String,
    pub message: String,
    pub status: DeploymentStatus,
    pub trigger: Trigger,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    pub duration_ms: Option<i64>,
    /// The key of its compose snapshot ([`snapshot_key`]); the snapshot
    /// itself is read only by what applies it ([`Store::snapshot`]), never
    /// by a listing, and never shown.
    #[serde(skip)]
    pub snapshot: Option<String>,
    pub services_changed: Option<Vec<String>>,
    pub error: Option<String>,
    /// On a failed deployment: the step that failed.
    pub failed_step: Option<DeployStep>,
    /// On an automatic rollback: the commit whose failure it undid.
    pub rolled_back_from: Option<String>,
    /// Its deploy hooks' runs (`deploy.before`/`deploy.after`).
    pub hooks: Vec<crate::model::hooks::HookRun>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDeployment<'a> {
    pub stack_id: i64,
    pub commit: &'a str,
    pub message: &'a str,
    pub trigger: Trigger,
    pub compose_snapshot: Option<&'a str>,
    /// An automatic rollback: the failed commit it undoes.
    pub rolled_back_from: Option<&'a str>,
}

impl Store {
    /// Records the start of an apply; finish it with [`Store::finish_deployment`].
    /// Its compose snapshot is stored once per content, shared by every
    /// deployment of the same rendered project.
    pub fn begin_deployment(&self, d: &NewDeployment) -> Result<i64, StoreError> {
        let key = d.compose_snapshot.map(snapshot_key);
        // One write: retention (any process's) never deletes the snapshot
        // between its insert and the row that refers to it.
        self.conn
            .execute_batch("SAVEPOINT begin_deployment")
            .map_err(query("record deployment start"))?;
        let id = self.insert_deployment(d, key.as_deref());
        let end = if id.is_ok() {
            "RELEASE begin_deployment"
        } else {
            "ROLLBACK TO begin_deployment; RELEASE begin_deployment"
        };
        self.conn
            .execute_batch(end)
            .map_err(query("record deployment start"))?;
        id
    }

    fn insert_deployment(&self, d: &NewDeployment, key: Option<&str>) -> Result<i64, StoreError> {
        if let (Some(key), Some(content)) = (key, d.compose_snapshot) {
            self.conn
                .execute(
                    "INSERT OR IGNORE INTO snapshots (sha256, content) VALUES (?1, ?2)",
                    params![key, content],
                )
                .map_err(query("store compose snapshot"))?;
        }
        self.conn
            .execute(
                "INSERT INTO deployments (stack_id, commit_hash, commit_message, status, trigger, started_at, snapshot,
                     rolled_back_from)
                 VALUES (?1, ?2, ?3, 'in_progress', ?4, ?5, ?6, ?7)",
                params![d.stack_id, d.commit, d.message, d.trigger.as_str(), now_ms(), key, d.rolled_back_from],
            )
            .map_err(query("record deployment start"))?;
        Ok(self.conn.last_insert_rowid())
    }

    /// `history.retention`: deletes the deployments that finished before
    /// `before` (ms), except what a repository still stands on: its
    /// newest `success` and newest `rolled_back` deployment (what a
    /// failed deploy is restored to), every deployment of its deployed or
    /// pinned commit, and any still in progress; then the snapshots no
    /// deployment refers to any more. Returns how many of each it deleted.
    pub fn delete_deployments_before(&mut self, before: i64) -> Result<(usize, usize), StoreError> {
        self.with_transaction(|s| {
            let deployments = s
                .conn
                .execute(
                    "DELETE FROM deployments
                     WHERE status != 'in_progress'
                       AND coalesce(finished_at, started_at) < ?1
                       AND NOT EXISTS (
                           SELECT 1 FROM stack_state st
                           WHERE st.stack_id = deployments.stack_id
                             AND deployments.commit_hash IN (st.deployed_commit, st.pinned_commit))
                       AND id NOT IN (
                           SELECT max(id) FROM deployments
                           WHERE status IN ('success', 'rolled_back')
                           GROUP BY stack_id, status)",
                    [before],
                )
                .map_err(query("delete old deployments"))?;
            let snapshots = if deployments == 0 {
                0
            } else {
                s.conn
                    .execute(
                        "DELETE FROM snapshots WHERE NOT EXISTS
                             (SELECT 1 FROM deployments WHERE snapshot = snapshots.sha256)",
                        [],
                    )
                    .map_err(query("delete unused snapshots"))?
            };
            Ok((deployments, snapshots))
        })
    }

    pub fn finish_deployment(
        &self,
        id: i64,
        status: DeploymentStatus,
        services_changed: &[String],
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        let now = now_ms();
        let changed = serde_json::to_string(services_changed).unwrap_or_else(|_| "[]".into());
        self.conn
            .execute(
                "UPDATE deployments SET status = ?2, finished_at = ?3, duration_ms = ?3 - started_at,
                 services_changed = ?4, error = ?5 WHERE id = ?1",
                params![id, status.as_str(), now, changed, error],
            )
            .map_err(query("record deployment result"))?;
        Ok(())
    }

    /// The deploy hooks a deployment ran (nothing when it ran none).
    pub fn record_hooks(
        &self,
        id: i64,
        runs: &[crate::model::hooks::HookRun],
    ) -> Result<(), StoreError> {
        if runs.is_empty() {
            return Ok(());
        }
        let runs = serde_json::to_string(runs).unwrap_or_else(|_| "[]".into());
        self.conn
            .execute(
                "UPDATE deployments SET hooks = ?2 WHERE id = ?1",
                params![id, runs],
            )
            .map_err(query("record the deploy hooks"))?;
        Ok(())
    }

    /// A deployment failed at `step`.
    pub fn fail_deployment(
        &self,
        id: i64,
        services_changed: &[String],
        error: &str,
        step: DeployStep,
    ) -> Result<(), StoreError> {
        let changed = serde_json::to_string(services_changed).unwrap_or_else(|_| "[]".into());
        self.conn
            .execute(
                "UPDATE deployments SET status = 'failed', finished_at = ?2, duration_ms = ?2 - started_at,
                 services_changed = ?3, error = ?4, failed_step = ?5 WHERE id = ?1",
                params![id, now_ms(), changed, error, step.as_str()],
            )
            .map_err(query("record deployment result"))?;
        Ok(())
    }

    /// A repository's deployments left `in_progress` become `failed`
    /// ("interrupted"). Only for the holder of the repository's lock: every
    /// apply holds it, so an unfinished row then has no live owner.
    /// Returns the `(id, commit)` of each row it closed. Looks before it
    /// writes: it runs at every pass, and the pass that changes nothing
    /// writes nothing.
    pub fn fail_interrupted(&self, stack_id: i64) -> Result<Vec<(i64, String)>, StoreError> {
        let open = self.interrupted(stack_id)?;
        if open.is_empty() {
            return Ok(open);
        }
        self.conn
            .execute(
                "UPDATE deployments SET status = 'failed', finished_at = ?1,
                 error = coalesce(error, ?3)
                 WHERE stack_id = ?2 AND status = 'in_progress'",
                params![now_ms(), stack_id, INTERRUPTED],
            )
            .map_err(query("close interrupted deployments"))?;
        Ok(open)
    }

    /// A repository's deployments still `in_progress` (id, commit), oldest first.
    pub fn interrupted(&self, stack_id: i64) -> Result<Vec<(i64, String)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id, commit_hash FROM deployments
                 WHERE stack_id = ?1 AND status = 'in_progress' ORDER BY id",
            )
            .map_err(query("find interrupted deployments"))?;
        let open = stmt
            .query_map([stack_id], |r| Ok((r.get(0)?, r.get(1)?)))
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<(i64, String)>>>())
            .map_err(query("find interrupted deployments"))?;
        Ok(open)
    }

    /// Per repository id: the status of its newest deployment that is not
    /// a restore after a failure (what `status` calls the last one), and
    /// when its newest `success` or `rolled_back` deployment finished. One
    /// query; each lookup walks the `(stack_id, id)` index from the newest.
    pub fn deploy_summaries(
        &self,
    ) -> Result<std::collections::HashMap<i64, DeploySummary>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT r.id,
                    (SELECT d.status FROM deployments d
                     WHERE d.stack_id = r.id AND d.trigger != 'auto_rollback'
                     ORDER BY d.id DESC LIMIT 1),
                    (SELECT d.commit_hash FROM deployments d
                     WHERE d.stack_id = r.id AND d.trigger != 'auto_rollback'
                     ORDER BY d.id DESC LIMIT 1),
                    (SELECT d.finished_at FROM deployments d
                     WHERE d.stack_id = r.id AND d.status IN ('success', 'rolled_back')
                     ORDER BY d.id DESC LIMIT 1)
                 FROM stacks r",
            )
            .map_err(query("summarise deployments"))?;
        let rows = stmt
            .query_map([], |row| {
                Ok((
                    row.get(0)?,
                    DeploySummary {
                        last_status: known_opt(row, 1, "status", DeploymentStatus::parse)?,
                        last_commit: row.get(2)?,
                        last_deployed_at: row.get(3)?,
                    },
                ))
            })
            .map_err(query("summarise deployments"))?;
        rows.collect::<Result<_, _>>()
            .map_err(query("summarise deployments"))
    }

    /// Per repository id: the commit message of its deployed commit (from
    /// the newest deployment of that commit). One query, for the dashboard.
    pub fn deployed_messages(&self) -> Result<std::collections::HashMap<i64, String>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT s.stack_id,
                    (SELECT d.commit_message FROM deployments d
                     WHERE d.stack_id = s.stack_id AND d.commit_hash = s.deployed_commit
                     ORDER BY d.id DESC LIMIT 1)
                 FROM stack_state s WHERE s.deployed_commit IS NOT NULL",
            )
            .map_err(query("read deployed commit messages"))?;
        let rows = stmt
            .query_map([], |row| {
                Ok((row.get::<_, i64>(0)?, row.get::<_, Option<String>>(1)?))
            })
            .map_err(query("read deployed commit messages"))?;
        let mut out = std::collections::HashMap::new();
        for row in rows {
            if let (id, Some(message)) = row.map_err(query("read deployed commit messages"))? {
                out.insert(id, message);
            }
        }
        Ok(out)
    }

    /// The compose snapshot stored under `key` (a deployment's `snapshot`).
    pub fn snapshot(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.conn
            .query_row(
                "SELECT content FROM snapshots WHERE sha256 = ?1",
                [key],
                |r| r.get(0),
            )
            .optional()
            .map_err(query("read compose snapshot"))
    }

    /// Newest first, without their compose snapshots (see [`Store::snapshot`]).
    pub fn deployments(&self, stack_id: i64, limit: usize) -> Result<Vec<Deployment>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT d.id, d.stack_id, d.commit_hash, d.commit_message, d.status, d.trigger,
                        d.started_at, d.finished_at, d.duration_ms,
                        d.snapshot, d.services_changed, d.error,
                        d.failed_step, d.rolled_back_from, d.hooks
                 FROM deployments d
                 WHERE d.stack_id = ?1 ORDER BY d.id DESC LIMIT ?2",
            )
            .map_err(query("list deployments"))?;
        let rows = stmt
            .query_map(params![stack_id, limit as i64], |row| {
                let changed: Option<String> = row.get(10)?;
                Ok(Deployment {
                    id: row.get(0)?,
                    stack_id: row.get(1)?,
                    commit: row.get(2)?,
                    message: row.get(3)?,
                    status: known(row, 4, "status", DeploymentStatus::parse)?,
                    trigger: known(row, 5, "trigger", Trigger::parse)?,
                    started_at: row.get(6)?,
                    finished_at: row.get(7)?,
                    duration_ms: row.get(8)?,
                    snapshot: row.get(9)?,
                    services_changed: changed.and_then(|c| serde_json::from_str(&c).ok()),
                    error: row.get(11)?,
                    failed_step: known_opt(row, 12, "failed_step", DeployStep::parse)?,
                    rolled_back_from: row.get(13)?,
                    hooks: row
                        .get::<_, Option<String>>(14)?
                        .and_then(|h| serde_json::from_str(&h).ok())
                        .unwrap_or_default(),
                })
            })
            .map_err(query("list deployments"))?;
        rows.collect::<Result<_, _>>()
            .map_err(query("list deployments"))
    }
}

/// The error of a deployment whose apply never finished.
pub const INTERRUPTED: &str = "interrupted: Kedge stopped before the apply finished";
