//! A small tmpfs of the test's own, to run Kedge on a disk that fills up.
//! Needs root (as the suite runs in CI); unmounted on drop, even on panic.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

pub struct SmallFs {
    dir: tempfile::TempDir,
    filler: PathBuf,
}

impl SmallFs {
    pub fn mount(size_mib: u32) -> SmallFs {
        let dir = tempfile::tempdir().expect("temp dir");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mib}m,mode=0700")])
            .arg("tmpfs")
            .arg(dir.path())
            .status()
            .expect("run mount");
        assert!(status.success(), "mounting a tmpfs needs root");
        let filler = dir.path().join("filler");
        SmallFs { dir, filler }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a file until the filesystem has no space left.
    pub fn fill(&self) {
        let mut file = std::fs::File::create(&self.filler).expect("create filler");
        let chunk = vec![0u8; 64 * 1024];
        while file.write_all(&chunk).is_ok() {}
        // What is left is smaller than a chunk: take it byte by byte.
        while file.write_all(&[0]).is_ok() {}
        let _ = file.sync_all();
    }

    pub fn free(&self) {
        std::fs::remove_file(&self.filler).expect("remove filler");
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        // Lazy: a process that still has a file open there must not keep
        // the mount (and the test's temp dir) behind.
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}
