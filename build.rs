//! Build script: the git commit `kedge --version` names, as the
//! `KEDGE_GIT_COMMIT` compile-time variable. An environment variable of that
//! name wins (builds without a `.git`, such as the Dockerfile's); otherwise
//! `git rev-parse HEAD`, rerun when HEAD moves; `unknown` without either.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=KEDGE_GIT_COMMIT");
    let commit = std::env::var("KEDGE_GIT_COMMIT")
        .ok()
        .filter(|c| !c.trim().is_empty())
        .or_else(head)
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=KEDGE_GIT_COMMIT={}", commit.trim());
}

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
}

/// HEAD's commit, and the files whose change means HEAD moved: HEAD itself,
/// the branch it names, and packed-refs (only those that exist: a missing
/// one would make every build rerun this).
fn head() -> Option<String> {
    let commit = git(&["rev-parse", "HEAD"])?;
    let mut watch = vec![git(&["rev-parse", "--git-path", "HEAD"])];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watch.push(git(&["rev-parse", "--git-path", &branch]));
    }
    watch.push(git(&["rev-parse", "--git-path", "packed-refs"]));
    for path in watch.into_iter().flatten().map(PathBuf::from) {
        if path.exists() {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
    Some(commit)
}
