//! desired: a file Kedge itself reads from a checkout (`kedge.yaml`), read
//! as the compose files are checked: its real path (links resolved) inside
//! the checkout, a regular file, under a size limit. A commit can hold a
//! link to anywhere on the host: to a FIFO (a reader waits forever), to
//! `/dev/zero` (a reader never finishes), to a file only root may read
//! (whose content would reach an error). None of them is opened, and
//! errors name the file, never what it holds.

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum ContainedError {
    #[error("cannot read {file}")]
    Read {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{file} leads outside the repository")]
    OutsideRepository { file: String },
    #[error("{file} is not a regular file")]
    NotAFile { file: String },
    #[error("{file} is over the limit of {limit} bytes")]
    TooLarge { file: String, limit: u64 },
}

/// The bytes of `rel` in the checkout `root` (`None`: there is no such
/// file). Blocking: callers on the runtime use the blocking pool. The file
/// is opened without blocking and judged by what was opened (a regular
/// file, at most `limit` bytes), and never read past the limit.
pub fn read(root: &Path, rel: &Path, limit: u64) -> Result<Option<Vec<u8>>, ContainedError> {
    let file = rel.to_string_lossy().into_owned();
    let read_err = |source| ContainedError::Read {
        file: file.clone(),
        source,
    };
    let path = root.join(rel);
    match std::fs::symlink_metadata(&path) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(read_err(e)),
    }
    let root = root.canonicalize().map_err(read_err)?;
    // A link to nothing is an error, not a missing file: the commit has one.
    let real = path.canonicalize().map_err(read_err)?;
    if !real.starts_with(&root) {
        return Err(ContainedError::OutsideRepository { file });
    }
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW | libc::O_NOCTTY)
        .open(&real)
        .map_err(read_err)?;
    let meta = opened.metadata().map_err(read_err)?;
    if !meta.is_file() {
        return Err(ContainedError::NotAFile { file });
    }
    if meta.len() > limit {
        return Err(ContainedError::TooLarge { file, limit });
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    // It may have grown since: never read past the limit.
    opened
        .take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    if bytes.len() as u64 > limit {
        return Err(ContainedError::TooLarge { file, limit });
    }
    Ok(Some(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn only_regular_files_of_the_repository_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("repo");
        std::fs::create_dir_all(repo.join("sub")).unwrap();
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "root-only content\n").unwrap();
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo(3) with a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        std::fs::write(repo.join("sub/real.yaml"), "a: 1\n").unwrap();
        symlink("sub/real.yaml", repo.join("inside.yaml")).unwrap();
        symlink(&secret, repo.join("secret.yaml")).unwrap();
        symlink("../secret", repo.join("climb.yaml")).unwrap();
        symlink(&fifo, repo.join("fifo.yaml")).unwrap();
        symlink("/dev/zero", repo.join("zero.yaml")).unwrap();
        symlink("nowhere", repo.join("dangling.yaml")).unwrap();
        std::fs::write(repo.join("big.yaml"), vec![b'#'; 2049]).unwrap();

        let read = |f: &str| read(&repo, Path::new(f), 2048);
        assert_eq!(read("inside.yaml").unwrap().unwrap(), b"a: 1\n");
        assert_eq!(read("sub/real.yaml").unwrap().unwrap(), b"a: 1\n");
        assert!(read("absent.yaml").unwrap().is_none());
        for outside in ["secret.yaml", "climb.yaml", "fifo.yaml", "zero.yaml"] {
            let err = read(outside).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("{outside} leads outside the repository")
            );
        }
        let err = read("dangling.yaml").unwrap_err();
        assert!(matches!(err, ContainedError::Read { .. }), "{err:?}");
        assert_eq!(
            read("big.yaml").unwrap_err().to_string(),
            "big.yaml is over the limit of 2048 bytes"
        );
        // What is inside the checkout is still judged by what it is.
        let inner = repo.join("inner-fifo");
        let c = std::ffi::CString::new(inner.to_str().unwrap()).unwrap();
        // SAFETY: as above.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert_eq!(
            read("inner-fifo").unwrap_err().to_string(),
            "inner-fifo is not a regular file"
        );
    }
}
