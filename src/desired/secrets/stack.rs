//! desired/secrets: the SOPS files among one stack's inputs — found by
//! content, decrypted in memory, fingerprinted by HMAC so that a
//! re-encryption of the same values changes no service, and turned into
//! the compose override that points the stack at the plaintext.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use zeroize::Zeroizing;

use super::formats::{self, Format};
use super::keys::Identities;
use super::sops::SopsError;
use crate::desired::contained;

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("secret file {file}: {source}")]
    Decrypt {
        file: String,
        #[source]
        source: SopsError,
    },
    #[error("secret file {file}: {source}")]
    Read {
        file: String,
        #[source]
        source: contained::ContainedError,
    },
    #[error(
        "secret file {file} is read by compose for interpolation (`.env` or a stack's env_file): its values would be written into the compose model Kedge stores and shows; name it in a service's `env_file:` instead"
    )]
    Interpolated { file: String },
    #[error(
        "service {service} has SOPS-encrypted values in its environment from an env file whose path Kedge cannot know (it is interpolated): name the file plainly"
    )]
    UnknownEnvFile { service: String },
    #[error("SOPS secrets are not supported with `target: swarm`")]
    Swarm,
    #[error("{file} is listed in sops.files but is not a SOPS file")]
    NotSops { file: String },
}

pub use crate::model::stack_inputs::SecretPrint;

/// One decrypted file of the stack.
struct File {
    path: String,
    /// HMAC of the whole plaintext: its place in the private directory and
    /// its fingerprint in service hashes.
    tag: String,
    values: BTreeMap<String, String>,
    plain: Zeroizing<Vec<u8>>,
    /// A dotenv file's values as compose folds them into `environment`:
    /// (name, the ciphertext compose saw, the plaintext).
    env: Vec<(String, String, Zeroizing<String>)>,
    /// Its `sops_*` lines (name, raw value): metadata compose took for
    /// variables.
    meta: Vec<(String, String)>,
}

/// A variable of the override's `environment`.
enum EnvValue {
    /// As compose rendered it: already interpolated, so written escaped.
    Rendered(Option<String>),
    /// A SOPS dotenv's plaintext: written as the file says, for compose
    /// to interpolate exactly as it interpolates a plain env file.
    Secret(Zeroizing<String>),
}

/// Every SOPS file a stack reads, decrypted, and where its services use
/// them. Its `Debug` names files only.
#[derive(Default)]
pub struct StackSecrets {
    files: Vec<File>,
    /// Per service: its whole environment with plaintext in place of the
    /// SOPS values (when it reads a SOPS dotenv), and its bind mounts of
    /// SOPS files (the volume as compose rendered it, the file).
    env: BTreeMap<String, Vec<(String, EnvValue)>>,
    binds: BTreeMap<String, Vec<(Value, usize)>>,
    /// Top-level `secrets:` / `configs:` with a SOPS `file:`.
    top: Vec<(&'static str, String, usize)>,
}

impl std::fmt::Debug for StackSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let files: Vec<&str> = self.files.iter().map(|f| f.path.as_str()).collect();
        write!(f, "StackSecrets({files:?})")
    }
}

fn tag(key: &[u8], parts: &[&[u8]]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    for p in parts {
        mac.update(&(p.len() as u64).to_be_bytes());
        mac.update(p);
    }
    crate::desired::render::hex(&mac.finalize().into_bytes())
}

/// The SOPS files among `candidates` (repository paths in `checkout`; a
/// directory or a missing path is skipped), decrypted with `ids`. Files
/// are read as `contained` reads them: inside the checkout, regular, at
/// most `limit` bytes.
pub fn find(
    checkout: &Path,
    candidates: &BTreeSet<String>,
    limit: u64,
    ids: &Identities,
    key: &[u8],
) -> Result<StackSecrets, SecretError> {
    let mut out = StackSecrets::default();
    for path in candidates {
        let rel = Path::new(path);
        if path.is_empty() || checkout.join(rel).is_dir() {
            continue;
        }
        let bytes = match contained::read(checkout, rel, limit) {
            Ok(Some(b)) => b,
            Ok(None) => continue,
            // Not a file Kedge may read: compose reads it or fails, as
            // before secrets; it cannot be a SOPS file Kedge decrypts.
            Err(contained::ContainedError::NotAFile { .. }) => continue,
            Err(source) => {
                return Err(SecretError::Read {
                    file: path.clone(),
                    source,
                });
            }
        };
        let Some(format) = formats::detect(path, &bytes) else {
            continue;
        };
        let plain =
            formats::decrypt(format, &bytes, ids).map_err(|source| SecretError::Decrypt {
                file: path.clone(),
                source,
            })?;
        let values = plain
            .values
            .iter()
            .map(|(name, v)| {
                (
                    name.clone(),
                    tag(key, &[path.as_bytes(), name.as_bytes(), v.as_bytes()]),
                )
            })
            .collect();
        let (mut env, mut meta) = (Vec::new(), Vec::new());
        if format == Format::Dotenv {
            let text = String::from_utf8_lossy(&bytes);
            let plain_values: HashMap<&str, &Zeroizing<String>> =
                plain.values.iter().map(|(n, v)| (n.as_str(), v)).collect();
            for line in text.split('\n') {
                let Some((k, v)) = line.split_once('=') else {
                    continue;
                };
                if k.starts_with('#') {
                    continue;
                }
                if k.starts_with("sops_") {
                    meta.push((k.to_string(), v.to_string()));
                } else if let Some(p) = plain_values.get(k) {
                    env.push((k.to_string(), v.to_string(), (*p).clone()));
                }
            }
        }
        out.files.push(File {
            path: path.clone(),
            tag: tag(key, &[b"file", path.as_bytes(), &plain.bytes]),
            values,
            plain: plain.bytes,
            env,
            meta,
        });
    }
    Ok(out)
}

impl StackSecrets {
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.files.iter().map(|f| f.path.as_str())
    }

    pub fn prints(&self) -> Vec<SecretPrint> {
        self.files
            .iter()
            .map(|f| SecretPrint {
                path: f.path.clone(),
                values: f.values.clone(),
            })
            .collect()
    }

    /// What stands for each file in the services' hashes: its HMAC, in
    /// place of its git object id.
    pub fn object_ids(&self) -> impl Iterator<Item = (String, String)> + '_ {
        self.files
            .iter()
            .map(|f| (f.path.clone(), format!("sops:{}", f.tag)))
    }

    /// Finds where the services of `doc` (compose's rendering, paths under
    /// `checkout`) use the files, and makes `doc` fit for hashing: a
    /// folded SOPS dotenv's values become their HMACs and its `sops_*`
    /// variables go. `doc` is a copy; the stored rendering keeps the
    /// ciphertext.
    pub fn place(&mut self, doc: &mut Value, checkout: &Path) -> Result<(), SecretError> {
        let root = checkout.to_string_lossy().into_owned();
        let index: HashMap<String, usize> = self
            .files
            .iter()
            .enumerate()
            .map(|(i, f)| (format!("{root}/{}", f.path), i))
            .collect();
        for kind in ["secrets", "configs"] {
            for (name, def) in doc[kind].as_object().into_iter().flatten() {
                if let Some(i) = def["file"].as_str().and_then(|f| index.get(f)) {
                    self.top.push((kind, name.clone(), *i));
                }
            }
        }
        let Some(services) = doc["services"].as_object_mut() else {
            return Ok(());
        };
        for (service, svc) in services.iter_mut() {
            for vol in svc["volumes"].as_array().into_iter().flatten() {
                if vol["type"] == "bind"
                    && let Some(i) = vol["source"].as_str().and_then(|s| index.get(s))
                {
                    self.binds
                        .entry(service.clone())
                        .or_default()
                        .push((vol.clone(), *i));
                }
            }
            let Some(env) = svc["environment"].as_object_mut() else {
                continue;
            };
            // The dotenv files folded in: their sops_mac line is there.
            let read: Vec<usize> = self
                .files
                .iter()
                .enumerate()
                .filter(|(_, f)| {
                    f.meta.iter().any(|(k, v)| {
                        k == "sops_mac" && env.get(k).and_then(Value::as_str) == Some(v)
                    })
                })
                .map(|(i, _)| i)
                .collect();
            if read.is_empty() {
                if env
                    .values()
                    .any(|v| v.as_str().is_some_and(|s| s.starts_with("ENC[AES256_GCM,")))
                {
                    return Err(SecretError::UnknownEnvFile {
                        service: service.clone(),
                    });
                }
                continue;
            }
            let mut plain: Vec<(String, EnvValue)> = Vec::new();
            for (k, v) in env.iter_mut() {
                let own = read.iter().find_map(|i| {
                    let f = &self.files[*i];
                    if f.meta.iter().any(|(m, _)| m == k) {
                        return Some(None);
                    }
                    f.env
                        .iter()
                        .find(|(name, enc, _)| name == k && v.as_str() == Some(enc.as_str()))
                        .map(|(name, _, p)| Some((f.values.get(name).cloned(), p.clone())))
                });
                match own {
                    Some(None) => {} // a sops_* variable: dropped below
                    Some(Some((print, p))) => {
                        *v = Value::String(format!("sops:{}", print.unwrap_or_default()));
                        plain.push((k.clone(), EnvValue::Secret(p)));
                    }
                    None => {
                        plain.push((k.clone(), EnvValue::Rendered(v.as_str().map(String::from))))
                    }
                }
            }
            let meta: BTreeSet<&str> = read
                .iter()
                .flat_map(|i| self.files[*i].meta.iter().map(|(k, _)| k.as_str()))
                .collect();
            env.retain(|k, _| !meta.contains(k.as_str()));
            self.env.insert(service.clone(), plain);
        }
        Ok(())
    }

    /// Writes the plaintext under `dir` (the stack's private directory):
    /// each file at a path named by its HMAC, so an unchanged secret keeps
    /// its path and its services are not recreated; then the compose
    /// override that uses them, atomically. Returns the override's path.
    pub fn write(&self, dir: &Path) -> std::io::Result<std::path::PathBuf> {
        super::private::create_dir(dir)?;
        let mut placed: Vec<String> = Vec::new();
        for f in &self.files {
            let sub = dir.join(&f.tag[..32]);
            super::private::create_dir(&sub)?;
            let name = Path::new(&f.path)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "secret".into());
            let path = sub.join(name);
            super::private::write_file(&path, &f.plain)?;
            placed.push(path.to_string_lossy().into_owned());
        }
        let text = self.override_yaml(&placed);
        let path = dir.join(super::OVERRIDE);
        super::private::write_file(&path, text.as_bytes())?;
        Ok(path)
    }

    /// The HMAC-named directories in use, for `private::prune`.
    pub fn in_use(&self) -> BTreeSet<String> {
        self.files.iter().map(|f| f.tag[..32].to_string()).collect()
    }

    fn override_yaml(&self, placed: &[String]) -> Zeroizing<String> {
        // JSON strings are YAML double-quoted scalars; `$` is doubled so
        // compose does not interpolate a value again.
        let q = |s: &str| serde_json::to_string(&s.replace('$', "$$")).unwrap_or_default();
        let mut out = Zeroizing::new(String::from(
            "# Written by Kedge: the stack's SOPS files, decrypted. Private.\n",
        ));
        let services: BTreeSet<&String> = self.env.keys().chain(self.binds.keys()).collect();
        // A file only `sops.files` names is used by no service.
        out.push_str(if services.is_empty() {
            "services: {}\n"
        } else {
            "services:\n"
        });
        for service in services {
            out.push_str(&format!("  {}:\n", q(service)));
            if let Some(env) = self.env.get(service) {
                out.push_str("    env_file: !reset []\n    environment:\n");
                for (k, v) in env {
                    match v {
                        EnvValue::Rendered(Some(v)) => {
                            out.push_str(&format!("      {}: {}\n", q(k), q(v)))
                        }
                        EnvValue::Rendered(None) => {
                            out.push_str(&format!("      {}: null\n", q(k)))
                        }
                        EnvValue::Secret(v) => out.push_str(&format!(
                            "      {}: {}\n",
                            q(k),
                            serde_json::to_string(v.as_str()).unwrap_or_default()
                        )),
                    }
                }
            }
            if let Some(binds) = self.binds.get(service) {
                out.push_str("    volumes:\n");
                for (vol, i) in binds {
                    let mut vol = vol.clone();
                    vol["source"] = Value::String(placed[*i].replace('$', "$$"));
                    out.push_str(&format!("      - {vol}\n"));
                }
            }
        }
        for kind in ["secrets", "configs"] {
            let items: Vec<_> = self.top.iter().filter(|(k, _, _)| *k == kind).collect();
            if items.is_empty() {
                continue;
            }
            out.push_str(&format!("{kind}:\n"));
            for (_, name, i) in items {
                out.push_str(&format!("  {}:\n    file: {}\n", q(name), q(&placed[*i])));
            }
        }
        out
    }
}

/// What changed between the deployed secret files and these: each file
/// whose values differ, with the names of the values that did.
pub fn changes(deployed: &[SecretPrint], now: &[SecretPrint]) -> Vec<(String, Vec<String>)> {
    let old: HashMap<&str, &SecretPrint> = deployed.iter().map(|p| (p.path.as_str(), p)).collect();
    let mut out = Vec::new();
    for p in now {
        let names: Vec<String> = match old.get(p.path.as_str()) {
            None => p.values.keys().cloned().collect(),
            Some(o) => p
                .values
                .iter()
                .filter(|(k, v)| o.values.get(*k) != Some(*v))
                .map(|(k, _)| k.clone())
                .chain(
                    o.values
                        .keys()
                        .filter(|k| !p.values.contains_key(*k))
                        .cloned(),
                )
                .collect(),
        };
        if !names.is_empty() {
            out.push((p.path.clone(), names));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn print(path: &str, values: &[(&str, &str)]) -> SecretPrint {
        SecretPrint {
            path: path.into(),
            values: values
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    /// (what is deployed now, the changes expected: file, value names).
    type Case<'a> = (&'a [SecretPrint], &'a [(&'a str, &'a [&'a str])]);

    #[test]
    fn changes_name_the_values_that_differ_and_nothing_else() {
        let deployed = [
            print("db.env", &[("A", "h1"), ("B", "h2")]),
            print("token.yaml", &[("token", "t1")]),
        ];
        let cases: &[Case] = &[
            // The same values (a re-encryption): nothing.
            (&deployed, &[]),
            // One value changed, one added, one removed.
            (
                &[
                    print("db.env", &[("A", "h9"), ("C", "h3")]),
                    print("token.yaml", &[("token", "t1")]),
                ],
                &[("db.env", &["A", "C", "B"])],
            ),
            // A new file: all its values.
            (&[print("new.env", &[("X", "x")])], &[("new.env", &["X"])]),
        ];
        for (now, want) in cases {
            let got = changes(&deployed, now);
            let want: Vec<(String, Vec<String>)> = want
                .iter()
                .map(|(f, v)| (f.to_string(), v.iter().map(|s| s.to_string()).collect()))
                .collect();
            assert_eq!(got, want);
        }
    }

    #[test]
    fn the_override_keeps_secret_values_for_compose_and_escapes_rendered_ones() {
        let mut s = StackSecrets::default();
        s.env.insert(
            "app".into(),
            vec![
                ("PLAIN".into(), EnvValue::Rendered(Some("a$b".into()))),
                ("UNSET".into(), EnvValue::Rendered(None)),
                ("PW".into(), EnvValue::Secret(Zeroizing::new("p$$w".into()))),
            ],
        );
        let text = s.override_yaml(&[]);
        assert!(text.contains("env_file: !reset []"), "{}", *text);
        assert!(text.contains(r#""PLAIN": "a$$b""#), "{}", *text);
        assert!(text.contains(r#""UNSET": null"#), "{}", *text);
        assert!(text.contains(r#""PW": "p$$w""#), "{}", *text);
        assert_eq!(format!("{s:?}"), "StackSecrets([])");
        // Regression: a stack whose only SOPS file is one `sops.files`
        // names wrote `services:` with nothing under it, which compose
        // refused ("services must be a mapping").
        let none = StackSecrets::default().override_yaml(&[]);
        assert!(none.contains("services: {}\n"), "{}", *none);
    }
}
