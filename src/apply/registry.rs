//! apply: the credentials compose pulls with. With `registries:` set, compose
//! runs with `DOCKER_CONFIG` pointing at a private directory of the data
//! dir (mode 0700) whose `config.json` (mode 0600) is the operator's own
//! docker config plus those registries; without, nothing changes.

use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value, json};

use crate::config::registries::Registry;

/// `<data-dir>/docker/`: compose's `DOCKER_CONFIG` when registries are set.
pub const DIR: &str = "docker";

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("cannot write the registry credentials in {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The operator's docker config directory: `DOCKER_CONFIG`, else `~/.docker`.
fn operator_config_dir() -> Option<PathBuf> {
    std::env::var_os("DOCKER_CONFIG")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker")))
}

/// Writes the merged config now (passwords are read now, so a rotated one
/// is used from the next pull on) and returns the directory for
/// `DOCKER_CONFIG`; `None` without registries. A registry whose password
/// cannot be read is left out and said in the log: pulls from it then fail
/// with the registry's own answer.
pub fn prepare(data_dir: &Path, registries: &[Registry]) -> Result<Option<PathBuf>, RegistryError> {
    if registries.is_empty() {
        return Ok(None);
    }
    let base = operator_config_dir()
        .map(|d| d.join("config.json"))
        .and_then(|f| std::fs::read_to_string(f).ok())
        .and_then(|text| serde_json::from_str::<Value>(&text).ok());
    let mut passwords = Vec::with_capacity(registries.len());
    for r in registries {
        match r.password.read() {
            Ok(p) => passwords.push((r, p)),
            Err(e) => tracing::warn!(
                registry = %r.host,
                "registry credentials left out: the password: {}",
                crate::error_chain(&e)
            ),
        }
    }
    let config = merged(base, &passwords);
    let dir = data_dir.join(DIR);
    write_private(&dir, &config).map_err(|source| RegistryError::Write {
        path: dir.clone(),
        source,
    })?;
    Ok(Some(dir))
}

/// The operator's config with `auths` entries for the registries. Their
/// own `credHelpers` entry would win over `auths`: it is dropped for these
/// hosts. `currentContext` is dropped too: contexts live beside the
/// operator's config, and Kedge talks to the engine `DOCKER_HOST` names.
fn merged(base: Option<Value>, registries: &[(&Registry, String)]) -> Value {
    let mut config = match base {
        Some(Value::Object(map)) => map,
        _ => Map::new(),
    };
    config.remove("currentContext");
    if let Some(Value::Object(helpers)) = config.get_mut("credHelpers") {
        for (r, _) in registries {
            helpers.remove(&r.host);
        }
    }
    let auths = config
        .entry("auths")
        .or_insert_with(|| Value::Object(Map::new()));
    if !auths.is_object() {
        *auths = Value::Object(Map::new());
    }
    let auths = auths.as_object_mut().expect("made an object above");
    for (r, password) in registries {
        auths.insert(
            r.host.clone(),
            json!({ "auth": STANDARD.encode(format!("{}:{password}", r.username)) }),
        );
    }
    Value::Object(config)
}

/// Replaces `dir/config.json` atomically: the directory 0700, the file 0600
/// from its creation on (never briefly readable by others).
fn write_private(dir: &Path, config: &Value) -> std::io::Result<()> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    let text = serde_json::to_string_pretty(config)?;
    // Asked for at every apply and heal: written only when it changed.
    if std::fs::read(dir.join("config.json")).is_ok_and(|old| old == text.as_bytes()) {
        return Ok(());
    }
    let tmp = dir.join(format!(
        ".config.json.{}.{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, dir.join("config.json"))
    };
    write().inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::registries::SecretRef;

    fn registry(host: &str) -> Registry {
        Registry {
            host: host.into(),
            username: "ci".into(),
            password: SecretRef::Env("UNUSED".into()),
        }
    }

    #[test]
    fn the_operators_config_is_kept_and_the_registries_added() {
        let base = json!({
            "auths": {"other.example.com": {"auth": "b3RoZXI6cHc="}},
            "credHelpers": {"reg.example.com": "pass", "gcr.io": "gcloud"},
            "currentContext": "remote",
            "psFormat": "table {{.ID}}",
        });
        let r = registry("reg.example.com");
        let out = merged(Some(base), &[(&r, "s3cret".into())]);
        assert_eq!(
            out,
            json!({
                "auths": {
                    "other.example.com": {"auth": "b3RoZXI6cHc="},
                    // base64("ci:s3cret")
                    "reg.example.com": {"auth": "Y2k6czNjcmV0"},
                },
                "credHelpers": {"gcr.io": "gcloud"},
                "psFormat": "table {{.ID}}",
            })
        );
        assert_eq!(
            merged(Some(json!("not an object")), &[(&r, "x".into())])["auths"]["reg.example.com"]["auth"],
            "Y2k6eA=="
        );
    }

    #[test]
    fn the_file_is_private_from_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path();
        let file = data.join("pw");
        std::fs::write(&file, "pw\n").unwrap();
        let r = Registry {
            password: SecretRef::File(file.clone()),
            ..registry("127.0.0.1:5000")
        };
        assert_eq!(prepare(data, &[]).unwrap(), None);
        let out = prepare(data, std::slice::from_ref(&r)).unwrap().unwrap();
        assert_eq!(out, data.join(DIR));
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&out), 0o700);
        assert_eq!(mode(&out.join("config.json")), 0o600);
        let written: Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap())
                .unwrap();
        // base64("ci:pw")
        assert_eq!(written["auths"]["127.0.0.1:5000"]["auth"], "Y2k6cHc=");
        // Regression: written afresh at every apply and heal. The same
        // content leaves the file alone; a change rewrites it in place,
        // leaving no temporary file behind.
        use std::os::unix::fs::MetadataExt;
        let inode = || std::fs::metadata(out.join("config.json")).unwrap().ino();
        let before = inode();
        prepare(data, std::slice::from_ref(&r)).unwrap();
        assert_eq!(inode(), before, "unchanged: not rewritten");
        std::fs::write(&file, "pw2\n").unwrap();
        prepare(data, &[r]).unwrap();
        assert_ne!(inode(), before, "changed: rewritten");
        assert_eq!(std::fs::read_dir(&out).unwrap().count(), 1);
    }
}
