//! `kedge.yaml`, the repository's own instructions to Kedge: which compose
//! files make the stack, its project name, and how to reconcile it.

use std::path::{Component, Path};
use std::time::Duration;

use serde::Serialize;

use super::contained::{self, ContainedError};
use crate::config::interpolate::Env;
use crate::config::schema::{SchemaError, Section};
use crate::config::yaml;

pub const FILE_NAME: &str = "kedge.yaml";
/// A larger `kedge.yaml` is refused unread: a few keys need a few hundred bytes.
pub const MAX_SIZE: u64 = 1 << 20;

pub use crate::model::settings::{Mode, RenderedSettings, Target, Unhealthy};

/// The `deploy` section: the health gate after `up`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Gate {
    /// A deployment succeeds only when its changed services are up.
    pub wait: bool,
    /// How long the changed services have to come up.
    #[serde(with = "crate::config::duration::millis")]
    pub timeout: Duration,
    /// How long a changed service without a healthcheck must keep running.
    #[serde(with = "crate::config::duration::millis")]
    pub stable_for: Duration,
    /// A failed gate puts the last successful deployment back.
    pub rollback_on_failure: bool,
    /// `deploy.ignore`: services the gate does not wait for (one-shot or
    /// init services whose exit is their own business).
    pub ignore: Vec<String>,
    /// `deploy.before`: one-shot services run with `compose run --rm`
    /// before `up`; one that fails fails the deployment, nothing changed.
    pub before: Vec<String>,
    /// `deploy.after`: run once the gate has passed; one that fails fails
    /// the deployment as a failed gate does.
    pub after: Vec<String>,
}

impl Gate {
    /// Services the gate leaves out: those ignored, and the hooks'.
    pub fn leaves_out(&self, service: &str) -> bool {
        [&self.ignore, &self.before, &self.after]
            .iter()
            .any(|l| l.iter().any(|s| s == service))
    }
}

impl Default for Gate {
    fn default() -> Self {
        Gate {
            wait: true,
            timeout: Duration::from_secs(120),
            stable_for: Duration::from_secs(5),
            rollback_on_failure: true,
            ignore: Vec::new(),
            before: Vec::new(),
            after: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KedgeYaml {
    /// `None`: the repository's name.
    pub project_name: Option<String>,
    /// Relative to the repository root; empty: compose's own file discovery.
    pub compose_files: Vec<String>,
    /// Compose profiles to enable (`--profile` each); empty: none, so only
    /// the services without `profiles:` run.
    pub profiles: Vec<String>,
    pub mode: Mode,
    pub prune: bool,
    pub gate: Gate,
    pub unhealthy: Unhealthy,
    pub target: Target,
    /// `target.host`: the configured host the stack runs on (fleet.md §4).
    pub host: String,
    /// `target.hosts`: the hosts a declared stack runs on, one deployment
    /// `STACK@HOST` each (empty: the one `host`).
    pub hosts: Vec<String>,
    /// `sops.files`: more SOPS files of the stack, relative to the
    /// repository root, besides those found among its inputs.
    pub sops_files: Vec<String>,
    /// `updates:`: image update checks (fleet.md §3); `None`: none.
    pub updates: Option<super::updates::Updates>,
    /// `reconciliation.windows` and `heal_in_window_only` (fleet.md §5).
    pub windows: crate::model::settings::SyncWindows,
}

impl Default for KedgeYaml {
    fn default() -> Self {
        KedgeYaml {
            project_name: None,
            compose_files: Vec::new(),
            profiles: Vec::new(),
            mode: Mode::Auto,
            prune: true,
            gate: Gate::default(),
            unhealthy: Unhealthy::Report,
            target: Target::Compose,
            host: crate::config::hosts::LOCAL.to_string(),
            hosts: Vec::new(),
            sops_files: Vec::new(),
            updates: None,
            windows: Default::default(),
        }
    }
}

impl KedgeYaml {
    /// What the store keeps of it with the repository's state.
    pub fn settings(&self) -> RenderedSettings {
        RenderedSettings {
            mode: self.mode,
            prune: self.prune,
            unhealthy: self.unhealthy,
            target: self.target,
            host: self.host.clone(),
            windows: self.windows.clone(),
        }
    }

    pub fn project_name<'a>(&'a self, repo_name: &'a str) -> &'a str {
        self.project_name.as_deref().unwrap_or(repo_name)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KedgeYamlError {
    /// Not a regular file of the checkout, or over `MAX_SIZE`.
    #[error(transparent)]
    Read(#[from] ContainedError),
    #[error("invalid {FILE_NAME}")]
    Invalid(#[source] SchemaError),
    /// The parser's resource budget ran out: an alias bomb or a huge file.
    #[error("{FILE_NAME} is too large or too deeply aliased")]
    TooLarge,
    #[error("{FILE_NAME} is not UTF-8 text")]
    NotText,
    #[error("cannot read {FILE_NAME}: the reading task failed")]
    Task,
}

/// Reads `kedge.yaml` from a checkout, on the blocking pool; a repository
/// without one gets the defaults. Only a regular file of the repository
/// of at most `MAX_SIZE` bytes is read (see `desired::contained`).
pub async fn load(repo_dir: &Path, env: Env<'_>) -> Result<KedgeYaml, KedgeYamlError> {
    let dir = repo_dir.to_path_buf();
    let text = tokio::task::spawn_blocking(move || read(&dir))
        .await
        .map_err(|_| KedgeYamlError::Task)??;
    from_text(text.as_deref(), env)
}

fn read(repo_dir: &Path) -> Result<Option<String>, KedgeYamlError> {
    let Some(bytes) = contained::read(repo_dir, Path::new(FILE_NAME), MAX_SIZE)? else {
        return Ok(None);
    };
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|_| KedgeYamlError::NotText)
}

fn from_text(text: Option<&str>, env: Env<'_>) -> Result<KedgeYaml, KedgeYamlError> {
    let Some(text) = text else {
        return Ok(KedgeYaml::default());
    };
    parse(text, env).map_err(|e| match e {
        SchemaError::Syntax(s) if s.exhausted => KedgeYamlError::TooLarge,
        e => KedgeYamlError::Invalid(e),
    })
}

/// A root `kedge.yaml`: the stack keys, and the repository's layout keys
/// beside them (read by `desired::layout`, left out here).
pub fn parse(text: &str, env: Env) -> Result<KedgeYaml, SchemaError> {
    let doc = yaml::parse(text)?;
    let root: Vec<&str> = STACK_KEYS
        .iter()
        .chain(LAYOUT_KEYS.iter())
        .copied()
        .collect();
    Section::new(&doc, "", &root)?;
    super::webhook_refs::of(&doc, env)?;
    let doc = match doc.value {
        yaml::Value::Map(entries) => yaml::Node {
            line: doc.line,
            value: yaml::Value::Map(
                entries
                    .into_iter()
                    .filter(|e| !LAYOUT_KEYS.contains(&e.key.as_str()))
                    .collect(),
            ),
        },
        _ => doc,
    };
    from_node(&doc, env, "")
}

/// The part-1/2 keys (`docker`, `reconciliation`, `deploy`, `drift`) of
/// `doc`, whose own key path is `path` (`defaults` for the root file's
/// defaults; empty for a whole file).
pub fn from_node(doc: &yaml::Node, env: Env, path: &str) -> Result<KedgeYaml, SchemaError> {
    let top = Section::new(doc, path, &STACK_KEYS)?;
    let mut out = KedgeYaml::default();

    if let Some(docker) = top.section(
        "docker",
        &["project_name", "compose_file", "target", "profiles"],
    )? {
        if let Some(target) = docker.parsed("target", env, |s| {
            Target::parse(s).ok_or_else(|| "compose or swarm".to_string())
        })? {
            out.target = target;
        }
        out.project_name = docker.parsed("project_name", env, |s| {
            if is_project_name(s) {
                Ok(s.to_string())
            } else {
                Err(
                    "lowercase letters, digits, `_` and `-`, starting with a letter or digit"
                        .into(),
                )
            }
        })?;
        if let Some((files, line)) = docker.strings("compose_file", env)? {
            let key = docker.key_path("compose_file");
            if files.is_empty() {
                return Err(SchemaError::InvalidValue {
                    line,
                    key,
                    value: "[]".into(),
                    expected: "at least one file".into(),
                });
            }
            for f in &files {
                if !is_relative_inside(f) {
                    return Err(SchemaError::InvalidValue {
                        line,
                        key,
                        value: f.clone(),
                        expected: "a path relative to the repository root, inside it".into(),
                    });
                }
            }
            out.compose_files = files;
        }
        if let Some((profiles, line)) = docker.strings("profiles", env)? {
            if let Some(bad) = profiles.iter().find(|p| !is_profile_name(p)) {
                return Err(SchemaError::InvalidValue {
                    line,
                    key: docker.key_path("profiles"),
                    value: bad.clone(),
                    expected: "a profile name: letters, digits, `_`, `.` and `-`, starting with a letter or digit".into(),
                });
            }
            for p in profiles {
                if !out.profiles.contains(&p) {
                    out.profiles.push(p);
                }
            }
        }
    }

    if let Some(rec) = top.section(
        "reconciliation",
        &["mode", "prune", "windows", "heal_in_window_only"],
    )? {
        if let Some(mode) = rec.parsed("mode", env, |s| {
            Mode::parse(s).ok_or_else(|| "auto, notify or manual".to_string())
        })? {
            out.mode = mode;
        }
        if let Some(prune) = rec.bool("prune", env)? {
            out.prune = prune;
        }
        for (i, (entry, line)) in rec
            .list("windows", &["allow", "deny"])?
            .into_iter()
            .enumerate()
        {
            let window = |key: &str| {
                entry.parsed(key, env, |w| {
                    crate::plan::window::Window::parse(w).map(|_| w.to_string())
                })
            };
            let found = match (window("allow")?, window("deny")?) {
                (Some(w), None) => {
                    out.windows.allow.push(w);
                    continue;
                }
                (None, Some(w)) => {
                    out.windows.deny.push(w);
                    continue;
                }
                (Some(_), Some(_)) => "both allow and deny",
                (None, None) => "neither allow nor deny",
            };
            return Err(SchemaError::InvalidValue {
                line,
                key: format!("{}[{i}]", rec.key_path("windows")),
                value: found.into(),
                expected: "one of `allow:` or `deny:` per entry, such as {allow: \"Mon-Fri 08:00-18:00 Europe/Berlin\"}".into(),
            });
        }
        if let Some(only) = rec.bool("heal_in_window_only", env)? {
            out.windows.heal_in_window_only = only;
        }
    }

    if let Some(deploy) = top.section(
        "deploy",
        &[
            "wait",
            "timeout",
            "stable_for",
            "rollback_on_failure",
            "ignore",
            "before",
            "after",
        ],
    )? {
        let duration = |s: &str| {
            crate::config::duration::parse_duration(s)
                .map_err(|_| "a duration such as 500ms, 5s, 2m or 1m30s".to_string())
        };
        if let Some(wait) = deploy.bool("wait", env)? {
            out.gate.wait = wait;
        }
        if let Some(timeout) = deploy.parsed("timeout", env, |s| {
            duration(s).and_then(|d| {
                if d.is_zero() {
                    Err("a duration longer than 0s".to_string())
                } else {
                    Ok(d)
                }
            })
        })? {
            out.gate.timeout = timeout;
        }
        if let Some(stable_for) = deploy.parsed("stable_for", env, duration)? {
            out.gate.stable_for = stable_for;
        }
        if let Some(rollback) = deploy.bool("rollback_on_failure", env)? {
            out.gate.rollback_on_failure = rollback;
        }
        let services = |key: &str| -> Result<Option<Vec<String>>, SchemaError> {
            let Some((list, line)) = deploy.strings(key, env)? else {
                return Ok(None);
            };
            if let Some(bad) = list.iter().find(|s| s.is_empty()) {
                return Err(SchemaError::InvalidValue {
                    line,
                    key: deploy.key_path(key),
                    value: format!("{bad:?}"),
                    expected: "service names of the stack".into(),
                });
            }
            Ok(Some(list))
        };
        if let Some(ignore) = services("ignore")? {
            out.gate.ignore = ignore;
        }
        if let Some(before) = services("before")? {
            out.gate.before = before;
        }
        if let Some(after) = services("after")? {
            out.gate.after = after;
        }
    }

    if let Some(drift) = top.section("drift", &["unhealthy"])?
        && let Some(unhealthy) = drift.parsed("unhealthy", env, |s| {
            Unhealthy::parse(s).ok_or_else(|| "report or restart".to_string())
        })?
    {
        out.unhealthy = unhealthy;
    }

    if let Some(sops) = top.section("sops", &["files"])?
        && let Some((files, line)) = sops.strings("files", env)?
    {
        for f in &files {
            let p = Path::new(f);
            if p.is_absolute() || p.components().any(|c| c == std::path::Component::ParentDir) {
                return Err(SchemaError::InvalidValue {
                    line,
                    key: sops.key_path("files"),
                    value: format!("{f:?}"),
                    expected: "a path relative to the repository root, inside it".into(),
                });
            }
        }
        out.sops_files = files;
    }
    if let Some(target) = top.section("target", &["host", "hosts"])? {
        if let Some(host) = target.parsed("host", env, |s| {
            if crate::config::hosts::valid_name(s) {
                Ok(s.to_string())
            } else {
                Err("a host name of the global config's `hosts:` (or `local`)".to_string())
            }
        })? {
            out.host = host;
        }
        if let Some((hosts, line)) = target.strings("hosts", env)? {
            let invalid = |value: String, expected: &str| SchemaError::InvalidValue {
                line,
                key: target.key_path("hosts"),
                value,
                expected: expected.into(),
            };
            if target.get("host").is_some() {
                return Err(invalid(
                    format!("{hosts:?}"),
                    "either `host` or `hosts`, not both",
                ));
            }
            if hosts.is_empty() {
                return Err(invalid("[]".into(), "at least one host"));
            }
            let mut seen = std::collections::BTreeSet::new();
            for h in &hosts {
                if !crate::config::hosts::valid_name(h) {
                    return Err(invalid(
                        h.clone(),
                        "host names of the global config's `hosts:` (or `local`)",
                    ));
                }
                if !seen.insert(h) {
                    return Err(invalid(h.clone(), "each host once"));
                }
            }
            out.hosts = hosts;
        }
    }
    out.updates = super::updates::parse(&top, env)?;
    Ok(out)
}

/// Compose's own rule for project names.
pub fn is_project_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

/// Compose's rule for profile names (`[a-zA-Z0-9][a-zA-Z0-9_.-]*`).
pub fn is_profile_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// The keys that say how one stack is deployed: a whole `kedge.yaml` of
/// one stack, a stack directory's own, or the root file's `defaults:`.
pub const STACK_KEYS: [&str; 7] = [
    "docker",
    "target",
    "reconciliation",
    "deploy",
    "drift",
    "sops",
    "updates",
];

/// The root file's keys that say which stacks the repository has
/// (fleet.md §1, `desired::layout`).
/// `webhooks` is the repository's too (`desired::webhook_refs`).
pub const LAYOUT_KEYS: [&str; 5] = [
    "stacks",
    "discover",
    "stacks_removed",
    "defaults",
    "webhooks",
];

fn is_relative_inside(p: &str) -> bool {
    !p.is_empty()
        && Path::new(p)
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "KEDGE_TEST_MODE" => Some("notify".into()),
            "KEDGE_TEST_PROJECT" => Some("shop".into()),
            _ => None,
        }
    }

    fn ok(text: &str) -> KedgeYaml {
        parse(text, &env).unwrap_or_else(|e| panic!("{text:?}: {e}"))
    }

    #[test]
    fn valid_files() {
        let default = KedgeYaml::default();
        let cases: Vec<(&str, KedgeYaml)> = vec![
            ("", default.clone()),
            ("# nothing but a comment\n", default.clone()),
            ("docker:\nreconciliation:\n", default.clone()),
            (
                "docker:\n  project_name: myapp\n  compose_file: docker-compose.yaml\nreconciliation:\n  mode: auto\n  prune: true\n",
                KedgeYaml {
                    project_name: Some("myapp".into()),
                    compose_files: vec!["docker-compose.yaml".into()],
                    ..default.clone()
                },
            ),
            (
                "docker:\n  compose_file:\n    - base.yaml\n    - deploy/prod.yaml\n",
                KedgeYaml {
                    compose_files: vec!["base.yaml".into(), "deploy/prod.yaml".into()],
                    ..default.clone()
                },
            ),
            (
                "docker:\n  compose_file: [a.yaml, ./b.yaml]\n",
                KedgeYaml {
                    compose_files: vec!["a.yaml".into(), "./b.yaml".into()],
                    ..default.clone()
                },
            ),
            (
                "reconciliation:\n  mode: manual\n  prune: false\n",
                KedgeYaml {
                    mode: Mode::Manual,
                    prune: false,
                    ..default.clone()
                },
            ),
            (
                "docker:\n  project_name: ${KEDGE_TEST_PROJECT}\nreconciliation:\n  mode: ${KEDGE_TEST_MODE:-auto}\n  prune: ${KEDGE_TEST_PRUNE:-false}\n",
                KedgeYaml {
                    project_name: Some("shop".into()),
                    mode: Mode::Notify,
                    prune: false,
                    ..default.clone()
                },
            ),
            (
                "deploy:\n  wait: false\n  timeout: 30s\n  stable_for: 1m30s\n  rollback_on_failure: false\n  before: [migrate]\n  after: [smoke, warm]\ndrift:\n  unhealthy: restart\n",
                KedgeYaml {
                    gate: Gate {
                        wait: false,
                        timeout: Duration::from_secs(30),
                        stable_for: Duration::from_secs(90),
                        rollback_on_failure: false,
                        ignore: Vec::new(),
                        before: vec!["migrate".into()],
                        after: vec!["smoke".into(), "warm".into()],
                    },
                    unhealthy: Unhealthy::Restart,
                    ..default.clone()
                },
            ),
            (
                "deploy:\n  stable_for: 0s\ndrift:\n  unhealthy: report\n",
                KedgeYaml {
                    gate: Gate {
                        stable_for: Duration::ZERO,
                        ..Gate::default()
                    },
                    ..default.clone()
                },
            ),
            (
                "docker:\n  profiles: [debug, tools.v2, Ops-1]\n",
                KedgeYaml {
                    profiles: vec!["debug".into(), "tools.v2".into(), "Ops-1".into()],
                    ..default.clone()
                },
            ),
            (
                "docker:\n  profiles: x\n",
                KedgeYaml {
                    profiles: vec!["x".into()],
                    ..default.clone()
                },
            ),
            ("docker:\n  profiles: []\n", default.clone()),
            (
                "reconciliation:\n  mode: ${KEDGE_TEST_UNSET:-manual}\n",
                KedgeYaml {
                    mode: Mode::Manual,
                    ..default.clone()
                },
            ),
        ];
        for (text, want) in cases {
            assert_eq!(ok(text), want, "{text:?}");
        }
    }

    #[test]
    fn sync_windows_are_allow_or_deny_entries() {
        let k = ok(
            "reconciliation:\n  windows:\n    - allow: \"Mon-Fri 08:00-18:00 Europe/Berlin\"\n    - {deny: \"Fri 16:00-18:00 Europe/Berlin\"}\n  heal_in_window_only: true\n",
        );
        assert_eq!(k.windows.allow, ["Mon-Fri 08:00-18:00 Europe/Berlin"]);
        assert_eq!(k.windows.deny, ["Fri 16:00-18:00 Europe/Berlin"]);
        assert!(k.windows.heal_in_window_only);
        assert_eq!(k.settings().windows, k.windows);
        assert!(ok("docker: {}\n").windows.is_empty());
        for (text, why) in [
            (
                "reconciliation:\n  windows:\n    - allow: \"Mon 08:00-18:00 Mars/Base\"\n",
                "line 3: `reconciliation.windows[0].allow`: invalid value \"Mon 08:00-18:00 Mars/Base\", expected \"Mon 08:00-18:00 Mars/Base\": \"Mars/Base\" is not an IANA time zone",
            ),
            (
                "reconciliation:\n  windows:\n    - {allow: \"Mon 08:00-18:00\", deny: \"Tue 08:00-18:00\"}\n",
                "line 3: `reconciliation.windows[0]`: invalid value \"both allow and deny\", expected one of `allow:` or `deny:` per entry",
            ),
            (
                "reconciliation:\n  windows:\n    - {when: \"Mon 08:00-18:00\"}\n",
                "unknown key `reconciliation.windows[0].when`",
            ),
        ] {
            let e = parse(text, &|_| None).unwrap_err().to_string();
            assert!(e.starts_with(why) || e.contains(why), "{text}: {e}");
        }
    }

    /// Each invalid file and the exact message: it names the key and the line.
    #[test]
    fn invalid_files() {
        let cases: &[(&str, &str)] = &[
            (
                "docker:\n  project_name: x\n  bogus: 1\n",
                "line 3: unknown key `docker.bogus` (expected one of: project_name, compose_file, target, profiles)",
            ),
            (
                "docker:\n  profiles: [debug, -x]\n",
                "line 2: `docker.profiles`: invalid value \"-x\", expected a profile name: letters, digits, `_`, `.` and `-`, starting with a letter or digit",
            ),
            (
                "docker:\n  profiles: ['*']\n",
                "line 2: `docker.profiles`: invalid value \"*\", expected a profile name: letters, digits, `_`, `.` and `-`, starting with a letter or digit",
            ),
            (
                "docker:\n  profiles:\n    - {a: 1}\n",
                "line 3: `docker.profiles` must be a scalar, found a mapping",
            ),
            (
                "reconcilation:\n  mode: auto\n",
                "line 1: unknown key `reconcilation` (expected one of: docker, target, reconciliation, deploy, drift, sops, updates, stacks, discover, stacks_removed, defaults, webhooks)",
            ),
            (
                "reconciliation:\n  mode: auto\n  prune: maybe\n",
                "line 3: `reconciliation.prune`: invalid value \"maybe\", expected true or false",
            ),
            (
                "reconciliation:\n  mode: automatic\n",
                "line 2: `reconciliation.mode`: invalid value \"automatic\", expected auto, notify or manual",
            ),
            (
                "reconciliation:\n  mode:\n    - auto\n",
                "line 3: `reconciliation.mode` must be a scalar, found a list",
            ),
            (
                "docker: 5\n",
                "line 1: `docker` must be a mapping, found a scalar",
            ),
            (
                "- a\n- b\n",
                "line 1: `(document)` must be a mapping, found a list",
            ),
            (
                "docker:\n  project_name: My App\n",
                "line 2: `docker.project_name`: invalid value \"My App\", expected lowercase letters, digits, `_` and `-`, starting with a letter or digit",
            ),
            (
                "docker:\n  compose_file: []\n",
                "line 2: `docker.compose_file`: invalid value \"[]\", expected at least one file",
            ),
            (
                "docker:\n  compose_file: ../outside.yaml\n",
                "line 2: `docker.compose_file`: invalid value \"../outside.yaml\", expected a path relative to the repository root, inside it",
            ),
            (
                "docker:\n  compose_file:\n    - a.yaml\n    - {x: 1}\n",
                "line 4: `docker.compose_file` must be a scalar, found a mapping",
            ),
            (
                "reconciliation:\n  mode: ${KEDGE_TEST_UNSET}\n",
                "line 2: `reconciliation.mode`",
            ),
            (
                "deploy:\n  timeout: soon\n",
                "line 2: `deploy.timeout`: invalid value \"soon\", expected a duration such as 500ms, 5s, 2m or 1m30s",
            ),
            (
                "deploy:\n  timeout: 0s\n",
                "line 2: `deploy.timeout`: invalid value \"0s\", expected a duration longer than 0s",
            ),
            (
                "deploy:\n  stable_for: 5\n",
                "line 2: `deploy.stable_for`: invalid value \"5\", expected a duration such as 500ms, 5s, 2m or 1m30s",
            ),
            (
                "deploy:\n  wait: sometimes\n",
                "line 2: `deploy.wait`: invalid value \"sometimes\", expected true or false",
            ),
            (
                "deploy:\n  retries: 3\n",
                "line 2: unknown key `deploy.retries` (expected one of: wait, timeout, stable_for, rollback_on_failure, ignore, before, after)",
            ),
            (
                "drift:\n  unhealthy: kill\n",
                "line 2: `drift.unhealthy`: invalid value \"kill\", expected report or restart",
            ),
        ];
        for (text, want) in cases {
            let err = parse(text, &env).expect_err(text);
            assert_eq!(err.to_string(), *want, "{text:?}");
        }
    }

    #[test]
    fn unset_variable_is_explained_by_the_source() {
        let err = parse("reconciliation:\n  mode: ${KEDGE_TEST_UNSET}\n", &env).unwrap_err();
        let source = std::error::Error::source(&err).expect("a source");
        assert!(
            source.to_string().contains("`KEDGE_TEST_UNSET` is not set"),
            "{source}"
        );
    }

    #[test]
    fn syntax_error_has_a_line() {
        let err = parse("docker:\n  project_name: [unclosed\n", &env).unwrap_err();
        assert!(err.to_string().starts_with("line "), "{err}");
    }

    /// A billion-laughs document: nine aliases of nine aliases, nine deep.
    fn alias_bomb() -> String {
        let mut text = String::from("a: &a [x, x, x, x, x, x, x, x, x]\n");
        let names: Vec<char> = ('a'..='i').collect();
        for pair in names.windows(2) {
            let (prev, next) = (pair[0], pair[1]);
            let refs = vec![format!("*{prev}"); 9].join(", ");
            text.push_str(&format!("{next}: &{next} [{refs}]\n"));
        }
        text.push_str("docker:\n  project_name: *i\n");
        text
    }

    #[test]
    fn an_alias_bomb_is_refused_in_plain_words() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE_NAME), alias_bomb()).unwrap();
        let err = load_now(dir.path()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "kedge.yaml is too large or too deeply aliased"
        );
    }

    fn load_now(dir: &Path) -> Result<KedgeYaml, KedgeYamlError> {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(load(dir, &env))
    }

    #[test]
    fn a_kedge_yaml_linked_out_of_the_repository_is_refused_unread() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("repo");
        std::fs::create_dir(&repo).unwrap();
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "docker: [root-only content]\n").unwrap();
        std::os::unix::fs::symlink(&secret, repo.join(FILE_NAME)).unwrap();
        let err = load_now(&repo).unwrap_err();
        assert_eq!(
            crate::error_chain(&err),
            "kedge.yaml leads outside the repository"
        );
        std::fs::remove_file(repo.join(FILE_NAME)).unwrap();
        std::fs::write(repo.join(FILE_NAME), vec![b'#'; MAX_SIZE as usize + 1]).unwrap();
        assert_eq!(
            load_now(&repo).unwrap_err().to_string(),
            "kedge.yaml is over the limit of 1048576 bytes"
        );
    }

    #[test]
    fn missing_file_means_defaults() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load_now(dir.path()).unwrap(), KedgeYaml::default());
        std::fs::write(
            dir.path().join(FILE_NAME),
            "reconciliation:\n  mode: notify\n",
        )
        .unwrap();
        assert_eq!(load_now(dir.path()).unwrap().mode, Mode::Notify);
    }

    #[test]
    fn the_deploy_target() {
        let env = |_: &str| None;
        assert_eq!(parse("", &env).unwrap().target, Target::Compose);
        assert_eq!(
            parse("docker:\n  target: swarm\n", &env).unwrap().target,
            Target::Swarm
        );
        let err = parse("docker:\n  target: k8s\n", &env)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`docker.target`: invalid value \"k8s\", expected compose or swarm"),
            "{err}"
        );
    }

    #[test]
    fn deploy_ignore_names_services_the_gate_leaves_out() {
        let env = |_: &str| None;
        let k = parse("deploy:\n  ignore: [init, migrate]\n", &env).unwrap();
        assert_eq!(k.gate.ignore, ["init", "migrate"]);
        assert!(parse("", &env).unwrap().gate.ignore.is_empty());
        let err = parse("deploy:\n  ignore: ['']\n", &env)
            .unwrap_err()
            .to_string();
        assert!(err.contains("`deploy.ignore`"), "{err}");
    }

    #[test]
    fn the_host_a_stack_runs_on() {
        let env = |_: &str| None;
        assert_eq!(parse("", &env).unwrap().host, "local");
        assert_eq!(parse("target:\n  host: nas\n", &env).unwrap().host, "nas");
        assert_eq!(
            parse("target:\n  hosts: [a, b]\n", &env).unwrap().hosts,
            ["a", "b"]
        );
        assert_eq!(
            parse("target: {host: nas}\ndocker: {target: swarm}\n", &env)
                .unwrap()
                .settings()
                .host,
            "nas"
        );
        for (text, says) in [
            (
                "target:\n  host: Nas!\n",
                "`target.host`: invalid value \"Nas!\", expected a host name",
            ),
            ("target:\n  hots: nas\n", "unknown key `target.hots`"),
            (
                "target:\n  host: a\n  hosts: [a, b]\n",
                "either `host` or `hosts`, not both",
            ),
            ("target:\n  hosts: [a, a]\n", "each host once"),
            ("target:\n  hosts: []\n", "at least one host"),
        ] {
            let err = parse(text, &env).unwrap_err().to_string();
            assert!(err.contains(says), "{text}: {err}");
        }
    }
}
