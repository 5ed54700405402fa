//! record: the SQLite store, last stage of the flow (source → desired →
//! observe → plan → apply → **record**). Repositories, every deployment and
//! the events `status` shows live in `<data-dir>/kedge.db`.

mod migrations;

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::TimeZone;
use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, params};
use serde::Serialize;

use crate::desired::render::ServiceSpec;

pub use migrations::{LATEST_VERSION, MIGRATIONS};

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
}

fn query(step: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError {
    move |source| StoreError::Query { step, source }
}

/// RFC 3339 in UTC, for JSON.
pub fn rfc3339(ms: i64) -> String {
    chrono::Utc
        .timestamp_millis_opt(ms)
        .single()
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

/// RFC 3339 in UTC to the millisecond: history is ordered by it.
pub fn rfc3339_ms(ms: i64) -> String {
    chrono::Utc
        .timestamp_millis_opt(ms)
        .single()
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// `YYYY-MM-DD HH:MM:SS` in local time, for people.
pub fn local_time(ms: i64) -> String {
    chrono::Utc
        .timestamp_millis_opt(ms)
        .single()
        .map(|t| {
            chrono::DateTime::<chrono::Local>::from(t)
                .format("%Y-%m-%d %H:%M:%S")
                .to_string()
        })
        .unwrap_or_default()
}

/// The key a compose snapshot is stored under: the sha256 of its text.
pub fn snapshot_key(content: &str) -> String {
    use sha2::Digest;
    crate::desired::render::hex(&sha2::Sha256::digest(content.as_bytes()))
}

/// Milliseconds since the Unix epoch, UTC: how every time is stored.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Repo {
    pub id: i64,
    pub name: String,
    pub url: String,
    pub branch: String,
    pub created_at: i64,
    /// From the last rendered kedge.yaml; `None` before the first clone.
    pub mode: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRepo<'a> {
    pub name: &'a str,
    pub url: &'a str,
    pub branch: &'a str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
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

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Deployment {
    pub id: i64,
    pub repo_id: i64,
    pub commit: String,
    pub message: String,
    pub status: DeploymentStatus,
    pub trigger: String,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    pub duration_ms: Option<i64>,
    pub compose_snapshot: Option<String>,
    pub services_changed: Option<Vec<String>>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDeployment<'a> {
    pub repo_id: i64,
    pub commit: &'a str,
    pub message: &'a str,
    pub trigger: &'a str,
    pub compose_snapshot: Option<&'a str>,
}

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

/// A drift found, a heal done, a service backed off: what `status` shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    pub at: i64,
    pub kind: String,
    pub service: Option<String>,
    pub detail: String,
}

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
        let current = self.schema_version()?;
        for (i, sql) in MIGRATIONS.iter().enumerate() {
            let version = i as i64 + 1;
            if version <= current || version > target {
                continue;
            }
            let step = |source| StoreError::Migrate { version, source };
            // One transaction per version: a crash leaves the previous version intact.
            self.conn.execute_batch("BEGIN IMMEDIATE").map_err(step)?;
            let applied = self.conn.execute_batch(sql).and_then(|_| {
                self.conn.execute_batch(&format!(
                    "PRAGMA user_version = {version}; PRAGMA application_id = {APPLICATION_ID};"
                ))
            });
            match applied {
                Ok(()) => self.conn.execute_batch("COMMIT").map_err(step)?,
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

    // ---- repositories ----

    pub fn add_repo(&mut self, new: &NewRepo) -> Result<Repo, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(query("begin add repository"))?;
        let by_name: Option<i64> = tx
            .query_row(
                "SELECT id FROM repositories WHERE name = ?1",
                [new.name],
                |r| r.get(0),
            )
            .optional()
            .map_err(query("look up repository name"))?;
        if by_name.is_some() {
            return Err(StoreError::DuplicateName(new.name.to_string()));
        }
        let same_branch: Vec<(String, String)> = {
            let mut stmt = tx
                .prepare("SELECT name, url FROM repositories WHERE branch = ?1")
                .map_err(query("look up repository url"))?;
            stmt.query_map([new.branch], |r| Ok((r.get(0)?, r.get(1)?)))
                .and_then(|rows| rows.collect())
                .map_err(query("look up repository url"))?
        };
        if let Some((existing, _)) = same_branch
            .into_iter()
            .find(|(_, url)| crate::source::url::same_repository(url, new.url))
        {
            return Err(StoreError::DuplicateUrl {
                url: crate::source::url::redact(new.url),
                branch: new.branch.to_string(),
                existing,
            });
        }
        let created_at = now_ms();
        tx.execute(
            "INSERT INTO repositories (name, url, branch, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![new.name, new.url, new.branch, created_at],
        )
        .map_err(query("insert repository"))?;
        let id = tx.last_insert_rowid();
        tx.commit().map_err(query("commit add repository"))?;
        Ok(Repo {
            id,
            name: new.name.to_string(),
            url: new.url.to_string(),
            branch: new.branch.to_string(),
            created_at,
            mode: None,
        })
    }

    const REPO_COLUMNS: &'static str = "r.id, r.name, r.url, r.branch, r.created_at, s.mode \
         FROM repositories r LEFT JOIN repo_state s ON s.repo_id = r.id";

    fn repo_row(row: &rusqlite::Row) -> rusqlite::Result<Repo> {
        Ok(Repo {
            id: row.get(0)?,
            name: row.get(1)?,
            url: row.get(2)?,
            branch: row.get(3)?,
            created_at: row.get(4)?,
            mode: row.get(5)?,
        })
    }

    /// All repositories, by name.
    pub fn repos(&self) -> Result<Vec<Repo>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!("SELECT {} ORDER BY r.name", Self::REPO_COLUMNS))
            .map_err(query("list repositories"))?;
        let rows = stmt
            .query_map([], Self::repo_row)
            .map_err(query("list repositories"))?;
        rows.collect::<Result<_, _>>()
            .map_err(query("list repositories"))
    }

    pub fn repo(&self, name: &str) -> Result<Option<Repo>, StoreError> {
        self.conn
            .query_row(
                &format!("SELECT {} WHERE r.name = ?1", Self::REPO_COLUMNS),
                [name],
                Self::repo_row,
            )
            .optional()
            .map_err(query("look up repository"))
    }

    pub fn repo_by_id(&self, id: i64) -> Result<Option<Repo>, StoreError> {
        self.conn
            .query_row(
                &format!("SELECT {} WHERE r.id = ?1", Self::REPO_COLUMNS),
                [id],
                Self::repo_row,
            )
            .optional()
            .map_err(query("look up repository"))
    }

    /// Deletes the repository with its history and events, and the
    /// snapshots no other deployment shares. False if unknown.
    pub fn remove_repo(&self, name: &str) -> Result<bool, StoreError> {
        let n = self
            .conn
            .execute("DELETE FROM repositories WHERE name = ?1", [name])
            .map_err(query("remove repository"))?;
        self.conn
            .execute(
                "DELETE FROM snapshots WHERE NOT EXISTS
                     (SELECT 1 FROM deployments WHERE snapshot = snapshots.sha256)",
                [],
            )
            .map_err(query("remove unused snapshots"))?;
        Ok(n > 0)
    }

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

    // ---- events ----

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

    // ---- deployments ----

    /// Records the start of an apply; finish it with [`Store::finish_deployment`].
    /// Its compose snapshot is stored once per content, shared by every
    /// deployment of the same rendered project.
    pub fn begin_deployment(&self, d: &NewDeployment) -> Result<i64, StoreError> {
        let key = d.compose_snapshot.map(snapshot_key);
        if let (Some(key), Some(content)) = (&key, d.compose_snapshot) {
            self.conn
                .execute(
                    "INSERT OR IGNORE INTO snapshots (sha256, content) VALUES (?1, ?2)",
                    params![key, content],
                )
                .map_err(query("store compose snapshot"))?;
        }
        self.conn
            .execute(
                "INSERT INTO deployments (repo_id, commit_hash, commit_message, status, trigger, started_at, snapshot)
                 VALUES (?1, ?2, ?3, 'in_progress', ?4, ?5, ?6)",
                params![d.repo_id, d.commit, d.message, d.trigger, now_ms(), key],
            )
            .map_err(query("record deployment start"))?;
        Ok(self.conn.last_insert_rowid())
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

    /// A repository's deployments left `in_progress` become `failed`
    /// ("interrupted"). Only for the holder of the repository's lock: every
    /// apply holds it, so an unfinished row then has no live owner.
    pub fn fail_interrupted(&self, repo_id: i64) -> Result<usize, StoreError> {
        self.conn
            .execute(
                "UPDATE deployments SET status = 'failed', finished_at = ?1,
                 error = coalesce(error, 'interrupted: Kedge stopped before the apply finished')
                 WHERE repo_id = ?2 AND status = 'in_progress'",
                params![now_ms(), repo_id],
            )
            .map_err(query("close interrupted deployments"))
    }

    /// Newest first.
    pub fn deployments(&self, repo_id: i64, limit: usize) -> Result<Vec<Deployment>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT d.id, d.repo_id, d.commit_hash, d.commit_message, d.status, d.trigger,
                        d.started_at, d.finished_at, d.duration_ms,
                        coalesce(s.content, d.compose_snapshot), d.services_changed, d.error
                 FROM deployments d LEFT JOIN snapshots s ON s.sha256 = d.snapshot
                 WHERE d.repo_id = ?1 ORDER BY d.id DESC LIMIT ?2",
            )
            .map_err(query("list deployments"))?;
        let rows = stmt
            .query_map(params![repo_id, limit as i64], |row| {
                let status: String = row.get(4)?;
                let changed: Option<String> = row.get(10)?;
                Ok(Deployment {
                    id: row.get(0)?,
                    repo_id: row.get(1)?,
                    commit: row.get(2)?,
                    message: row.get(3)?,
                    status: DeploymentStatus::parse(&status).unwrap_or(DeploymentStatus::Failed),
                    trigger: row.get(5)?,
                    started_at: row.get(6)?,
                    finished_at: row.get(7)?,
                    duration_ms: row.get(8)?,
                    compose_snapshot: row.get(9)?,
                    services_changed: changed.and_then(|c| serde_json::from_str(&c).ok()),
                    error: row.get(11)?,
                })
            })
            .map_err(query("list deployments"))?;
        rows.collect::<Result<_, _>>()
            .map_err(query("list deployments"))
    }
}

#[cfg(test)]
mod tests;
