//! record: the event log, in id order. Ids are never reused, so a follower
//! resumes after the last id it saw.

use rusqlite::params;

use super::{Store, StoreError, now_ms, query};
use crate::events::{Event, EventKind, NewEvent, Severity};

/// Which events to read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventQuery {
    pub repo: Option<String>,
    /// Only this stack's events (of `repo`).
    pub stack: Option<String>,
    /// Only events at or after this time (ms since the epoch).
    pub since: Option<i64>,
    /// Only events after this id, oldest first (a follower's next page);
    /// without it, the newest `limit` events.
    pub after_id: Option<i64>,
    pub limit: usize,
}

const COLUMNS: &str =
    "id, at, repo, kind, severity, service, commit_hash, message, fields, origin, stack";

impl Store {
    /// Stores an event happening now and returns its id.
    pub fn add_event(&self, e: &NewEvent) -> Result<i64, StoreError> {
        self.store_event(&Event::emitted(e.clone(), now_ms(), String::new()))
    }

    /// Stores an event `serve` emitted (its time and origin kept; an empty
    /// origin is none) and returns its id.
    pub fn store_event(&self, e: &Event) -> Result<i64, StoreError> {
        let fields = serde_json::Value::Object(e.fields.clone()).to_string();
        let origin = e.origin.as_deref().filter(|o| !o.is_empty());
        self.conn
            .prepare_cached(
                "INSERT INTO events (at, repo, kind, severity, service, commit_hash, message, fields, origin, stack)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )
            .and_then(|mut stmt| {
                stmt.execute(params![
                    e.time,
                    e.repo,
                    e.kind.as_str(),
                    e.severity.as_str(),
                    e.service,
                    e.commit,
                    e.message,
                    fields,
                    origin,
                    e.stack
                ])
            })
            .map_err(query("record event"))?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Events as `q` says, oldest first.
    /// Whether the log holds an event of repository `repo` (registered or
    /// removed).
    pub fn has_events_of(&self, repo: &str) -> Result<bool, StoreError> {
        self.conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM events WHERE repo = ?1)",
                [repo],
                |r| r.get(0),
            )
            .map_err(query("look up a repository's events"))
    }

    pub fn events(&self, q: &EventQuery) -> Result<Vec<Event>, StoreError> {
        let mut filters = Vec::new();
        let mut args: Vec<rusqlite::types::Value> = Vec::new();
        if let Some(repo) = &q.repo {
            args.push(repo.clone().into());
            filters.push(format!("repo = ?{}", args.len()));
        }
        if let Some(stack) = &q.stack {
            args.push(stack.clone().into());
            filters.push(format!("stack = ?{}", args.len()));
        }
        if let Some(since) = q.since {
            args.push(since.into());
            filters.push(format!("at >= ?{}", args.len()));
        }
        if let Some(after) = q.after_id {
            args.push(after.into());
            filters.push(format!("id > ?{}", args.len()));
        }
        let filter = if filters.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", filters.join(" AND "))
        };
        // A follower reads forward from its id; a listing takes the newest.
        let order = if q.after_id.is_some() { "ASC" } else { "DESC" };
        args.push((q.limit.min(i64::MAX as usize) as i64).into());
        let sql = format!(
            "SELECT {COLUMNS} FROM events {filter} ORDER BY id {order} LIMIT ?{}",
            args.len()
        );
        let mut stmt = self
            .conn
            .prepare_cached(&sql)
            .map_err(query("list events"))?;
        let rows = stmt
            .query_map(rusqlite::params_from_iter(args), row)
            .map_err(query("list events"))?;
        let mut out: Vec<Event> = rows
            .filter_map(|r| r.transpose())
            .collect::<Result<_, _>>()
            .map_err(query("list events"))?;
        if q.after_id.is_none() {
            out.reverse();
        }
        Ok(out)
    }

    /// The newest event's id (0 when there is none).
    pub fn last_event_id(&self) -> Result<i64, StoreError> {
        self.conn
            .query_row("SELECT coalesce(max(id), 0) FROM events", [], |r| r.get(0))
            .map_err(query("read the last event id"))
    }

    /// Deletes events older than `before` (ms since the epoch).
    pub fn delete_events_before(&self, before: i64) -> Result<usize, StoreError> {
        self.conn
            .execute("DELETE FROM events WHERE at < ?1", [before])
            .map_err(query("delete old events"))
    }
}

/// One row; a kind or severity this Kedge does not know (a newer one wrote
/// it) is skipped rather than failing the whole listing.
fn row(r: &rusqlite::Row) -> rusqlite::Result<Option<Event>> {
    let kind: String = r.get(3)?;
    let severity: String = r.get(4)?;
    let (Some(kind), Some(severity)) = (EventKind::parse(&kind), Severity::parse(&severity)) else {
        return Ok(None);
    };
    let fields: String = r.get(8)?;
    let fields = match serde_json::from_str(&fields) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    };
    Ok(Some(Event {
        id: r.get(0)?,
        time: r.get(1)?,
        repo: r.get(2)?,
        kind,
        severity,
        service: r.get(5)?,
        commit: r.get(6)?,
        message: r.get(7)?,
        fields,
        origin: r.get(9)?,
        stack: r.get(10)?,
    }))
}
