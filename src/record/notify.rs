//! record: where each notification sink is in the event log, and when it
//! last sent each failure (for `repeat_interval`).

use rusqlite::{OptionalExtension, params};

use super::{Store, StoreError, now_ms, query};

/// A failure a sink has sent: what `repeat_interval` suppresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentKey<'a> {
    /// A digest of (repo, kind, service, message).
    pub key: &'a str,
    pub repo: &'a str,
    pub service: Option<&'a str>,
}

impl Store {
    /// The sink's cursor: the id of the last event it dealt with. A sink
    /// seen for the first time starts at `start` (the log's end: it is not
    /// sent the history that predates it).
    pub fn notify_cursor(&self, sink: &str, start: i64) -> Result<i64, StoreError> {
        self.conn
            .execute(
                "INSERT INTO notify_cursors (sink, event_id, updated_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (sink) DO NOTHING",
                params![sink, start, now_ms()],
            )
            .map_err(query("start a notification cursor"))?;
        self.conn
            .query_row(
                "SELECT event_id FROM notify_cursors WHERE sink = ?1",
                [sink],
                |r| r.get(0),
            )
            .map_err(query("read a notification cursor"))
    }

    /// Moves the sink's cursor to `event_id`, and records `sent` with it:
    /// both or neither.
    pub fn notify_advance(
        &mut self,
        sink: &str,
        event_id: i64,
        sent: Option<SentKey>,
    ) -> Result<(), StoreError> {
        self.with_transaction(|store| {
            let now = now_ms();
            store
                .conn
                .execute(
                    "UPDATE notify_cursors SET event_id = ?2, updated_at = ?3
                     WHERE sink = ?1 AND event_id < ?2",
                    params![sink, event_id, now],
                )
                .map_err(query("move a notification cursor"))?;
            if let Some(sent) = sent {
                store
                    .conn
                    .execute(
                        "INSERT INTO notify_sent (sink, key, repo, service, sent_at)
                         VALUES (?1, ?2, ?3, ?4, ?5)
                         ON CONFLICT (sink, key) DO UPDATE SET sent_at = excluded.sent_at",
                        params![sink, sent.key, sent.repo, sent.service, now],
                    )
                    .map_err(query("record a sent notification"))?;
            }
            Ok(())
        })
    }

    /// When the sink last sent this failure (ms since the epoch).
    pub fn notify_sent_at(&self, sink: &str, key: &str) -> Result<Option<i64>, StoreError> {
        self.conn
            .query_row(
                "SELECT sent_at FROM notify_sent WHERE sink = ?1 AND key = ?2",
                [sink, key],
                |r| r.get(0),
            )
            .optional()
            .map_err(query("read a sent notification"))
    }

    /// A success: the repository's failures (only `service`'s, when given)
    /// are sent again at once the next time they happen.
    pub fn notify_clear(
        &self,
        sink: &str,
        repo: &str,
        service: Option<&str>,
    ) -> Result<usize, StoreError> {
        match service {
            Some(service) => self.conn.execute(
                "DELETE FROM notify_sent WHERE sink = ?1 AND repo = ?2 AND service = ?3",
                [sink, repo, service],
            ),
            None => self.conn.execute(
                "DELETE FROM notify_sent WHERE sink = ?1 AND repo = ?2",
                [sink, repo],
            ),
        }
        .map_err(query("clear sent notifications"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_starts_once_and_only_moves_forward() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        assert_eq!(store.notify_cursor("ops", 7).unwrap(), 7);
        // A second start (a restart of serve) keeps where it was.
        assert_eq!(store.notify_cursor("ops", 99).unwrap(), 7);
        store.notify_advance("ops", 9, None).unwrap();
        store.notify_advance("ops", 8, None).unwrap();
        assert_eq!(store.notify_cursor("ops", 0).unwrap(), 9);
        assert_eq!(store.notify_cursor("other", 3).unwrap(), 3);
        // Reopened, as after a kill -9.
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.notify_cursor("ops", 0).unwrap(), 9);
    }

    #[test]
    fn sent_failures_are_remembered_per_sink_and_cleared_by_a_success() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        store.notify_cursor("ops", 0).unwrap();
        store.notify_cursor("mail", 0).unwrap();
        let web = SentKey {
            key: "k1",
            repo: "app",
            service: Some("web"),
        };
        let deploy = SentKey {
            key: "k2",
            repo: "app",
            service: None,
        };
        store.notify_advance("ops", 1, Some(web)).unwrap();
        store.notify_advance("ops", 2, Some(deploy)).unwrap();
        assert!(store.notify_sent_at("ops", "k1").unwrap().is_some());
        assert_eq!(store.notify_sent_at("mail", "k1").unwrap(), None);
        assert_eq!(store.notify_clear("ops", "app", Some("web")).unwrap(), 1);
        assert_eq!(store.notify_sent_at("ops", "k1").unwrap(), None);
        assert!(store.notify_sent_at("ops", "k2").unwrap().is_some());
        assert_eq!(store.notify_clear("ops", "app", None).unwrap(), 1);
        assert_eq!(store.notify_sent_at("ops", "k2").unwrap(), None);
        assert_eq!(store.notify_cursor("ops", 0).unwrap(), 2);
    }
}
