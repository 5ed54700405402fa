//! record: what the controller knows of each repository between passes, and its deployed services.

use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use super::{Store, StoreError, now_ms, query};
use crate::desired::render::ServiceSpec;

/// What the controller knows of a repository between runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RepoState {
    pub mode: Option<String>,
    pub prune: Option<bool>,
    pub project: Option<String>,
    /// The deployed commit's compose files, relative to the clone.
    pub compose_files: Option<Vec<String>>,
    /// The branch head at the last check.
    pub remote_head: Option<String>,
    /// The last commit Kedge finished with, deployed or refused.
    pub target_commit: Option<String>,
    pub deployed_commit: Option<String>,
    pub pinned_commit: Option<String>,
    pub pinned_at_head: Option<String>,
    pub last_error: Option<String>,
    /// When the remote was last checked, successfully or not.
    pub checked_at: Option<i64>,
    /// When the remote last answered a check.
    pub remote_ok_at: Option<i64>,
}

impl RepoState {
    /// Whether the last check of the remote failed.
    pub fn remote_failing(&self) -> bool {
        self.checked_at.is_some() && self.remote_ok_at < self.checked_at
    }
}

/// A deployed service: what it should look like, the commit that last
/// changed it, and the config hash compose labelled its containers with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceRecord {
    pub spec: ServiceSpec,
    pub commit: String,
    pub config_hash: Option<String>,
}

impl Store {
    pub fn repo_state(&self, repo_id: i64) -> Result<RepoState, StoreError> {
        self.conn
            .query_row(
                "SELECT mode, project, remote_head, target_commit, deployed_commit, pinned_commit,
                        pinned_at_head, last_error, checked_at, prune, compose_files, remote_ok_at
                 FROM repo_state WHERE repo_id = ?1",
                [repo_id],
                |r| {
                    let files: Option<String> = r.get(10)?;
                    Ok(RepoState {
                        mode: r.get(0)?,
                        project: r.get(1)?,
                        remote_head: r.get(2)?,
                        target_commit: r.get(3)?,
                        deployed_commit: r.get(4)?,
                        pinned_commit: r.get(5)?,
                        pinned_at_head: r.get(6)?,
                        last_error: r.get(7)?,
                        checked_at: r.get(8)?,
                        prune: r.get(9)?,
                        compose_files: files.and_then(|f| serde_json::from_str(&f).ok()),
                        remote_ok_at: r.get(11)?,
                    })
                },
            )
            .optional()
            .map(Option::unwrap_or_default)
            .map_err(query("read repository state"))
    }

    pub fn save_repo_state(&self, repo_id: i64, s: &RepoState) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO repo_state (repo_id, mode, project, remote_head, target_commit,
                     deployed_commit, pinned_commit, pinned_at_head, last_error, checked_at, updated_at,
                     prune, compose_files, remote_ok_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)
                 ON CONFLICT (repo_id) DO UPDATE SET
                     mode = excluded.mode, project = excluded.project,
                     prune = excluded.prune, compose_files = excluded.compose_files,
                     remote_head = excluded.remote_head, target_commit = excluded.target_commit,
                     deployed_commit = excluded.deployed_commit, pinned_commit = excluded.pinned_commit,
                     pinned_at_head = excluded.pinned_at_head, last_error = excluded.last_error,
                     checked_at = excluded.checked_at, updated_at = excluded.updated_at,
                     remote_ok_at = excluded.remote_ok_at",
                params![
                    repo_id,
                    s.mode,
                    s.project,
                    s.remote_head,
                    s.target_commit,
                    s.deployed_commit,
                    s.pinned_commit,
                    s.pinned_at_head,
                    s.last_error,
                    s.checked_at,
                    now_ms(),
                    s.prune,
                    s.compose_files
                        .as_ref()
                        .map(|f| serde_json::to_string(f).unwrap_or_default()),
                    s.remote_ok_at,
                ],
            )
            .map_err(query("save repository state"))?;
        Ok(())
    }

    /// What a report learned from the remote: its branch head, now.
    pub fn record_remote_head(&self, repo_id: i64, head: &str) -> Result<(), StoreError> {
        let now = now_ms();
        self.conn
            .execute(
                "INSERT INTO repo_state (repo_id, remote_head, checked_at, remote_ok_at, updated_at)
                 VALUES (?1, ?2, ?3, ?3, ?3)
                 ON CONFLICT (repo_id) DO UPDATE SET remote_head = excluded.remote_head,
                     checked_at = excluded.checked_at, remote_ok_at = excluded.remote_ok_at,
                     updated_at = excluded.updated_at",
                params![repo_id, head, now],
            )
            .map_err(query("record the remote head"))?;
        Ok(())
    }

    pub fn services(
        &self,
        repo_id: i64,
    ) -> Result<std::collections::BTreeMap<String, ServiceRecord>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT service, spec, commit_hash, config_hash FROM services WHERE repo_id = ?1",
            )
            .map_err(query("read services"))?;
        let rows = stmt
            .query_map([repo_id], |r| {
                let spec: String = r.get(1)?;
                let spec = serde_json::from_str(&spec).map_err(|e| {
                    rusqlite::Error::FromSqlConversionFailure(
                        1,
                        rusqlite::types::Type::Text,
                        Box::new(e),
                    )
                })?;
                Ok((
                    r.get::<_, String>(0)?,
                    ServiceRecord {
                        spec,
                        commit: r.get(2)?,
                        config_hash: r.get(3)?,
                    },
                ))
            })
            .map_err(query("read services"))?;
        rows.collect::<Result<_, _>>()
            .map_err(query("read services"))
    }

    /// Replaces the deployed services of a repository.
    pub fn save_services(
        &mut self,
        repo_id: i64,
        services: &std::collections::BTreeMap<String, ServiceRecord>,
    ) -> Result<(), StoreError> {
        let tx = self.conn.transaction().map_err(query("save services"))?;
        tx.execute("DELETE FROM services WHERE repo_id = ?1", [repo_id])
            .map_err(query("save services"))?;
        for (name, s) in services {
            let spec = serde_json::to_string(&s.spec).unwrap_or_default();
            tx.execute(
                "INSERT INTO services (repo_id, service, hash, commit_hash, spec, config_hash)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![repo_id, name, s.spec.hash, s.commit, spec, s.config_hash],
            )
            .map_err(query("save services"))?;
        }
        tx.commit().map_err(query("save services"))
    }
}
