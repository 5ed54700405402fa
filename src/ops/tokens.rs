//! ops: API tokens — created (shown once), listed, revoked, and checked.

use serde::Serialize;

use super::{Ops, OpsError};
use crate::record::{Role, Token};
use crate::time::rfc3339;

/// A token as the faces list it: never the token itself.
#[derive(Debug, Clone, Serialize)]
pub struct TokenRow {
    pub name: String,
    pub role: Role,
    pub created_at: String,
    pub last_used_at: Option<String>,
}

/// What every token starts with: tells a Kedge token in a leaked log.
pub const TOKEN_PREFIX: &str = "kedge_";

/// The form a token is stored in.
pub fn token_hash(token: &str) -> String {
    crate::desired::render::sha256_hex(token.as_bytes())
}

impl Ops {
    /// Creates a token and returns it: the only time it is shown.
    pub fn token_create(&self, name: &str, role: Role) -> Result<String, OpsError> {
        crate::source::url::validate_name(name)?;
        let mut bytes = [0u8; 24];
        rand::fill(&mut bytes);
        let token = format!("{TOKEN_PREFIX}{}", crate::desired::render::hex(&bytes));
        let (named, digest) = (name.to_string(), token_hash(&token));
        if !self
            .shared()?
            .db
            .write_blocking(move |s| s.add_token(&named, role, &digest))?
        {
            return Err(OpsError::TokenExists(name.to_string()));
        }
        Ok(token)
    }

    pub fn token_list(&self) -> Result<Vec<TokenRow>, OpsError> {
        Ok(self
            .shared()?
            .db
            .read(|s| s.tokens())?
            .into_iter()
            .map(|t| TokenRow {
                name: t.name,
                role: t.role,
                created_at: rfc3339(t.created_at),
                last_used_at: t.last_used_at.map(rfc3339),
            })
            .collect())
    }

    pub fn token_revoke(&self, name: &str) -> Result<(), OpsError> {
        let named = name.to_string();
        if self
            .shared()?
            .db
            .write_blocking(move |s| s.revoke_token(&named))?
        {
            Ok(())
        } else {
            Err(OpsError::UnknownToken(name.to_string()))
        }
    }

    /// The token a request presented, if it is one. Looked up by its hash:
    /// what is compared is a digest, never the secret itself.
    pub fn authenticate(&self, presented: &str) -> Result<Option<Token>, OpsError> {
        if !presented.starts_with(TOKEN_PREFIX) {
            return Ok(None);
        }
        self.use_token(&token_hash(presented))
    }

    /// The token a dashboard session was opened with, by the digest kept
    /// in the session: still there (not revoked), and with its role.
    pub fn token_by_digest(&self, digest: &str) -> Result<Option<Token>, OpsError> {
        self.use_token(digest)
    }

    /// A read; the "last used" time, kept to the minute, is written after
    /// the answer: a request never waits for the store's writer.
    fn use_token(&self, digest: &str) -> Result<Option<Token>, OpsError> {
        let shared = self.shared()?;
        let token = shared.db.read(|s| s.token_by_hash(digest))?;
        let now = crate::record::now_ms();
        if let Some(t) = &token
            && t.use_is_news(now)
        {
            let name = t.name.clone();
            shared
                .db
                .write_later("note a token's use", move |s| s.note_token_use(&name, now));
        }
        Ok(token)
    }
}
