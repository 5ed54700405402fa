//! The `commit_status:` list of the global config (fleet.md §5): where
//! Kedge reports each deployment on its commit — the git host's API, its
//! token (a file, read at each report), and the repositories it serves.

use std::path::PathBuf;

use serde::Serialize;

use super::interpolate::Env;
use super::schema::{SchemaError, Section};
use super::yaml::Node;

/// The git host's API a status is posted to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    GitHub,
    GitLab,
    /// Gitea and Forgejo (the same API).
    Gitea,
    /// Bitbucket Cloud.
    Bitbucket,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::GitHub => "github",
            Provider::GitLab => "gitlab",
            Provider::Gitea => "gitea",
            Provider::Bitbucket => "bitbucket",
        }
    }

    fn parse(s: &str) -> Option<Provider> {
        Some(match s {
            "github" => Provider::GitHub,
            "gitlab" => Provider::GitLab,
            "gitea" | "forgejo" => Provider::Gitea,
            "bitbucket" => Provider::Bitbucket,
            _ => return None,
        })
    }

    /// The public service's API, when there is one.
    fn default_api(self) -> Option<&'static str> {
        match self {
            Provider::GitHub => Some("https://api.github.com"),
            Provider::GitLab => Some("https://gitlab.com/api/v4"),
            Provider::Bitbucket => Some("https://api.bitbucket.org/2.0"),
            Provider::Gitea => None,
        }
    }
}

/// One `commit_status:` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusTarget {
    /// Unique; its cursor in the event log is kept under it.
    pub name: String,
    pub provider: Provider,
    /// Without a trailing `/`.
    pub api_url: String,
    /// Read at each report (a rotated token needs no restart); refused
    /// when its group or others may read it.
    pub token_file: PathBuf,
    /// Globs over repository names it reports for (default: all).
    pub repos: Vec<glob::Pattern>,
    /// Repositories opted out (globs).
    pub except: Vec<glob::Pattern>,
    pub line: u32,
}

impl StatusTarget {
    /// Whether it reports for repository `repo`.
    pub fn serves(&self, repo: &str) -> bool {
        (self.repos.is_empty() || self.repos.iter().any(|p| p.matches(repo)))
            && !self.except.iter().any(|p| p.matches(repo))
    }
}

const KEYS: [&str; 6] = [
    "name",
    "provider",
    "api_url",
    "token_file",
    "repos",
    "except",
];

/// The `commit_status:` node: a list of targets with distinct names.
pub fn parse(node: &Node, env: Env) -> Result<Vec<StatusTarget>, SchemaError> {
    let items = super::schema::items(node, "commit_status", "a list of git hosts")?;
    let mut out: Vec<StatusTarget> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let target = parse_one(item, i, env)?;
        if let Some(first) = out.iter().find(|t| t.name == target.name) {
            return Err(SchemaError::InvalidValue {
                line: target.line,
                key: format!("commit_status[{i}].name"),
                value: target.name.clone(),
                expected: format!(
                    "a name of its own: line {} has it already (give each entry a `name:`)",
                    first.line
                ),
            });
        }
        out.push(target);
    }
    Ok(out)
}

fn parse_one(item: &Node, index: usize, env: Env) -> Result<StatusTarget, SchemaError> {
    let line = item.line;
    let s = Section::new(item, &format!("commit_status[{index}]"), &KEYS)?;
    let invalid = |key: &str, at: u32, value: String, expected: &str| SchemaError::InvalidValue {
        line: at,
        key: s.key_path(key),
        value,
        expected: expected.into(),
    };
    let (text, at) = s
        .string("provider", env)?
        .ok_or_else(|| SchemaError::Missing {
            line,
            key: s.key_path("provider"),
        })?;
    let provider = Provider::parse(&text).ok_or_else(|| {
        invalid(
            "provider",
            at,
            text.clone(),
            "github, gitlab, gitea (or forgejo) or bitbucket",
        )
    })?;
    let api_url = match s.string("api_url", env)? {
        Some((url, at)) => {
            api_url(&url).map_err(|why| invalid("api_url", at, url.clone(), &why))?
        }
        None => provider
            .default_api()
            .map(String::from)
            .ok_or_else(|| SchemaError::Missing {
                line,
                key: s.key_path("api_url"),
            })?,
    };
    let token_file = s
        .string("token_file", env)?
        .map(|(p, _)| PathBuf::from(p))
        .ok_or_else(|| SchemaError::Missing {
            line,
            key: s.key_path("token_file"),
        })?;
    let globs = |key: &str| -> Result<Vec<glob::Pattern>, SchemaError> {
        let Some((list, at)) = s.strings(key, env)? else {
            return Ok(Vec::new());
        };
        list.iter()
            .map(|g| {
                glob::Pattern::new(g).map_err(|e| {
                    invalid(
                        key,
                        at,
                        g.clone(),
                        &format!("a glob over repository names ({})", e.msg),
                    )
                })
            })
            .collect()
    };
    let name = match s.string("name", env)? {
        Some((name, _)) => name,
        None => provider.as_str().to_string(),
    };
    Ok(StatusTarget {
        name,
        provider,
        api_url,
        token_file,
        repos: globs("repos")?,
        except: globs("except")?,
        line,
    })
}

/// An API address: https, or http to a loopback address only (the token
/// travels with every request).
fn api_url(text: &str) -> Result<String, String> {
    let text = text.trim();
    let url = url::Url::parse(text).map_err(|_| "an https:// URL".to_string())?;
    if url.host().is_none() || !matches!(url.scheme(), "https" | "http") {
        return Err("an https:// URL".into());
    }
    if crate::model::address::is_plain_http_off_loopback(text) {
        return Err(
            "an https:// URL (the token travels with each status; http:// only to a loopback address)"
                .into(),
        );
    }
    Ok(text.trim_end_matches('/').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_text(text: &str) -> Result<Vec<StatusTarget>, String> {
        let doc = crate::config::yaml::parse(text).unwrap();
        let crate::config::yaml::Value::Map(entries) = &doc.value else {
            panic!("{text}")
        };
        parse(&entries[0].node, &|_| None).map_err(|e| e.to_string())
    }

    #[test]
    fn entries_with_their_defaults() {
        let t = parse_text(
            "commit_status:\n  - provider: github\n    token_file: /etc/kedge/gh\n  - name: forge\n    provider: forgejo\n    api_url: https://code.example.org/api/v1/\n    token_file: /etc/kedge/forge\n    repos: ['shop-*']\n    except: [shop-scratch]\n",
        )
        .unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(
            (t[0].name.as_str(), t[0].provider, t[0].api_url.as_str()),
            ("github", Provider::GitHub, "https://api.github.com")
        );
        assert!(t[0].serves("anything"));
        assert_eq!(
            (t[1].name.as_str(), t[1].provider, t[1].api_url.as_str()),
            ("forge", Provider::Gitea, "https://code.example.org/api/v1")
        );
        assert!(t[1].serves("shop-web"));
        assert!(!t[1].serves("shop-scratch"), "opted out");
        assert!(!t[1].serves("blog"));
        let local = parse_text(
            "commit_status:\n  - provider: gitlab\n    api_url: http://127.0.0.1:8080/api/v4\n    token_file: /t\n",
        )
        .unwrap();
        assert_eq!(local[0].api_url, "http://127.0.0.1:8080/api/v4");
    }

    #[test]
    fn bad_entries_name_the_key_and_the_line() {
        for (text, why) in [
            (
                "commit_status:\n  - provider: svn\n    token_file: /t\n",
                "line 2: `commit_status[0].provider`: invalid value \"svn\", expected github, gitlab, gitea (or forgejo) or bitbucket",
            ),
            (
                "commit_status:\n  - provider: gitea\n    token_file: /t\n",
                "`commit_status[0].api_url`",
            ),
            (
                "commit_status:\n  - provider: github\n",
                "`commit_status[0].token_file`",
            ),
            (
                "commit_status:\n  - provider: github\n    api_url: http://ghe.example.com/api/v3\n    token_file: /t\n",
                "http:// only to a loopback address",
            ),
            (
                "commit_status:\n  - provider: github\n    token_file: /t\n  - provider: github\n    token_file: /u\n",
                "a name of its own: line 2 has it already",
            ),
            (
                "commit_status:\n  - provider: github\n    token_file: /t\n    token: abc\n",
                "unknown key `commit_status[0].token`",
            ),
            (
                "commit_status:\n  provider: github\n",
                "a list of git hosts",
            ),
        ] {
            let e = parse_text(text).unwrap_err();
            assert!(e.contains(why), "{text}: {e}");
        }
    }
}
