//! One apply at a time per repository, across `kedge serve` and the CLI:
//! an exclusive `flock` on `<data-dir>/locks/<repo>.lock`, released when
//! the holder drops it or its process dies.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
#[error("cannot lock {}", path.display())]
pub struct LockError {
    path: PathBuf,
    #[source]
    source: std::io::Error,
}

#[derive(Debug)]
pub struct RepoLock {
    _file: File,
}

impl RepoLock {
    /// Takes the lock, calling `waiting` first when someone else holds it.
    pub async fn acquire(
        data_dir: &Path,
        repo: &str,
        waiting: impl FnOnce(),
    ) -> Result<RepoLock, LockError> {
        let dir = data_dir.join("locks");
        let path = dir.join(format!("{repo}.lock"));
        let err = |source| LockError {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(&dir).map_err(err)?;
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(err)?;
        match file.try_lock() {
            Ok(()) => return Ok(RepoLock { _file: file }),
            Err(TryLockError::Error(e)) => return Err(err(e)),
            Err(TryLockError::WouldBlock) => waiting(),
        }
        let file = tokio::task::spawn_blocking(move || file.lock().map(|()| file))
            .await
            .map_err(|e| err(std::io::Error::other(e)))?
            .map_err(err)?;
        Ok(RepoLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[tokio::test]
    async fn a_second_holder_waits_for_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let first = RepoLock::acquire(dir.path(), "app", || panic!("free lock"))
            .await
            .unwrap();
        let waited = Arc::new(AtomicBool::new(false));
        let w = waited.clone();
        let path = dir.path().to_path_buf();
        let second = tokio::spawn(async move {
            RepoLock::acquire(&path, "app", move || w.store(true, Ordering::SeqCst)).await
        });
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert!(!second.is_finished(), "the second holder must wait");
        assert!(waited.load(Ordering::SeqCst));
        drop(first);
        second.await.unwrap().unwrap();
        // Other repositories are independent.
        RepoLock::acquire(dir.path(), "other", || panic!("free lock"))
            .await
            .unwrap();
    }
}
