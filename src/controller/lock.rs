//! One apply at a time per repository, across `kedge serve` and the CLI:
//! an exclusive `flock` on `<data-dir>/locks/<repo>.lock`, released when
//! the holder drops it or its process dies.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write as _;
use std::os::fd::{AsRawFd, RawFd};
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
    file: File,
}

impl RepoLock {
    /// The locked file's descriptor, for a child that must hold the lock
    /// as long as it runs (`Cmd::keep_open`).
    pub fn fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    fn open(data_dir: &Path, repo: &str) -> Result<(File, PathBuf), LockError> {
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
        Ok((file, path))
    }

    /// Takes the lock, calling `waiting` first when someone else holds it.
    pub async fn acquire(
        data_dir: &Path,
        repo: &str,
        waiting: impl FnOnce(),
    ) -> Result<RepoLock, LockError> {
        let (file, path) = RepoLock::open(data_dir, repo)?;
        let err = |source| LockError {
            path: path.clone(),
            source,
        };
        match file.try_lock() {
            Ok(()) => return Ok(RepoLock { file }),
            Err(TryLockError::Error(e)) => return Err(err(e)),
            Err(TryLockError::WouldBlock) => waiting(),
        }
        let file = tokio::task::spawn_blocking(move || file.lock().map(|()| file))
            .await
            .map_err(|e| err(std::io::Error::other(e)))?
            .map_err(err)?;
        Ok(RepoLock { file })
    }

    /// Takes the lock if it comes free within `limit`; `None` when an
    /// apply still holds it then. For requests that must answer, not wait
    /// out a deployment (its health gate may take minutes).
    pub async fn acquire_within(
        data_dir: &Path,
        repo: &str,
        limit: std::time::Duration,
    ) -> Result<Option<RepoLock>, LockError> {
        let (file, path) = RepoLock::open(data_dir, repo)?;
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(Some(RepoLock { file })),
                Err(TryLockError::Error(source)) => return Err(LockError { path, source }),
                Err(TryLockError::WouldBlock) if tokio::time::Instant::now() >= deadline => {
                    return Ok(None);
                }
                // A blocking `flock` cannot be given up: polled instead.
                Err(TryLockError::WouldBlock) => {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await
                }
            }
        }
    }

    /// For a command run by hand: takes the lock, saying on stderr when it
    /// has to wait for an apply in flight.
    pub async fn acquire_announced(data_dir: &Path, repo: &str) -> Result<RepoLock, LockError> {
        RepoLock::acquire(data_dir, repo, || {
            // Advice only: a closed stderr must not fail the command.
            let _ = writeln!(
                std::io::stderr().lock(),
                "waiting for another apply on {repo} to finish…"
            );
        })
        .await
    }
}

/// Only one `kedge serve` owns a data directory: an exclusive `flock` on
/// `<data-dir>/serve.lock`, which holds the owner's PID for the message a
/// second one prints. Children never inherit it (close-on-exec).
#[derive(Debug)]
pub struct ServeLock {
    _file: File,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeLockError {
    #[error(
        "another kedge serve (pid {pid}) already owns the data directory {}; stop it first, or use another --data-dir",
        data_dir.display()
    )]
    Owned { pid: String, data_dir: PathBuf },
    #[error(transparent)]
    Lock(#[from] LockError),
}

impl ServeLock {
    /// Whether a `serve` owns the data directory now.
    pub fn is_held(data_dir: &Path) -> bool {
        let Ok(file) = File::open(data_dir.join("serve.lock")) else {
            return false;
        };
        // A lock taken here to look is let go when the file closes.
        matches!(file.try_lock_shared(), Err(TryLockError::WouldBlock))
    }

    pub fn acquire(data_dir: &Path) -> Result<ServeLock, ServeLockError> {
        use std::io::{Read, Seek, Write};
        let path = data_dir.join("serve.lock");
        let err = |source| LockError {
            path: path.clone(),
            source,
        };
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(err)?;
        // `is_held` takes the lock for an instant to look: a few tries tell
        // such a glance from an owner.
        let mut tries = 0;
        let taken = loop {
            tries += 1;
            match file.try_lock() {
                Err(TryLockError::WouldBlock) if tries < 5 => {
                    std::thread::sleep(std::time::Duration::from_millis(40));
                }
                other => break other,
            }
        };
        match taken {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                let pid = match pid.trim() {
                    "" => "unknown".to_string(),
                    p => p.to_string(),
                };
                return Err(ServeLockError::Owned {
                    pid,
                    data_dir: data_dir.to_path_buf(),
                });
            }
            Err(TryLockError::Error(e)) => return Err(err(e).into()),
        }
        file.set_len(0).map_err(err)?;
        file.rewind().map_err(err)?;
        writeln!(file, "{}", std::process::id()).map_err(err)?;
        Ok(ServeLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_serve_per_data_dir_and_a_glance_does_not_count() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!ServeLock::is_held(dir.path()));
        let owner = ServeLock::acquire(dir.path()).unwrap();
        assert!(ServeLock::is_held(dir.path()));
        let err = ServeLock::acquire(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains(&format!("another kedge serve (pid {})", std::process::id())),
            "{err}"
        );
        drop(owner);
        assert!(!ServeLock::is_held(dir.path()));
        ServeLock::acquire(dir.path()).unwrap();
    }

    /// How long a test waits for what must happen, not how fast it must.
    const CEILING: std::time::Duration = std::time::Duration::from_secs(30);

    /// A child that says it runs (`<tag>.started` in `dir`) and runs until
    /// told to stop (`<tag>.release`).
    fn held_child(dir: &Path, tag: &str) -> crate::process::Cmd {
        crate::process::Cmd::new("sh")
            .args([
                "-c",
                r#"touch "$0.started"; while [ ! -e "$0.release" ]; do sleep 0.01; done"#,
            ])
            .arg(dir.join(tag))
            .timeout(CEILING)
    }

    async fn started(dir: &Path, tag: &str) {
        let marker = dir.join(format!("{tag}.started"));
        tokio::time::timeout(CEILING, async {
            while !marker.exists() {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("the child started");
    }

    fn release(dir: &Path, tag: &str) {
        std::fs::write(dir.join(format!("{tag}.release")), "").unwrap();
    }

    #[tokio::test]
    async fn a_second_holder_waits_for_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let first = RepoLock::acquire(dir.path(), "app", || panic!("free lock"))
            .await
            .unwrap();
        let (waiting, waited) = tokio::sync::oneshot::channel();
        let path = dir.path().to_path_buf();
        let second = tokio::spawn(async move {
            RepoLock::acquire(&path, "app", move || {
                let _ = waiting.send(());
            })
            .await
        });
        tokio::time::timeout(CEILING, waited)
            .await
            .expect("the lock still held")
            .expect("the second holder told to wait");
        assert!(!second.is_finished(), "the second holder must wait");
        drop(first);
        second.await.unwrap().unwrap();
        // Other repositories are independent.
        RepoLock::acquire(dir.path(), "other", || panic!("free lock"))
            .await
            .unwrap();
    }

    /// Regression: a compose left running by a killed `serve` went on
    /// changing the project while the restarted `serve` applied to it.
    #[tokio::test]
    async fn a_child_given_the_lock_holds_it_until_it_exits() {
        let dir = tempfile::tempdir().unwrap();
        let lock = RepoLock::acquire(dir.path(), "app", || panic!("free lock"))
            .await
            .unwrap();
        let child = tokio::spawn(
            held_child(dir.path(), "one")
                .keep_open(Some(lock.fd()))
                .run(),
        );
        // Once it runs, let go of our own descriptor, as a killed Kedge would.
        started(dir.path(), "one").await;
        drop(lock);
        let (waiting, waited) = tokio::sync::oneshot::channel();
        let path = dir.path().to_path_buf();
        let again = tokio::spawn(async move {
            RepoLock::acquire(&path, "app", move || {
                let _ = waiting.send(());
            })
            .await
        });
        tokio::time::timeout(CEILING, waited)
            .await
            .expect("the lock still held")
            .expect("the child held the lock");
        assert!(
            !again.is_finished(),
            "the lock came free while the child ran"
        );
        release(dir.path(), "one");
        let again = tokio::time::timeout(CEILING, again)
            .await
            .expect("the lock free once the child exited")
            .unwrap()
            .unwrap();
        child.await.unwrap().unwrap();
        drop(again);

        // Without it the child holds nothing.
        let lock = RepoLock::acquire(dir.path(), "app", || panic!("free lock"))
            .await
            .unwrap();
        let child = tokio::spawn(held_child(dir.path(), "two").run());
        started(dir.path(), "two").await;
        drop(lock);
        RepoLock::acquire(dir.path(), "app", || panic!("the child has no lock"))
            .await
            .unwrap();
        release(dir.path(), "two");
        child.await.unwrap().unwrap();
    }
}
