//! source: how git proves who it is to a private remote. Only references
//! are kept (a key file's path, a token's file or variable); the secret is
//! read at each use and reaches git through its environment, never argv.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use sha2::{Digest, Sha256};

use crate::config::credentials::{Credential, CredentialKind};
use crate::config::registries::SecretRef;
use crate::process::Cmd;

pub use crate::model::git_auth::{DEFAULT_TOKEN_USER, GitAuth, USERINFO_USER};

/// A token read from Kedge's environment must reach no child process
/// (`process::hide_env`), the git of other repositories included.
pub fn hide_token_env(auth: &GitAuth) {
    if let GitAuth::Token {
        token: SecretRef::Env(name),
        ..
    } = auth
    {
        crate::process::hide_env(name);
    }
}

/// `Authorization: Basic …` for a user and a secret. With no user, the
/// secret is the whole `user:password` pair: what a URL's credentials
/// became when they were moved out of the database (`USERINFO_USER`).
pub fn basic_auth_header(user: &str, secret: &str) -> String {
    let pair = if user == USERINFO_USER {
        secret.to_string()
    } else {
        format!("{user}:{secret}")
    };
    format!("Authorization: Basic {}", STANDARD.encode(pair))
}

/// How a repository authenticates, now: its stored references, or the
/// global config's credential it names. A credential that cannot serve
/// (missing from the config, a webhook secret, a token for a plain
/// `http://` address off loopback) becomes one that fails when read, so
/// the repository fails with the reason and nothing is sent.
pub fn effective(
    stored: &GitAuth,
    credential: Option<&str>,
    url: &str,
    credentials: &[Credential],
) -> GitAuth {
    let Some(name) = credential else {
        return stored.clone();
    };
    let unusable = |why: String| GitAuth::Token {
        token: SecretRef::Unusable(why),
        username: DEFAULT_TOKEN_USER.to_string(),
    };
    let credential = crate::config::credentials::find(credentials, name);
    if let Some(c) = credential
        && !c.allows(url)
    {
        return unusable(format!(
            "the credential '{name}' is not for this server (its `hosts:` do not list it)"
        ));
    }
    match credential.map(|c| &c.kind) {
        None => unusable(format!(
            "the credential '{name}' is not in the global config's `credentials:` (restart serve after adding it)"
        )),
        Some(CredentialKind::Token { .. }) if super::url::is_plain_http_off_loopback(url) => {
            unusable(format!(
                "the credential '{name}' is a token: Kedge sends none over plain http:// except to loopback"
            ))
        }
        Some(CredentialKind::Token { token, username }) => GitAuth::Token {
            token: token.clone(),
            username: username.clone(),
        },
        Some(CredentialKind::SshKey { key, known_hosts }) => GitAuth::SshKey {
            key: key.clone(),
            known_hosts: known_hosts.clone(),
        },
        Some(CredentialKind::WebhookSecret(_)) => unusable(format!(
            "the credential '{name}' is a webhook secret, not a git credential"
        )),
    }
}

/// Hands git an extra HTTP header through `GIT_CONFIG_*`: visible to git
/// and its helpers only, never in a command line.
pub fn with_header(cmd: Cmd, header: &str) -> Cmd {
    cmd.env("GIT_CONFIG_COUNT", "1")
        .env("GIT_CONFIG_KEY_0", "http.extraHeader")
        .env("GIT_CONFIG_VALUE_0", header)
}

/// Connection reuse: one master connection per deploy key and server,
/// kept `persist` after its last use; its socket in `dir` (mode 0700).
/// A check over a live master costs a channel, not a handshake
/// (BENCHMARKS.md: about ten times less time and CPU).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reuse {
    pub dir: PathBuf,
    pub persist: std::time::Duration,
}

/// Unix socket paths are limited to 108 bytes; ssh adds a few of its own.
const MAX_SOCKET_PATH: usize = 100;

impl Reuse {
    /// The socket of `key`'s masters: per key, since a master answers as the
    /// key it authenticated with (deploy keys are per repository), and per
    /// server through ssh's `%C` (a hash of host, port and user).
    fn control_path(&self, key: &Path) -> Option<PathBuf> {
        let id = hex::encode(&Sha256::digest(key.as_os_str().as_encoded_bytes())[..4]);
        let path = self.dir.join(format!("{id}-%C"));
        // %C expands to 40 characters.
        (path.as_os_str().len() - 2 + 40 <= MAX_SOCKET_PATH).then_some(path)
    }
}

/// The ssh command git runs for a deploy key: that key only, no agent, no
/// prompt, host keys checked against `known_hosts` (new hosts recorded
/// unless the file was given, then strict), and with `reuse`, connections
/// shared between checks.
pub fn ssh_command(key: &Path, known_hosts: &Path, strict: bool, reuse: Option<&Reuse>) -> String {
    let mut cmd = format!(
        "ssh -i {} -o IdentitiesOnly=yes -o IdentityAgent=none -o BatchMode=yes \
         -o UserKnownHostsFile={} -o StrictHostKeyChecking={}",
        shell_quote(&key.to_string_lossy()),
        shell_quote(&known_hosts.to_string_lossy()),
        if strict { "yes" } else { "accept-new" },
    );
    if let Some(reuse) = reuse
        && let Some(path) = reuse.control_path(key)
    {
        cmd.push_str(&format!(
            " -o ControlMaster=auto -o ControlPath={} -o ControlPersist={}",
            shell_quote(&path.to_string_lossy()),
            reuse.persist.as_secs().max(1)
        ));
    }
    cmd
}

/// git runs `GIT_SSH_COMMAND` through the shell: paths go in single quotes.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Why the remote refused Kedge, read from the messages of ssh and git
/// (they are the only account of it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// "git@host: Permission denied (publickey)."
    PermissionDenied { who: String },
    /// The server offered another key than the one recorded.
    HostKeyChanged {
        host: String,
        known: Option<String>,
        offered: Option<String>,
        file: Option<PathBuf>,
    },
    /// Strict checking, and the file has no key for the host.
    HostKeyUnknown { host: String },
    /// ssh ignores a private key others can read.
    KeyUnprotected,
    /// HTTP 401: no credentials, or wrong ones.
    Unauthorized { had_credentials: bool },
    /// HTTP 403.
    Forbidden,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let unknown = || "(unknown)".to_string();
        match self {
            Refusal::PermissionDenied { who } => {
                write!(f, "permission denied (publickey) for {who}")
            }
            Refusal::HostKeyChanged {
                host,
                known,
                offered,
                file,
            } => {
                write!(
                    f,
                    "the host key of {host} has changed: known {}, offered {}",
                    known.clone().unwrap_or_else(unknown),
                    offered.clone().unwrap_or_else(unknown)
                )?;
                if let Some(file) = file {
                    write!(
                        f,
                        "; if the change is expected, remove the old key with \
                         ssh-keygen -f {} -R '{host}'",
                        file.display()
                    )?;
                }
                Ok(())
            }
            Refusal::HostKeyUnknown { host } => {
                write!(f, "no host key for {host} in the given known_hosts file")
            }
            Refusal::KeyUnprotected => {
                f.write_str("ssh refused the private key: it is readable by others (chmod 600 it)")
            }
            Refusal::Unauthorized {
                had_credentials: true,
            } => f.write_str("the server refused the credentials (HTTP 401 Unauthorized)"),
            Refusal::Unauthorized {
                had_credentials: false,
            } => f.write_str(
                "the server asks for credentials (HTTP 401 Unauthorized): \
                 register the repository with --token-file or --token-env",
            ),
            Refusal::Forbidden => f.write_str("the server refused access (HTTP 403 Forbidden)"),
        }
    }
}

/// Reads a refusal out of a failed git command's stderr; `had_credentials`:
/// whether git sent any over HTTP.
pub fn refusal(stderr: &str, had_credentials: bool) -> Option<Refusal> {
    // With prompts disabled, git answers a 401 by failing to ask for a
    // user name.
    if stderr.contains("could not read Username for")
        || stderr.contains("Authentication failed for")
        || stderr.contains("returned error: 401")
    {
        return Some(Refusal::Unauthorized { had_credentials });
    }
    if stderr.contains("returned error: 403") {
        return Some(Refusal::Forbidden);
    }
    ssh_refusal(stderr)
}

/// Reads ssh's part of a failed git command's stderr.
fn ssh_refusal(stderr: &str) -> Option<Refusal> {
    let lines: Vec<&str> = stderr.lines().map(str::trim).collect();
    if lines
        .iter()
        .any(|l| l.contains("REMOTE HOST IDENTIFICATION HAS CHANGED"))
    {
        // "Host key for [127.0.0.1]:2222 has changed and you have requested strict checking."
        let host = lines
            .iter()
            .find_map(|l| {
                l.strip_prefix("Host key for ")?
                    .split_once(" has changed")
                    .map(|(h, _)| h.to_string())
            })
            .unwrap_or_else(|| "the server".to_string());
        // "The fingerprint for the ED25519 key sent by the remote host is" + next line
        let offered = lines
            .iter()
            .position(|l| l.contains("key sent by the remote host is"))
            .and_then(|i| lines.get(i + 1))
            .map(|l| l.trim_end_matches('.').to_string());
        // "Offending ED25519 key in /path/known_hosts:1"
        let offending = lines.iter().find_map(|l| {
            let rest = l.strip_prefix("Offending ")?;
            let (_, location) = rest.split_once(" key in ")?;
            let (file, line) = location.rsplit_once(':')?;
            Some((PathBuf::from(file), line.parse::<usize>().ok()?))
        });
        let known = offending
            .as_ref()
            .and_then(|(file, line)| known_hosts_fingerprint(file, *line));
        return Some(Refusal::HostKeyChanged {
            host,
            known,
            offered,
            file: offending.map(|(file, _)| file),
        });
    }
    if let Some(host) = lines.iter().find_map(|l| {
        // "No ED25519 host key is known for [127.0.0.1]:2222 and you have requested strict checking."
        let rest = l.split_once(" host key is known for ")?.1;
        rest.split_once(" and you have requested")
            .map(|(h, _)| h.to_string())
    }) {
        return Some(Refusal::HostKeyUnknown { host });
    }
    if lines
        .iter()
        .any(|l| l.contains("UNPROTECTED PRIVATE KEY FILE"))
    {
        return Some(Refusal::KeyUnprotected);
    }
    lines.iter().find_map(|l| {
        let (who, rest) = l.split_once(": Permission denied (")?;
        rest.starts_with("publickey")
            .then(|| Refusal::PermissionDenied {
                who: who.to_string(),
            })
    })
}

/// "Warning: Permanently added '[127.0.0.1]:2222' (ED25519) to the list of
/// known hosts.": ssh recorded a new host. The host, if so.
pub fn host_recorded(stderr: &str) -> Option<String> {
    stderr.lines().find_map(|l| {
        let rest = l.split_once("Permanently added '")?.1;
        rest.split_once('\'').map(|(h, _)| h.to_string())
    })
}

/// `SHA256:…` of the key on a known_hosts line (1-based), as ssh prints it.
pub fn known_hosts_fingerprint(file: &Path, line: usize) -> Option<String> {
    let text = std::fs::read_to_string(file).ok()?;
    text.lines()
        .nth(line.checked_sub(1)?)
        .and_then(line_fingerprint)
}

/// The fingerprint of the last key in a known_hosts file: the one ssh just
/// appended.
pub fn last_fingerprint(file: &Path) -> Option<String> {
    let text = std::fs::read_to_string(file).ok()?;
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .and_then(line_fingerprint)
}

/// `[@marker] hosts keytype base64 [comment]` → `SHA256:<base64 of the
/// key blob's sha256, unpadded>`.
fn line_fingerprint(line: &str) -> Option<String> {
    let mut fields = line.split_whitespace().skip_while(|f| f.starts_with('@'));
    let _hosts = fields.next()?;
    let _keytype = fields.next()?;
    let blob = STANDARD.decode(fields.next()?).ok()?;
    Some(format!(
        "SHA256:{}",
        STANDARD_NO_PAD.encode(Sha256::digest(blob))
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHANGED: &str = "\
@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@
@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @
@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@
IT IS POSSIBLE THAT SOMEONE IS DOING SOMETHING NASTY!
The fingerprint for the ED25519 key sent by the remote host is
SHA256:Fg5A0ZIeqx2IPYlHKakdInN2Iqb1I/cMoq9vQq5KV1Y.
Please contact your system administrator.
Add correct host key in KH to get rid of this message.
Offending ED25519 key in KH:2
  remove with:
  ssh-keygen -f \"KH\" -R \"[127.0.0.1]:22222\"
Host key for [127.0.0.1]:22222 has changed and you have requested strict checking.
Host key verification failed.
fatal: Could not read from remote repository.
";

    /// A real ed25519 host key line and the fingerprint ssh-keygen -l gives it.
    const KEY_LINE: &str = "|1|htFrnMzJ6f9SkZe+a8e00K/H5Wc=|gPzv2nclQPEVF9Vm7cmSo3WmS/E= ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHkjI05Z5Ix/ex/FBdrGo13PsQOi1bs7FFSTmo+Nl3Pl";

    #[test]
    fn fingerprints_match_ssh_keygen() {
        assert_eq!(
            line_fingerprint(KEY_LINE).as_deref(),
            Some("SHA256:uaPCHbP2PToQGhQseLR3X3lqhBRS+zP568173VqVL+A")
        );
        assert_eq!(
            line_fingerprint(&format!("@revoked {KEY_LINE}")),
            line_fingerprint(KEY_LINE)
        );
        assert_eq!(line_fingerprint("host ssh-ed25519 !!notbase64"), None);
        assert_eq!(line_fingerprint(""), None);
    }

    #[test]
    fn a_changed_host_key_names_the_host_and_both_fingerprints() {
        let dir = tempfile::tempdir().unwrap();
        let kh = dir.path().join("known_hosts");
        std::fs::write(&kh, format!("other ssh-ed25519 AAAA\n{KEY_LINE}\n")).unwrap();
        let stderr = CHANGED.replace("KH", &kh.to_string_lossy());
        let failure = refusal(&stderr, false).unwrap();
        assert_eq!(
            failure,
            Refusal::HostKeyChanged {
                host: "[127.0.0.1]:22222".into(),
                known: Some("SHA256:uaPCHbP2PToQGhQseLR3X3lqhBRS+zP568173VqVL+A".into()),
                offered: Some("SHA256:Fg5A0ZIeqx2IPYlHKakdInN2Iqb1I/cMoq9vQq5KV1Y".into()),
                file: Some(kh.clone()),
            }
        );
        let text = failure.to_string();
        assert!(
            text.starts_with("the host key of [127.0.0.1]:22222 has changed: known SHA256:uaPC")
        );
    }

    #[test]
    fn ssh_messages_table() {
        for (stderr, want) in [
            (
                "git@127.0.0.1: Permission denied (publickey).\nfatal: Could not read from remote repository.",
                Some("permission denied (publickey) for git@127.0.0.1"),
            ),
            (
                "No ED25519 host key is known for [h]:22 and you have requested strict checking.\nHost key verification failed.",
                Some("no host key for [h]:22 in the given known_hosts file"),
            ),
            (
                "@         WARNING: UNPROTECTED PRIVATE KEY FILE!          @\nLoad key \"k\": bad permissions\ngit@h: Permission denied (publickey).",
                Some("ssh refused the private key: it is readable by others (chmod 600 it)"),
            ),
            ("fatal: repository 'x' not found", None),
            (
                "fatal: could not read Username for 'http://127.0.0.1:1': terminal prompts disabled",
                Some("the server refused the credentials (HTTP 401 Unauthorized)"),
            ),
            (
                "fatal: unable to access 'http://h/a.git/': The requested URL returned error: 403",
                Some("the server refused access (HTTP 403 Forbidden)"),
            ),
            (
                "ssh: connect to host 127.0.0.1 port 1: Connection refused",
                None,
            ),
        ] {
            assert_eq!(
                refusal(stderr, true).map(|f| f.to_string()).as_deref(),
                want,
                "{stderr}"
            );
        }
        assert_eq!(
            host_recorded(
                "Warning: Permanently added '[127.0.0.1]:2222' (ED25519) to the list of known hosts.\n"
            ),
            Some("[127.0.0.1]:2222".into())
        );
        assert_eq!(host_recorded("anything else"), None);
    }

    #[test]
    fn the_ssh_command_quotes_paths_and_pins_the_key() {
        let cmd = ssh_command(
            Path::new("/d/it's key"),
            Path::new("/d/known_hosts"),
            false,
            None,
        );
        assert!(cmd.starts_with(r"ssh -i '/d/it'\''s key' -o IdentitiesOnly=yes"));
        assert!(cmd.contains("-o BatchMode=yes"));
        assert!(cmd.ends_with(
            "-o UserKnownHostsFile='/d/known_hosts' -o StrictHostKeyChecking=accept-new"
        ));
        assert!(ssh_command(Path::new("k"), Path::new("f"), true, None).ends_with("=yes"));

        // Reuse: one socket per key (and server, through %C).
        let reuse = Reuse {
            dir: "/var/lib/kedge/ssh".into(),
            persist: std::time::Duration::from_secs(90),
        };
        let a = ssh_command(Path::new("/keys/a"), Path::new("f"), false, Some(&reuse));
        let b = ssh_command(Path::new("/keys/b"), Path::new("f"), false, Some(&reuse));
        assert!(
            a.contains(" -o ControlMaster=auto -o ControlPath='/var/lib/kedge/ssh/"),
            "{a}"
        );
        assert!(a.ends_with("-%C' -o ControlPersist=90"), "{a}");
        assert_ne!(a, b);
        // A data dir too deep for a socket path: no reuse rather than no ssh.
        let deep = Reuse {
            dir: Path::new("/").join("d".repeat(60)).join("ssh"),
            ..reuse
        };
        let plain = ssh_command(Path::new("/keys/a"), Path::new("f"), false, Some(&deep));
        assert!(!plain.contains("Control"), "{plain}");
    }

    #[test]
    fn tokens_are_read_at_each_use() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("t");
        std::fs::write(&file, "tok1\n").unwrap();
        let r = SecretRef::File(file.clone());
        assert_eq!(r.read().unwrap(), "tok1");
        std::fs::write(&file, "tok2").unwrap();
        assert_eq!(r.read().unwrap(), "tok2");
        std::fs::write(&file, "\n").unwrap();
        assert!(r.read().unwrap_err().to_string().ends_with(" is empty"));
        let missing = SecretRef::Env("KEDGE_TEST_NO_SUCH_VAR_13".into()).read();
        assert_eq!(
            missing.unwrap_err().to_string(),
            "the environment variable KEDGE_TEST_NO_SUCH_VAR_13 is not set"
        );
        assert_eq!(
            basic_auth_header("bot", "s3cr@t"),
            "Authorization: Basic Ym90OnMzY3JAdA=="
        );
    }

    #[test]
    fn a_stored_user_info_is_sent_as_it_was_in_the_url() {
        let decode = |h: String| {
            String::from_utf8(
                STANDARD
                    .decode(h.strip_prefix("Authorization: Basic ").unwrap())
                    .unwrap(),
            )
            .unwrap()
        };
        assert_eq!(decode(basic_auth_header("bot", "t0k")), "bot:t0k");
        assert_eq!(decode(basic_auth_header(USERINFO_USER, "u:p:w")), "u:p:w");
        assert_eq!(decode(basic_auth_header(USERINFO_USER, "ghp_x:")), "ghp_x:");
    }

    #[test]
    fn a_named_credential_resolves_at_use_and_an_unusable_one_sends_nothing() {
        use crate::config::credentials::{Credential, CredentialKind};
        let credentials = vec![
            Credential {
                name: "gh".into(),
                kind: CredentialKind::Token {
                    token: SecretRef::Env("GH".into()),
                    username: "bot".into(),
                },
                hosts: vec!["h".into(), "example.com".into()],
            },
            Credential {
                name: "key".into(),
                kind: CredentialKind::SshKey {
                    key: "/k".into(),
                    known_hosts: None,
                },
                hosts: vec![],
            },
            Credential {
                name: "hook".into(),
                kind: CredentialKind::WebhookSecret(SecretRef::Env("H".into())),
                hosts: vec![],
            },
        ];
        let stored = GitAuth::SshKey {
            key: "/stored".into(),
            known_hosts: None,
        };
        let https = "https://h/app.git";
        assert_eq!(effective(&stored, None, https, &credentials), stored);
        assert_eq!(
            effective(&GitAuth::None, Some("gh"), https, &credentials),
            GitAuth::Token {
                token: SecretRef::Env("GH".into()),
                username: "bot".into()
            }
        );
        assert_eq!(
            effective(&GitAuth::None, Some("key"), "git@h:app.git", &credentials),
            GitAuth::SshKey {
                key: "/k".into(),
                known_hosts: None
            }
        );
        for (name, url, why) in [
            ("gone", https, "not in the global config"),
            ("hook", https, "is a webhook secret"),
            ("gh", "http://example.com/app.git", "plain http://"),
            (
                "gh",
                "https://collector.example/app.git",
                "not for this server",
            ),
        ] {
            let GitAuth::Token { token, .. } =
                effective(&GitAuth::None, Some(name), url, &credentials)
            else {
                panic!("{name}: not a token");
            };
            let err = token.read().unwrap_err().to_string();
            assert!(err.contains(why) && err.contains(name), "{err}");
        }
    }
}
