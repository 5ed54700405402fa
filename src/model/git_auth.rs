//! model: a repository's credentials, by reference — what `source` hands
//! to git and `record` keeps with the repository.

use std::path::PathBuf;

use crate::config::registries::SecretRef;

/// The user name a token is sent with unless `--username` says otherwise
/// (what GitHub, Gitea and Forgejo accept for any token).
pub const DEFAULT_TOKEN_USER: &str = "x-access-token";

/// A repository's credentials, by reference.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum GitAuth {
    /// Public, or credentials in the URL (kept for repositories registered
    /// that way; redacted wherever shown).
    #[default]
    None,
    SshKey {
        key: PathBuf,
        /// A known_hosts file checked strictly; `None`: Kedge's own
        /// `<data-dir>/known_hosts`, recorded on first contact.
        known_hosts: Option<PathBuf>,
    },
    Token {
        token: SecretRef,
        username: String,
    },
}

impl GitAuth {
    /// What `repo list` shows: `ssh-key`, `token` or `none`.
    pub fn kind(&self) -> &'static str {
        match self {
            GitAuth::None => "none",
            GitAuth::SshKey { .. } => "ssh-key",
            GitAuth::Token { .. } => "token",
        }
    }
}

/// The user name of a token whose secret is a whole `user:password` pair
/// (credentials once in a repository's URL, now in the credential store).
/// `repo add --username` and `credentials:` never give an empty one.
pub const USERINFO_USER: &str = "";
