//! desired: a stack's `updates:` section (fleet.md §3) — how often its
//! images are checked for newer ones, which services follow which policy,
//! and what Kedge does with a candidate.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::interpolate::Env;
use crate::config::schema::{SchemaError, Section};
use crate::plan::updates::{Policy, Window};

/// `updates.apply`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Apply {
    /// Shown in status, the dashboard, the API and metrics; nothing changes.
    #[default]
    Report,
    /// Written back to Git as a commit; the ordinary flow deploys it.
    Commit,
    /// Deployed without a commit.
    Deploy,
}

impl Apply {
    pub fn parse(s: &str) -> Option<Apply> {
        Some(match s {
            "report" => Apply::Report,
            "commit" => Apply::Commit,
            "deploy" => Apply::Deploy,
            _ => return None,
        })
    }
}

/// One service's policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceUpdates {
    pub policy: Policy,
    /// Overrides `updates.tag_pattern` for this service.
    pub tag_pattern: Option<String>,
}

/// Stored with the deployed stack as JSON (`to_json`, `from_json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Updates {
    #[serde(with = "crate::config::duration::millis")]
    pub check_interval: Duration,
    pub apply: Apply,
    /// As written (`Sat 02:00-05:00 UTC`); checked when read.
    pub window: Option<String>,
    #[serde(with = "crate::config::duration::millis_opt")]
    pub min_age: Option<Duration>,
    pub tag_pattern: Option<String>,
    /// `Name <email>` of write-back commits.
    pub git_author: Option<String>,
    /// Services not named follow `none`: updates are opted into.
    pub services: BTreeMap<String, ServiceUpdates>,
}

pub const DEFAULT_CHECK_INTERVAL: Duration = Duration::from_secs(6 * 3600);

impl Updates {
    pub fn policy(&self, service: &str) -> Policy {
        // Named services only: updates are opted into.
        self.services
            .get(service)
            .map_or(Policy::None, |s| s.policy)
    }

    /// The tag pattern in force for `service`, compiled (it was checked
    /// when read).
    pub fn tag_pattern(&self, service: &str) -> Option<regex::Regex> {
        self.services
            .get(service)
            .and_then(|s| s.tag_pattern.as_deref())
            .or(self.tag_pattern.as_deref())
            .and_then(|p| regex::Regex::new(p).ok())
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn from_json(text: &str) -> Option<Updates> {
        serde_json::from_str(text).ok()
    }

    pub fn window(&self) -> Option<Window> {
        self.window.as_deref().and_then(|w| Window::parse(w).ok())
    }
}

pub const KEYS: [&str; 7] = [
    "check_interval",
    "apply",
    "window",
    "min_age",
    "tag_pattern",
    "git_author",
    "services",
];

/// The `updates` section under `top`, if any.
pub fn parse(top: &Section, env: Env) -> Result<Option<Updates>, SchemaError> {
    let Some(u) = top.section("updates", &KEYS)? else {
        return Ok(None);
    };
    let duration = |s: &str| {
        crate::config::duration::parse_duration(s)
            .map_err(|_| "a duration such as 30m, 6h or 1d".to_string())
    };
    let pattern = |s: &str| {
        regex::Regex::new(s)
            .map(|_| s.to_string())
            .map_err(|_| "a regular expression".to_string())
    };
    let mut services = BTreeMap::new();
    if let Some(list) = u.section_any("services")? {
        for (name, node) in list {
            let s = Section::new(
                node,
                &u.key_path(&format!("services.{name}")),
                &["policy", "tag_pattern"],
            )?;
            let policy = s
                .parsed("policy", env, |v| {
                    Policy::parse(v)
                        .ok_or_else(|| "digest, patch, minor, major or none".to_string())
                })?
                .ok_or_else(|| SchemaError::Missing {
                    line: node.line,
                    key: s.key_path("policy"),
                })?;
            services.insert(
                name.to_string(),
                ServiceUpdates {
                    policy,
                    tag_pattern: s.parsed("tag_pattern", env, pattern)?,
                },
            );
        }
    }
    Ok(Some(Updates {
        check_interval: u
            .parsed("check_interval", env, duration)?
            .unwrap_or(DEFAULT_CHECK_INTERVAL),
        apply: u
            .parsed("apply", env, |v| match Apply::parse(v) {
                Some(apply) => Ok(apply),
                None => Err("report, commit or deploy".to_string()),
            })?
            .unwrap_or_default(),
        window: u.parsed("window", env, |v| Window::parse(v).map(|_| v.to_string()))?,
        min_age: u.parsed("min_age", env, duration)?,
        tag_pattern: u.parsed("tag_pattern", env, pattern)?,
        git_author: u.parsed("git_author", env, |v| {
            crate::source::write_back::Author::parse(v)
                .map(|_| v.to_string())
                .ok_or_else(|| "`Name <email>`".to_string())
        })?,
        services,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::kedge_yaml;

    fn read(text: &str) -> Result<Option<Updates>, String> {
        kedge_yaml::parse(text, &|_: &str| None)
            .map(|k| k.updates)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn the_updates_section_reads_with_its_defaults() {
        assert_eq!(read("docker:\n  profiles: []\n").unwrap(), None);
        let u = read(
            "updates:\n  apply: report\n  window: \"Sat 02:00-05:00 UTC\"\n  tag_pattern: '^v?\\d+\\.\\d+\\.\\d+$'\n  git_author: Kedge <kedge@example.org>\n  services:\n    web: {policy: minor}\n    redis: {policy: digest}\n    app:\n      policy: patch\n      tag_pattern: '-alpine$'\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(u.check_interval, DEFAULT_CHECK_INTERVAL);
        assert_eq!(u.apply, Apply::Report);
        assert_eq!(u.min_age, None);
        let aged = read("updates:\n  min_age: 24h\n").unwrap().unwrap();
        assert_eq!(aged.min_age, Some(Duration::from_secs(86_400)));
        assert_eq!(u.policy("web"), Policy::Minor);
        assert_eq!(u.policy("redis"), Policy::Digest);
        assert_eq!(
            u.policy("db"),
            Policy::None,
            "a service not named is not checked"
        );
        assert!(u.tag_pattern("app").unwrap().is_match("1.2.3-alpine"));
        assert!(u.tag_pattern("web").unwrap().is_match("v1.2.3"));
        assert!(u.window().is_some());
        assert_eq!(u.git_author.as_deref(), Some("Kedge <kedge@example.org>"));
        let u = read("updates:\n  check_interval: 30m\n").unwrap().unwrap();
        assert_eq!(u.check_interval, Duration::from_secs(1800));
        assert_eq!(u.apply, Apply::Report);
    }

    #[test]
    fn bad_updates_are_refused_with_the_key_and_the_line() {
        let cases = [
            (
                "updates:\n  apply: push\n",
                "line 2: `updates.apply`: invalid value \"push\", expected report, commit or deploy",
            ),
            (
                "updates:\n  services:\n    web: {policy: newest}\n",
                "line 3: `updates.services.web.policy`: invalid value \"newest\", expected digest, patch, minor, major or none",
            ),
            (
                "updates:\n  services:\n    web: {tag_pattern: x}\n",
                "line 3: `updates.services.web.policy` is required",
            ),
            (
                "updates:\n  window: sometimes\n",
                "line 2: `updates.window`: invalid value \"sometimes\", expected \"sometimes\" is not a window like \"Mon-Fri 08:00-18:00 Europe/Berlin\"",
            ),
            (
                "updates:\n  tag_pattern: '('\n",
                "line 2: `updates.tag_pattern`: invalid value \"(\", expected a regular expression",
            ),
            (
                "updates:\n  git_author: kedge\n",
                "line 2: `updates.git_author`: invalid value \"kedge\", expected `Name <email>`",
            ),
            (
                "updates:\n  min_age: soon\n",
                "line 2: `updates.min_age`: invalid value \"soon\", expected a duration such as 30m, 6h or 1d",
            ),
            (
                "updates:\n  every: 1h\n",
                "line 2: unknown key `updates.every` (expected one of: check_interval, apply, window, min_age, tag_pattern, git_author, services)",
            ),
        ];
        for (text, want) in cases {
            assert_eq!(read(text).unwrap_err(), want, "{text}");
        }
    }
}
