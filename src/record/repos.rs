//! record: registered repositories.

use std::path::{Path, PathBuf};

use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use super::{Store, StoreError, known_opt, now_ms, query};
use crate::config::registries::SecretRef;
use crate::model::git_auth::{DEFAULT_TOKEN_USER, GitAuth};
use crate::model::url::RepoUrl;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Repo {
    pub id: i64,
    pub name: String,
    /// Shown redacted wherever it is shown.
    pub url: RepoUrl,
    pub branch: String,
    pub created_at: i64,
    /// From the last rendered kedge.yaml; `None` before the first clone.
    pub mode: Option<crate::model::settings::Mode>,
    /// The file holding this repository's own webhook secret, the only
    /// one its hooks are verified with (`repo add --webhook-secret-file`).
    pub webhook_secret_file: Option<PathBuf>,
    /// Credentials by reference (`repo add --ssh-key`, `--token-*`).
    pub auth: GitAuth,
    /// The global config's credential it authenticates with, by name
    /// (`--credential`, the API's `credential`): resolved at each start.
    pub credential: Option<String>,
    /// The global config's webhook secret that alone triggers it, by name.
    pub webhook_secret: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRepo<'a> {
    pub name: &'a str,
    pub url: &'a str,
    pub branch: &'a str,
    pub webhook_secret_file: Option<&'a Path>,
    pub auth: &'a GitAuth,
    pub credential: Option<&'a str>,
    pub webhook_secret: Option<&'a str>,
}

/// The credential columns of a repository row.
struct AuthColumns {
    ssh_key_file: Option<String>,
    ssh_known_hosts_file: Option<String>,
    token_file: Option<String>,
    token_env: Option<String>,
    token_username: Option<String>,
}

impl AuthColumns {
    fn of(auth: &GitAuth) -> Self {
        let path = |p: &Path| p.to_string_lossy().into_owned();
        let mut c = AuthColumns {
            ssh_key_file: None,
            ssh_known_hosts_file: None,
            token_file: None,
            token_env: None,
            token_username: None,
        };
        match auth {
            GitAuth::None => {}
            GitAuth::SshKey { key, known_hosts } => {
                c.ssh_key_file = Some(path(key));
                c.ssh_known_hosts_file = known_hosts.as_deref().map(path);
            }
            GitAuth::Token { token, username } => {
                match token {
                    SecretRef::File(p) => c.token_file = Some(path(p)),
                    SecretRef::Env(v) => c.token_env = Some(v.clone()),
                    // Only named credentials resolve to these, and names
                    // are stored instead.
                    SecretRef::Unusable(_) => {}
                }
                c.token_username = Some(username.clone());
            }
        }
        c
    }

    fn auth(self) -> GitAuth {
        let token = match (self.token_file, self.token_env) {
            (Some(file), _) => Some(SecretRef::File(file.into())),
            (None, Some(var)) => Some(SecretRef::Env(var)),
            (None, None) => None,
        };
        match (self.ssh_key_file, token) {
            (Some(key), _) => GitAuth::SshKey {
                key: key.into(),
                known_hosts: self.ssh_known_hosts_file.map(PathBuf::from),
            },
            (None, Some(token)) => GitAuth::Token {
                token,
                username: self
                    .token_username
                    .unwrap_or_else(|| DEFAULT_TOKEN_USER.to_string()),
            },
            (None, None) => GitAuth::None,
        }
    }
}

impl Store {
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
            .find(|(_, url)| crate::model::url::same_repository(url, new.url))
        {
            return Err(StoreError::DuplicateUrl {
                url: crate::model::url::redact(new.url),
                branch: new.branch.to_string(),
                existing,
            });
        }
        let created_at = now_ms();
        let secret_file = new
            .webhook_secret_file
            .map(|p| p.to_string_lossy().into_owned());
        let auth = AuthColumns::of(new.auth);
        // A repository and its root stack share one id, taken from both
        // tables: everything keyed by the root stack finds it by the
        // repository's id, as before stacks existed.
        let id: i64 = tx
            .query_row(
                "SELECT max(coalesce((SELECT max(id) FROM repositories), 0),
                            coalesce((SELECT max(id) FROM stacks), 0)) + 1",
                [],
                |r| r.get(0),
            )
            .map_err(query("pick a repository id"))?;
        tx.execute(
            "INSERT INTO repositories (id, name, url, branch, created_at, webhook_secret_file,
                 ssh_key_file, ssh_known_hosts_file, token_file, token_env, token_username,
                 credential, webhook_secret)
             VALUES (?13, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            params![
                new.name,
                new.url,
                new.branch,
                created_at,
                secret_file,
                auth.ssh_key_file,
                auth.ssh_known_hosts_file,
                auth.token_file,
                auth.token_env,
                auth.token_username,
                new.credential,
                new.webhook_secret,
                id
            ],
        )
        .map_err(query("insert repository"))?;
        tx.execute(
            "INSERT INTO stacks (id, repo_id, name, path, root, created_at)
             VALUES (?1, ?1, '', '', 1, ?2)",
            params![id, created_at],
        )
        .map_err(query("insert the repository's root stack"))?;
        tx.commit().map_err(query("commit add repository"))?;
        Ok(Repo {
            id,
            name: new.name.to_string(),
            url: RepoUrl::new(new.url),
            branch: new.branch.to_string(),
            created_at,
            mode: None,
            webhook_secret_file: new.webhook_secret_file.map(Path::to_path_buf),
            auth: new.auth.clone(),
            credential: new.credential.map(str::to_string),
            webhook_secret: new.webhook_secret.map(str::to_string),
        })
    }

    const REPO_COLUMNS: &'static str = "r.id, r.name, r.url, r.branch, r.created_at, s.mode, \
         r.webhook_secret_file, r.ssh_key_file, r.ssh_known_hosts_file, r.token_file, \
         r.token_env, r.token_username, r.credential, r.webhook_secret \
         FROM repositories r LEFT JOIN stack_state s ON s.stack_id = r.id";

    fn repo_row(row: &rusqlite::Row) -> rusqlite::Result<Repo> {
        Ok(Repo {
            id: row.get(0)?,
            name: row.get(1)?,
            url: RepoUrl::new(row.get::<_, String>(2)?),
            branch: row.get(3)?,
            created_at: row.get(4)?,
            mode: known_opt(row, 5, "mode", crate::model::settings::Mode::parse)?,
            webhook_secret_file: row.get::<_, Option<String>>(6)?.map(PathBuf::from),
            auth: AuthColumns {
                ssh_key_file: row.get(7)?,
                ssh_known_hosts_file: row.get(8)?,
                token_file: row.get(9)?,
                token_env: row.get(10)?,
                token_username: row.get(11)?,
            }
            .auth(),
            credential: row.get(12)?,
            webhook_secret: row.get(13)?,
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
        self.delete_unused_snapshots()?;
        Ok(n > 0)
    }

    /// Snapshots no deployment refers to any more.
    pub(super) fn delete_unused_snapshots(&self) -> Result<(), StoreError> {
        self.conn
            .execute(
                "DELETE FROM snapshots WHERE NOT EXISTS
                     (SELECT 1 FROM deployments WHERE snapshot = snapshots.sha256)",
                [],
            )
            .map_err(query("remove unused snapshots"))?;
        Ok(())
    }

    /// Renames a repository; its deployments and state follow by id, its
    /// events and notification keys by name, in one transaction.
    pub fn rename_repo(&mut self, old: &str, new: &str) -> Result<(), StoreError> {
        self.with_transaction(|s| {
            let taken: bool = s
                .conn
                .query_row(
                    "SELECT EXISTS (SELECT 1 FROM repositories WHERE name = ?1)",
                    [new],
                    |r| r.get(0),
                )
                .map_err(query("look up a repository name"))?;
            if taken {
                return Err(StoreError::DuplicateName(new.to_string()));
            }
            for (sql, step) in [
                (
                    "UPDATE repositories SET name = ?2 WHERE name = ?1",
                    "rename repository",
                ),
                (
                    "UPDATE events SET repo = ?2 WHERE repo = ?1",
                    "rename repository events",
                ),
                (
                    "UPDATE notify_sent SET repo = ?2 WHERE repo = ?1",
                    "rename repository notifications",
                ),
            ] {
                s.conn.execute(sql, [old, new]).map_err(query(step))?;
            }
            Ok(())
        })
    }
}
