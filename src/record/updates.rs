//! record: image update checks — the updates: settings each deployed stack
//! was deployed with, and the latest finding per service.

use rusqlite::params;

use super::{Store, StoreError, now_ms, query};
pub use crate::model::updates::{ImageOverride, UpdateRow};

impl Store {
    /// Every stack with update settings: (stack id, settings JSON).
    pub fn updates_configs(&self) -> Result<Vec<(i64, String)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT st.stack_id, st.updates FROM stack_state st
                 JOIN stacks s ON s.id = st.stack_id
                 WHERE st.updates IS NOT NULL AND s.orphaned_at IS NULL ORDER BY st.stack_id",
            )
            .map_err(query("list the stacks' update settings"))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(query("list the stacks' update settings"))?;
        rows.collect::<Result<_, _>>()
            .map_err(query("list the stacks' update settings"))
    }

    /// Replaces a stack's findings with `rows`.
    pub fn replace_updates(&mut self, stack_id: i64, rows: &[UpdateRow]) -> Result<(), StoreError> {
        self.with_transaction(|s| {
            s.conn
                .execute("DELETE FROM image_updates WHERE stack_id = ?1", [stack_id])
                .map_err(query("clear the stack's update findings"))?;
            for r in rows {
                s.conn
                    .execute(
                        "INSERT INTO image_updates (stack_id, service, image, current, candidate,
                                policy, state, detail, checked_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                        params![
                            stack_id,
                            r.service,
                            r.image,
                            r.current,
                            r.candidate,
                            r.policy,
                            r.state,
                            r.detail,
                            r.checked_at
                        ],
                    )
                    .map_err(query("record an update finding"))?;
            }
            Ok(())
        })
    }

    /// `image` failed the health gate as `service` of the stack.
    pub fn mark_image_failed(
        &self,
        stack_id: i64,
        service: &str,
        image: &str,
    ) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO failed_images (stack_id, service, image, failed_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (stack_id, service, image) DO UPDATE SET failed_at = excluded.failed_at",
                params![stack_id, service, image, now_ms()],
            )
            .map_err(query("record an image that failed its gate"))?;
        Ok(())
    }

    /// The images that failed the gate as each service of the stack:
    /// (service, image).
    pub fn failed_images(&self, stack_id: i64) -> Result<Vec<(String, String)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT service, image FROM failed_images WHERE stack_id = ?1 ORDER BY service, image",
            )
            .map_err(query("list the images that failed their gate"))?;
        let rows = stmt
            .query_map([stack_id], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(query("list the images that failed their gate"))?;
        rows.collect::<Result<_, _>>()
            .map_err(query("list the images that failed their gate"))
    }

    /// The findings, of one repository's stacks or all, by repository,
    /// stack and service.
    pub fn updates(&self, repo_id: Option<i64>) -> Result<Vec<UpdateRow>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT r.name, CASE WHEN s.root THEN r.name ELSE s.name END, u.service, u.image,
                        u.current, u.candidate, u.policy, u.state, u.detail, u.checked_at
                 FROM image_updates u JOIN stacks s ON s.id = u.stack_id
                 JOIN repositories r ON r.id = s.repo_id
                 WHERE ?1 IS NULL OR s.repo_id = ?1
                 ORDER BY r.name, 2, u.service",
            )
            .map_err(query("list the update findings"))?;
        let rows = stmt
            .query_map([repo_id], |r| {
                Ok(UpdateRow {
                    repo: r.get(0)?,
                    stack: r.get(1)?,
                    service: r.get(2)?,
                    image: r.get(3)?,
                    current: r.get(4)?,
                    candidate: r.get(5)?,
                    policy: r.get(6)?,
                    state: r.get(7)?,
                    detail: r.get(8)?,
                    checked_at: r.get(9)?,
                    running_image: None,
                    candidate_image: None,
                })
            })
            .map_err(query("list the update findings"))?;
        rows.collect::<Result<_, _>>()
            .map_err(query("list the update findings"))
    }

    /// Kedge pushed `commit` moving `service` of the stack from `from` to `to`.
    pub fn record_update_commit(
        &self,
        stack_id: i64,
        commit: &str,
        service: &str,
        from: &str,
        to: &str,
    ) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO update_commits
                    (stack_id, commit_id, service, image_from, image_to, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![stack_id, commit, service, from, to, now_ms()],
            )
            .map_err(query("record a write-back commit"))?;
        Ok(())
    }

    /// The updates `commit` wrote for the stack, if Kedge wrote it:
    /// (service, from image, to image).
    pub fn update_commit(
        &self,
        stack_id: i64,
        commit: &str,
    ) -> Result<Vec<(String, String, String)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT service, image_from, image_to FROM update_commits
                 WHERE stack_id = ?1 AND commit_id = ?2 ORDER BY service",
            )
            .map_err(query("read a write-back commit"))?;
        let rows = stmt
            .query_map(params![stack_id, commit], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .map_err(query("read a write-back commit"))?;
        rows.collect::<Result<_, _>>()
            .map_err(query("read a write-back commit"))
    }

    /// The write-back commits of the stack for `service`, newest first:
    /// (commit, the image it moved to).
    pub fn update_commits_of(
        &self,
        stack_id: i64,
        service: &str,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT commit_id, image_to FROM update_commits
                 WHERE stack_id = ?1 AND service = ?2 ORDER BY created_at DESC",
            )
            .map_err(query("list write-back commits"))?;
        let rows = stmt
            .query_map(params![stack_id, service], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(query("list write-back commits"))?;
        rows.collect::<Result<_, _>>()
            .map_err(query("list write-back commits"))
    }

    /// The images the stack runs in place of Git's, by service.
    pub fn image_overrides(&self, stack_id: i64) -> Result<Vec<ImageOverride>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT service, base, image, previous FROM image_overrides
                 WHERE stack_id = ?1 ORDER BY service",
            )
            .map_err(query("list the image overrides"))?;
        let rows = stmt
            .query_map([stack_id], |r| {
                Ok(ImageOverride {
                    service: r.get(0)?,
                    base: r.get(1)?,
                    image: r.get(2)?,
                    previous: r.get(3)?,
                })
            })
            .map_err(query("list the image overrides"))?;
        rows.collect::<Result<_, _>>()
            .map_err(query("list the image overrides"))
    }

    /// The stack runs `o.image` for `o.service` from now on.
    pub fn set_image_override(&self, stack_id: i64, o: &ImageOverride) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO image_overrides (stack_id, service, base, image, previous)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![stack_id, o.service, o.base, o.image, o.previous],
            )
            .map_err(query("record an image override"))?;
        Ok(())
    }

    /// `service` runs Git's image again.
    pub fn remove_image_override(&self, stack_id: i64, service: &str) -> Result<(), StoreError> {
        self.conn
            .execute(
                "DELETE FROM image_overrides WHERE stack_id = ?1 AND service = ?2",
                params![stack_id, service],
            )
            .map_err(query("remove an image override"))?;
        Ok(())
    }

    /// An override goes back to what ran before it: the image it replaced,
    /// or Git's when that was Git's.
    pub fn step_back_image_override(&self, stack_id: i64, service: &str) -> Result<(), StoreError> {
        let current = self
            .image_overrides(stack_id)?
            .into_iter()
            .find(|o| o.service == service);
        match current {
            Some(o) => match o.previous.clone().filter(|p| *p != o.base) {
                Some(previous) => self.set_image_override(
                    stack_id,
                    &ImageOverride {
                        image: previous,
                        previous: None,
                        ..o
                    },
                ),
                None => self.remove_image_override(stack_id, service),
            },
            None => Ok(()),
        }
    }

    /// Every stack's image overrides: (stack id, override).
    pub fn all_image_overrides(&self) -> Result<Vec<(i64, ImageOverride)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT stack_id, service, base, image, previous FROM image_overrides
                 ORDER BY stack_id, service",
            )
            .map_err(query("list the image overrides"))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get(0)?,
                    ImageOverride {
                        service: r.get(1)?,
                        base: r.get(2)?,
                        image: r.get(3)?,
                        previous: r.get(4)?,
                    },
                ))
            })
            .map_err(query("list the image overrides"))?;
        rows.collect::<Result<_, _>>()
            .map_err(query("list the image overrides"))
    }
}
