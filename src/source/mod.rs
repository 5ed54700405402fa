//! source: Git, first stage of the flow (**source** → desired → observe →
//! plan → apply → record). Where a repository lives and which branch Kedge follows.

pub mod address;
pub mod auth;
pub mod edit;
pub mod git;
pub mod remote;
pub mod url;
pub mod write_back;

use std::path::{Path, PathBuf};

/// `<data-dir>/repos/<name>/`: where a repository's clone lives.
pub fn clone_dir(data_dir: &Path, repo: &str) -> PathBuf {
    data_dir.join("repos").join(repo)
}
