//! model: repository addresses, names and branches as `kedge repo add`
//! accepts them. Checked without the network: only the form is judged
//! here. `source` reaches them by these addresses; `record` keeps them.

use std::path::{Component, Path, PathBuf};

pub use super::address::{
    RepoUrl, has_credentials, host_port, is_local_form, is_plain_http_off_loopback, split_userinfo,
    strip_credentials,
};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("repository URL is empty")]
    Empty,
    #[error("cannot parse repository URL {0:?}: it contains whitespace or control characters")]
    BadCharacters(String),
    #[error(
        "cannot parse repository URL {url:?}: unsupported scheme `{scheme}` (use https://, http://, ssh://, git://, file://, git@host:path or a local path)"
    )]
    UnsupportedScheme { url: String, scheme: String },
    #[error("cannot parse repository URL {0:?}: no host")]
    NoHost(String),
    #[error("cannot parse repository URL {0:?}: no repository path")]
    NoPath(String),
    #[error("cannot parse repository URL {0:?}: invalid port")]
    BadPort(String),
    #[error(
        "cannot parse repository URL {0:?}: a file:// URL needs an absolute path (file:///srv/app.git)"
    )]
    RelativeFileUrl(String),
    /// `<transport>::<address>` hands the address to git's remote helper
    /// `git-remote-<transport>`: `ext::` runs a command, `fd::` reads a
    /// descriptor. Never a repository Kedge should reach.
    #[error(
        "cannot use repository URL {url:?}: `{helper}::` asks git for a remote helper, which Kedge does not allow (use https://, http://, ssh://, git://, file://, git@host:path or a local path)"
    )]
    RemoteHelper { url: String, helper: String },
    #[error(
        "cannot parse repository URL {0:?}: not a URL (https://, ssh://, file://, git@host:path) and no such local path"
    )]
    Unrecognised(String),
    #[error(
        "{0:?} is a path on the host (or a file:// URL): over the API only a remote repository (https://, ssh://, git://, git@host:path) can be registered; run `kedge repo add` on the host for a local one"
    )]
    LocalOverApi(String),
    #[error(
        "{0} carries credentials: over the API, name a credential of the global config's `credentials:` (\"credential\") instead"
    )]
    CredentialsOverApi(String),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error(
        "invalid repository name {0:?}: use lowercase letters, digits, `_` and `-`, starting with a letter or digit, at most 63 characters"
    )]
    Invalid(String),
    #[error(
        "cannot derive a repository name from {url:?} ({derived:?} is not a valid name); pass --name, e.g. --name {suggestion}"
    )]
    NotDerivable {
        url: String,
        derived: String,
        suggestion: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid branch name {0:?}")]
pub struct BranchError(pub String);

/// A repository address in the form Kedge stores: URLs as given (a trailing
/// `/` removed), local paths made absolute against `cwd`.
pub fn normalize_url(input: &str, cwd: &Path) -> Result<String, UrlError> {
    let s = input.trim();
    if s.is_empty() {
        return Err(UrlError::Empty);
    }
    if let Some(helper) = remote_helper(s) {
        return Err(UrlError::RemoteHelper {
            url: redact(s),
            helper: helper.to_string(),
        });
    }
    if s.chars().any(char::is_control) {
        return Err(UrlError::BadCharacters(redact(s)));
    }
    if let Some((scheme, rest)) = s.split_once("://") {
        if s.chars().any(char::is_whitespace) {
            return Err(UrlError::BadCharacters(redact(s)));
        }
        return scheme_url(s, &scheme.to_ascii_lowercase(), rest);
    }
    if let Some(url) = scp_like(s)? {
        return Ok(url);
    }
    local_path(s, cwd)
}

/// The transport of git's `<transport>::<address>` form, git's own rule: a
/// letter, then letters, digits, `+`, `-` or `.`, then `::`.
pub fn remote_helper(url: &str) -> Option<&str> {
    let (transport, _) = url.split_once("::")?;
    let mut chars = transport.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    valid.then_some(transport)
}

fn scheme_url(s: &str, scheme: &str, rest: &str) -> Result<String, UrlError> {
    let trimmed = s.trim_end_matches('/').to_string();
    match scheme {
        "file" => {
            // file://HOST/PATH with HOST empty or localhost.
            let path = rest.strip_prefix("localhost").unwrap_or(rest);
            if !path.starts_with('/') {
                return Err(UrlError::RelativeFileUrl(redact(s)));
            }
            if path.trim_matches('/').is_empty() {
                return Err(UrlError::NoPath(redact(s)));
            }
            Ok(trimmed)
        }
        "https" | "http" | "ssh" | "git" => {
            let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
            let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            let (host, port) = split_port(host_port);
            if host.is_empty() {
                return Err(UrlError::NoHost(redact(s)));
            }
            if let Some(port) = port
                && (port.is_empty() || !port.chars().all(|c| c.is_ascii_digit()))
            {
                return Err(UrlError::BadPort(redact(s)));
            }
            if path.trim_matches('/').is_empty() {
                return Err(UrlError::NoPath(redact(s)));
            }
            Ok(trimmed)
        }
        other => Err(UrlError::UnsupportedScheme {
            url: redact(s),
            scheme: other.to_string(),
        }),
    }
}

pub(super) fn split_port(host_port: &str) -> (&str, Option<&str>) {
    if let Some(inner) = host_port.strip_prefix('[') {
        // [ipv6]:port
        return match inner.split_once(']') {
            Some((h, rest)) => (h, rest.strip_prefix(':')),
            None => ("", None),
        };
    }
    match host_port.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (host_port, None),
    }
}

/// Git's scp-like syntax, `[user@]host:path`: a colon before any slash.
pub(super) fn scp_like(s: &str) -> Result<Option<String>, UrlError> {
    let Some(colon) = s.find(':') else {
        return Ok(None);
    };
    if s[..colon].contains('/') {
        return Ok(None);
    }
    if s.chars().any(char::is_whitespace) {
        return Err(UrlError::BadCharacters(s.to_string()));
    }
    let host = s[..colon].rsplit_once('@').map_or(&s[..colon], |(_, h)| h);
    if host.is_empty() {
        return Err(UrlError::NoHost(s.to_string()));
    }
    if s[colon + 1..].trim_matches('/').is_empty() {
        return Err(UrlError::NoPath(s.to_string()));
    }
    Ok(Some(s.trim_end_matches('/').to_string()))
}

/// An absolute path, or one written relative (`./x`, `../x`), is taken as
/// it is; a bare word only when it names an existing path, so that a typo in
/// a URL is not silently registered as a local directory. `.` and `..` are
/// resolved, so one directory has one spelling.
fn local_path(s: &str, cwd: &Path) -> Result<String, UrlError> {
    let p = Path::new(s);
    let explicit = p.is_absolute()
        || matches!(
            p.components().next(),
            Some(Component::CurDir | Component::ParentDir)
        );
    let absolute = lexical_join(cwd, p);
    if !explicit && !absolute.exists() {
        return Err(UrlError::Unrecognised(s.to_string()));
    }
    let text = absolute.to_string_lossy().trim_end_matches('/').to_string();
    if text.is_empty() {
        return Err(UrlError::NoPath(s.to_string()));
    }
    Ok(text)
}

/// `rel` (or an absolute path) resolved against `base` without touching
/// the filesystem: `.` dropped, `..` removes the component before it.
fn lexical_join(base: &Path, rel: &Path) -> PathBuf {
    let mut out = if rel.is_absolute() {
        PathBuf::new()
    } else {
        base.to_path_buf()
    };
    for c in rel.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// The spec's default name: the last path segment without `.git`.
pub fn derive_name(url: &str) -> Result<String, NameError> {
    let path = match url.split_once("://") {
        Some((_, rest)) => rest.split_once('/').map_or("", |(_, p)| p),
        None => match scp_like(url) {
            Ok(Some(_)) => url.split_once(':').map_or(url, |(_, p)| p),
            _ => url,
        },
    };
    let last = path.trim_end_matches('/').rsplit('/').next().unwrap_or("");
    let derived = last.strip_suffix(".git").unwrap_or(last).to_string();
    if is_valid_name(&derived) {
        return Ok(derived);
    }
    let mut suggestion: String = derived
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    suggestion = suggestion
        .trim_start_matches(['-', '_'])
        .chars()
        .take(63)
        .collect();
    if !is_valid_name(&suggestion) {
        suggestion = "myapp".into();
    }
    Err(NameError::NotDerivable {
        url: redact(url),
        derived,
        suggestion,
    })
}

pub fn is_valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 63
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

pub fn validate_name(name: &str) -> Result<(), NameError> {
    if is_valid_name(name) {
        Ok(())
    } else {
        Err(NameError::Invalid(name.to_string()))
    }
}

/// Git's ref-name rules, the ones a typo can break.
pub fn validate_branch(branch: &str) -> Result<(), BranchError> {
    let bad = branch.is_empty()
        || branch.starts_with('-')
        || branch.starts_with('/')
        || branch.ends_with('/')
        || branch.ends_with('.')
        || branch.ends_with(".lock")
        || branch.contains("..")
        || branch.contains("//")
        || branch.contains("@{")
        || branch == "@"
        || branch
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || "~^:?*[\\".contains(c))
        || branch.split('/').any(|part| part.starts_with('.'));
    if bad {
        Err(BranchError(branch.to_string()))
    } else {
        Ok(())
    }
}

/// The local directory a stored address names: a path, or a `file://` URL.
pub fn local_dir(url: &str) -> Option<PathBuf> {
    let path = match url.strip_prefix("file://") {
        Some(rest) => rest.strip_prefix("localhost").unwrap_or(rest),
        None => url,
    };
    path.starts_with('/')
        .then(|| lexical_join(Path::new("/"), Path::new(path)))
}

/// Whether two stored addresses name the same repository: `file:///x`,
/// `/x` and `/y/../x` are one; anything else must match exactly.
pub fn same_repository(a: &str, b: &str) -> bool {
    match (local_dir(a), local_dir(b)) {
        (Some(a), Some(b)) => a == b,
        (None, None) => a.trim_end_matches('/') == b.trim_end_matches('/'),
        _ => false,
    }
}

/// What names one repository however a git host spells its address (a
/// webhook payload carries clone, ssh and web URLs): the host in lower
/// case without credentials or port, then the path without a leading or
/// trailing `/` or a `.git` suffix; the scheme does not count, and
/// `git@host:path` is `ssh://git@host/path`. Forges route paths without
/// regard to case, so the whole key is lower case. Local paths and
/// `file://` URLs are their resolved path without `.git`. `None` for what
/// is no repository address at all.
pub fn remote_key(url: &str) -> Option<String> {
    let s = url.trim();
    if s.is_empty() || s.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return None;
    }
    let strip = |path: &str| -> String {
        let path = path.trim_matches('/');
        let path = path.strip_suffix(".git").unwrap_or(path);
        path.trim_end_matches('/').to_string()
    };
    if let Some(dir) = local_dir(s) {
        let path = strip(&dir.to_string_lossy());
        return (!path.is_empty()).then(|| format!("/{path}"));
    }
    let (authority, path) = match s.split_once("://") {
        Some((scheme, _)) if scheme.eq_ignore_ascii_case("file") => return None,
        Some((_, rest)) => rest.split_once('/').unwrap_or((rest, "")),
        None => match scp_like(s) {
            Ok(Some(_)) => s.split_once(':')?,
            _ => return None,
        },
    };
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, _port) = split_port(host_port);
    let path = strip(path);
    if host.is_empty() || path.is_empty() {
        return None;
    }
    Some(format!("{host}/{path}").to_ascii_lowercase())
}

/// The URL with any password replaced, for output and logs. A user name
/// alone is kept only where it is a login (`ssh://git@…`); elsewhere it is
/// likely a token.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            let masked = if userinfo.contains(':') {
                format!("{user}:***")
            } else if is_login_scheme(scheme) {
                user.to_string()
            } else {
                "***".to_string()
            };
            format!("{scheme}://{masked}@{host}{}", &rest[authority_end..])
        }
        None => url.to_string(),
    }
}

/// Schemes whose user part names an account (`git@`), not a secret.
pub(super) fn is_login_scheme(scheme: &str) -> bool {
    ["ssh", "git", "git+ssh", "ssh+git"]
        .iter()
        .any(|s| scheme.eq_ignore_ascii_case(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_urls() {
        let cwd = Path::new("/home/op/work");
        let cases: &[(&str, &str)] = &[
            ("https://github.com/acme/app", "https://github.com/acme/app"),
            (
                "https://github.com/acme/app.git/",
                "https://github.com/acme/app.git",
            ),
            (
                "http://gitea.local:3000/acme/app.git",
                "http://gitea.local:3000/acme/app.git",
            ),
            (
                "ssh://git@host:2222/srv/app.git",
                "ssh://git@host:2222/srv/app.git",
            ),
            ("ssh://[::1]:22/app.git", "ssh://[::1]:22/app.git"),
            ("git://host/app.git", "git://host/app.git"),
            ("git@github.com:acme/app.git", "git@github.com:acme/app.git"),
            ("host:app.git", "host:app.git"),
            ("file:///srv/git/app.git", "file:///srv/git/app.git"),
            (
                "file://localhost/srv/app.git",
                "file://localhost/srv/app.git",
            ),
            ("/srv/git/app.git", "/srv/git/app.git"),
            ("./app.git", "/home/op/work/app.git"),
            ("../remotes/app.git/", "/home/op/remotes/app.git"),
            ("/srv/x/../git/./app.git", "/srv/git/app.git"),
            ("/srv//git/app.git", "/srv/git/app.git"),
        ];
        for (input, want) in cases {
            assert_eq!(normalize_url(input, cwd).as_deref(), Ok(*want), "{input}");
        }
    }

    #[test]
    fn refused_urls() {
        let cwd = Path::new("/nonexistent-kedge-test-dir");
        type Check = fn(&UrlError) -> bool;
        let cases: &[(&str, Check)] = &[
            ("", |e| matches!(e, UrlError::Empty)),
            ("   ", |e| matches!(e, UrlError::Empty)),
            ("ftp://host/app.git", |e| {
                matches!(e, UrlError::UnsupportedScheme { .. })
            }),
            ("https://", |e| matches!(e, UrlError::NoHost(_))),
            ("https:///app.git", |e| matches!(e, UrlError::NoHost(_))),
            ("https://github.com", |e| matches!(e, UrlError::NoPath(_))),
            ("https://github.com/", |e| matches!(e, UrlError::NoPath(_))),
            ("https://host:port/app", |e| {
                matches!(e, UrlError::BadPort(_))
            }),
            ("https://host/a pp", |e| {
                matches!(e, UrlError::BadCharacters(_))
            }),
            (
                "ext::sh -c touch% /tmp/pwned",
                |e| matches!(e, UrlError::RemoteHelper { helper, .. } if helper == "ext"),
            ),
            (
                "ext::true",
                |e| matches!(e, UrlError::RemoteHelper { helper, .. } if helper == "ext"),
            ),
            (
                "fd::0",
                |e| matches!(e, UrlError::RemoteHelper { helper, .. } if helper == "fd"),
            ),
            (
                "foo::bar",
                |e| matches!(e, UrlError::RemoteHelper { helper, .. } if helper == "foo"),
            ),
            (
                "testgit::/srv/app.git",
                |e| matches!(e, UrlError::RemoteHelper { helper, .. } if helper == "testgit"),
            ),
            ("git+ssh.x-y::host/app", |e| {
                matches!(e, UrlError::RemoteHelper { .. })
            }),
            ("EXT::true", |e| matches!(e, UrlError::RemoteHelper { .. })),
            ("https://host/a\napp", |e| {
                matches!(e, UrlError::BadCharacters(_))
            }),
            ("file://relative/app.git", |e| {
                matches!(e, UrlError::RelativeFileUrl(_))
            }),
            ("file:///", |e| matches!(e, UrlError::NoPath(_))),
            (":app.git", |e| matches!(e, UrlError::NoHost(_))),
            ("host:", |e| matches!(e, UrlError::NoPath(_))),
            ("not a url", |e| matches!(e, UrlError::Unrecognised(_))),
            ("app.git", |e| matches!(e, UrlError::Unrecognised(_))),
        ];
        for (input, check) in cases {
            let err = normalize_url(input, cwd).expect_err(input);
            assert!(check(&err), "{input}: {err:?}");
        }
    }

    #[test]
    fn a_bare_word_is_a_path_only_when_it_exists() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("app.git")).unwrap();
        let got = normalize_url("app.git", dir.path()).unwrap();
        assert_eq!(Path::new(&got), dir.path().join("app.git"));
    }

    #[test]
    fn derived_names() {
        let ok: &[(&str, &str)] = &[
            ("https://github.com/acme/app", "app"),
            ("https://github.com/acme/app.git", "app"),
            ("git@github.com:acme/web-shop.git", "web-shop"),
            ("host:app.git", "app"),
            ("file:///srv/git/app.git", "app"),
            ("/srv/git/my_app", "my_app"),
            ("ssh://git@host:2222/srv/app2.git", "app2"),
        ];
        for (url, want) in ok {
            assert_eq!(derive_name(url).as_deref(), Ok(*want), "{url}");
        }
        match derive_name("https://github.com/acme/My.App.git") {
            Err(NameError::NotDerivable {
                derived,
                suggestion,
                ..
            }) => {
                assert_eq!(derived, "My.App");
                assert_eq!(suggestion, "my-app");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn names() {
        for good in ["app", "a", "0app", "my-app_2", &"a".repeat(63)] {
            assert!(validate_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "App",
            "-app",
            "_app",
            "my.app",
            "my app",
            "app/x",
            &"a".repeat(64),
        ] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn branches() {
        for good in ["main", "release/1.2", "feature_x", "v1.0"] {
            assert!(validate_branch(good).is_ok(), "{good}");
        }
        for bad in [
            "", "-x", "a..b", "a b", "x.lock", "a:b", "a~1", "/x", "x/", ".hidden", "a/.b", "@",
        ] {
            assert!(validate_branch(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn file_urls_and_paths_are_the_same_repository() {
        assert!(same_repository("file:///srv/app.git", "/srv/app.git"));
        assert!(same_repository(
            "file://localhost/srv/app.git",
            "/srv/app.git/"
        ));
        assert!(!same_repository("/srv/app.git", "/srv/app"));
        assert!(same_repository("/srv/x/../app.git", "/srv/app.git"));
        assert!(same_repository("file:///srv/./app.git", "/srv/app.git"));
        assert!(!same_repository("https://h/app", "https://h/app.git"));
    }

    #[test]
    fn remote_keys() {
        let same: &[(&str, &[&str])] = &[
            (
                "github.com/acme/app",
                &[
                    "https://github.com/acme/app",
                    "https://github.com/acme/app.git",
                    "https://github.com/acme/app/",
                    "https://github.com/Acme/App.git",
                    "HTTPS://GitHub.COM/acme/app",
                    "http://github.com/acme/app",
                    "git://github.com/acme/app.git",
                    "ssh://git@github.com/acme/app.git",
                    "ssh://git@github.com:22/acme/app.git",
                    "git@github.com:acme/app.git",
                    "git@github.com:/acme/app.git",
                    "github.com:acme/app",
                    "https://bot:s3cret@github.com/acme/app.git",
                    "https://ghp_token@github.com/acme/app",
                    "  https://github.com/acme/app.git  ",
                ],
            ),
            (
                "gitea.local/acme/app",
                &[
                    "http://gitea.local:3000/acme/app.git",
                    "ssh://git@gitea.local:2222/acme/app.git",
                    "git@gitea.local:acme/app.git",
                ],
            ),
            (
                "gitlab.com/group/sub/project",
                &[
                    "https://gitlab.com/group/sub/project",
                    "git@gitlab.com:group/sub/project.git",
                ],
            ),
            ("::1/app", &["ssh://git@[::1]:2222/app.git"]),
            (
                "/srv/git/app",
                &[
                    "/srv/git/app.git",
                    "/srv/git/app",
                    "file:///srv/git/app.git",
                    "file:///srv/git/app.git/",
                    "file://localhost/srv/git/app.git",
                    "file:///srv/x/../git/./app.git",
                ],
            ),
        ];
        for (key, urls) in same {
            for url in *urls {
                assert_eq!(remote_key(url).as_deref(), Some(*key), "{url}");
            }
        }
        let different = [
            (
                "https://github.com/acme/app",
                "https://github.com/acme/app2",
            ),
            ("https://github.com/acme/app", "https://gitlab.com/acme/app"),
            (
                "https://github.com/acme/app",
                "https://github.com/other/app",
            ),
            ("/srv/git/App.git", "/srv/git/app.git"),
            ("/srv/app", "https://srv/app"),
        ];
        for (a, b) in different {
            assert_ne!(remote_key(a), remote_key(b), "{a} vs {b}");
        }
        for none in [
            "",
            "   ",
            "https://",
            "https://github.com",
            "https://github.com/",
            "https:///app",
            "file://relative/app",
            "file:///",
            "not a url",
            "app.git",
            ":app",
            "https://host/a b",
        ] {
            assert_eq!(remote_key(none), None, "{none:?}");
        }
    }

    #[test]
    fn redaction() {
        assert_eq!(
            redact("https://user:s3cret@host/app.git"),
            "https://user:***@host/app.git"
        );
        assert_eq!(
            redact("https://ghp_token@host/app.git"),
            "https://***@host/app.git"
        );
        assert_eq!(redact("ssh://git@host/app.git"), "ssh://git@host/app.git");
        // A mistyped scheme still hides a token.
        assert_eq!(
            redact("htps://ghp_token@host/app.git"),
            "htps://***@host/app.git"
        );
        assert_eq!(redact("git@host:app.git"), "git@host:app.git");
        assert_eq!(redact("/srv/app.git"), "/srv/app.git");
    }
}
