//! record: the event log.

use rusqlite::params;
use serde::Serialize;

use super::{Store, StoreError, now_ms, query};

/// A drift found, a heal done, a service backed off: what `status` shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    pub at: i64,
    pub kind: String,
    pub service: Option<String>,
    pub detail: String,
}

impl Store {
    pub fn add_event(
        &self,
        repo_id: i64,
        kind: &str,
        service: Option<&str>,
        detail: &str,
    ) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO events (repo_id, at, kind, service, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![repo_id, now_ms(), kind, service, detail],
            )
            .map_err(query("record event"))?;
        Ok(())
    }

    /// Newest first.
    pub fn events(&self, repo_id: i64, limit: usize) -> Result<Vec<Event>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT at, kind, service, detail FROM events WHERE repo_id = ?1 ORDER BY id DESC LIMIT ?2",
            )
            .map_err(query("list events"))?;
        let rows = stmt
            .query_map(params![repo_id, limit as i64], |r| {
                Ok(Event {
                    at: r.get(0)?,
                    kind: r.get(1)?,
                    service: r.get(2)?,
                    detail: r.get::<_, Option<String>>(3)?.unwrap_or_default(),
                })
            })
            .map_err(query("list events"))?;
        rows.collect::<Result<_, _>>().map_err(query("list events"))
    }
}
