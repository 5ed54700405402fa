//! The `git` CLI: a cheap `ls-remote` per poll, fetch only when the branch
//! moved. The clone holds the deployed tree (what running containers
//! bind-mount); new commits are rendered in a separate worktree so that a
//! commit that fails, or one `notify` mode only reports, never changes files
//! under a running stack.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::auth::Refusal;
use super::remote::{Access, split_credentials};
use crate::config::registries::SecretRefError;
use crate::process::{Cmd, ProcessError};

/// Local git work: checkouts, reads of the clone.
const GIT_TIMEOUT: Duration = Duration::from_secs(300);
/// Clone and fetch transfer data: they may take this many times the
/// remote check's timeout.
pub const TRANSFER_FACTOR: u32 = 5;
/// Where earlier versions rendered, inside the clone's `.git`: removed
/// when the render worktree is next created.
const LEGACY_RENDER_WORKTREE: &str = ".git/kedge-render";
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("cannot write the git config trusting the local source, {}", path.display())]
    TrustConfig {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot reach remote {url}")]
    Unreachable {
        url: String,
        #[source]
        source: ProcessError,
    },
    #[error("branch {branch} does not exist on {url}")]
    NoBranch { url: String, branch: String },
    #[error("cannot clone {url}")]
    Clone {
        url: String,
        #[source]
        source: ProcessError,
    },
    #[error("cannot fetch {branch} from {url}")]
    Fetch {
        url: String,
        branch: String,
        #[source]
        source: ProcessError,
    },
    #[error("cannot check out {commit}")]
    Checkout {
        commit: String,
        #[source]
        source: ProcessError,
    },
    #[error("cannot read commit {commit}")]
    Inspect {
        commit: String,
        #[source]
        source: ProcessError,
    },
    #[error("{} does not name a fetched commit: {line:?}", path.display())]
    FetchHead { path: PathBuf, line: String },
    #[error("cannot authenticate to {url}")]
    Credentials {
        url: String,
        #[source]
        source: SecretRefError,
    },
    /// The remote said no: the account of ssh or git, read from their messages.
    #[error("{url}: {refusal}")]
    Refused { url: String, refusal: Box<Refusal> },
    #[error("cannot prepare {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl GitError {
    /// The remote refused Kedge's credentials, or Kedge has none to give:
    /// an operator must act, waiting will not help.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            GitError::Refused { .. } | GitError::Credentials { .. }
        )
    }
}

/// What a commit says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitInfo {
    pub hash: String,
    pub tree: String,
    pub message: String,
}

/// The most of a commit message Kedge keeps: it goes into records,
/// events, notifications and answers, and a push decides its length.
pub const MAX_MESSAGE: usize = 64 * 1024;

/// `message`, cut after [`MAX_MESSAGE`] bytes (the subject comes first)
/// with a note of what was cut.
fn bounded_message(message: &str) -> String {
    if message.len() <= MAX_MESSAGE {
        return message.to_string();
    }
    let mut end = MAX_MESSAGE;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…[{} bytes cut]", &message[..end], message.len() - end)
}

/// One registered repository's remote and its clone on disk.
#[derive(Clone)]
pub struct Repository {
    /// The URL as git sees it in argv: credentials removed.
    pub url: String,
    pub branch: String,
    /// Where the stack runs from: the clone, or for a stack of a
    /// repository with several, a worktree of the clone (`shared`).
    pub clone: PathBuf,
    /// The repository's clone, when `clone` is a worktree of it: it is
    /// fetched by the repository's task alone, and never here.
    pub shared: Option<PathBuf>,
    /// How git authenticates: handed to it through its environment, never
    /// its arguments.
    pub(super) access: Access,
    /// How long `ls-remote` may take (`git.timeout`).
    pub(super) timeout: Duration,
}

impl std::fmt::Debug for Repository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Repository")
            .field("url", &self.url)
            .field("branch", &self.branch)
            .field("clone", &self.clone)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl Repository {
    pub fn new(url: &str, branch: &str, clone: PathBuf) -> Self {
        let (url, header) = split_credentials(url);
        Repository {
            url,
            branch: branch.to_string(),
            clone,
            shared: None,
            access: header.map_or(Access::Anonymous, Access::UrlCredentials),
            timeout: crate::config::DEFAULT_GIT_TIMEOUT,
        }
    }

    /// A stack's own worktree `dir` of the repository's clone `shared`.
    pub fn worktree_of(mut self, shared: PathBuf, dir: PathBuf) -> Self {
        self.shared = Some(shared);
        self.clone = dir;
        self
    }

    /// How long a remote check may take; clone and fetch get
    /// `TRANSFER_FACTOR` times as long.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    fn remote_ref(&self) -> String {
        format!("refs/remotes/origin/{}", self.branch)
    }

    /// The directory new commits are rendered in: `repos/.<name>.render`, a
    /// sibling of the clone at the same depth, so that a relative path
    /// climbing out of the repository (`../shared.env`) means the same file
    /// when rendering as when the stack runs from the clone. Repository
    /// names never start with a dot: it cannot be another repository's.
    pub fn render_dir(&self) -> PathBuf {
        let name = self.clone.file_name().unwrap_or_default().to_string_lossy();
        self.clone.with_file_name(format!(".{name}.render"))
    }

    /// The git config that trusts a local source, beside the clone.
    pub fn trust_config(&self) -> PathBuf {
        let name = self.clone.file_name().unwrap_or_default().to_string_lossy();
        self.clone.with_file_name(format!(".{name}.gitconfig"))
    }

    fn git(&self) -> Cmd {
        git_cmd().cwd(&self.clone)
    }

    /// The branch head on the remote, without fetching anything.
    pub async fn remote_head(&self) -> Result<String, GitError> {
        let cmd = self
            .remote_git()?
            .args(["ls-remote", "--heads", "--", &self.url])
            .arg(format!("refs/heads/{}", self.branch))
            .timeout(self.timeout);
        let out = self
            .run_remote(cmd, |source| GitError::Unreachable {
                url: self.url.clone(),
                source,
            })
            .await?;
        let text = out.stdout_text();
        text.lines()
            .find_map(|line| {
                let (hash, name) = line.split_once('\t')?;
                (name == format!("refs/heads/{}", self.branch)).then(|| hash.to_string())
            })
            .ok_or_else(|| GitError::NoBranch {
                url: self.url.clone(),
                branch: self.branch.clone(),
            })
    }

    pub fn is_cloned(&self) -> bool {
        match &self.shared {
            // A worktree's `.git` is a file naming the clone's.
            Some(shared) => shared.join(".git").is_dir() && self.clone.join(".git").is_file(),
            None => self.clone.join(".git").is_dir(),
        }
    }

    /// Clones into a temporary sibling and renames it into place, so an
    /// interrupted clone never looks like a finished one. A stack's
    /// worktree is added to the repository's clone instead, at the
    /// fetched head.
    pub async fn clone_if_missing(&self) -> Result<(), GitError> {
        if self.is_cloned() {
            return Ok(());
        }
        if let Some(shared) = &self.shared {
            let _ = tokio::fs::remove_dir_all(&self.clone).await;
            let _ = git_cmd()
                .cwd(shared)
                .args(["worktree", "prune"])
                .run()
                .await;
            return git_cmd()
                .cwd(shared)
                .args(["worktree", "add", "--detach", "--force", "--quiet"])
                .arg(&self.clone)
                .arg(self.remote_ref())
                .timeout(GIT_TIMEOUT)
                .run()
                .await
                .map(drop)
                .map_err(|source| GitError::Checkout {
                    commit: self.remote_ref(),
                    source,
                });
        }
        let parent = self.clone.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent).map_err(|source| GitError::Io {
            path: parent.to_path_buf(),
            source,
        })?;
        let tmp = parent.join(format!(
            ".{}.cloning",
            self.clone.file_name().unwrap_or_default().to_string_lossy()
        ));
        // On the blocking pool: a leftover clone may be large.
        let _ = tokio::fs::remove_dir_all(&tmp).await;
        if self.clone.exists() {
            // A directory without .git is a leftover, not a clone.
            tokio::fs::remove_dir_all(&self.clone)
                .await
                .map_err(|source| GitError::Io {
                    path: self.clone.clone(),
                    source,
                })?;
        }
        let cmd = self
            .remote_git()?
            .args([
                "clone",
                "--quiet",
                "--no-checkout",
                "--branch",
                &self.branch,
                "--",
                &self.url,
            ])
            .arg(&tmp)
            .timeout(self.transfer_timeout());
        self.run_remote(cmd, |source| GitError::Clone {
            url: self.url.clone(),
            source,
        })
        .await?;
        std::fs::rename(&tmp, &self.clone).map_err(|source| GitError::Io {
            path: self.clone.clone(),
            source,
        })
    }

    /// Fetches the branch (force: a force-push replaces it) and returns its head.
    pub async fn fetch(&self) -> Result<String, GitError> {
        let refspec = format!("+refs/heads/{}:{}", self.branch, self.remote_ref());
        let fetch_err = |source| GitError::Fetch {
            url: self.url.clone(),
            branch: self.branch.clone(),
            source,
        };
        // A stack's worktree fetches into the repository's clone, whose
        // git directory holds FETCH_HEAD.
        let clone = self.shared.as_deref().unwrap_or(&self.clone);
        let cmd = self
            .remote_git()?
            .cwd(clone)
            .args(["fetch", "--quiet", "--no-tags", "--", &self.url, &refspec])
            .timeout(self.transfer_timeout());
        self.run_remote(cmd, fetch_err).await?;
        // What was fetched is in FETCH_HEAD ("<id>\t\tbranch 'main' of <url>",
        // the file `git pull` reads): no `rev-parse` process per fetch.
        let path = clone.join(".git/FETCH_HEAD");
        let text = tokio::fs::read_to_string(&path)
            .await
            .map_err(|source| GitError::Io {
                path: path.clone(),
                source,
            })?;
        fetched_head(&text).ok_or_else(|| GitError::FetchHead {
            line: text.lines().next().unwrap_or_default().to_string(),
            path,
        })
    }

    /// Whether the clone already has this commit.
    pub async fn has_commit(&self, commit: &str) -> bool {
        self.git()
            .args(["cat-file", "-e", &format!("{commit}^{{commit}}")])
            .run()
            .await
            .is_ok()
    }

    pub async fn commit_info(&self, commit: &str) -> Result<CommitInfo, GitError> {
        let out = self
            .git()
            .args(["log", "-1", "--format=%H%x00%T%x00%B", commit, "--"])
            .run()
            .await
            .map_err(|source| GitError::Inspect {
                commit: commit.to_string(),
                source,
            })?;
        let text = out.stdout_text();
        let mut parts = text.splitn(3, '\0');
        Ok(CommitInfo {
            hash: parts.next().unwrap_or_default().to_string(),
            tree: parts.next().unwrap_or_default().to_string(),
            message: bounded_message(parts.next().unwrap_or_default().trim()),
        })
    }

    /// Object ids of every file and directory of a commit, by path: the
    /// fingerprints of what services take from the repository.
    pub async fn object_ids(&self, commit: &str) -> Result<HashMap<String, String>, GitError> {
        let out = self
            .git()
            .args(["ls-tree", "-r", "-t", "-z", "--full-tree", commit])
            .run()
            .await
            .map_err(|source| GitError::Inspect {
                commit: commit.to_string(),
                source,
            })?;
        let text = out.stdout_text();
        Ok(text
            .split('\0')
            .filter_map(|entry| {
                // "<mode> <type> <id>\t<path>"
                let (meta, path) = entry.split_once('\t')?;
                let id = meta.split_whitespace().nth(2)?;
                Some((path.to_string(), id.to_string()))
            })
            .collect())
    }

    /// The content of the blob `id`, at most `limit` bytes (a larger one
    /// is an error, unread past the limit).
    pub async fn read_blob(&self, id: &str, limit: u64) -> Result<Vec<u8>, GitError> {
        let out = self
            .git()
            .args(["cat-file", "blob", id])
            .timeout(GIT_TIMEOUT)
            .max_stdout(limit)
            .run()
            .await
            .map_err(|source| GitError::Inspect {
                commit: id.to_string(),
                source,
            })?;
        Ok(out.stdout)
    }

    /// Puts `commit`'s tree into the render worktree. Only git writes there,
    /// so a forced checkout leaves exactly the commit's files.
    pub async fn checkout_for_render(&self, commit: &str) -> Result<PathBuf, GitError> {
        let dir = self.render_dir();
        let checkout_err = |source| GitError::Checkout {
            commit: commit.to_string(),
            source,
        };
        if dir.join(".git").exists() {
            let checked_out = git_cmd()
                .cwd(&dir)
                .args(["checkout", "--detach", "--force", "--quiet", commit])
                .timeout(GIT_TIMEOUT)
                .run()
                .await;
            match checked_out {
                Ok(_) => return Ok(dir),
                // A worktree of a clone that was since deleted and cloned
                // again points at git data that is gone: made anew below.
                Err(e) => tracing::debug!(
                    "render worktree unusable, recreating it: {}",
                    crate::error_chain(&e)
                ),
            }
        }
        let _ = tokio::fs::remove_dir_all(&dir).await;
        let _ = tokio::fs::remove_dir_all(self.clone.join(LEGACY_RENDER_WORKTREE)).await;
        // prune: forget worktrees whose directories are gone.
        let _ = self.git().args(["worktree", "prune"]).run().await;
        self.git()
            .args(["worktree", "add", "--detach", "--force", "--quiet"])
            .arg(&dir)
            .arg(commit)
            .timeout(GIT_TIMEOUT)
            .run()
            .await
            .map_err(checkout_err)?;
        Ok(dir)
    }

    /// Puts `commit`'s tree into the clone, the directory the stack runs from.
    /// Untracked files are kept: bind-mounted data directories live there.
    pub async fn checkout_deployed(&self, commit: &str) -> Result<(), GitError> {
        self.git()
            .args(["checkout", "--detach", "--force", "--quiet", commit])
            .timeout(GIT_TIMEOUT)
            .run()
            .await
            .map(drop)
            .map_err(|source| GitError::Checkout {
                commit: commit.to_string(),
                source,
            })
    }
}

/// The transports git may use, for every git child: `ext::` (runs a
/// command), `fd::` and any other remote helper are refused by git itself,
/// whatever a stored URL or a config file says.
pub const ALLOWED_PROTOCOLS: &str = "file:git:http:https:ssh";

/// The variables that tell git which repository, work tree, index or
/// object store to use.
const REPOSITORY_ENV: [&str; 10] = [
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_COMMON_DIR",
    "GIT_NAMESPACE",
    "GIT_CEILING_DIRECTORIES",
    "GIT_DISCOVERY_ACROSS_FILESYSTEM",
    "GIT_QUARANTINE_PATH",
];

/// Git without prompts, pagers or settings from outside Kedge getting in
/// the way: neither the system's `/etc/gitconfig` nor the user's
/// `~/.gitconfig` (or `$XDG_CONFIG_HOME/git/config`) is read, so an
/// `insteadOf` rewrite, a credential helper or `protocol.ext.allow` there
/// changes nothing; nor do `-c` settings passed down in the environment.
pub(super) fn git_cmd() -> Cmd {
    let mut cmd = Cmd::new("git");
    // Kedge started from a git hook or inside another checkout: these would
    // point every git child at that repository instead of the clone.
    for name in REPOSITORY_ENV {
        cmd = cmd.env_remove(name);
    }
    let cmd = cmd
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_PAGER", "cat")
        .env("LC_ALL", "C")
        .env("GIT_ALLOW_PROTOCOL", ALLOWED_PROTOCOLS)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_PARAMETERS", "")
        .env("GIT_CONFIG_COUNT", "0")
        .timeout(GIT_TIMEOUT);
    // An operator's own ssh command wins; otherwise never wait for a passphrase.
    if std::env::var_os("GIT_SSH_COMMAND").is_some() {
        cmd
    } else {
        cmd.env("GIT_SSH_COMMAND", "ssh -o BatchMode=yes")
    }
}

/// The commit id on FETCH_HEAD's first line (SHA-1 or SHA-256).
fn fetched_head(text: &str) -> Option<String> {
    let id = text.lines().next()?.split('\t').next()?;
    let valid = matches!(id.len(), 40 | 64) && id.bytes().all(|b| b.is_ascii_hexdigit());
    valid.then(|| id.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_commit_message_of_mebibytes_is_cut_after_64_kib() {
        let long = format!("subject\n\n{}", "é".repeat(1 << 20));
        let kept = bounded_message(&long);
        assert!(kept.starts_with("subject\n"));
        assert!(kept.len() <= MAX_MESSAGE + 40, "{}", kept.len());
        let cut = long.len() - (MAX_MESSAGE - 1);
        assert!(
            kept.ends_with(&format!("é…[{cut} bytes cut]")),
            "{}",
            &kept[kept.len() - 40..]
        );
        assert_eq!(bounded_message("short"), "short");
    }

    #[test]
    fn fetched_head_reads_the_first_line() {
        let id = "3f786850e387550fdab836ed7e6dc881de23001b";
        let text = format!("{id}\t\tbranch 'main' of https://git.example.com/app\n");
        assert_eq!(fetched_head(&text).as_deref(), Some(id));
        let sha256 = "a".repeat(64);
        assert_eq!(
            fetched_head(&format!("{sha256}\t\tbranch 'x' of /r")),
            Some(sha256)
        );
        for bad in ["", "\n", "not-a-commit\t\tbranch 'main' of x", &id[..39]] {
            assert_eq!(fetched_head(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_render_worktree_sits_beside_the_clone() {
        let r = Repository::new("file:///r.git", "main", "/data/repos/app".into());
        assert_eq!(r.render_dir(), Path::new("/data/repos/.app.render"));
    }
}
