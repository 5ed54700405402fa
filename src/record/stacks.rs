//! record: a repository's stacks (fleet.md §1). Every repository has its
//! root stack, which shares the repository's id and name (its row stores
//! none: a declared stack may be named like the repository); a repository
//! whose `kedge.yaml` declares stacks has one row per declared stack.

use serde::Serialize;

use rusqlite::{OptionalExtension, params};

use super::{Store, StoreError, now_ms, query};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Stack {
    pub id: i64,
    pub repo_id: i64,
    /// The repository's name.
    pub repo: String,
    pub name: String,
    /// Its directory in the repository ("" for the root).
    pub path: String,
    /// The repository's own stack (part 1: one stack per repository).
    pub root: bool,
    /// When it left Git (`stacks_removed: keep`), if it did.
    pub orphaned_at: Option<i64>,
    /// The stacks of the repository it is deployed after (`after:`).
    pub after: Vec<String>,
    pub created_at: i64,
}

impl Stack {
    /// The root stack of `repo`, as `add_repo` and migration 18 make it.
    pub fn root_of(repo: &super::Repo) -> Stack {
        Stack {
            id: repo.id,
            repo_id: repo.id,
            repo: repo.name.clone(),
            name: repo.name.clone(),
            path: String::new(),
            root: true,
            orphaned_at: None,
            after: Vec::new(),
            created_at: repo.created_at,
        }
    }

    /// Its name on disk: its lock (`locks/<this>.lock`) and, for a
    /// declared stack, its worktree beside the clone. The repository's
    /// name for its own stack, `repo@stack` for the others.
    pub fn file_name(&self) -> String {
        if self.root {
            self.repo.clone()
        } else {
            format!("{}@{}", self.repo, self.name)
        }
    }

    /// How commands and the API address it: `REPO` for a root stack,
    /// `REPO/STACK` for the others.
    pub fn address(&self) -> String {
        if self.root {
            self.repo.clone()
        } else {
            format!("{}/{}", self.repo, self.name)
        }
    }
}

impl Store {
    /// Every stack, or the stacks of one repository, by repository name
    /// and then stack name (its root stack first).
    pub fn stacks(&self, repo_id: Option<i64>) -> Result<Vec<Stack>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT s.id, s.repo_id, r.name, CASE WHEN s.root THEN r.name ELSE s.name END,
                        s.path, s.root, s.orphaned_at, s.created_at, s.after
                 FROM stacks s JOIN repositories r ON r.id = s.repo_id
                 WHERE ?1 IS NULL OR s.repo_id = ?1
                 ORDER BY r.name, s.root DESC, s.name",
            )
            .map_err(query("read stacks"))?;
        let rows = stmt
            .query_map([repo_id], |r| {
                Ok(Stack {
                    id: r.get(0)?,
                    repo_id: r.get(1)?,
                    repo: r.get(2)?,
                    name: r.get(3)?,
                    path: r.get(4)?,
                    root: r.get(5)?,
                    orphaned_at: r.get(6)?,
                    created_at: r.get(7)?,
                    after: serde_json::from_str(&r.get::<_, String>(8)?).unwrap_or_default(),
                })
            })
            .map_err(query("read stacks"))?;
        rows.collect::<Result<_, _>>().map_err(query("read stacks"))
    }

    /// One declared stack of a repository, by name.
    pub fn stack_named(&self, repo_id: i64, name: &str) -> Result<Option<Stack>, StoreError> {
        Ok(self
            .stacks(Some(repo_id))?
            .into_iter()
            .find(|s| !s.root && s.name == name))
    }

    /// Registers a stack a commit declared (or brings an orphaned one
    /// back, at its path now). Its id is free in the stacks and the
    /// repositories alike (see `add_repo`).
    pub fn add_stack(
        &mut self,
        repo_id: i64,
        name: &str,
        path: &str,
        after: &[String],
    ) -> Result<Stack, StoreError> {
        let after = serde_json::to_string(after).unwrap_or_else(|_| "[]".into());
        self.with_transaction(|s| {
            let existing: Option<i64> = s
                .conn
                .query_row(
                    "SELECT id FROM stacks WHERE repo_id = ?1 AND name = ?2 AND root = 0",
                    params![repo_id, name],
                    |r| r.get(0),
                )
                .optional()
                .map_err(query("look up a stack"))?;
            match existing {
                Some(id) => {
                    s.conn
                        .execute(
                            "UPDATE stacks SET path = ?2, after = ?3, orphaned_at = NULL WHERE id = ?1",
                            params![id, path, after],
                        )
                        .map_err(query("update a stack"))?;
                }
                None => {
                    s.conn
                        .execute(
                            "INSERT INTO stacks (id, repo_id, name, path, root, after, created_at)
                             SELECT max(coalesce((SELECT max(id) FROM repositories), 0),
                                        coalesce((SELECT max(id) FROM stacks), 0)) + 1,
                                    ?1, ?2, ?3, 0, ?4, ?5",
                            params![repo_id, name, path, after, now_ms()],
                        )
                        .map_err(query("add a stack"))?;
                }
            }
            s.stack_named(repo_id, name)?
                .ok_or(StoreError::Query {
                    step: "read back a stack",
                    source: rusqlite::Error::QueryReturnedNoRows,
                })
        })
    }

    /// The repository's own project left Git: its `kedge.yaml` now declares
    /// stacks. What the root stack deployed (state, services, history)
    /// moves to a new orphaned stack named like the repository (or
    /// `<repo>-root` when a declared stack has that name), which `kedge
    /// stack remove` ends like any other; the root keeps the repository's
    /// source state and deploys nothing. Returns that stack.
    pub fn orphan_root_project(
        &mut self,
        repo_id: i64,
        taken: &[String],
    ) -> Result<Stack, StoreError> {
        let repo: String = self
            .conn
            .query_row(
                "SELECT name FROM repositories WHERE id = ?1",
                [repo_id],
                |r| r.get(0),
            )
            .map_err(query("read the repository's name"))?;
        let mut name = repo.clone();
        while taken.contains(&name) || self.stack_named(repo_id, &name)?.is_some() {
            name.push_str("-root");
        }
        let now = now_ms();
        self.with_transaction(|s| {
            let id: i64 = s
                .conn
                .query_row(
                    "SELECT max(coalesce((SELECT max(id) FROM repositories), 0),
                                coalesce((SELECT max(id) FROM stacks), 0)) + 1",
                    [],
                    |r| r.get(0),
                )
                .map_err(query("pick a stack id"))?;
            let c = &s.conn;
            c.execute(
                "INSERT INTO stacks (id, repo_id, name, path, root, orphaned_at, created_at)
                 VALUES (?1, ?2, ?3, '', 0, ?4, ?4)",
                params![id, repo_id, name, now],
            )
            .map_err(query("add the orphaned root project's stack"))?;
            c.execute(
                "INSERT INTO stack_state (stack_id, mode, prune, project, compose_files,
                        remote_head, target_commit, deployed_commit, checked_at, updated_at,
                        remote_ok_at, unhealthy, target, profiles, dormant, synced_commit,
                        inputs, env_files, secrets)
                 SELECT ?1, mode, prune, coalesce(project, ?3), compose_files, remote_head,
                        target_commit, deployed_commit, checked_at, ?4, remote_ok_at,
                        unhealthy, target, profiles, dormant, synced_commit, inputs, env_files,
                        secrets
                 FROM stack_state WHERE stack_id = ?2",
                params![id, repo_id, repo, now],
            )
            .map_err(query("copy the root's deployed state"))?;
            for (sql, step) in [
                (
                    "UPDATE services SET stack_id = ?1 WHERE stack_id = ?2",
                    "move the root's services",
                ),
                (
                    "UPDATE deployments SET stack_id = ?1 WHERE stack_id = ?2",
                    "move the root's history",
                ),
            ] {
                c.execute(sql, params![id, repo_id]).map_err(query(step))?;
            }
            c.execute(
                "UPDATE stack_state SET project = NULL, compose_files = NULL,
                        deployed_commit = NULL, pinned_commit = NULL, pinned_at_head = NULL,
                        unhealthy = NULL, profiles = NULL, dormant = NULL,
                        synced_commit = NULL, inputs = NULL, env_files = NULL, secrets = NULL,
                        updated_at = ?2
                 WHERE stack_id = ?1",
                params![repo_id, now],
            )
            .map_err(query("clear the root's deployed state"))?;
            s.stack_named(repo_id, &name)?.ok_or(StoreError::Query {
                step: "read back a stack",
                source: rusqlite::Error::QueryReturnedNoRows,
            })
        })
    }

    /// The stack left Git and stays (`stacks_removed: keep`).
    pub fn orphan_stack(&self, id: i64) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE stacks SET orphaned_at = ?2 WHERE id = ?1 AND orphaned_at IS NULL",
                params![id, now_ms()],
            )
            .map_err(query("mark a stack orphaned"))?;
        Ok(())
    }

    /// Forgets a stack: its state, services and deployments go with it.
    pub fn remove_stack(&self, id: i64) -> Result<(), StoreError> {
        self.conn
            .execute("DELETE FROM stacks WHERE id = ?1 AND root = 0", [id])
            .map_err(query("remove a stack"))?;
        self.delete_unused_snapshots()
    }
}
