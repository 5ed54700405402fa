//! model: what a repository's address says beyond its form: where it
//! goes (a local path, a server, plain http off loopback) and what secret
//! it carries, and `RepoUrl`, an address that is only ever shown redacted.

use super::url::{is_login_scheme, redact, scp_like, split_port};

/// A registered repository's address. It is shown only redacted: its
/// `Display`, `Debug` and `Serialize` hide any credentials it holds, and
/// only `expose` (for git, which moves them into its environment) gives
/// the address as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct RepoUrl(String);

impl RepoUrl {
    pub fn new(url: impl Into<String>) -> Self {
        RepoUrl(url.into())
    }

    /// The address as stored, credentials and all: for git only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for RepoUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&redact(&self.0))
    }
}

impl std::fmt::Debug for RepoUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RepoUrl({:?})", redact(&self.0))
    }
}

impl serde::Serialize for RepoUrl {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&redact(&self.0))
    }
}

/// Whether the address names this host's filesystem (a path or `file://`),
/// judged from its form alone: nothing on disk is looked at.
pub fn is_local_form(input: &str) -> bool {
    let s = input.trim();
    match s.split_once("://") {
        Some((scheme, _)) => scheme.eq_ignore_ascii_case("file"),
        None => !matches!(scp_like(s), Ok(Some(_))),
    }
}

/// Whether the address carries a secret (what `redact` would hide).
pub fn has_credentials(url: &str) -> bool {
    redact(url) != url
}

/// An `http(s)://` address's credentials split off: the address without
/// them and the user info (`user:password` percent-decoded; a lone user
/// as `user:`). `None` when it has none.
pub fn split_userinfo(url: &str) -> Option<(String, String)> {
    let (scheme, rest) = url.split_once("://")?;
    if !scheme.eq_ignore_ascii_case("https") && !scheme.eq_ignore_ascii_case("http") {
        return None;
    }
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (userinfo, host) = rest[..authority_end].rsplit_once('@')?;
    let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
    Some((
        format!("{scheme}://{host}{}", &rest[authority_end..]),
        format!("{}:{}", percent_decode(user), percent_decode(password)),
    ))
}

/// The address with whatever `redact` would hide removed, for schemes
/// whose credentials git never uses (`ssh://user:password@` keeps `user`).
pub fn strip_credentials(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            let kept = if is_login_scheme(scheme) && !user.is_empty() {
                format!("{user}@")
            } else {
                String::new()
            };
            format!("{scheme}://{kept}{host}{}", &rest[authority_end..])
        }
        None => url.to_string(),
    }
}

/// `%XX` escapes decoded; anything else kept as it is.
pub(crate) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Some(b) = std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The server an address names, in lower case, and its port if it says
/// one (`git@host:path` says none). `None` for a local path.
pub fn host_port(url: &str) -> Option<(String, Option<String>)> {
    let authority = match url.split_once("://") {
        Some((scheme, _)) if scheme.eq_ignore_ascii_case("file") => return None,
        Some((_, rest)) => rest.split_once('/').map_or(rest, |(a, _)| a),
        None => match scp_like(url) {
            Ok(Some(_)) => url.split_once(':')?.0,
            _ => return None,
        },
    };
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = split_port(host_port);
    if host.is_empty() {
        return None;
    }
    let port = match url.split_once("://") {
        Some(_) => port.filter(|p| !p.is_empty()).map(str::to_string),
        None => None,
    };
    Some((host.to_ascii_lowercase(), port))
}

/// Plain `http://` to a host other than this one's loopback: a token sent
/// there crosses the network in clear, so Kedge sends none.
pub fn is_plain_http_off_loopback(url: &str) -> bool {
    let Some((scheme, rest)) = url.split_once("://") else {
        return false;
    };
    if !scheme.eq_ignore_ascii_case("http") {
        return false;
    }
    let authority = rest.split_once('/').map_or(rest, |(a, _)| a);
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, _) = split_port(host_port);
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    !loopback
}

/// A stack's address (`repo/stack`) as one URL path segment,
/// `repo%2Fstack`: how the dashboard's `/repos/{name}` pages name a
/// declared stack (a repository's name has no `/`).
pub fn path_segment(address: &str) -> String {
    address.replace('/', "%2F")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_urls_are_shown_redacted_and_exposed_only_for_git() {
        let url = RepoUrl::new("https://bot:s3cret@host/app.git");
        assert_eq!(url.to_string(), "https://bot:***@host/app.git");
        assert!(!format!("{url:?}").contains("s3cret"));
        assert_eq!(
            serde_json::to_string(&url).unwrap(),
            "\"https://bot:***@host/app.git\""
        );
        assert_eq!(url.expose(), "https://bot:s3cret@host/app.git");
    }

    #[test]
    fn local_forms_are_told_by_form_alone() {
        for local in [
            "/srv/app.git",
            "./app",
            "../app",
            "app.git",
            "file:///srv/app.git",
            "FILE://localhost/x",
            "~/app",
        ] {
            assert!(is_local_form(local), "{local}");
        }
        for remote in [
            "https://h/app.git",
            "ssh://git@h/app.git",
            "git@h:app.git",
            "git://h/app",
            "http://127.0.0.1:9/x.git",
        ] {
            assert!(!is_local_form(remote), "{remote}");
        }
    }

    #[test]
    fn credentials_are_split_off_and_stripped() {
        assert_eq!(
            split_userinfo("https://bot:p%40ss@host:8443/app.git"),
            Some((
                "https://host:8443/app.git".to_string(),
                "bot:p@ss".to_string()
            ))
        );
        assert_eq!(
            split_userinfo("http://ghp_tok@host/app.git"),
            Some(("http://host/app.git".to_string(), "ghp_tok:".to_string()))
        );
        assert_eq!(split_userinfo("https://host/app.git"), None);
        assert_eq!(split_userinfo("ssh://git:pw@host/app.git"), None);
        assert_eq!(
            strip_credentials("ssh://git:pw@host/app.git"),
            "ssh://git@host/app.git"
        );
        assert_eq!(
            strip_credentials("https://tok@host/app.git"),
            "https://host/app.git"
        );
        assert_eq!(strip_credentials("git@host:app.git"), "git@host:app.git");
        assert!(has_credentials("https://tok@h/x") && !has_credentials("ssh://git@h/x"));
    }

    #[test]
    fn plain_http_is_fine_for_a_token_on_loopback_only() {
        for (url, off) in [
            ("http://127.0.0.1:8080/x.git", false),
            ("http://127.1.2.3/x.git", false),
            ("http://localhost/x.git", false),
            ("http://[::1]:3000/x.git", false),
            ("http://u:p@127.0.0.1/x.git", false),
            ("https://example.com/x.git", false),
            ("ssh://git@example.com/x.git", false),
            ("http://example.com/x.git", true),
            ("HTTP://10.0.0.1/x.git", true),
            ("http://127.0.0.1.example.com/x.git", true),
            ("http://u@localhost.evil/x.git", true),
        ] {
            assert_eq!(is_plain_http_off_loopback(url), off, "{url}");
        }
    }
}
