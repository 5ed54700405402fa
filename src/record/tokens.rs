//! record: API tokens. Only the sha256 of a token is stored.

use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use super::{Store, StoreError, known, now_ms, query};

/// What a token may do; each role may do what the ones before it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// May read (GET).
    Read,
    /// May also sync and roll back.
    Deploy,
    /// May also add and remove repositories (`write`, its former name, is
    /// accepted).
    #[value(alias = "write")]
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Deploy => "deploy",
            Role::Admin => "admin",
        }
    }

    /// A stored role; `write` (before roles were split) is `admin`.
    fn parse(s: &str) -> Option<Role> {
        match s {
            "admin" | "write" => Some(Role::Admin),
            "deploy" => Some(Role::Deploy),
            "read" => Some(Role::Read),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Token {
    pub name: String,
    pub role: Role,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}

/// `SELECT name, role, created_at, last_used_at`.
fn token_row(r: &rusqlite::Row) -> rusqlite::Result<Token> {
    Ok(Token {
        name: r.get(0)?,
        role: known(r, 1, "role", Role::parse)?,
        created_at: r.get(2)?,
        last_used_at: r.get(3)?,
    })
}

impl Store {
    /// Stores a new token's hash; false when the name is taken.
    pub fn add_token(&self, name: &str, role: Role, hash: &str) -> Result<bool, StoreError> {
        let n = self
            .conn
            .execute(
                "INSERT INTO tokens (name, role, hash, created_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (name) DO NOTHING",
                params![name, role.as_str(), hash, now_ms()],
            )
            .map_err(query("store a token"))?;
        Ok(n == 1)
    }

    pub fn tokens(&self) -> Result<Vec<Token>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT name, role, created_at, last_used_at FROM tokens ORDER BY name")
            .map_err(query("list tokens"))?;
        let rows = stmt
            .query_map([], token_row)
            .map_err(query("list tokens"))?;
        rows.collect::<Result<_, _>>().map_err(query("list tokens"))
    }

    /// False when there is no such token.
    pub fn revoke_token(&self, name: &str) -> Result<bool, StoreError> {
        let n = self
            .conn
            .execute("DELETE FROM tokens WHERE name = ?1", [name])
            .map_err(query("revoke a token"))?;
        Ok(n == 1)
    }

    /// The token with this hash. Its "last used" time is kept to the
    /// minute: a request costs a read, not a write.
    pub fn use_token(&self, hash: &str) -> Result<Option<Token>, StoreError> {
        let token = self.token_by_hash(hash)?;
        if let Some(t) = &token
            && t.use_is_news(now_ms())
        {
            self.note_token_use(&t.name, now_ms())?;
        }
        Ok(token)
    }

    /// The token with this hash: a read only.
    pub fn token_by_hash(&self, hash: &str) -> Result<Option<Token>, StoreError> {
        self.conn
            .prepare_cached(
                "SELECT name, role, created_at, last_used_at FROM tokens WHERE hash = ?1",
            )
            .and_then(|mut stmt| stmt.query_row([hash], token_row).optional())
            .map_err(query("check a token"))
    }

    /// Notes that token `name` was used at `at`.
    pub fn note_token_use(&self, name: &str, at: i64) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE tokens SET last_used_at = ?2 WHERE name = ?1",
                params![name, at],
            )
            .map(drop)
            .map_err(query("note a token's use"))
    }
}

impl Token {
    /// Whether a use at `now` moves its "last used" time, kept to the minute.
    pub fn use_is_news(&self, now: i64) -> bool {
        self.last_used_at.is_none_or(|at| now - at >= 60_000)
    }
}
