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
        if !self
            .shared()?
            .store()
            .add_token(name, role, &token_hash(&token))?
        {
            return Err(OpsError::TokenExists(name.to_string()));
        }
        Ok(token)
    }

    pub fn token_list(&self) -> Result<Vec<TokenRow>, OpsError> {
        Ok(self
            .shared()?
            .store()
            .tokens()?
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
        if self.shared()?.store().revoke_token(name)? {
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
        Ok(self.shared()?.store().use_token(&token_hash(presented))?)
    }

    /// The token a dashboard session was opened with, by the digest kept
    /// in the session: still there (not revoked), and with its role.
    pub fn token_by_digest(&self, digest: &str) -> Result<Option<Token>, OpsError> {
        Ok(self.shared()?.store().use_token(digest)?)
    }
}
