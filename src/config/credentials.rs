//! config: the `credentials:` section. The operator names each secret once
//! (a git token, a deploy key, a webhook secret) and repositories refer to
//! it by that name (`repo add --credential`, the API's `credential` and
//! `webhook_secret`): over HTTP no file, variable or local path of the host
//! is ever named.

use std::path::PathBuf;

use super::interpolate::Env;
use super::registries::SecretRef;
use super::schema::{SchemaError, Section};

/// One `credentials:` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    pub name: String,
    pub kind: CredentialKind,
    /// `hosts:`: the only servers a git credential is used with (`host`,
    /// any port, or `host:port`); empty, any.
    pub hosts: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialKind {
    /// An HTTPS access token (`token_file` or `token_env`), sent as basic
    /// auth with `username`.
    Token { token: SecretRef, username: String },
    /// An SSH deploy key, and optionally a known_hosts file checked strictly.
    SshKey {
        key: PathBuf,
        known_hosts: Option<PathBuf>,
    },
    /// A webhook secret (`secret_file` or `secret_env`).
    WebhookSecret(SecretRef),
}

impl Credential {
    /// What it is, as messages and `repo list` say: `token`, `ssh-key`,
    /// `webhook-secret`.
    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            CredentialKind::Token { .. } => "token",
            CredentialKind::SshKey { .. } => "ssh-key",
            CredentialKind::WebhookSecret(_) => "webhook-secret",
        }
    }

    /// Whether it may be used with the repository at `url`: always, unless
    /// `hosts:` lists the servers it is for.
    pub fn allows(&self, url: &str) -> bool {
        if self.hosts.is_empty() {
            return true;
        }
        let Some((host, port)) = crate::source::url::host_port(url) else {
            return false;
        };
        self.hosts
            .iter()
            .any(|allowed| match allowed.rsplit_once(':') {
                Some((h, p)) if !allowed.ends_with(']') && !h.contains(':') => {
                    h.eq_ignore_ascii_case(&host) && port.as_deref() == Some(p)
                }
                _ => allowed.trim_matches(['[', ']']).eq_ignore_ascii_case(&host),
            })
    }

    /// The variable it is read from, if any: hidden from every child.
    pub fn variable(&self) -> Option<&str> {
        match &self.kind {
            CredentialKind::Token {
                token: SecretRef::Env(name),
                ..
            }
            | CredentialKind::WebhookSecret(SecretRef::Env(name)) => Some(name),
            _ => None,
        }
    }
}

/// The entry named `name`.
pub fn find<'a>(credentials: &'a [Credential], name: &str) -> Option<&'a Credential> {
    credentials.iter().find(|c| c.name == name)
}

const KEYS: &[&str] = &[
    "name",
    "token_file",
    "token_env",
    "username",
    "ssh_key",
    "known_hosts",
    "secret_file",
    "secret_env",
    "hosts",
];

/// Reads the `credentials:` list of the global config.
pub fn parse(top: &Section, env: Env) -> Result<Vec<Credential>, SchemaError> {
    let mut out: Vec<Credential> = Vec::new();
    for (entry, line) in top.list("credentials", KEYS)? {
        let invalid = |key: &str, value: String, expected: &str| {
            let at = entry.get(key).map_or(line, |e| e.line);
            SchemaError::InvalidValue {
                line: at,
                key: entry.key_path(key),
                value,
                expected: expected.to_string(),
            }
        };
        let name = entry.required("name", line, env)?;
        if !crate::source::url::is_valid_name(&name) {
            return Err(invalid(
                "name",
                name,
                "a name of lowercase letters, digits, `_` and `-` (at most 63)",
            ));
        }
        if out.iter().any(|c| c.name == name) {
            return Err(invalid("name", name, "a name no other credential has"));
        }
        let path = |key: &str| -> Result<Option<PathBuf>, SchemaError> {
            match entry.string(key, env)? {
                None => Ok(None),
                Some((p, _)) if p.starts_with('/') => Ok(Some(PathBuf::from(p))),
                Some((p, _)) => Err(invalid(key, p, "an absolute path")),
            }
        };
        let variable = |key: &str| -> Result<Option<String>, SchemaError> {
            match entry.string(key, env)? {
                None => Ok(None),
                Some((v, _)) if is_variable_name(&v) => Ok(Some(v)),
                Some((v, _)) => Err(invalid(
                    key,
                    v,
                    "an environment variable name (letters, digits and _)",
                )),
            }
        };
        let given: Vec<&str> = [
            "token_file",
            "token_env",
            "ssh_key",
            "secret_file",
            "secret_env",
        ]
        .into_iter()
        .filter(|k| entry.get(k).is_some())
        .collect();
        let kind = match given.as_slice() {
            ["token_file" | "token_env"] => {
                let token = match path("token_file")? {
                    Some(p) => SecretRef::File(p),
                    None => SecretRef::Env(variable("token_env")?.unwrap_or_default()),
                };
                let username = entry.string("username", env)?.map_or_else(
                    || crate::source::auth::DEFAULT_TOKEN_USER.to_string(),
                    |(u, _)| u,
                );
                if username.is_empty()
                    || username.contains(':')
                    || username.chars().any(char::is_control)
                {
                    return Err(invalid(
                        "username",
                        username,
                        "a user name without ':' or control characters",
                    ));
                }
                CredentialKind::Token { token, username }
            }
            ["ssh_key"] => CredentialKind::SshKey {
                key: path("ssh_key")?.unwrap_or_default(),
                known_hosts: path("known_hosts")?,
            },
            ["secret_file"] => CredentialKind::WebhookSecret(SecretRef::File(
                path("secret_file")?.unwrap_or_default(),
            )),
            [_] => CredentialKind::WebhookSecret(SecretRef::Env(
                variable("secret_env")?.unwrap_or_default(),
            )),
            [] => {
                return Err(SchemaError::Missing {
                    line,
                    key: entry.key_path(
                        "token_file`, `token_env`, `ssh_key`, `secret_file` or `secret_env",
                    ),
                });
            }
            [_, second, ..] => {
                return Err(invalid(
                    second,
                    format!("(with {})", given[0]),
                    "one of token_file, token_env, ssh_key, secret_file, secret_env",
                ));
            }
        };
        let stray = match kind {
            CredentialKind::Token { .. } => "known_hosts",
            CredentialKind::SshKey { .. } | CredentialKind::WebhookSecret(_) => "username",
        };
        let stray_too: &[&str] = match kind {
            CredentialKind::WebhookSecret(_) => &["known_hosts", "hosts"],
            _ => &[],
        };
        for key in std::iter::once(stray).chain(stray_too.iter().copied()) {
            if entry.get(key).is_some() {
                return Err(invalid(
                    key,
                    "(set)".into(),
                    &format!("no `{key}` for a credential of this kind"),
                ));
            }
        }
        let hosts = entry
            .strings("hosts", env)?
            .map(|(h, _)| h)
            .unwrap_or_default();
        if let Some(bad) = hosts.iter().find(|h| {
            h.is_empty() || h.contains('/') || h.contains('@') || h.chars().any(char::is_whitespace)
        }) {
            return Err(invalid(
                "hosts",
                bad.clone(),
                "server names as URLs spell them: github.com, git.example.com:8443",
            ));
        }
        out.push(Credential { name, kind, hosts });
    }
    Ok(out)
}

pub fn is_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<Credential>, String> {
        let env = |k: &str| (k == "BOT").then(|| "ci-bot".to_string());
        super::super::parse_file(text, &env)
            .map(|c| c.credentials)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn hosts_limit_where_a_credential_is_used() {
        let with = |hosts: &[&str]| Credential {
            name: "gh".into(),
            kind: CredentialKind::WebhookSecret(SecretRef::Env("X".into())),
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
        };
        assert!(with(&[]).allows("http://127.0.0.1:9/x.git"));
        let gh = with(&["github.com", "git.example.com:8443", "::1"]);
        for (url, ok) in [
            ("https://github.com/acme/app.git", true),
            ("https://GitHub.com:443/acme/app.git", true),
            ("git@github.com:acme/app.git", true),
            ("ssh://git@github.com/acme/app.git", true),
            ("https://git.example.com:8443/x.git", true),
            ("https://git.example.com/x.git", false),
            ("https://github.com.evil.example/x.git", false),
            ("https://github.com@evil.example/x.git", false),
            ("http://127.0.0.1:9/x.git", false),
            ("ssh://git@[::1]:22/x.git", true),
            ("/srv/x.git", false),
        ] {
            assert_eq!(gh.allows(url), ok, "{url}");
        }
    }

    #[test]
    fn credentials_table() {
        assert_eq!(parse("log:\n  level: info\n").unwrap(), vec![]);
        assert_eq!(
            parse(
                "credentials:\n  - name: gh\n    token_env: GH_TOKEN\n    hosts: github.com\n  - name: gitea\n    token_file: /etc/kedge/gitea.token\n    username: ${BOT}\n  - name: deploy\n    ssh_key: /etc/kedge/deploy.key\n    known_hosts: /etc/kedge/known_hosts\n    hosts: [git.example.com:2222, 10.0.0.7]\n  - name: hook\n    secret_file: /etc/kedge/hook.secret\n  - name: hook2\n    secret_env: HOOK_SECRET\n"
            )
            .unwrap(),
            vec![
                Credential {
                    name: "gh".into(),
                    kind: CredentialKind::Token {
                        token: SecretRef::Env("GH_TOKEN".into()),
                        username: "x-access-token".into()
                    },
                    hosts: vec!["github.com".into()],
                },
                Credential {
                    name: "gitea".into(),
                    kind: CredentialKind::Token {
                        token: SecretRef::File("/etc/kedge/gitea.token".into()),
                        username: "ci-bot".into()
                    },
                    hosts: vec![],
                },
                Credential {
                    name: "deploy".into(),
                    kind: CredentialKind::SshKey {
                        key: "/etc/kedge/deploy.key".into(),
                        known_hosts: Some("/etc/kedge/known_hosts".into())
                    },
                    hosts: vec!["git.example.com:2222".into(), "10.0.0.7".into()],
                },
                Credential {
                    name: "hook".into(),
                    kind: CredentialKind::WebhookSecret(SecretRef::File(
                        "/etc/kedge/hook.secret".into()
                    )),
                    hosts: vec![],
                },
                Credential {
                    name: "hook2".into(),
                    kind: CredentialKind::WebhookSecret(SecretRef::Env("HOOK_SECRET".into())),
                    hosts: vec![],
                },
            ]
        );
        for (text, want) in [
            ("credentials: x\n", "line 1: `credentials` must be a list"),
            (
                "credentials:\n  - token_env: T\n",
                "`credentials[0].name` is required",
            ),
            (
                "credentials:\n  - name: gh\n",
                "`credentials[0].token_file`, `token_env`",
            ),
            (
                "credentials:\n  - name: gh\n    token_env: T\n    ssh_key: /k\n",
                "line 4: `credentials[0].ssh_key`: invalid value",
            ),
            (
                "credentials:\n  - name: Gh\n    token_env: T\n",
                "`credentials[0].name`: invalid value \"Gh\"",
            ),
            (
                "credentials:\n  - name: gh\n    token_env: T\n  - name: gh\n    token_env: U\n",
                "line 4: `credentials[1].name`",
            ),
            (
                "credentials:\n  - name: gh\n    token_file: gh.token\n",
                "an absolute path",
            ),
            (
                "credentials:\n  - name: gh\n    token_env: 1X\n",
                "an environment variable name",
            ),
            (
                "credentials:\n  - name: gh\n    ssh_key: /k\n    username: u\n",
                "`credentials[0].username`: invalid value",
            ),
            (
                "credentials:\n  - name: gh\n    token_env: T\n    username: a:b\n",
                "without ':'",
            ),
            (
                "credentials:\n  - name: gh\n    secret_env: T\n    known_hosts: /k\n",
                "`credentials[0].known_hosts`",
            ),
            (
                "credentials:\n  - name: gh\n    password: x\n",
                "unknown key `credentials[0].password`",
            ),
            (
                "credentials:\n  - name: gh\n    token_env: T\n    hosts: [https://github.com]\n",
                "`credentials[0].hosts`: invalid value",
            ),
            (
                "credentials:\n  - name: gh\n    secret_env: T\n    hosts: [h]\n",
                "`credentials[0].hosts`",
            ),
        ] {
            let got = parse(text).unwrap_err();
            assert!(got.contains(want), "{got} ∌ {want}");
        }
    }
}
