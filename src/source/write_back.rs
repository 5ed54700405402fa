//! source: write-back commits (fleet.md §3). A commit is made in a scratch
//! clone that borrows the repository clone's objects, at the branch tip as
//! the remote has it now, and pushed with the repository's credentials; a
//! push rejected as non-fast-forward refetches and tries once more. The
//! clone the stacks run from is never touched: the next fetch brings the
//! commit like any other.

use std::path::{Path, PathBuf};

use super::git::{GitError, Repository, git_cmd};
use crate::process::ProcessError;

/// Who write-back commits are by (`updates.git_author`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Author {
    pub name: String,
    pub email: String,
}

impl Author {
    /// `Name <email>`.
    pub fn parse(text: &str) -> Option<Author> {
        let (name, rest) = text.split_once('<')?;
        let email = rest.strip_suffix('>')?.trim();
        let name = name.trim();
        let clean = |s: &str| !s.is_empty() && !s.contains(['<', '>', '\n']);
        (clean(name) && clean(email) && email.contains('@')).then(|| Author {
            name: name.to_string(),
            email: email.to_string(),
        })
    }

    pub fn kedge() -> Author {
        Author {
            name: "Kedge".to_string(),
            email: "kedge@localhost".to_string(),
        }
    }
}

/// Reads the files at the fetched tip (the checkout's root) and returns
/// the new texts of those to change, by path, or why it cannot.
pub type Edit = dyn Fn(&Path) -> Result<Vec<(String, String)>, String> + Sync;

/// A change to commit: files to write (paths relative to the
/// repository), or a commit to revert.
pub enum Change<'a> {
    /// Computed at the tip fetched: it reads the files there and returns
    /// their new texts, or why it cannot.
    Files(&'a Edit),
    Revert(&'a str),
}

#[derive(Debug, thiserror::Error)]
pub enum WriteBackError {
    #[error(transparent)]
    Git(#[from] GitError),
    #[error("{0}")]
    Edit(String),
    #[error("cannot prepare the write-back checkout, {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot commit the change")]
    Commit(#[source] ProcessError),
    #[error("cannot revert {commit}")]
    Revert {
        commit: String,
        #[source]
        source: ProcessError,
    },
    #[error("the push to {branch} of {url} was rejected twice: the branch keeps moving")]
    Rejected { url: String, branch: String },
    #[error("cannot push to {branch} of {url}")]
    Push {
        url: String,
        branch: String,
        #[source]
        source: ProcessError,
    },
}

/// What a write-back pushed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    pub commit: String,
    /// The first push was rejected as non-fast-forward.
    pub retried: bool,
}

/// Whether git's answer to a push says the branch had moved: not a fast
/// forward any more, or moved by another push while this one was checked
/// (the remote's ref update then fails).
fn non_fast_forward(stderr: &str) -> bool {
    (stderr.contains("[rejected]")
        && (stderr.contains("non-fast-forward") || stderr.contains("fetch first")))
        || (stderr.contains("[remote rejected]")
            && (stderr.contains("failed to update ref") || stderr.contains("cannot lock ref")))
}

impl Repository {
    /// Commits `change` with `message` by `author` on top of the branch
    /// as the remote has it, in `scratch` (made afresh, removed after),
    /// and pushes it.
    pub async fn write_back(
        &self,
        scratch: &Path,
        author: &Author,
        message: &str,
        change: Change<'_>,
    ) -> Result<Pushed, WriteBackError> {
        let result = self.write_back_in(scratch, author, message, change).await;
        let _ = tokio::fs::remove_dir_all(scratch).await;
        result
    }

    async fn write_back_in(
        &self,
        scratch: &Path,
        author: &Author,
        message: &str,
        change: Change<'_>,
    ) -> Result<Pushed, WriteBackError> {
        let io = |source| WriteBackError::Io {
            path: scratch.to_path_buf(),
            source,
        };
        let _ = tokio::fs::remove_dir_all(scratch).await;
        if let Some(parent) = scratch.parent() {
            tokio::fs::create_dir_all(parent).await.map_err(io)?;
        }
        // The objects come from the clone (`--shared`): only what the
        // remote has beyond it is transferred.
        let clone = self.shared.as_deref().unwrap_or(&self.clone);
        git_cmd()
            .args(["clone", "--quiet", "--shared", "--no-checkout", "--"])
            .arg(clone)
            .arg(scratch)
            .run()
            .await
            .map_err(|source| GitError::Clone {
                url: clone.display().to_string(),
                source,
            })?;
        let mut retried = false;
        loop {
            let tip = self.fetch_into(scratch).await?;
            git_cmd()
                .cwd(scratch)
                .args(["checkout", "--quiet", "--force", "--detach", &tip])
                .run()
                .await
                .map_err(|source| GitError::Checkout {
                    commit: tip.clone(),
                    source,
                })?;
            let with_author = |cmd: crate::process::Cmd| {
                cmd.env("GIT_AUTHOR_NAME", &author.name)
                    .env("GIT_AUTHOR_EMAIL", &author.email)
                    .env("GIT_COMMITTER_NAME", &author.name)
                    .env("GIT_COMMITTER_EMAIL", &author.email)
            };
            match &change {
                Change::Files(edit) => {
                    let files = edit(scratch).map_err(WriteBackError::Edit)?;
                    for (path, text) in &files {
                        tokio::fs::write(scratch.join(path), text)
                            .await
                            .map_err(io)?;
                    }
                    git_cmd()
                        .cwd(scratch)
                        .args(["add", "--"])
                        .args(files.iter().map(|(p, _)| p.as_str()))
                        .run()
                        .await
                        .map_err(WriteBackError::Commit)?;
                    with_author(git_cmd().cwd(scratch))
                        .args(["commit", "--quiet", "--no-verify", "-m", message])
                        .run()
                        .await
                        .map_err(WriteBackError::Commit)?;
                }
                Change::Revert(commit) => {
                    with_author(git_cmd().cwd(scratch))
                        .args(["revert", "--no-edit", "--no-gpg-sign", commit])
                        .run()
                        .await
                        .map_err(|source| WriteBackError::Revert {
                            commit: commit.to_string(),
                            source,
                        })?;
                }
            }
            let commit = git_cmd()
                .cwd(scratch)
                .args(["rev-parse", "HEAD"])
                .run()
                .await
                .map_err(WriteBackError::Commit)?
                .stdout_text()
                .trim()
                .to_string();
            let push = self
                .remote_git()?
                .cwd(scratch)
                .args(["push", "--quiet", "--no-verify", "--", &self.url])
                .arg(format!("HEAD:refs/heads/{}", self.branch))
                .timeout(self.transfer_timeout());
            let mut rejected = false;
            let pushed = self
                .run_remote(push, |source| {
                    if let ProcessError::Failed { stderr, .. } = &source {
                        rejected = non_fast_forward(stderr);
                    }
                    GitError::Clone {
                        url: self.url.clone(),
                        source,
                    }
                })
                .await;
            match pushed {
                Ok(_) => return Ok(Pushed { commit, retried }),
                Err(_) if rejected && !retried => {
                    tracing::info!(url = %self.url, branch = %self.branch, "the branch moved during the write-back: trying once more on its new tip");
                    retried = true;
                }
                Err(_) if rejected => {
                    return Err(WriteBackError::Rejected {
                        url: self.url.clone(),
                        branch: self.branch.clone(),
                    });
                }
                Err(GitError::Clone { source, .. }) => {
                    return Err(WriteBackError::Push {
                        url: self.url.clone(),
                        branch: self.branch.clone(),
                        source,
                    });
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Fetches the branch into `scratch` and returns its tip.
    async fn fetch_into(&self, scratch: &Path) -> Result<String, GitError> {
        let refspec = format!("+refs/heads/{}:refs/kedge/tip", self.branch);
        let cmd = self
            .remote_git()?
            .cwd(scratch)
            .args(["fetch", "--quiet", "--no-tags", "--", &self.url, &refspec])
            .timeout(self.transfer_timeout());
        self.run_remote(cmd, |source| GitError::Fetch {
            url: self.url.clone(),
            branch: self.branch.clone(),
            source,
        })
        .await?;
        let out = git_cmd()
            .cwd(scratch)
            .args(["rev-parse", "refs/kedge/tip"])
            .run()
            .await
            .map_err(|source| GitError::Inspect {
                commit: "refs/kedge/tip".to_string(),
                source,
            })?;
        Ok(out.stdout_text().trim().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authors_read_as_name_and_email() {
        assert_eq!(
            Author::parse("Kedge Bot <bot@example.org>"),
            Some(Author {
                name: "Kedge Bot".to_string(),
                email: "bot@example.org".to_string()
            })
        );
        for bad in [
            "bot@example.org",
            "<bot@example.org>",
            "Bot <no-at>",
            "A <b@c> d",
        ] {
            assert_eq!(Author::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_moved_branch_is_told_from_other_refusals() {
        assert!(non_fast_forward(
            " ! [rejected]        HEAD -> main (fetch first)\nerror: failed to push some refs"
        ));
        assert!(non_fast_forward(
            " ! [rejected]        HEAD -> main (non-fast-forward)"
        ));
        assert!(non_fast_forward(
            " ! [remote rejected] HEAD -> main (failed to update ref)"
        ));
        assert!(!non_fast_forward(
            " ! [remote rejected] HEAD -> main (pre-receive hook declined)"
        ));
    }
}
