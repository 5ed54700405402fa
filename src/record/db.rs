//! record: the store behind an async boundary. One thread owns the write
//! connection and runs writes one after another, in the order they were
//! sent; reads take a connection of their own from a small pool. In WAL a
//! reader never waits for a writer, this process's or another one's, so a
//! read is short wherever it runs; a write that waits for SQLite's lock
//! (another process's transaction) holds up only whoever awaits it.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::{Store, StoreError};

/// Idle reader connections kept open; more are opened while needed.
const IDLE_READERS: usize = 4;
/// How long a write sent with [`Db::write_later`] is retried while another
/// process holds the write lock, before it is given up (and logged).
const LATER_PATIENCE: Duration = Duration::from_secs(600);
const LATER_RETRY: Duration = Duration::from_millis(500);

type Job = Box<dyn FnOnce(&mut Store) + Send>;

pub struct Db {
    path: PathBuf,
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    readers: Mutex<Vec<Store>>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").field("path", &self.path).finish()
    }
}

/// The writer thread has ended (a panic in a write): nothing more is written.
fn writer_gone() -> StoreError {
    StoreError::WriterGone
}

impl Db {
    /// Takes `store` (opened and migrated) as the write connection.
    pub fn new(store: Store) -> Db {
        let path = store.path().to_path_buf();
        let (tx, rx) = mpsc::channel::<Job>();
        let writer = std::thread::Builder::new()
            .name("kedge-store".into())
            .spawn(move || {
                let mut store = store;
                for job in rx {
                    job(&mut store);
                }
            })
            .ok();
        Db {
            path,
            jobs: Mutex::new(writer.as_ref().map(|_| tx)),
            writer: Mutex::new(writer),
            readers: Mutex::new(Vec::new()),
        }
    }

    /// Opens `<data_dir>/kedge.db` (creating and migrating it as
    /// [`Store::open`] does).
    pub fn open(data_dir: &Path) -> Result<Db, StoreError> {
        Store::open(data_dir).map(Db::new)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs a read on a reader connection of its own. Never waits for a
    /// writer: short enough to run where it is called.
    pub fn read<T>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let idle = self.lock_readers().pop();
        let reader = match idle {
            Some(reader) => reader,
            None => Store::open_reader(&self.path)?,
        };
        let out = f(&reader);
        let mut idle = self.lock_readers();
        if idle.len() < IDLE_READERS {
            idle.push(reader);
        }
        out
    }

    /// Runs a write on the writer thread, after every write sent before it,
    /// and waits for its result without holding a thread of the runtime.
    pub async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.send(Box::new(move |store| {
            let _ = tx.send(f(store));
        }))?;
        rx.await.map_err(|_| writer_gone())?
    }

    /// [`Db::write`] for a caller outside any runtime (a command line's
    /// setup, a test): blocks the calling thread.
    pub fn write_blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.send(Box::new(move |store| {
            let _ = tx.send(f(store));
        }))?;
        rx.recv().map_err(|_| writer_gone())?
    }

    /// Sends a write nobody waits for (an event, a token's last use): it
    /// runs in order with the others and, while another process holds the
    /// write lock, is tried again for up to ten minutes. A failure is
    /// logged as `what`.
    pub fn write_later(
        &self,
        what: &'static str,
        mut f: impl FnMut(&mut Store) -> Result<(), StoreError> + Send + 'static,
    ) {
        let sent = self.send(Box::new(move |store| {
            let started = std::time::Instant::now();
            loop {
                match f(store) {
                    Ok(()) => return,
                    Err(e) if e.is_busy() && started.elapsed() < LATER_PATIENCE => {
                        std::thread::sleep(LATER_RETRY);
                    }
                    Err(e) => {
                        tracing::warn!("cannot {what}: {}", crate::error_chain(&e));
                        return;
                    }
                }
            }
        }));
        if let Err(e) = sent {
            tracing::warn!("cannot {what}: {}", crate::error_chain(&e));
        }
    }

    /// Waits until every write sent so far has run (a command line about
    /// to exit; tests).
    pub fn flush(&self) {
        let _ = self.write_blocking(|_| Ok(()));
    }

    fn send(&self, job: Job) -> Result<(), StoreError> {
        let jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        jobs.as_ref()
            .ok_or_else(writer_gone)?
            .send(job)
            .map_err(|_| writer_gone())
    }

    fn lock_readers(&self) -> std::sync::MutexGuard<'_, Vec<Store>> {
        self.readers.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for Db {
    /// Writes sent and not yet run are run before the process goes on: a
    /// command line's last events are not lost at its exit.
    fn drop(&mut self) {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(writer) = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = writer.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{EventKind, NewEvent};

    fn db() -> (tempfile::TempDir, Db) {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path()).unwrap();
        (dir, db)
    }

    #[tokio::test]
    async fn writes_run_in_order_and_reads_see_them() {
        let (_dir, db) = db();
        for i in 0..5 {
            db.write_later("record event", move |s| {
                s.add_event(&NewEvent::new("app", EventKind::RepoAdded, format!("n{i}")))
                    .map(drop)
            });
        }
        let last = db.write(|s| s.last_event_id()).await.unwrap();
        assert_eq!(last, 5);
        let messages: Vec<String> = db
            .read(|s| s.events(&Default::default()))
            .unwrap()
            .into_iter()
            .map(|e| e.message)
            .collect();
        assert!(messages.is_empty(), "limit 0 reads nothing: {messages:?}");
        let all = db
            .read(|s| {
                s.events(&crate::record::EventQuery {
                    limit: 10,
                    ..Default::default()
                })
            })
            .unwrap();
        let messages: Vec<&str> = all.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(messages, ["n0", "n1", "n2", "n3", "n4"]);
    }

    #[test]
    fn a_reader_refuses_to_write() {
        let (_dir, db) = db();
        let err = db
            .read(|s| s.add_event(&NewEvent::new("app", EventKind::RepoAdded, "x")))
            .unwrap_err();
        assert!(matches!(err, StoreError::Query { .. }), "{err:?}");
    }

    /// The regression the async boundary is for: another process's write
    /// transaction holds SQLite's lock, and reads go on at once while the
    /// writes sent meanwhile wait and land once it ends.
    #[tokio::test]
    async fn reads_do_not_wait_for_another_writers_transaction() {
        let (dir, db) = db();
        let foreign = rusqlite::Connection::open(dir.path().join(super::super::DB_FILE)).unwrap();
        foreign.execute_batch("BEGIN IMMEDIATE").unwrap();
        db.write_later("record event", |s| {
            s.add_event(&NewEvent::new("app", EventKind::RepoAdded, "later"))
                .map(drop)
        });
        let started = std::time::Instant::now();
        for _ in 0..20 {
            assert_eq!(db.read(|s| s.last_event_id()).unwrap(), 0);
        }
        // Generous: a read that waited would take the busy timeout (10 s).
        assert!(started.elapsed() < Duration::from_secs(5));
        foreign.execute_batch("COMMIT").unwrap();
        db.flush();
        assert_eq!(db.read(|s| s.last_event_id()).unwrap(), 1);
    }
}
