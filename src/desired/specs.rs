//! desired: a rendered project's services as specs — each with the hash
//! drift is measured against: its rendered definition plus the Git object
//! ids of the repository files it uses and its inline configs and secrets
//! — and the fingerprint of what a build reads.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::inputs::{self, Resolved};
use super::render::{IGNORE_LABEL, ServiceSpec, collect_paths, hex, normalize, repo_relative};

/// Per-service specs of a rendered project (paths already relocated to `root`).
pub fn service_specs(
    doc: &Value,
    root: &Path,
    object_ids: &HashMap<String, String>,
    resolved: Resolved<'_>,
) -> BTreeMap<String, ServiceSpec> {
    let empty = serde_json::Map::new();
    let services = doc["services"].as_object().unwrap_or(&empty);
    let top_files = |kind: &str, name: &str| doc[kind][name]["file"].as_str().map(String::from);
    services
        .iter()
        .map(|(name, svc)| {
            let mut used: Vec<String> = Vec::new();
            for vol in svc["volumes"].as_array().into_iter().flatten() {
                if vol["type"] == "bind"
                    && let Some(src) = vol["source"].as_str()
                {
                    used.push(src.to_string());
                }
            }
            for kind in ["configs", "secrets"] {
                for item in svc[kind].as_array().into_iter().flatten() {
                    let source = item["source"].as_str().or_else(|| item.as_str());
                    if let Some(file) = source.and_then(|s| top_files(kind, s)) {
                        used.push(file);
                    }
                }
            }
            let build_context = svc["build"]["context"].as_str().map(String::from);
            used.extend(build_context.clone());

            // Object ids of used repository paths; paths outside the repository
            // or not in git (runtime data) are not configuration.
            let mut fingerprints: Vec<(String, String)> = used
                .iter()
                .filter_map(|p| repo_relative(Path::new(p), root))
                .filter_map(|rel| fingerprint(&rel, object_ids).map(|id| (rel, id)))
                .collect();
            // Inline and environment configs and secrets: compose's own
            // hash leaves them out, so an edit would otherwise go unseen.
            fingerprints.extend(inputs::fingerprints(doc, svc, resolved));
            fingerprints.sort();
            fingerprints.dedup();

            let mut hasher = Sha256::new();
            // serde_json's map is ordered by key: the text is canonical.
            hasher.update(svc.to_string().as_bytes());
            for (path, id) in &fingerprints {
                hasher.update(format!("\0{path}\0{id}").as_bytes());
            }
            let hash = hex(&hasher.finalize());
            let build = build_context
                .as_deref()
                .and_then(|c| repo_relative(Path::new(c), root))
                .map(|rel| match fingerprint(&rel, object_ids) {
                    Some(id) => format!("{rel}@{id}"),
                    None => rel,
                });
            let build_fingerprint = build
                .as_ref()
                .and_then(|_| build_fingerprint(&svc["build"], root, object_ids));
            let replicas = svc["deploy"]["replicas"]
                .as_u64()
                .or_else(|| svc["scale"].as_u64())
                .unwrap_or(1) as u32;
            let spec = ServiceSpec {
                name: name.clone(),
                hash,
                image: svc["image"].as_str().map(String::from),
                build,
                build_fingerprint,
                replicas,
                restart: svc["restart"].as_str().map(String::from),
                ignored: svc["labels"][IGNORE_LABEL]
                    .as_str()
                    .is_some_and(|v| v.eq_ignore_ascii_case("true")),
            };
            (name.clone(), spec)
        })
        .collect()
}

/// The fingerprint of a service's build inputs: its `build` section as
/// compose resolved it, plus the object ids of the context and of every
/// other repository path the section names (a dockerfile outside the
/// context, additional contexts). `None` when the context's content is not
/// known from Git.
fn build_fingerprint(
    build: &Value,
    root: &Path,
    object_ids: &HashMap<String, String>,
) -> Option<String> {
    let context = Path::new(build["context"].as_str()?);
    let context_id = fingerprint(&repo_relative(context, root)?, object_ids)?;
    let mut paths: Vec<PathBuf> = Vec::new();
    collect_paths(build, &mut paths);
    if let Some(dockerfile) = build["dockerfile"].as_str() {
        paths.push(normalize(&context.join(dockerfile)));
    }
    let mut ids: Vec<(String, String)> = paths
        .iter()
        .filter_map(|p| repo_relative(p, root))
        .filter_map(|rel| fingerprint(&rel, object_ids).map(|id| (rel, id)))
        .collect();
    ids.sort();
    ids.dedup();
    let mut hasher = Sha256::new();
    hasher.update(build.to_string().as_bytes());
    hasher.update(format!("\0context\0{context_id}").as_bytes());
    for (path, id) in &ids {
        hasher.update(format!("\0{path}\0{id}").as_bytes());
    }
    Some(hex(&hasher.finalize()))
}

fn fingerprint(rel: &str, object_ids: &HashMap<String, String>) -> Option<String> {
    if rel.is_empty() {
        return object_ids.get("").cloned();
    }
    object_ids.get(rel).cloned()
}
