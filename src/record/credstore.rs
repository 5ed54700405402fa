//! record: the credential store, `<data-dir>/credentials/` (mode 0700):
//! the secrets Kedge was given inside a repository URL, one file each
//! (mode 0600), so that the database holds a path rather than the secret.

use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

/// The store's directory in the data directory.
pub const DIR: &str = "credentials";

/// Writes `secret` to a new private file for repository `name`; returns
/// its path.
pub fn store(data_dir: &Path, name: &str, secret: &str) -> std::io::Result<PathBuf> {
    let dir = data_dir.join(DIR);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)?;
    let mut bytes = [0u8; 6];
    rand::fill(&mut bytes);
    let path = dir.join(format!("{name}-{}.userinfo", hex::encode(bytes)));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)?;
    file.write_all(secret.as_bytes())?;
    file.sync_all()?;
    Ok(path)
}

/// Deletes a file of the store (a repository that is removed); a path
/// outside it is none of the store's business and is left alone.
pub fn forget(data_dir: &Path, path: &Path) {
    if path.parent() == Some(data_dir.join(DIR).as_path()) {
        let _ = std::fs::remove_file(path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn secrets_are_stored_private_and_forgotten_only_inside_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let a = store(dir.path(), "app", "bot:pw").unwrap();
        let b = store(dir.path(), "app", "bot:pw2").unwrap();
        assert_ne!(a, b);
        assert_eq!(std::fs::read_to_string(&a).unwrap(), "bot:pw");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&a), 0o600);
        assert_eq!(mode(&dir.path().join(DIR)), 0o700);
        let outside = dir.path().join("elsewhere");
        std::fs::write(&outside, "x").unwrap();
        forget(dir.path(), &outside);
        assert!(outside.exists());
        forget(dir.path(), &a);
        assert!(!a.exists() && b.exists());
    }
}
