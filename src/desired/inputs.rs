//! desired: the inputs of a service that compose keeps outside its service
//! section — the top-level `configs:` and `secrets:` it uses, whether from
//! a file, inline `content:` or an `environment:` variable. Compose leaves
//! them out of its own config hash, so Kedge fingerprints them: configs by
//! a digest of their content, secrets by an HMAC keyed with the data
//! directory's own key, so that no store or log ever holds a secret or a
//! plain digest of one that could be guessed back.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::compose::{self, Compose};
use crate::process::ProcessError;

/// The data directory's key for secret fingerprints, made on first use.
pub const KEY_FILE: &str = "fingerprint.key";
const KEY_LEN: usize = 32;
/// The extension field compose interpolates the asked variables into.
const ENV_FIELD: &str = "x-kedge-env";

#[derive(Debug, thiserror::Error)]
pub enum InputsError {
    #[error("cannot read or create the fingerprint key {path}")]
    Key {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the fingerprint key {path} is not {KEY_LEN} bytes: remove it to have a new one made")]
    KeyLength { path: String },
    #[error("compose cannot resolve the variables that configs and secrets are read from")]
    Resolve(#[source] ProcessError),
    #[error(
        "cannot read compose's resolution of the variables that configs and secrets are read from"
    )]
    Output(#[source] serde_json::Error),
}

/// The key for secret fingerprints of `data_dir`: read, or made (random,
/// mode 0600) when there is none. A new key changes the fingerprint of
/// every service that uses a secret: each is recreated once at its next
/// deployment.
pub fn load_key(data_dir: &Path) -> Result<[u8; KEY_LEN], InputsError> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = data_dir.join(KEY_FILE);
    let shown = path.display().to_string();
    let err = |source| InputsError::Key {
        path: shown.clone(),
        source,
    };
    let mut key = [0u8; KEY_LEN];
    rand::fill(&mut key);
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
    {
        Ok(mut file) => {
            file.write_all(&key)
                .and_then(|()| file.sync_all())
                .map_err(err)?;
            Ok(key)
        }
        // Made before, or by another Kedge process just now.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let bytes = std::fs::read(&path).map_err(err)?;
            bytes.try_into().map_err(|_| InputsError::KeyLength {
                path: shown.clone(),
            })
        }
        Err(e) => Err(err(e)),
    }
}

/// What the inputs resolve to outside the compose file.
#[derive(Debug, Clone, Copy)]
pub struct Resolved<'a> {
    /// Values of the variables `environment:` configs and secrets name.
    pub env: &'a BTreeMap<String, String>,
    /// The key secret fingerprints are made with.
    pub key: &'a [u8],
}

/// The variables that the configs and secrets used by some service are
/// read from (`environment: NAME`), sorted. Only plain variable names:
/// each is asked of compose as `${NAME}`.
pub fn env_names(doc: &Value) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for svc in doc["services"]
        .as_object()
        .into_iter()
        .flat_map(|m| m.values())
    {
        for kind in ["configs", "secrets"] {
            for item in svc[kind].as_array().into_iter().flatten() {
                let source = item["source"].as_str().or_else(|| item.as_str());
                if let Some(var) = source.and_then(|s| doc[kind][s]["environment"].as_str())
                    && is_variable(var)
                {
                    names.push(var.to_string());
                }
            }
        }
    }
    names.sort();
    names.dedup();
    names
}

fn is_variable(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The values of `names` as compose resolves them for this project (its
/// environment, then the project's `.env`): asked through an extra compose
/// file on stdin that interpolates each into an extension field. Only
/// these values are read from the answer, and they are kept in memory.
pub async fn resolve_env(
    project: &Compose,
    names: &[String],
    limit: u64,
) -> Result<BTreeMap<String, String>, InputsError> {
    if names.is_empty() {
        return Ok(BTreeMap::new());
    }
    let asked: serde_json::Map<String, Value> = names
        .iter()
        .map(|n| (n.clone(), json!(format!("${{{n}}}"))))
        .collect();
    let extra = json!({ ENV_FIELD: asked }).to_string();
    let out = project
        .cmd(["-f", "-", "config", "--format", "json"])
        .stdin(extra)
        .timeout(compose::CONFIG_TIMEOUT)
        .max_stdout(limit)
        .run()
        .await
        .map_err(InputsError::Resolve)?;
    let doc: Value = serde_json::from_slice(&out.stdout).map_err(InputsError::Output)?;
    Ok(doc[ENV_FIELD]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
        .collect())
}

/// Fingerprints of the inline and environment configs and secrets `svc`
/// uses: `(kind:name, digest)`, sorted. The definition counts too (a new
/// `name:` is a new object).
pub fn fingerprints(doc: &Value, svc: &Value, resolved: Resolved<'_>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for kind in ["configs", "secrets"] {
        let secret = kind == "secrets";
        for item in svc[kind].as_array().into_iter().flatten() {
            let Some(source) = item["source"].as_str().or_else(|| item.as_str()) else {
                continue;
            };
            let def = &doc[kind][source];
            if !def.is_object() {
                continue;
            }
            // File ones count by their object ids, external ones are not
            // the repository's: only inline and environment ones here, so
            // that no other service's fingerprint changes.
            let content = match (def["content"].as_str(), def["environment"].as_str()) {
                (Some(content), _) => Some(content),
                (None, Some(var)) => resolved.env.get(var).map(String::as_str),
                (None, None) => continue,
            };
            let mut shape = def.clone();
            if let Some(m) = shape.as_object_mut() {
                m.remove("content");
            }
            let mut digest = crate::model::digest::sha256_hex(shape.to_string().as_bytes());
            if let Some(content) = content {
                digest.push(':');
                digest.push_str(&if secret {
                    keyed(resolved.key, content.as_bytes())
                } else {
                    crate::model::digest::sha256_hex(content.as_bytes())
                });
            }
            out.push((format!("{kind}:{source}"), digest));
        }
    }
    out.sort();
    out.dedup();
    out
}

/// HMAC-SHA256 of `bytes` with `key`, in hex.
fn keyed(key: &[u8], bytes: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(bytes);
    hex::encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc() -> Value {
        json!({
            "services": {
                "web": {"configs": [{"source": "site"}, {"source": "motd"}], "secrets": [{"source": "token"}]},
                "api": {"configs": ["site"], "secrets": [{"source": "db"}]},
                "worker": {"image": "busybox"}
            },
            "configs": {
                "site": {"name": "p_site", "content": "v1\n"},
                "motd": {"name": "p_motd", "environment": "MOTD"}
            },
            "secrets": {
                "token": {"name": "p_token", "environment": "TOKEN"},
                "db": {"name": "p_db", "file": "/r/db.txt"}
            }
        })
    }

    fn prints(
        doc: &Value,
        service: &str,
        env: &[(&str, &str)],
        key: &[u8],
    ) -> Vec<(String, String)> {
        let env: BTreeMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        fingerprints(doc, &doc["services"][service], Resolved { env: &env, key })
    }

    #[test]
    fn the_variables_asked_are_those_of_used_definitions() {
        let mut d = doc();
        d["configs"]["unused"] = json!({"environment": "UNUSED"});
        d["configs"]["odd"] = json!({"environment": "X}${Y"});
        d["services"]["worker"]["configs"] = json!(["odd"]);
        assert_eq!(env_names(&d), ["MOTD", "TOKEN"]);
    }

    #[test]
    fn inline_and_environment_content_is_fingerprinted_per_service() {
        let env = [("MOTD", "hi"), ("TOKEN", "s3cret-value")];
        let key = [7u8; 32];
        let before = prints(&doc(), "web", &env, &key);
        let names: Vec<&str> = before.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["configs:motd", "configs:site", "secrets:token"]);
        assert!(prints(&doc(), "worker", &env, &key).is_empty());
        // A file secret is left to its object id.
        let api: Vec<String> = prints(&doc(), "api", &env, &key)
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(api, ["configs:site"]);

        // Inline content, an environment value, a secret's value: each changes it.
        let mut edited = doc();
        edited["configs"]["site"]["content"] = json!("v2\n");
        assert_ne!(prints(&edited, "web", &env, &key), before);
        assert_ne!(
            prints(&edited, "api", &env, &key),
            prints(&doc(), "api", &env, &key)
        );
        assert_ne!(
            prints(
                &doc(),
                "web",
                &[("MOTD", "ho"), ("TOKEN", "s3cret-value")],
                &key
            ),
            before
        );
        let rotated = prints(&doc(), "web", &[("MOTD", "hi"), ("TOKEN", "other")], &key);
        assert_ne!(rotated, before);
        // Equal inputs, equal fingerprints.
        assert_eq!(prints(&doc(), "web", &env, &key), before);
    }

    #[test]
    fn a_secret_is_fingerprinted_only_with_the_key() {
        let env = [("MOTD", "hi"), ("TOKEN", "s3cret-value")];
        let token = |key: &[u8]| prints(&doc(), "web", &env, key)[2].1.clone();
        let digest = token(&[7u8; 32]);
        // Neither the value nor its plain digest appears.
        assert!(!digest.contains("s3cret-value"));
        assert!(!digest.contains(&crate::model::digest::sha256_hex(b"s3cret-value")));
        assert_ne!(token(&[8u8; 32]), digest, "the key is part of it");
        // A secret with inline content (compose versions that allow it) too.
        let mut d = doc();
        d["secrets"]["token"] = json!({"name": "p_token", "content": "inline-s3cret"});
        let inline = fingerprints(
            &d,
            &d["services"]["web"],
            Resolved {
                env: &BTreeMap::new(),
                key: &[7u8; 32],
            },
        );
        assert!(
            !inline[2]
                .1
                .contains(&crate::model::digest::sha256_hex(b"inline-s3cret"))
        );
    }

    #[test]
    fn the_key_is_made_once_and_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let first = load_key(dir.path()).unwrap();
        assert_eq!(load_key(dir.path()).unwrap(), first);
        let mode = std::fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::write(dir.path().join(KEY_FILE), b"short").unwrap();
        assert!(matches!(
            load_key(dir.path()),
            Err(InputsError::KeyLength { .. })
        ));
    }
}
