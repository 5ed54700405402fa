//! target: the files of a stack that a remote host's engine must see
//! (fleet.md §4) — bind-mount sources and `configs`/`secrets` files from
//! the stack's checkout and its decrypted SOPS files, shipped over the
//! host's SSH connection into `/var/lib/kedge-remote/PROJECT/`, each under
//! the hash of its content, and pointed at there by an override of Kedge's
//! read last. A file that did not change keeps its path, so compose
//! recreates only the services whose files changed; the previous
//! deployment's copies stay for a rollback, older ones are pruned.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::host::Control;
use crate::process::{Cmd, ProcessError};

/// Kedge's directory on a remote host.
pub const REMOTE_DIR: &str = "/var/lib/kedge-remote";
/// The most a deployment ships: a stack's configuration, not its data.
pub const MAX_SHIPPED: u64 = 64 << 20;
const SHIP_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug, thiserror::Error)]
pub enum ShipError {
    #[error("cannot read {} to ship it", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the files to ship are over {} MiB (bind-mounted data belongs in a volume)", MAX_SHIPPED >> 20)]
    TooLarge,
    #[error("cannot ship the stack's files to host {host}")]
    Ship {
        host: String,
        #[source]
        source: ProcessError,
    },
}

/// One bind mount whose source is a file or directory of this machine's
/// (under one of the roots: the checkout, the private directory).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalBind {
    pub service: String,
    /// Its place in the service's `volumes`.
    pub index: usize,
    pub source: PathBuf,
}

/// A top-level `configs`/`secrets` entry read from a file of this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalFile {
    /// `configs` or `secrets`.
    pub kind: &'static str,
    pub name: String,
    pub source: PathBuf,
}

fn under(path: &str, roots: &[&Path]) -> bool {
    roots.iter().any(|r| Path::new(path).starts_with(r))
}

/// The bind mounts of a rendered project (`config --format json`) whose
/// sources are under `roots`; others name paths of the host itself.
pub fn local_binds(rendered: &Value, roots: &[&Path]) -> Vec<LocalBind> {
    let mut out = Vec::new();
    let Some(services) = rendered.get("services").and_then(Value::as_object) else {
        return out;
    };
    for (service, spec) in services {
        let volumes = spec.get("volumes").and_then(Value::as_array);
        for (index, v) in volumes.into_iter().flatten().enumerate() {
            if v.get("type").and_then(Value::as_str) != Some("bind") {
                continue;
            }
            let Some(source) = v.get("source").and_then(Value::as_str) else {
                continue;
            };
            if under(source, roots) {
                out.push(LocalBind {
                    service: service.clone(),
                    index,
                    source: PathBuf::from(source),
                });
            }
        }
    }
    out
}

/// The `configs` and `secrets` of a rendered project read from files
/// under `roots`.
pub fn local_files(rendered: &Value, roots: &[&Path]) -> Vec<LocalFile> {
    let mut out = Vec::new();
    for kind in ["configs", "secrets"] {
        let Some(all) = rendered.get(kind).and_then(Value::as_object) else {
            continue;
        };
        for (name, def) in all {
            if let Some(file) = def.get("file").and_then(Value::as_str)
                && under(file, roots)
            {
                out.push(LocalFile {
                    kind,
                    name: name.clone(),
                    source: PathBuf::from(file),
                });
            }
        }
    }
    out
}

/// What a deployment ships, and where its bind mounts then point.
#[derive(Debug, Default)]
pub struct Packed {
    /// A tar of `KEY/NAME` entries.
    pub archive: Vec<u8>,
    /// The content keys, one directory each on the host.
    pub keys: BTreeSet<String>,
    /// Each service's `volumes`, the shipped sources pointed at the host's
    /// copies: the override's (compose merges volumes by target).
    pub volumes: BTreeMap<String, Vec<Value>>,
    /// `configs`/`secrets` (by kind, then name) pointed at the copies.
    pub files: BTreeMap<&'static str, BTreeMap<String, String>>,
}

impl Packed {
    /// The override that points the project at the host's copies: read
    /// after every other file of the project.
    pub fn override_doc(&self) -> Value {
        let mut doc = serde_json::Map::new();
        let services: serde_json::Map<String, Value> = self
            .volumes
            .iter()
            .map(|(s, v)| (s.clone(), serde_json::json!({ "volumes": v })))
            .collect();
        doc.insert("services".into(), Value::Object(services));
        for (kind, files) in &self.files {
            let entries: serde_json::Map<String, Value> = files
                .iter()
                .map(|(name, path)| (name.clone(), serde_json::json!({ "file": path })))
                .collect();
            doc.insert(kind.to_string(), Value::Object(entries));
        }
        Value::Object(doc)
    }
}

/// Packs the files of `rendered` under `roots` (bind-mount sources,
/// `configs`/`secrets` files) for `project`'s directory on the host.
/// Entries carry no time, owner or name of this machine: the same content
/// is the same key whatever the checkout.
pub fn pack(rendered: &Value, roots: &[&Path], project: &str) -> Result<Packed, ShipError> {
    let binds = local_binds(rendered, roots);
    let files = local_files(rendered, roots);
    let sources: Vec<&PathBuf> = binds
        .iter()
        .map(|b| &b.source)
        .chain(files.iter().map(|f| &f.source))
        .collect();
    let mut packed = Packed::default();
    let mut archive = tar::Builder::new(Vec::new());
    archive.mode(tar::HeaderMode::Deterministic);
    let mut total = 0u64;
    let mut remote_of: BTreeMap<PathBuf, String> = BTreeMap::new();
    for source in sources {
        if remote_of.contains_key(source) {
            continue;
        }
        let name = source
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "root".into());
        let entries = entries_of(source)?;
        let mut hash = Sha256::new();
        for (rel, path, mode) in &entries {
            hash.update(rel.as_bytes());
            hash.update(mode.to_le_bytes());
            if let Some(p) = path {
                let bytes = read(p)?;
                hash.update((bytes.len() as u64).to_le_bytes());
                hash.update(&bytes);
            }
        }
        let key = hex::encode(&hash.finalize()[..12]);
        for (rel, path, mode) in entries {
            let at = match rel.as_str() {
                "" => format!("{key}/{name}"),
                rel => format!("{key}/{name}/{rel}"),
            };
            let mut header = tar::Header::new_gnu();
            header.set_mode(mode);
            header.set_mtime(0);
            match path {
                Some(p) => {
                    let bytes = read(&p)?;
                    total += bytes.len() as u64;
                    if total > MAX_SHIPPED {
                        return Err(ShipError::TooLarge);
                    }
                    header.set_entry_type(tar::EntryType::Regular);
                    header.set_size(bytes.len() as u64);
                    archive
                        .append_data(&mut header, &at, bytes.as_slice())
                        .map_err(|source| ShipError::Read {
                            path: p.clone(),
                            source,
                        })?;
                }
                None => {
                    header.set_entry_type(tar::EntryType::Directory);
                    header.set_size(0);
                    archive
                        .append_data(&mut header, &at, std::io::empty())
                        .map_err(|e| ShipError::Read {
                            path: source.clone(),
                            source: e,
                        })?;
                }
            }
        }
        remote_of.insert(
            source.clone(),
            format!("{REMOTE_DIR}/{project}/{key}/{name}"),
        );
        packed.keys.insert(key);
    }
    packed.archive = archive.into_inner().map_err(|source| ShipError::Read {
        path: roots.first().map(|r| r.to_path_buf()).unwrap_or_default(),
        source,
    })?;
    for f in &files {
        packed
            .files
            .entry(f.kind)
            .or_default()
            .insert(f.name.clone(), remote_of[&f.source].clone());
    }
    for bind in &binds {
        let volumes = packed
            .volumes
            .entry(bind.service.clone())
            .or_insert_with(|| {
                rendered["services"][&bind.service]["volumes"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            });
        if let Some(v) = volumes.get_mut(bind.index) {
            v["source"] = Value::String(remote_of[&bind.source].clone());
        }
    }
    Ok(packed)
}

fn read(path: &Path) -> Result<Vec<u8>, ShipError> {
    std::fs::read(path).map_err(|source| ShipError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// A file, or a directory's tree (symbolic links left out: a checkout's
/// links may lead anywhere), as (path relative to it, file or `None` for
/// a directory, mode), in a stable order.
type Entry = (String, Option<PathBuf>, u32);

fn entries_of(source: &Path) -> Result<Vec<Entry>, ShipError> {
    use std::os::unix::fs::PermissionsExt;
    let err = |path: &Path, source| ShipError::Read {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::symlink_metadata(source).map_err(|e| err(source, e))?;
    let mode = meta.permissions().mode() & 0o777;
    if meta.is_file() {
        return Ok(vec![(String::new(), Some(source.to_path_buf()), mode)]);
    }
    let mut out = vec![(String::new(), None, mode)];
    if !meta.is_dir() {
        return Ok(Vec::new());
    }
    let mut stack = vec![source.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let mut names: Vec<_> = std::fs::read_dir(&dir)
            .map_err(|e| err(&dir, e))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .collect();
        names.sort();
        for path in names {
            let meta = std::fs::symlink_metadata(&path).map_err(|e| err(&path, e))?;
            let rel = path
                .strip_prefix(source)
                .unwrap_or(&path)
                .to_string_lossy()
                .into_owned();
            let mode = meta.permissions().mode() & 0o777;
            if meta.is_dir() {
                out.push((rel, None, mode));
                stack.push(path);
            } else if meta.is_file() {
                out.push((rel, Some(path), mode));
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Ships `packed` into the host's directory of `project` over its SSH
/// connection, then removes the copies of keys neither in it nor in
/// `keep` (the previous deployment's, for a rollback).
pub async fn ship(
    host: &str,
    control: &Control,
    project: &str,
    packed: &Packed,
    keep: &BTreeSet<String>,
) -> Result<(), ShipError> {
    let kept: Vec<&str> = packed.keys.iter().chain(keep).map(String::as_str).collect();
    // Names only: a project name and hex keys, no secret and nothing a
    // shell would read otherwise.
    let script = format!(
        "set -e; umask 077; d={REMOTE_DIR}/{project}; mkdir -p \"$d\"; tar -x -C \"$d\" -f -; \
         cd \"$d\"; for k in *; do case \" {} \" in *\" $k \"*) ;; *) rm -rf -- \"$k\" ;; esac; done",
        kept.join(" ")
    );
    Cmd::new("ssh")
        .args([
            "-F",
            "/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "ControlMaster=no",
        ])
        .arg("-o")
        .arg(format!("ControlPath={}", control.path.display()))
        .arg("--")
        .arg(&control.destination)
        .arg(script)
        .stdin(packed.archive.clone())
        .timeout(SHIP_TIMEOUT)
        .run()
        .await
        .map(drop)
        .map_err(|source| ShipError::Ship {
            host: host.to_string(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendered(checkout: &Path) -> Value {
        serde_json::json!({
            "services": {
                "web": {"volumes": [
                    {"type": "volume", "source": "data", "target": "/data"},
                    {"type": "bind", "source": checkout.join("conf/site.conf"), "target": "/etc/site.conf", "read_only": true},
                    {"type": "bind", "source": "/srv/shared", "target": "/shared"}
                ]},
                "api": {"volumes": [
                    {"type": "bind", "source": checkout.join("conf/site.conf"), "target": "/etc/site.conf"},
                    {"type": "bind", "source": checkout.join("static"), "target": "/static"}
                ]},
                "db": {"image": "x"}
            }
        })
    }

    #[test]
    fn only_the_checkouts_files_are_shipped_under_the_hash_of_their_content() {
        let dir = tempfile::tempdir().unwrap();
        let checkout = dir.path();
        std::fs::create_dir_all(checkout.join("conf")).unwrap();
        std::fs::create_dir_all(checkout.join("static/css")).unwrap();
        std::fs::write(checkout.join("conf/site.conf"), "v1\n").unwrap();
        std::fs::write(checkout.join("static/index.html"), "hi\n").unwrap();
        std::fs::write(checkout.join("static/css/a.css"), "a{}\n").unwrap();
        let doc = rendered(checkout);
        let binds = local_binds(&doc, &[checkout]);
        assert_eq!(
            binds
                .iter()
                .map(|b| (b.service.as_str(), b.index))
                .collect::<Vec<_>>(),
            [("api", 0), ("api", 1), ("web", 1)],
            "the host's own /srv/shared stays as it is"
        );

        let first = pack(&doc, &[checkout], "shop").unwrap();
        assert_eq!(first.keys.len(), 2, "one copy of a file two services mount");
        let web = &first.volumes["web"];
        assert_eq!(web[0]["source"], "data");
        assert_eq!(web[2]["source"], "/srv/shared");
        let site = web[1]["source"].as_str().unwrap();
        assert!(site.starts_with("/var/lib/kedge-remote/shop/"), "{site}");
        assert!(site.ends_with("/site.conf"), "{site}");
        assert_eq!(web[1]["read_only"], true, "the rest of the entry is kept");
        assert_eq!(first.volumes["api"][0]["source"], site);
        assert!(!first.volumes.contains_key("db"));

        // The archive holds `KEY/NAME` entries.
        let mut names: Vec<String> = tar::Archive::new(first.archive.as_slice())
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect();
        names.sort();
        let key = |p: &str| p.split('/').nth(5).unwrap().to_string();
        let static_key = key(first.volumes["api"][1]["source"].as_str().unwrap());
        assert!(
            names.contains(&format!("{static_key}/static/css/a.css")),
            "{names:?}"
        );

        // Same content, same place (touching a file changes nothing);
        // changed content, a new place for that file only.
        std::fs::write(checkout.join("static/index.html"), "hi\n").unwrap();
        let again = pack(&doc, &[checkout], "shop").unwrap();
        assert_eq!(again.keys, first.keys);
        assert_eq!(again.archive, first.archive);
        std::fs::write(checkout.join("conf/site.conf"), "v2\n").unwrap();
        let changed = pack(&doc, &[checkout], "shop").unwrap();
        assert_ne!(changed.volumes["web"][1], first.volumes["web"][1]);
        assert_eq!(changed.volumes["api"][1], first.volumes["api"][1]);
    }

    #[test]
    fn configs_and_secrets_files_and_the_private_directorys_files_are_shipped_with_their_modes() {
        use std::os::unix::fs::PermissionsExt;
        let checkout = tempfile::tempdir().unwrap();
        let private = tempfile::tempdir().unwrap();
        std::fs::write(checkout.path().join("app.conf"), "listen 80\n").unwrap();
        let secret = private.path().join("token");
        std::fs::write(&secret, "s3cret\n").unwrap();
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
        let doc = serde_json::json!({
            "services": {"app": {"volumes": [
                {"type": "bind", "source": secret, "target": "/run/token"}
            ]}},
            "configs": {"app": {"file": checkout.path().join("app.conf")},
                        "outside": {"file": "/etc/hosts"}},
            "secrets": {"token": {"file": secret}}
        });
        let roots = [checkout.path(), private.path()];
        let packed = pack(&doc, &roots, "shop").unwrap();
        assert_eq!(
            packed.keys.len(),
            2,
            "the secret once, for the bind and the entry"
        );
        let config = &packed.files["configs"]["app"];
        assert!(config.starts_with("/var/lib/kedge-remote/shop/") && config.ends_with("/app.conf"));
        assert!(
            !packed.files["configs"].contains_key("outside"),
            "the host's own file"
        );
        let token = &packed.files["secrets"]["token"];
        assert_eq!(packed.volumes["app"][0]["source"], token.as_str());
        let modes: Vec<(String, u32)> = tar::Archive::new(packed.archive.as_slice())
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.path().unwrap().to_string_lossy().into_owned(),
                    e.header().mode().unwrap(),
                )
            })
            .collect();
        assert!(
            modes
                .iter()
                .any(|(p, m)| p.ends_with("/token") && *m == 0o600),
            "{modes:?}"
        );
        let over = packed.override_doc();
        assert_eq!(over["configs"]["app"]["file"], config.as_str());
        assert_eq!(over["secrets"]["token"]["file"], token.as_str());
        assert_eq!(
            over["services"]["app"]["volumes"][0]["source"],
            token.as_str()
        );
    }

    #[test]
    fn nothing_to_ship_is_an_empty_archive_and_no_override() {
        let dir = tempfile::tempdir().unwrap();
        let doc = serde_json::json!({"services": {"web": {"image": "x"}}});
        let packed = pack(&doc, &[dir.path()], "shop").unwrap();
        assert!(packed.keys.is_empty() && packed.volumes.is_empty() && packed.files.is_empty());
    }
}
