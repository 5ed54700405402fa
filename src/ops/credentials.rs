//! ops: the credentials `repo add` is given, checked before anything is
//! stored. Only where they are is kept (or the name of the global config's
//! credential); what they are is read at each use.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::config::credentials::{self, Credential, CredentialKind};
use crate::config::registries::{SecretRef, SecretRefError};
use crate::source::auth::{DEFAULT_TOKEN_USER, GitAuth};
use crate::source::url;

/// The credential options of `repo add`. Over HTTP only `credential` (a
/// name from the global config) can be given.
#[derive(Debug, Clone, Default)]
pub struct CredentialArgs {
    pub ssh_key: Option<PathBuf>,
    pub ssh_known_hosts: Option<PathBuf>,
    pub token_file: Option<PathBuf>,
    pub token_env: Option<String>,
    pub username: Option<String>,
    pub credential: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("{0} and {1} cannot be combined: give one way to authenticate")]
    Conflict(&'static str, &'static str),
    #[error("{0} needs {1}")]
    Requires(&'static str, &'static str),
    #[error("--ssh-key needs an ssh URL (ssh://user@host/path or user@host:path), not {0}")]
    NotSsh(String),
    #[error("a token needs an https:// or http:// URL, not {0}")]
    NotHttp(String),
    #[error(
        "{0} is plain http:// to a host other than loopback: a token would cross the network in clear; use https://"
    )]
    PlainHttp(String),
    #[error("{0} already carries credentials: remove them from the URL to use a token")]
    CredentialsInUrl(String),
    #[error("cannot read the {what} {}", path.display())]
    Read {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the ssh key {} is readable by group or others (mode {mode:03o}); ssh refuses such a key: `chmod 600` it",
        path.display()
    )]
    KeyTooOpen { path: PathBuf, mode: u32 },
    #[error("the token: {0}")]
    Token(#[from] SecretRefError),
    #[error(
        "{0:?} is not an environment variable name (letters, digits and _, not starting with a digit)"
    )]
    BadVariable(String),
    #[error("--username {0:?} may not contain ':' or control characters")]
    BadUsername(String),
    #[error("no credential named '{0}' in the global config's `credentials:`")]
    UnknownCredential(String),
    #[error("the credential '{name}' is a {kind}, not {wanted}")]
    WrongKind {
        name: String,
        kind: &'static str,
        wanted: &'static str,
    },
    #[error("the credential '{name}' is not for {url}: its `hosts:` do not list that server")]
    NotForHost { name: String, url: String },
    #[error("the credential '{name}': {inner}")]
    Named {
        name: String,
        inner: Box<CredentialError>,
    },
}

/// Checks the options against the URL and the files they name; relative
/// paths are taken from `cwd` and stored absolute. A named credential is
/// checked against the global config's `credentials`; what is stored for
/// it is its name, so the references returned are none.
pub fn resolve(
    args: &CredentialArgs,
    repo_url: &str,
    cwd: &Path,
    credentials: &[Credential],
) -> Result<GitAuth, CredentialError> {
    if let Some(name) = &args.credential {
        for (given, flag) in [
            (args.ssh_key.is_some(), "--ssh-key"),
            (args.ssh_known_hosts.is_some(), "--ssh-known-hosts"),
            (args.token_file.is_some(), "--token-file"),
            (args.token_env.is_some(), "--token-env"),
            (args.username.is_some(), "--username"),
        ] {
            if given {
                return Err(CredentialError::Conflict("--credential", flag));
            }
        }
        check_named(name, repo_url, credentials).map_err(|e| match e {
            CredentialError::UnknownCredential(_)
            | CredentialError::WrongKind { .. }
            | CredentialError::NotForHost { .. } => e,
            other => CredentialError::Named {
                name: name.clone(),
                inner: Box::new(other),
            },
        })?;
        return Ok(GitAuth::None);
    }
    let token_flag = match (&args.token_file, &args.token_env) {
        (Some(_), Some(_)) => return Err(CredentialError::Conflict("--token-file", "--token-env")),
        (Some(_), None) => Some("--token-file"),
        (None, Some(_)) => Some("--token-env"),
        (None, None) => None,
    };
    if let (Some(_), Some(token)) = (&args.ssh_key, token_flag) {
        return Err(CredentialError::Conflict("--ssh-key", token));
    }
    if args.ssh_known_hosts.is_some() && args.ssh_key.is_none() {
        return Err(CredentialError::Requires("--ssh-known-hosts", "--ssh-key"));
    }
    if args.username.is_some() && token_flag.is_none() {
        return Err(CredentialError::Requires(
            "--username",
            "--token-file or --token-env",
        ));
    }
    if let Some(key) = &args.ssh_key {
        let key = cwd.join(key);
        let known_hosts = args.ssh_known_hosts.as_ref().map(|f| cwd.join(f));
        check_ssh(repo_url, &key, known_hosts.as_deref())?;
        return Ok(GitAuth::SshKey { key, known_hosts });
    }
    let token = match (&args.token_file, &args.token_env) {
        (Some(file), _) => {
            let file = cwd.join(file);
            // Read once to refuse an unreadable or empty file now; the
            // content is not kept.
            SecretRef::File(file.clone()).read()?;
            SecretRef::File(file)
        }
        (None, Some(var)) => {
            if !credentials::is_variable_name(var) {
                return Err(CredentialError::BadVariable(var.clone()));
            }
            SecretRef::Env(var.clone())
        }
        (None, None) => {
            // Credentials in the URL are a token too.
            if url::split_userinfo(repo_url).is_some() && url::is_plain_http_off_loopback(repo_url)
            {
                return Err(CredentialError::PlainHttp(url::redact(repo_url)));
            }
            return Ok(GitAuth::None);
        }
    };
    check_token_url(repo_url)?;
    let username = args
        .username
        .clone()
        .unwrap_or_else(|| DEFAULT_TOKEN_USER.to_string());
    if username.is_empty() || username.contains(':') || username.chars().any(char::is_control) {
        return Err(CredentialError::BadUsername(username));
    }
    Ok(GitAuth::Token { token, username })
}

/// A credential of the global config, fit for this URL now.
fn check_named(
    name: &str,
    repo_url: &str,
    credentials: &[Credential],
) -> Result<(), CredentialError> {
    let credential = credentials::find(credentials, name)
        .ok_or_else(|| CredentialError::UnknownCredential(name.to_string()))?;
    if !matches!(credential.kind, CredentialKind::WebhookSecret(_)) && !credential.allows(repo_url)
    {
        return Err(CredentialError::NotForHost {
            name: name.to_string(),
            url: url::redact(repo_url),
        });
    }
    match &credential.kind {
        CredentialKind::Token { token, .. } => {
            check_token_url(repo_url)?;
            if let SecretRef::File(_) = token {
                token.read()?;
            }
            Ok(())
        }
        CredentialKind::SshKey { key, known_hosts } => {
            check_ssh(repo_url, key, known_hosts.as_deref())
        }
        CredentialKind::WebhookSecret(_) => Err(CredentialError::WrongKind {
            name: name.to_string(),
            kind: credential.kind_name(),
            wanted: "a git credential (token or ssh key)",
        }),
    }
}

/// The global config's webhook secret named `name`, checked now (its file
/// must be private, as a repository's own secret file must).
pub fn check_webhook_secret(name: &str, credentials: &[Credential]) -> Result<(), super::OpsError> {
    let credential = credentials::find(credentials, name)
        .ok_or_else(|| CredentialError::UnknownCredential(name.to_string()))?;
    match &credential.kind {
        CredentialKind::WebhookSecret(SecretRef::File(path)) => {
            super::hooks::read_secret_file(path)?;
            Ok(())
        }
        CredentialKind::WebhookSecret(_) => Ok(()),
        _ => Err(CredentialError::WrongKind {
            name: name.to_string(),
            kind: credential.kind_name(),
            wanted: "a webhook secret",
        }
        .into()),
    }
}

/// A token goes over https, or plain http to loopback only, and not
/// beside credentials already in the URL.
fn check_token_url(repo_url: &str) -> Result<(), CredentialError> {
    let scheme = repo_url
        .split_once("://")
        .map(|(s, _)| s.to_ascii_lowercase());
    if !matches!(scheme.as_deref(), Some("https" | "http")) {
        return Err(CredentialError::NotHttp(url::redact(repo_url)));
    }
    if url::has_credentials(repo_url) {
        return Err(CredentialError::CredentialsInUrl(url::redact(repo_url)));
    }
    if url::is_plain_http_off_loopback(repo_url) {
        return Err(CredentialError::PlainHttp(url::redact(repo_url)));
    }
    Ok(())
}

fn check_ssh(
    repo_url: &str,
    key: &Path,
    known_hosts: Option<&Path>,
) -> Result<(), CredentialError> {
    if !is_ssh(repo_url) {
        return Err(CredentialError::NotSsh(url::redact(repo_url)));
    }
    check_key(key)?;
    if let Some(file) = known_hosts {
        std::fs::File::open(file).map_err(|source| CredentialError::Read {
            what: "known_hosts file",
            path: file.to_path_buf(),
            source,
        })?;
    }
    Ok(())
}

/// `ssh://…` or git's scp-like `user@host:path`.
fn is_ssh(repo_url: &str) -> bool {
    match repo_url.split_once("://") {
        Some((scheme, _)) => scheme.eq_ignore_ascii_case("ssh"),
        None => !repo_url.starts_with('/') && repo_url.contains(':'),
    }
}

/// As ssh does: a private key its group or others may read is refused.
fn check_key(path: &Path) -> Result<(), CredentialError> {
    let read = |source| CredentialError::Read {
        what: "ssh key",
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read)?;
    let meta = file.metadata().map_err(read)?;
    if !meta.is_file() {
        return Err(read(std::io::Error::other("not a regular file")));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(CredentialError::KeyTooOpen {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> CredentialArgs {
        CredentialArgs::default()
    }

    #[test]
    fn credential_options_table() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("key");
        std::fs::write(&key, "k").unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        let open_key = dir.path().join("open");
        std::fs::write(&open_key, "k").unwrap();
        std::fs::set_permissions(&open_key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "t0k\n").unwrap();
        let ssh = "ssh://git@h:2222/srv/app.git";
        let https = "https://git.example.com/app.git";
        let cwd = dir.path();

        let ok = |a: CredentialArgs, url: &str| resolve(&a, url, cwd, &[]).unwrap();
        let err =
            |a: CredentialArgs, url: &str| resolve(&a, url, cwd, &[]).unwrap_err().to_string();

        assert_eq!(ok(args(), https), GitAuth::None);
        assert_eq!(
            ok(
                CredentialArgs {
                    ssh_key: Some("key".into()),
                    ..args()
                },
                ssh
            ),
            GitAuth::SshKey {
                key: key.clone(),
                known_hosts: None
            }
        );
        assert_eq!(
            ok(
                CredentialArgs {
                    ssh_key: Some(key.clone()),
                    ..args()
                },
                "git@h:app.git"
            ),
            GitAuth::SshKey {
                key: key.clone(),
                known_hosts: None
            }
        );
        assert_eq!(
            ok(
                CredentialArgs {
                    token_env: Some("GH_TOKEN".into()),
                    ..args()
                },
                https
            ),
            GitAuth::Token {
                token: SecretRef::Env("GH_TOKEN".into()),
                username: "x-access-token".into()
            }
        );
        assert_eq!(
            ok(
                CredentialArgs {
                    token_file: Some("token".into()),
                    username: Some("bot".into()),
                    ..args()
                },
                https
            ),
            GitAuth::Token {
                token: SecretRef::File(token.clone()),
                username: "bot".into()
            }
        );

        let open = err(
            CredentialArgs {
                ssh_key: Some(open_key.clone()),
                ..args()
            },
            ssh,
        );
        assert!(
            open.contains("mode 644") && open.contains("chmod 600"),
            "{open}"
        );
        for (a, url, want) in [
            (
                CredentialArgs {
                    ssh_key: Some(key.clone()),
                    ..args()
                },
                https,
                "--ssh-key needs an ssh URL",
            ),
            (
                CredentialArgs {
                    ssh_key: Some("nope".into()),
                    ..args()
                },
                ssh,
                "cannot read the ssh key",
            ),
            (
                CredentialArgs {
                    ssh_known_hosts: Some(key.clone()),
                    ..args()
                },
                ssh,
                "--ssh-known-hosts needs --ssh-key",
            ),
            (
                CredentialArgs {
                    ssh_key: Some(key.clone()),
                    token_env: Some("T".into()),
                    ..args()
                },
                ssh,
                "--ssh-key and --token-env cannot be combined",
            ),
            (
                CredentialArgs {
                    token_file: Some(token.clone()),
                    token_env: Some("T".into()),
                    ..args()
                },
                https,
                "--token-file and --token-env cannot be combined",
            ),
            (
                CredentialArgs {
                    token_env: Some("T".into()),
                    ..args()
                },
                ssh,
                "a token needs an https://",
            ),
            (
                CredentialArgs {
                    token_env: Some("1X".into()),
                    ..args()
                },
                https,
                "is not an environment variable name",
            ),
            (
                CredentialArgs {
                    username: Some("u".into()),
                    ..args()
                },
                https,
                "--username needs",
            ),
            (
                CredentialArgs {
                    token_env: Some("T".into()),
                    username: Some("a:b".into()),
                    ..args()
                },
                https,
                "may not contain ':'",
            ),
            (
                CredentialArgs {
                    token_env: Some("T".into()),
                    ..args()
                },
                "https://bot:pw@h/app.git",
                "already carries credentials",
            ),
            (
                CredentialArgs {
                    token_file: Some("missing".into()),
                    ..args()
                },
                https,
                "the token: cannot read",
            ),
        ] {
            let got = err(a, url);
            assert!(got.contains(want), "{got} ∌ {want}");
            assert!(!got.contains("pw@"), "{got}");
        }
    }

    /// Regression: the API's `token_env`/`token_file` made serve send any
    /// of its secrets anywhere. A credential is now a name from the global
    /// config, checked against the URL when it is given.
    #[test]
    fn named_credentials_are_checked_against_the_config_and_the_url() {
        use crate::config::credentials::{Credential, CredentialKind};
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "t0k\n").unwrap();
        let credentials = vec![
            Credential {
                name: "gh".into(),
                kind: CredentialKind::Token {
                    token: SecretRef::File(token),
                    username: "bot".into(),
                },
                hosts: vec!["h".into(), "127.0.0.1".into(), "git.example.com".into()],
            },
            Credential {
                name: "hook".into(),
                kind: CredentialKind::WebhookSecret(SecretRef::Env("H".into())),
                hosts: vec![],
            },
        ];
        let named = |name: &str| CredentialArgs {
            credential: Some(name.into()),
            ..CredentialArgs::default()
        };
        let check = |a: CredentialArgs, url: &str| resolve(&a, url, dir.path(), &credentials);
        assert_eq!(
            check(named("gh"), "https://h/app.git").unwrap(),
            GitAuth::None
        );
        assert_eq!(
            check(named("gh"), "http://127.0.0.1:3000/app.git").unwrap(),
            GitAuth::None
        );
        for (a, url, want) in [
            (
                named("nope"),
                "https://h/app.git",
                "no credential named 'nope'",
            ),
            (
                named("hook"),
                "https://h/app.git",
                "'hook' is a webhook-secret",
            ),
            (named("gh"), "git@h:app.git", "a token needs an https://"),
            (
                named("gh"),
                "https://collector.example/app.git",
                "'gh' is not for https://collector.example/app.git",
            ),
            (
                named("gh"),
                "http://git.example.com/app.git",
                "plain http:// to a host other than loopback",
            ),
            (
                CredentialArgs {
                    token_env: Some("T".into()),
                    ..named("gh")
                },
                "https://h/app.git",
                "--credential and --token-env cannot be combined",
            ),
            (
                CredentialArgs {
                    token_env: Some("T".into()),
                    ..CredentialArgs::default()
                },
                "http://10.1.2.3/app.git",
                "plain http://",
            ),
            (
                CredentialArgs::default(),
                "http://bot:pw@10.1.2.3/app.git",
                "plain http://",
            ),
        ] {
            let got = check(a, url).unwrap_err().to_string();
            assert!(got.contains(want), "{got} ∌ {want}");
            assert!(!got.contains("pw@") && !got.contains("t0k"), "{got}");
        }
    }
}
