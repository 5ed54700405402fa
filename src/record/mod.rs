//! record: the SQLite store, last stage of the flow (source → desired →
//! observe → plan → apply → **record**). Repositories, every deployment and
//! the events `status` shows, and where each notification sink is in the
//! event log, live in `<data-dir>/kedge.db`.

pub mod credstore;
mod db;
mod deployments;
mod events;
mod migrations;
mod notify;
mod repos;
mod stacks;
mod state;
mod tokens;
mod updates;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OpenFlags};

pub use db::Db;
pub use deployments::{
    DeployStep, DeploySummary, Deployment, DeploymentStatus, INTERRUPTED, NewDeployment, Trigger,
    snapshot_key,
};
pub use events::EventQuery;
pub use migrations::{LATEST_VERSION, MIGRATIONS};
pub use notify::SentKey;
pub use repos::{NewRepo, Repo};
pub use stacks::Stack;
pub use state::{RepoState, ServiceRecord};
pub use tokens::{Role, Token};

pub const DB_FILE: &str = "kedge.db";
/// `PRAGMA application_id` of a Kedge database ("KEDG"): tells ours from a
/// foreign SQLite file that happens to sit at the same path.
pub const APPLICATION_ID: i32 = 0x4B45_4447;
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create data directory {}", path.display())]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot create database {}", path.display())]
    CreateFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open database {}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error(
        "{} is not a SQLite database; Kedge will not touch it (move it away or choose another --data-dir)",
        path.display()
    )]
    NotSqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error(
        "{} is a SQLite database of another application (application_id {application_id:#x}); Kedge will not touch it",
        path.display()
    )]
    Foreign { path: PathBuf, application_id: i32 },
    #[error(
        "{} is an empty file, not a Kedge database; Kedge will not touch it (move it away or choose another --data-dir)",
        path.display()
    )]
    Empty { path: PathBuf },
    #[error(
        "{} has schema version {found}, newer than this Kedge understands ({supported}); upgrade Kedge",
        path.display()
    )]
    TooNew {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    #[error("cannot configure database {}", path.display())]
    Configure {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("cannot upgrade database to schema version {version}")]
    Migrate {
        version: i64,
        #[source]
        source: rusqlite::Error,
    },
    #[error("a repository named '{0}' already exists")]
    DuplicateName(String),
    #[error("{url} (branch {branch}) is already registered as '{existing}'")]
    DuplicateUrl {
        url: String,
        branch: String,
        existing: String,
    },
    #[error("database query failed: {step}")]
    Query {
        step: &'static str,
        #[source]
        source: rusqlite::Error,
    },
    /// A value this Kedge has no meaning for (a newer Kedge wrote it, or
    /// the row was edited by hand): guessing one would act on a lie.
    #[error("the database holds {column} '{value}', which this Kedge does not know")]
    UnknownValue { column: &'static str, value: String },
    #[error("the store's writer has stopped: nothing more can be recorded")]
    WriterGone,
}

impl StoreError {
    /// Whether another connection held SQLite's lock past the busy timeout:
    /// worth trying again, unlike any other failure.
    pub fn is_busy(&self) -> bool {
        let source = match self {
            StoreError::Query { source, .. } | StoreError::Migrate { source, .. } => source,
            _ => return false,
        };
        matches!(
            source.sqlite_error_code(),
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
        )
    }
}

fn query(step: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError {
    move |source| match source {
        rusqlite::Error::FromSqlConversionFailure(at, ty, e) => {
            match e.downcast::<UnknownValue>() {
                Ok(u) => StoreError::UnknownValue {
                    column: u.column,
                    value: u.value,
                },
                Err(e) => StoreError::Query {
                    step,
                    source: rusqlite::Error::FromSqlConversionFailure(at, ty, e),
                },
            }
        }
        source => StoreError::Query { step, source },
    }
}

/// [`StoreError::UnknownValue`] on its way out of a row mapping, which can
/// only return a rusqlite error; [`query`] turns it back.
#[derive(Debug, thiserror::Error)]
#[error("unknown {column} '{value}'")]
struct UnknownValue {
    column: &'static str,
    value: String,
}

/// Text column `at` of a row (`column`, as errors name it) as one of the
/// values `parse` knows; any other value is an error, never a default.
fn known<T>(
    row: &rusqlite::Row,
    at: usize,
    column: &'static str,
    parse: impl Fn(&str) -> Option<T>,
) -> rusqlite::Result<T> {
    let value: String = row.get(at)?;
    parse(&value).ok_or_else(|| unknown(at, column, value))
}

/// [`known`] for a column that may be NULL.
fn known_opt<T>(
    row: &rusqlite::Row,
    at: usize,
    column: &'static str,
    parse: impl Fn(&str) -> Option<T>,
) -> rusqlite::Result<Option<T>> {
    row.get::<_, Option<String>>(at)?
        .map(|value| parse(&value).ok_or_else(|| unknown(at, column, value)))
        .transpose()
}

fn unknown(at: usize, column: &'static str, value: String) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        at,
        rusqlite::types::Type::Text,
        Box::new(UnknownValue { column, value }),
    )
}

pub use crate::time::{local_time, now_ms, rfc3339, rfc3339_ms};

pub struct Store {
    conn: Connection,
    path: PathBuf,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

impl Store {
    /// Opens (creating if needed) `<data_dir>/kedge.db` at the latest schema.
    ///
    /// The database holds repository credentials and compose snapshots with
    /// resolved environment values, the clones hold `.env` files: a data dir
    /// Kedge creates is private to its user (0700) and so is a new database
    /// (0600). A data dir that exists keeps the mode its operator gave it.
    pub fn open(data_dir: &Path) -> Result<Store, StoreError> {
        use std::os::unix::fs::DirBuilderExt;
        let create_err = |source| StoreError::CreateDir {
            path: data_dir.to_path_buf(),
            source,
        };
        if !data_dir.is_dir() {
            if let Some(parent) = data_dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).map_err(create_err)?;
            }
            match std::fs::DirBuilder::new().mode(0o700).create(data_dir) {
                Ok(()) => {}
                // Created meanwhile by another Kedge process.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(create_err(e)),
            }
        }
        let path = data_dir.join(DB_FILE);
        match std::fs::metadata(&path) {
            // An empty file is not a database Kedge made: a new one only
            // appears under this name once it is initialised (below).
            Ok(meta) if meta.len() == 0 => return Err(StoreError::Empty { path }),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Store::create(&path)?,
            Err(source) => {
                return Err(StoreError::Open {
                    path,
                    source: rusqlite::Error::ToSqlConversionFailure(Box::new(source)),
                });
            }
        }
        Store::open_file(&path, LATEST_VERSION)
    }

    /// Creates a new database at `path`, private (0600), initialised under a
    /// temporary name and then linked into place, so no other process ever
    /// sees it half made; a database another process created meanwhile wins.
    fn create(path: &Path) -> Result<(), StoreError> {
        use std::os::unix::fs::PermissionsExt;
        static CREATING: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = CREATING.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = path.with_file_name(format!(".{DB_FILE}.new-{}-{n}", std::process::id()));
        let file_err = |source| StoreError::CreateFile {
            path: path.to_path_buf(),
            source,
        };
        let _ = std::fs::remove_file(&tmp);
        // Created private before SQLite opens it; SQLite gives its -wal and
        // -shm files the database file's mode.
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(file_err)?;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(file_err)?;
        drop(file);
        let made = Store::open_file(&tmp, LATEST_VERSION).map(drop);
        let linked = made.and_then(|()| match std::fs::hard_link(&tmp, path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(file_err(e)),
        });
        for suffix in ["", "-wal", "-shm"] {
            let mut name = tmp.clone().into_os_string();
            name.push(suffix);
            let _ = std::fs::remove_file(name);
        }
        linked
    }

    /// Opens a database file and migrates it up to `target` (tests use an
    /// older target to build databases of earlier schema versions).
    pub fn open_file(path: &Path, target: i64) -> Result<Store, StoreError> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|source| StoreError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        let store = Store {
            conn,
            path: path.to_path_buf(),
        };
        // Identify the file before anything writes to it: a foreign or
        // corrupt file must be left exactly as it was.
        store.check_identity()?;
        store.configure()?;
        store.migrate(target)?;
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A connection for reads only, to a database [`Store::open`] made:
    /// no migration, and any write is refused (`query_only`).
    pub fn open_reader(path: &Path) -> Result<Store, StoreError> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|source| StoreError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        let configure = |source| StoreError::Configure {
            path: path.to_path_buf(),
            source,
        };
        conn.busy_timeout(BUSY_TIMEOUT).map_err(configure)?;
        conn.execute_batch("PRAGMA query_only = ON;")
            .map_err(configure)?;
        Ok(Store {
            conn,
            path: path.to_path_buf(),
        })
    }

    fn check_identity(&self) -> Result<(), StoreError> {
        let path = || self.path.clone();
        let read = |sql: &str| -> Result<i64, rusqlite::Error> {
            self.conn.query_row(sql, [], |r| r.get(0))
        };
        let classify = |source: rusqlite::Error| match source.sqlite_error_code() {
            Some(ErrorCode::NotADatabase) => StoreError::NotSqlite {
                path: path(),
                source,
            },
            _ => StoreError::Open {
                path: path(),
                source,
            },
        };
        let objects = read("SELECT count(*) FROM sqlite_master").map_err(classify)?;
        let application_id = read("PRAGMA application_id").map_err(classify)? as i32;
        let version = read("PRAGMA user_version").map_err(classify)?;
        let empty = objects == 0 && version == 0;
        if application_id != APPLICATION_ID && !(empty && application_id == 0) {
            return Err(StoreError::Foreign {
                path: path(),
                application_id,
            });
        }
        if version > LATEST_VERSION {
            return Err(StoreError::TooNew {
                path: path(),
                found: version,
                supported: LATEST_VERSION,
            });
        }
        Ok(())
    }

    fn configure(&self) -> Result<(), StoreError> {
        let configure = |source| StoreError::Configure {
            path: self.path.clone(),
            source,
        };
        self.conn.busy_timeout(BUSY_TIMEOUT).map_err(configure)?;
        // journal_mode returns a row, so it is read rather than executed.
        let _: String = self
            .conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(configure)?;
        self.conn
            .execute_batch("PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;")
            .map_err(configure)?;
        // Migration 4 keys the snapshots it moves by their sha256.
        self.conn
            .create_scalar_function(
                "kedge_sha256",
                1,
                rusqlite::functions::FunctionFlags::SQLITE_UTF8
                    | rusqlite::functions::FunctionFlags::SQLITE_DETERMINISTIC,
                |ctx| Ok(snapshot_key(&ctx.get::<String>(0)?)),
            )
            .map_err(configure)
    }

    pub fn schema_version(&self) -> Result<i64, StoreError> {
        self.conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(query("read schema version"))
    }

    fn migrate(&self, target: i64) -> Result<(), StoreError> {
        self.migrate_from(self.schema_version()?, target)
    }

    /// Migrates from `current`, the version read before: each step checks
    /// again under the write lock.
    fn migrate_from(&self, current: i64, target: i64) -> Result<(), StoreError> {
        for (i, sql) in MIGRATIONS.iter().enumerate() {
            let version = i as i64 + 1;
            if version <= current || version > target {
                continue;
            }
            let step = |source| StoreError::Migrate { version, source };
            // One transaction per version: a crash leaves the previous version intact.
            self.conn.execute_batch("BEGIN IMMEDIATE").map_err(step)?;
            // Another process opening the same old database may have applied
            // it while this one waited for the write lock.
            let now: i64 = match self.conn.query_row("PRAGMA user_version", [], |r| r.get(0)) {
                Ok(v) => v,
                Err(source) => {
                    let _ = self.conn.execute_batch("ROLLBACK");
                    return Err(StoreError::Migrate { version, source });
                }
            };
            if now >= version {
                self.conn.execute_batch("COMMIT").map_err(step)?;
                continue;
            }
            let data_dir = self.path.parent().unwrap_or(Path::new("."));
            let applied = self
                .conn
                .execute_batch(sql)
                .and_then(|_| match migrations::code_step(version) {
                    Some(step) => step(&self.conn, data_dir),
                    None => Ok(()),
                })
                .and_then(|_| {
                    self.conn.execute_batch(&format!(
                        "PRAGMA user_version = {version}; PRAGMA application_id = {APPLICATION_ID};"
                    ))
                });
            match applied {
                Ok(()) => {
                    self.conn.execute_batch("COMMIT").map_err(step)?;
                    if migrations::scrubs(version) {
                        // Best effort: another reader may hold the WAL.
                        let _ = self.conn.execute_batch(
                            "PRAGMA wal_checkpoint(TRUNCATE); PRAGMA secure_delete = OFF;",
                        );
                    }
                }
                Err(source) => {
                    let _ = self.conn.execute_batch("ROLLBACK");
                    return Err(StoreError::Migrate { version, source });
                }
            }
        }
        Ok(())
    }

    /// Runs `f` in one transaction: all of it or none of it.
    pub fn with_transaction<T>(
        &mut self,
        f: impl FnOnce(&Store) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.conn
            .execute_batch("BEGIN IMMEDIATE")
            .map_err(query("begin transaction"))?;
        match f(self) {
            Ok(v) => {
                self.conn
                    .execute_batch("COMMIT")
                    .map_err(query("commit transaction"))?;
                Ok(v)
            }
            Err(e) => {
                let _ = self.conn.execute_batch("ROLLBACK");
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests;
