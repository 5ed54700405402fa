//! A real git remote on disk: a bare repository plus a work clone that
//! commits and pushes, as a developer would.

use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;

pub struct GitRemote {
    _dir: TempDir,
    pub bare: PathBuf,
    pub work: PathBuf,
    pub branch: String,
}

pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=Kedge Test",
            "-c",
            "user.email=test@kedge.invalid",
            "-c",
            "commit.gpgsign=false",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

impl GitRemote {
    /// An empty remote `<name>.git` following `main`.
    pub fn new(name: &str) -> Self {
        Self::with_branch(name, "main")
    }

    pub fn with_branch(name: &str, branch: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let bare = dir.path().join(format!("{name}.git"));
        let work = dir.path().join("work");
        std::fs::create_dir_all(&bare).unwrap();
        git(&bare, &["init", "--bare", "-q", "-b", branch]);
        git(dir.path(), &["clone", "-q", bare.to_str().unwrap(), "work"]);
        git(&work, &["checkout", "-q", "-B", branch]);
        GitRemote {
            _dir: dir,
            bare,
            work,
            branch: branch.to_string(),
        }
    }

    /// The working copy commits are made in.
    pub fn work_dir(&self) -> &std::path::Path {
        &self.work
    }

    pub fn url(&self) -> String {
        format!("file://{}", self.bare.display())
    }

    pub fn write(&self, path: &str, content: &str) -> &Self {
        let p = self.work.join(path);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(p, content).unwrap();
        self
    }

    pub fn remove(&self, path: &str) -> &Self {
        std::fs::remove_file(self.work.join(path)).unwrap();
        self
    }

    /// Commits everything in the work tree and pushes; returns the full hash.
    pub fn commit(&self, message: &str) -> String {
        git(&self.work, &["add", "-A"]);
        git(
            &self.work,
            &["commit", "-q", "--allow-empty", "-m", message],
        );
        git(
            &self.work,
            &["push", "-q", "origin", &format!("HEAD:{}", self.branch)],
        );
        git(&self.work, &["rev-parse", "HEAD"])
    }

    /// Rewrites the last commit with the work tree and force-pushes it.
    pub fn amend_and_force_push(&self, message: &str) -> String {
        git(&self.work, &["add", "-A"]);
        git(&self.work, &["commit", "-q", "--amend", "-m", message]);
        git(
            &self.work,
            &[
                "push",
                "-q",
                "--force",
                "origin",
                &format!("HEAD:{}", self.branch),
            ],
        );
        git(&self.work, &["rev-parse", "HEAD"])
    }

    /// The branch head as the remote reports it.
    pub fn remote_head(&self) -> String {
        let line = git(
            &self.work,
            &[
                "ls-remote",
                self.bare.to_str().unwrap(),
                &format!("refs/heads/{}", self.branch),
            ],
        );
        line.split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string()
    }
}
