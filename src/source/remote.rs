//! source: how a repository reaches its remote — anonymous, with the
//! credentials its URL carried, a token or a deploy key — handed to git
//! through its environment, never argv; and ssh's failures read back.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::auth::{self, GitAuth};
use super::git::{GitError, Repository, TRANSFER_FACTOR, git_cmd};
use crate::config::registries::SecretRef;
use crate::process::{Cmd, Output, ProcessError};

/// Kedge's own record of SSH host keys, in the data directory.
pub const KNOWN_HOSTS: &str = "known_hosts";
/// ssh's connection sockets, in the data directory (mode 0700).
pub const SSH_SOCKETS: &str = "ssh";
/// A master connection outlives its last check by a poll interval and
/// this, so the next check finds it; bounded both ways.
const SSH_PERSIST_SLACK: Duration = Duration::from_secs(30);
const SSH_PERSIST_MIN: Duration = Duration::from_secs(60);
const SSH_PERSIST_MAX: Duration = Duration::from_secs(600);

/// What a remote command needs to authenticate, secrets read at each use.
#[derive(Clone)]
pub(super) enum Access {
    Anonymous,
    /// `Authorization` header for credentials that were in the URL.
    UrlCredentials(String),
    Token {
        token: SecretRef,
        username: String,
    },
    SshKey {
        key: PathBuf,
        known_hosts: PathBuf,
        /// The operator gave the file: unknown hosts are refused.
        strict: bool,
        reuse: auth::Reuse,
    },
}

impl Repository {
    /// A deploy key or a token; `data_dir` holds Kedge's own known_hosts
    /// and ssh's connection sockets; `poll_interval` says how long an ssh
    /// connection is worth keeping. Credentials in the URL, if any, give
    /// way to these.
    pub fn with_auth(mut self, auth: &GitAuth, data_dir: &Path, poll_interval: Duration) -> Self {
        match auth {
            GitAuth::None => {}
            GitAuth::SshKey { key, known_hosts } => {
                self.access = Access::SshKey {
                    key: key.clone(),
                    strict: known_hosts.is_some(),
                    known_hosts: known_hosts
                        .clone()
                        .unwrap_or_else(|| data_dir.join(KNOWN_HOSTS)),
                    reuse: auth::Reuse {
                        dir: data_dir.join(SSH_SOCKETS),
                        persist: (poll_interval + SSH_PERSIST_SLACK)
                            .clamp(SSH_PERSIST_MIN, SSH_PERSIST_MAX),
                    },
                }
            }
            GitAuth::Token { token, username } => {
                auth::hide_token_env(auth);
                self.access = Access::Token {
                    token: token.clone(),
                    username: username.clone(),
                }
            }
        }
        self
    }

    pub(super) fn transfer_timeout(&self) -> Duration {
        self.timeout.saturating_mul(TRANSFER_FACTOR)
    }

    /// The one way to build a git command that talks to the remote: it
    /// carries the repository's credentials, in the environment. A token
    /// is read now, so a rotated one is used from the next command on.
    pub(super) fn remote_git(&self) -> Result<Cmd, GitError> {
        let mut cmd = git_cmd();
        // A local source (a mounted repository, say) owned by another user:
        // git refuses it as of dubious ownership unless trusted, and the
        // host's config that used to trust it is not read any more. The
        // operator registered this path: it is trusted, and it alone, in a
        // global config of Kedge's own (the only kind git's local
        // transport hands on to the source's upload-pack).
        if let Some(dir) = crate::source::url::local_dir(&self.url) {
            let config = self.trust_config();
            let content = trust_directory(&dir);
            if std::fs::read_to_string(&config).ok().as_deref() != Some(content.as_str()) {
                if let Some(parent) = config.parent() {
                    let _ = std::fs::create_dir_all(parent);
                }
                std::fs::write(&config, &content).map_err(|source| GitError::TrustConfig {
                    path: config.clone(),
                    source,
                })?;
            }
            cmd = cmd.env("GIT_CONFIG_GLOBAL", &config);
        }
        Ok(match &self.access {
            Access::Anonymous => cmd,
            Access::UrlCredentials(header) => auth::with_header(cmd, header),
            Access::Token { token, username } => {
                let secret = token.read().map_err(|source| GitError::Credentials {
                    url: self.url.clone(),
                    source,
                })?;
                auth::with_header(cmd, &auth::basic_auth_header(username, &secret))
            }
            Access::SshKey {
                key,
                known_hosts,
                strict,
                reuse,
            } => {
                // Without the private socket directory, connect afresh.
                let reuse = std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(&reuse.dir)
                    .is_ok()
                    .then_some(reuse);
                cmd.env(
                    "GIT_SSH_COMMAND",
                    auth::ssh_command(key, known_hosts, *strict, reuse),
                )
            }
        })
    }

    /// Runs a command built by `remote_git`: ssh's failures become their
    /// own errors, and a host key recorded on first contact is logged
    /// with its fingerprint.
    pub(super) async fn run_remote(
        &self,
        cmd: Cmd,
        wrap: impl FnOnce(ProcessError) -> GitError,
    ) -> Result<Output, GitError> {
        let result = cmd.run().await;
        // ssh records a new host even when what follows fails.
        let stderr = match &result {
            Ok(out) => Some(out.stderr.as_str()),
            Err(ProcessError::Failed { stderr, .. }) => Some(stderr.as_str()),
            Err(_) => None,
        };
        if let Access::SshKey { known_hosts, .. } = &self.access
            && let Some(host) = stderr.and_then(auth::host_recorded)
        {
            tracing::info!(
                host = %host,
                fingerprint = %auth::last_fingerprint(known_hosts).unwrap_or_default(),
                file = %known_hosts.display(),
                "recorded the host key of {host} on first contact"
            );
        }
        match result {
            Ok(out) => Ok(out),
            Err(source) => {
                let had_credentials = !matches!(self.access, Access::Anonymous);
                Err(match &source {
                    ProcessError::Failed { stderr, .. } => {
                        match auth::refusal(stderr, had_credentials) {
                            Some(refusal) => GitError::Refused {
                                url: self.url.clone(),
                                refusal: Box::new(refusal),
                            },
                            None => wrap(source),
                        }
                    }
                    _ => wrap(source),
                })
            }
        }
    }
}

/// Moves `user:password@` out of an http(s) URL into a basic-auth header.
pub(super) fn split_credentials(url: &str) -> (String, Option<String>) {
    let Some((scheme, rest)) = url.split_once("://") else {
        return (url.to_string(), None);
    };
    if !scheme.eq_ignore_ascii_case("https") && !scheme.eq_ignore_ascii_case("http") {
        return (url.to_string(), None);
    }
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some((userinfo, host)) = rest[..authority_end].rsplit_once('@') else {
        return (url.to_string(), None);
    };
    let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
    let header = auth::basic_auth_header(
        &crate::model::address::percent_decode(user),
        &crate::model::address::percent_decode(password),
    );
    (
        format!("{scheme}://{host}{}", &rest[authority_end..]),
        Some(header),
    )
}

/// A git config trusting `dir` (a work tree or a bare repository) and
/// nothing else, its value quoted as git reads it.
pub(super) fn trust_directory(dir: &std::path::Path) -> String {
    let quote = |s: &str| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
    let dir = dir.to_string_lossy();
    format!(
        "[safe]\n\tdirectory = {}\n\tdirectory = {}\n",
        quote(&dir),
        quote(&format!("{dir}/.git"))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: with the host's git config out of reach, a mounted
    /// repository owned by another user (the container image trusted it in
    /// its system config) was refused as of dubious ownership.
    #[test]
    fn a_local_source_is_trusted_by_its_own_path_quoted_as_git_reads_it() {
        assert_eq!(
            trust_directory(std::path::Path::new("/repos/app")),
            "[safe]\n\tdirectory = \"/repos/app\"\n\tdirectory = \"/repos/app/.git\"\n"
        );
        assert_eq!(
            trust_directory(std::path::Path::new(r#"/r/a"b\c"#)),
            "[safe]\n\tdirectory = \"/r/a\\\"b\\\\c\"\n\tdirectory = \"/r/a\\\"b\\\\c/.git\"\n"
        );
    }

    #[test]
    fn credentials_leave_the_url_for_the_environment() {
        let r = Repository::new(
            "https://bot:s3cr%40t@git.example.com/acme/app.git",
            "main",
            "/x".into(),
        );
        assert_eq!(r.url, "https://git.example.com/acme/app.git");
        let cmd = r.remote_git().unwrap().args(["ls-remote", "--", &r.url]);
        assert!(!cmd.display().contains("s3cr"), "{}", cmd.display());
        assert!(!format!("{r:?}").contains("Basic"));
        // base64("bot:s3cr@t")
        assert!(matches!(&r.access,
            Access::UrlCredentials(h) if h == "Authorization: Basic Ym90OnMzY3JAdA=="));

        let plain = Repository::new("ssh://git@host/app.git", "main", "/x".into());
        assert_eq!(plain.url, "ssh://git@host/app.git");
        assert!(matches!(plain.access, Access::Anonymous));
        assert_eq!(crate::model::address::percent_decode("a%2"), "a%2");
        assert_eq!(crate::model::address::percent_decode("é%41"), "éA");
    }
}
