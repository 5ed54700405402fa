//! desired: a stack's inputs (fleet.md §1) — every repository path its
//! rendering read — and their fingerprint at a commit. A new commit whose
//! fingerprint equals the deployed one changes nothing the stack reads: it
//! is not rendered, no compose process runs, no deployment is recorded.
//!
//! Compose's `config --format json` names bind-mount sources, `configs:`
//! and `secrets:` files and build contexts; it does not name the files it
//! merged (`include:`, `extends: file:`) nor the `env_file:`s it folded into
//! `environment`: those come from the compose files themselves, read as
//! compose reads them. A path compose would interpolate (`${…}`) or fetch
//! from elsewhere cannot be known without compose: such a stack has no
//! fingerprint, and every new commit is rendered.

use std::collections::{BTreeSet, HashMap};
use std::path::{Component, Path, PathBuf};

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::contained;
use super::render::normalize;
pub use crate::model::stack_inputs::StackInputs;

/// At most this many compose files (the named ones, plus what they include
/// and extend) are followed; past it the stack has no fingerprint.
const MAX_FILES: usize = 64;

/// What a path missing from the commit counts as.
const ABSENT: &str = "-";

/// Why a stack's inputs cannot be listed: it is then rendered at every new
/// commit. Never an error of the deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unknown {
    /// A path compose interpolates or fetches (`${VAR}`, a remote include).
    Dynamic(String),
    /// A compose file Kedge could not read or parse as compose did.
    Unreadable(String),
    /// More than `MAX_FILES` compose files.
    TooMany,
}

/// The inputs of a stack rendered from `checkout`: `files` (its compose
/// files, relative to `checkout`), what they include and extend, the env
/// files they name, the `.env` of `project_dir` (relative to `checkout`),
/// what compose's rendered `doc` reads from the repository, and
/// `kedge.yaml`. `doc` holds paths under `checkout`, as compose wrote them.
pub fn collect(
    checkout: &Path,
    project_dir: &Path,
    files: &[PathBuf],
    doc: &Value,
    limit: u64,
) -> Result<Vec<String>, Unknown> {
    let mut paths: BTreeSet<String> = BTreeSet::new();
    paths.insert("kedge.yaml".into());
    paths.insert(join(project_dir, ".env"));
    // (file, the directory its relative paths start from), to read.
    let mut queue: Vec<(PathBuf, PathBuf)> = files
        .iter()
        .map(|f| (normalize(f), project_dir.to_path_buf()))
        .collect();
    let mut seen: BTreeSet<PathBuf> = BTreeSet::new();
    while let Some((file, base)) = queue.pop() {
        if !seen.insert(file.clone()) {
            continue;
        }
        if seen.len() > MAX_FILES {
            return Err(Unknown::TooMany);
        }
        add(&mut paths, checkout, &file);
        let shown = file.to_string_lossy().into_owned();
        let text = match contained::read(checkout, &file, limit) {
            Ok(Some(bytes)) => bytes,
            // A file the commit lacks: compose failed on it, and the
            // deployment with it. Its absence is its fingerprint.
            Ok(None) => continue,
            Err(_) => return Err(Unknown::Unreadable(shown)),
        };
        let text = String::from_utf8(text).map_err(|_| Unknown::Unreadable(shown.clone()))?;
        let yaml: Value = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_saphyr::from_str(&text).map_err(|_| Unknown::Unreadable(shown.clone()))?
        };
        let own_dir = file.parent().map(Path::to_path_buf).unwrap_or_default();
        let named = named_in(&yaml)?;
        for (include, project_directory) in named.includes {
            let Some(f) = resolve(&own_dir, &include) else {
                continue;
            };
            // An included file's relative paths start from its own
            // directory, or from the `project_directory` the entry names.
            let dir = match &project_directory {
                Some(d) => resolve(&own_dir, d).unwrap_or_default(),
                None => f.parent().map(Path::to_path_buf).unwrap_or_default(),
            };
            queue.push((f, dir));
        }
        for env_file in named.include_env_files {
            if let Some(p) = resolve(&own_dir, &env_file) {
                add(&mut paths, checkout, &p);
            }
        }
        for extended in named.extends {
            if let Some(f) = resolve(&own_dir, &extended) {
                let dir = f.parent().map(Path::to_path_buf).unwrap_or_default();
                queue.push((f, dir));
            }
        }
        for env_file in named.env_files {
            if let Some(p) = resolve(&base, &env_file) {
                add(&mut paths, checkout, &p);
            }
        }
    }
    let root = normalize(checkout);
    let mut rendered = Vec::new();
    rendered_paths(doc, &mut rendered);
    for p in rendered {
        if let Ok(rel) = normalize(&p).strip_prefix(&root) {
            add(&mut paths, checkout, rel);
        }
    }
    Ok(paths.into_iter().collect())
}

/// The fingerprint of `paths` at a commit whose tree is `object_ids`
/// (path → object id, trees included), with `env` (see [`env_digest`]).
pub fn fingerprint(paths: &[String], object_ids: &HashMap<String, String>, env: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"kedge stack inputs 1\0");
    hasher.update(env.as_bytes());
    for path in paths {
        let id = if path.is_empty() {
            object_ids.get("")
        } else {
            object_ids.get(path)
        };
        hasher.update(format!("\0{path}\0{}", id.map_or(ABSENT, String::as_str)).as_bytes());
    }
    super::render::hex(&hasher.finalize())
}

/// A keyed hash of the environment compose inherits (interpolation reads
/// it): a Kedge started with other values renders its next commit instead
/// of taking it for unchanged. Keyed: the environment holds secrets.
pub fn env_digest(key: &[u8]) -> String {
    let mut vars: Vec<(String, String)> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .filter(|(k, _)| crate::process::repo_env(k).is_some())
        .collect();
    vars.sort();
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    for (k, v) in &vars {
        mac.update(format!("{k}\0{v}\0").as_bytes());
    }
    super::render::hex(&mac.finalize().into_bytes())
}

/// What one compose file names of other files.
#[derive(Debug, Default, PartialEq)]
struct Named {
    /// `include:` entries, relative to the file's directory, each with
    /// the `project_directory` it names.
    includes: Vec<(String, Option<String>)>,
    /// `env_file:` of `include:` entries, relative to the file's directory.
    include_env_files: Vec<String>,
    /// `extends: {file: …}`, relative to the file's directory.
    extends: Vec<String>,
    /// Services' `env_file:`, relative to the project directory.
    env_files: Vec<String>,
}

fn named_in(yaml: &Value) -> Result<Named, Unknown> {
    let mut named = Named::default();
    for item in yaml["include"].as_array().into_iter().flatten() {
        match item {
            Value::String(s) => named.includes.push((s.clone(), None)),
            Value::Object(_) => {
                let mut files = Vec::new();
                strings(&item["path"], &mut files);
                let dir = item["project_directory"].as_str().map(String::from);
                named
                    .includes
                    .extend(files.into_iter().map(|f| (f, dir.clone())));
                strings(&item["env_file"], &mut named.include_env_files);
            }
            _ => {}
        }
    }
    for svc in yaml["services"]
        .as_object()
        .into_iter()
        .flat_map(|m| m.values())
    {
        if let Some(file) = svc["extends"]["file"].as_str() {
            named.extends.push(file.to_string());
        }
        match &svc["env_file"] {
            Value::Array(items) => {
                for item in items {
                    match item {
                        Value::String(s) => named.env_files.push(s.clone()),
                        other => strings(&other["path"], &mut named.env_files),
                    }
                }
            }
            other => strings(other, &mut named.env_files),
        }
    }
    let included = named
        .includes
        .iter()
        .flat_map(|(f, d)| std::iter::once(f).chain(d));
    let others = [&named.include_env_files, &named.extends, &named.env_files];
    if let Some(dynamic) = included
        .chain(others.into_iter().flatten())
        .find(|p| is_dynamic(p))
    {
        return Err(Unknown::Dynamic(dynamic.clone()));
    }
    Ok(named)
}

/// A string, or each string of a list.
fn strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(items) => {
            out.extend(items.iter().filter_map(|i| i.as_str().map(String::from)))
        }
        _ => {}
    }
}

/// A path compose interpolates, or one it fetches (`oci://`, a git URL).
fn is_dynamic(path: &str) -> bool {
    path.contains('$') || path.contains("://") || path.starts_with('~')
}

/// `rel` from `base`, inside the repository; `None` for a path that
/// leaves it (not the commit's, so not its input).
fn resolve(base: &Path, rel: &str) -> Option<PathBuf> {
    let p = Path::new(rel);
    if p.is_absolute() {
        return None;
    }
    let mut out = PathBuf::new();
    for c in base.join(p).components() {
        match c {
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::CurDir => {}
            Component::Normal(n) => out.push(n),
            _ => return None,
        }
    }
    Some(out)
}

/// Adds `rel`, and where a link inside the checkout leads: the link's
/// object id is its target's name, not its content.
fn add(paths: &mut BTreeSet<String>, checkout: &Path, rel: &Path) {
    paths.insert(rel.to_string_lossy().trim_end_matches('/').to_string());
    let Ok(real) = checkout.join(rel).canonicalize() else {
        return;
    };
    if let Ok(root) = checkout.canonicalize()
        && let Ok(inside) = real.strip_prefix(&root)
        && inside != rel
    {
        paths.insert(inside.to_string_lossy().into_owned());
    }
}

fn join(dir: &Path, name: &str) -> String {
    dir.join(name).to_string_lossy().into_owned()
}

/// The repository paths compose's rendered project reads: bind-mount
/// sources, `configs:`/`secrets:` files, and every absolute path of a
/// `build:` section (context, dockerfile, additional contexts).
fn rendered_paths(doc: &Value, out: &mut Vec<PathBuf>) {
    for svc in doc["services"]
        .as_object()
        .into_iter()
        .flat_map(|m| m.values())
    {
        for vol in svc["volumes"].as_array().into_iter().flatten() {
            if vol["type"] == "bind"
                && let Some(src) = vol["source"].as_str()
            {
                out.push(PathBuf::from(src));
            }
        }
        absolute_paths(&svc["build"], out);
        if let (Some(context), Some(dockerfile)) = (
            svc["build"]["context"].as_str(),
            svc["build"]["dockerfile"].as_str(),
        ) {
            out.push(Path::new(context).join(dockerfile));
        }
    }
    for kind in ["configs", "secrets"] {
        for item in doc[kind].as_object().into_iter().flat_map(|m| m.values()) {
            if let Some(file) = item["file"].as_str() {
                out.push(PathBuf::from(file));
            }
        }
    }
}

fn absolute_paths(v: &Value, out: &mut Vec<PathBuf>) {
    match v {
        Value::String(s) if s.starts_with('/') => out.push(PathBuf::from(s)),
        Value::Array(items) => items.iter().for_each(|i| absolute_paths(i, out)),
        Value::Object(map) => map.values().for_each(|i| absolute_paths(i, out)),
        _ => {}
    }
}

#[cfg(test)]
mod tests;
