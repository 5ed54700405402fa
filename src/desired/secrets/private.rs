//! desired/secrets: the private directory of the data dir where decrypted
//! secrets live (`secrets/<stack id>/`, 0700, files 0600), written
//! atomically and removed with the stack.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The stack's private directory.
pub fn stack_dir(data_dir: &Path, stack_id: i64) -> PathBuf {
    data_dir.join("secrets").join(stack_id.to_string())
}

/// A directory only its owner may enter, its parents too up to the data dir.
pub fn create_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    if let Some(parent) = dir.parent()
        && parent.file_name().is_some_and(|n| n == "secrets")
    {
        std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Writes `bytes` to `path` (0600) through a temporary file renamed over
/// it: a reader sees the old content or the new, never half.
pub fn write_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp-{:x}", rand::random::<u64>()));
    let written = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Removes the HMAC-named directories of `dir` not in `keep`: plaintext no
/// deployment uses any more.
pub fn prune(dir: &Path, keep: &std::collections::BTreeSet<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if e.path().is_dir() && !keep.contains(&name) {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// Removes the stack's private directory (the stack is gone).
pub fn remove(data_dir: &Path, stack_id: i64) {
    let dir = stack_dir(data_dir, stack_id);
    if let Err(e) = std::fs::remove_dir_all(&dir)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!("cannot remove {}: {e}", dir.display());
    }
}
