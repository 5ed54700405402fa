//! desired: a repository's stacks as its root `kedge.yaml` declares them
//! (fleet.md §1): `stacks:`, `discover:`, `stacks_removed:`, `defaults:`.
//! `declared` reads the file's keys; `expand` applies them to a commit's
//! paths and answers the stacks, in `after:` order. Pure: the commit comes
//! as its list of paths, the files as parsed YAML.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

use glob::{MatchOptions, Pattern};

pub use super::kedge_yaml::LAYOUT_KEYS;
use super::kedge_yaml::{self, STACK_KEYS, is_profile_name};
use crate::compose::DEFAULT_FILES;
use crate::config::interpolate::Env;
use crate::config::schema::{SchemaError, Section};
use crate::config::yaml::{Entry, Node, Value};

/// One stack of a repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackDecl {
    /// `[a-z0-9][a-z0-9_-]*`, unique in the repository.
    pub name: String,
    /// Its directory, relative to the repository root ("" for the root):
    /// compose's project directory.
    pub path: String,
    /// Relative to `path`; empty: compose's own discovery there.
    pub compose_files: Vec<String>,
    pub profiles: Vec<String>,
    /// `--env-file`s, relative to `path`.
    pub env_files: Vec<String>,
    /// Stacks of the same repository deployed (gate passed) before this one.
    pub after: Vec<String>,
    /// Found by a `discover:` rule rather than listed under `stacks:`.
    pub discovered: bool,
}

/// `stacks_removed`: what happens to a stack whose entry or directory
/// left Git.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Removed {
    /// Reported (`stack_orphaned`), its containers left running.
    #[default]
    Keep,
    /// Taken down like `repo remove --down`, named volumes kept.
    Down,
}

/// One `discover:` rule.
#[derive(Debug, Clone)]
struct Rule {
    path: Pattern,
    exclude: Vec<Pattern>,
}

/// What the root `kedge.yaml` declares, before it meets a commit's tree.
#[derive(Debug, Clone, Default)]
pub struct Declared {
    explicit: Vec<StackDecl>,
    discover: Vec<Rule>,
    pub removed: Removed,
    /// `defaults:`: the part-1/2 keys every stack starts from.
    pub defaults: Option<Node>,
}

impl Declared {
    /// Neither `stacks:` nor `discover:`: one stack, at the root, named
    /// like the repository (part 1's behaviour).
    pub fn is_single(&self) -> bool {
        self.explicit.is_empty() && self.discover.is_empty()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LayoutError {
    #[error(
        "stacks {first} and {second} are both named `{name}`: give one of them another `name:` under `stacks:`"
    )]
    DuplicateName {
        name: String,
        first: String,
        second: String,
    },
    #[error(
        "discover: found {path}, whose name `{name}` is not a stack name (lowercase letters, digits, `_` and `-`): list it under `stacks:` with a `name:`, or exclude it"
    )]
    BadDiscoveredName { path: String, name: String },
    #[error("stack `{stack}`: `after` names `{after}`, which is not a stack of this repository")]
    UnknownAfter { stack: String, after: String },
    #[error("stacks wait for each other in a circle (after:): {cycle}")]
    Cycle { cycle: String },
}

/// Reads the layout keys of the root `kedge.yaml` (`doc`); the part-1/2
/// keys beside them are `kedge_yaml`'s.
pub fn declared(doc: &Node, env: Env) -> Result<Declared, SchemaError> {
    let all: Vec<&str> = STACK_KEYS
        .iter()
        .chain(LAYOUT_KEYS.iter())
        .copied()
        .collect();
    let top = Section::new(doc, "", &all)?;
    let mut out = Declared::default();
    for (entry, line) in top.list(
        "stacks",
        &[
            "name",
            "path",
            "compose_file",
            "profiles",
            "env_file",
            "after",
        ],
    )? {
        out.explicit.push(stack_entry(&entry, line, env)?);
    }
    for (rule, line) in top.list("discover", &["path", "exclude"])? {
        let path = rule.required("path", line, env)?;
        let glob = |text: &str, key: &str| {
            Pattern::new(text.trim_end_matches('/')).map_err(|e| SchemaError::InvalidValue {
                line,
                key: rule.key_path(key),
                value: text.to_string(),
                expected: format!("a glob over directories ({})", e.msg),
            })
        };
        let exclude = match rule.strings("exclude", env)? {
            Some((list, _)) => list
                .iter()
                .map(|p| glob(p, "exclude"))
                .collect::<Result<_, _>>()?,
            None => Vec::new(),
        };
        out.discover.push(Rule {
            path: glob(&path, "path")?,
            exclude,
        });
    }
    if let Some(removed) = top.parsed("stacks_removed", env, |s| match s {
        "keep" => Ok(Removed::Keep),
        "down" => Ok(Removed::Down),
        _ => Err("keep or down".into()),
    })? {
        out.removed = removed;
    }
    if let Some(defaults) = top.get("defaults") {
        // Checked now, so that a typo there is the root file's error.
        kedge_yaml::from_node(&defaults.node, env, "defaults")?;
        out.defaults = Some(defaults.node.clone());
    }
    Ok(out)
}

fn stack_entry(entry: &Section<'_>, line: u32, env: Env) -> Result<StackDecl, SchemaError> {
    let invalid = |key: &str, value: &str, expected: &str| SchemaError::InvalidValue {
        line,
        key: entry.key_path(key),
        value: value.to_string(),
        expected: expected.to_string(),
    };
    let path = entry.required("path", line, env)?;
    let path = inside(Path::new(""), &path)
        .ok_or_else(|| invalid("path", &path, "a directory of the repository"))?;
    let name = match entry.string("name", env)? {
        Some((name, _)) => name,
        None => match path.rsplit('/').next().filter(|n| !n.is_empty()) {
            Some(last) => last.to_string(),
            None => {
                return Err(SchemaError::Missing {
                    line,
                    key: entry.key_path("name"),
                });
            }
        },
    };
    if !is_stack_name(&name) {
        return Err(invalid(
            "name",
            &name,
            "lowercase letters, digits, `_` and `-`, starting with a letter or digit",
        ));
    }
    let list = |key: &str| -> Result<Vec<String>, SchemaError> {
        Ok(entry.strings(key, env)?.map(|(l, _)| l).unwrap_or_default())
    };
    let compose_files = list("compose_file")?;
    let env_files = list("env_file")?;
    for (key, files) in [("compose_file", &compose_files), ("env_file", &env_files)] {
        if let Some(bad) = files
            .iter()
            .find(|f| f.is_empty() || inside(Path::new(&path), f).is_none())
        {
            return Err(invalid(
                key,
                bad,
                "a path relative to the stack's path, inside the repository",
            ));
        }
    }
    let profiles = list("profiles")?;
    if let Some(bad) = profiles.iter().find(|p| !is_profile_name(p)) {
        return Err(invalid(
            "profiles",
            bad,
            "a profile name: letters, digits, `_`, `.` and `-`, starting with a letter or digit",
        ));
    }
    let after = list("after")?;
    if let Some(bad) = after.iter().find(|a| !is_stack_name(a)) {
        return Err(invalid(
            "after",
            bad,
            "the name of another stack of this repository",
        ));
    }
    Ok(StackDecl {
        name,
        path,
        compose_files,
        profiles,
        env_files,
        after,
        discovered: false,
    })
}

/// The stacks of a commit whose paths (files and directories, relative to
/// the root) are `paths`, in `after:` order (ties by name). A repository
/// that declares none has none here: its one stack is the caller's.
pub fn expand<'a>(
    declared: &Declared,
    paths: impl IntoIterator<Item = &'a str>,
) -> Result<Vec<StackDecl>, LayoutError> {
    let mut by_path: BTreeMap<String, StackDecl> = BTreeMap::new();
    if !declared.discover.is_empty() {
        let options = MatchOptions {
            require_literal_separator: true,
            ..MatchOptions::new()
        };
        for dir in compose_dirs(paths) {
            let found = declared.discover.iter().any(|r| {
                r.path.matches_with(&dir, options)
                    && !r.exclude.iter().any(|x| x.matches_with(&dir, options))
            });
            if !found {
                continue;
            }
            let name = dir.rsplit('/').next().unwrap_or_default().to_string();
            if !is_stack_name(&name) {
                return Err(LayoutError::BadDiscoveredName { path: dir, name });
            }
            by_path.insert(
                dir.clone(),
                StackDecl {
                    name,
                    path: dir,
                    compose_files: Vec::new(),
                    profiles: Vec::new(),
                    env_files: Vec::new(),
                    after: Vec::new(),
                    discovered: true,
                },
            );
        }
    }
    // An explicit entry beats a discovered one of the same directory.
    for stack in &declared.explicit {
        by_path.insert(stack.path.clone(), stack.clone());
    }
    let mut by_name: BTreeMap<String, StackDecl> = BTreeMap::new();
    for stack in by_path.into_values() {
        if let Some(other) = by_name.get(&stack.name) {
            return Err(LayoutError::DuplicateName {
                name: stack.name.clone(),
                first: shown(&other.path),
                second: shown(&stack.path),
            });
        }
        by_name.insert(stack.name.clone(), stack);
    }
    for stack in by_name.values() {
        if let Some(missing) = stack.after.iter().find(|a| !by_name.contains_key(*a)) {
            return Err(LayoutError::UnknownAfter {
                stack: stack.name.clone(),
                after: missing.clone(),
            });
        }
    }
    in_after_order(by_name)
}

/// Kahn's algorithm, taking the first ready name each time.
fn in_after_order(mut left: BTreeMap<String, StackDecl>) -> Result<Vec<StackDecl>, LayoutError> {
    let mut done: BTreeSet<String> = BTreeSet::new();
    let mut out = Vec::with_capacity(left.len());
    while !left.is_empty() {
        let ready = left
            .values()
            .find(|s| s.after.iter().all(|a| done.contains(a)))
            .map(|s| s.name.clone());
        let Some(name) = ready else {
            return Err(LayoutError::Cycle {
                cycle: cycle(&left),
            });
        };
        let stack = left.remove(&name).expect("found above");
        done.insert(name);
        out.push(stack);
    }
    Ok(out)
}

/// A circle among `left` (where every stack waits for another), as
/// `a → b → a`.
fn cycle(left: &BTreeMap<String, StackDecl>) -> String {
    let Some(start) = left.keys().next() else {
        return String::new();
    };
    let mut path: Vec<&str> = vec![start];
    loop {
        let last = path[path.len() - 1];
        let next = left[last]
            .after
            .iter()
            .find(|a| left.contains_key(*a))
            .map(String::as_str)
            .unwrap_or(start);
        if let Some(at) = path.iter().position(|p| *p == next) {
            let mut circle: Vec<&str> = path[at..].to_vec();
            circle.push(next);
            return circle.join(" → ");
        }
        path.push(next);
    }
}

/// The directories among `paths` that hold a compose file by compose's own
/// names ("" for the root).
fn compose_dirs<'a>(paths: impl IntoIterator<Item = &'a str>) -> BTreeSet<String> {
    paths
        .into_iter()
        .filter_map(|p| {
            let (dir, file) = p.rsplit_once('/').unwrap_or(("", p));
            DEFAULT_FILES.contains(&file).then(|| dir.to_string())
        })
        .collect()
}

/// A stack's settings: `defaults:` with its directory's own `kedge.yaml`
/// over it, key by key (`docker.profiles` in the directory's file replaces
/// the default's, `docker.project_name` from the defaults stays).
pub fn merged(defaults: Option<&Node>, own: Option<&Node>) -> Node {
    let entries = |n: Option<&Node>| -> Vec<Entry> {
        match n.map(|n| &n.value) {
            Some(Value::Map(entries)) => entries.clone(),
            _ => Vec::new(),
        }
    };
    let mut out = entries(defaults);
    for section in entries(own) {
        match out.iter_mut().find(|e| e.key == section.key) {
            Some(base) => match (&mut base.node.value, &section.node.value) {
                (Value::Map(keys), Value::Map(over)) => {
                    for key in over {
                        match keys.iter_mut().find(|k| k.key == key.key) {
                            Some(k) => *k = key.clone(),
                            None => keys.push(key.clone()),
                        }
                    }
                }
                _ => *base = section,
            },
            None => out.push(section),
        }
    }
    Node {
        line: own.or(defaults).map_or(1, |n| n.line),
        value: Value::Map(out),
    }
}

/// The spec's stack names: `[a-z0-9][a-z0-9_-]*`.
/// A stack of several hosts (`target.hosts`) is one stack per host, named
/// `STACK@HOST` (fleet.md §4): `stacks`, each one with hosts (by name)
/// replaced by its copies in their order, and an `after:` naming it waiting
/// for all of them.
pub fn on_hosts(stacks: Vec<StackDecl>, hosts: &BTreeMap<String, Vec<String>>) -> Vec<StackDecl> {
    let expanded = |name: &String| -> Vec<String> {
        match hosts.get(name) {
            Some(list) if !list.is_empty() => list.iter().map(|h| format!("{name}@{h}")).collect(),
            _ => vec![name.clone()],
        }
    };
    let mut out = Vec::with_capacity(stacks.len());
    for stack in stacks {
        let after: Vec<String> = stack.after.iter().flat_map(expanded).collect();
        for name in expanded(&stack.name) {
            out.push(StackDecl {
                name,
                after: after.clone(),
                ..stack.clone()
            });
        }
    }
    out
}

/// A stack's name and, for one of a stack on several hosts, its host.
pub fn split_host(name: &str) -> (&str, Option<&str>) {
    match name.split_once('@') {
        Some((stack, host)) => (stack, Some(host)),
        None => (name, None),
    }
}

pub fn is_stack_name(s: &str) -> bool {
    kedge_yaml::is_project_name(s)
}

/// `rel` from the directory `base`, normalized, while it stays inside the
/// repository ("" is the root itself).
fn inside(base: &Path, rel: &str) -> Option<String> {
    if Path::new(rel).is_absolute() {
        return None;
    }
    let mut out = PathBuf::new();
    for c in base.join(rel).components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            _ => return None,
        }
    }
    Some(out.to_string_lossy().into_owned())
}

fn shown(path: &str) -> String {
    if path.is_empty() {
        "at the root".into()
    } else {
        format!("in {path}")
    }
}

#[cfg(test)]
mod tests;
