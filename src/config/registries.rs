//! config: private registries (`registries:`) and the secret references
//! they and private repositories use: a file or a variable, read at each use.

use std::path::PathBuf;

use super::interpolate::Env;
use super::schema::{SchemaError, Section};

/// Where a secret is read from, at each use: never stored or shown.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SecretRef {
    /// Its content without the trailing newline.
    File(PathBuf),
    /// A variable of Kedge's own environment.
    Env(String),
    /// A named credential that cannot be used here (not in the global
    /// config, of another kind, or refused for the URL): reading it fails
    /// with the reason, so nothing is sent.
    Unusable(String),
}

#[derive(Debug, thiserror::Error)]
pub enum SecretRefError {
    #[error("the environment variable {0} is not set")]
    EnvMissing(String),
    #[error("cannot read {}", path.display())]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is empty", path.display())]
    FileEmpty { path: PathBuf },
    #[error("{0}")]
    Unusable(String),
}

impl SecretRef {
    /// Reads the secret now: a rotated one is used from the next read on.
    pub fn read(&self) -> Result<String, SecretRefError> {
        match self {
            SecretRef::Env(name) => std::env::var(name)
                .ok()
                .filter(|v| !v.is_empty())
                .ok_or_else(|| SecretRefError::EnvMissing(name.clone())),
            SecretRef::File(path) => {
                let text =
                    std::fs::read_to_string(path).map_err(|source| SecretRefError::File {
                        path: path.clone(),
                        source,
                    })?;
                let secret = text.trim_end_matches(['\r', '\n']);
                if secret.is_empty() {
                    return Err(SecretRefError::FileEmpty { path: path.clone() });
                }
                Ok(secret.to_string())
            }
            SecretRef::Unusable(why) => Err(SecretRefError::Unusable(why.clone())),
        }
    }
}

/// One `registries:` entry: images from `host` are pulled as `username`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registry {
    /// As images name it: `registry.example.com`, `127.0.0.1:5000`.
    pub host: String,
    pub username: String,
    pub password: SecretRef,
}

/// Reads the `registries:` list of the global config.
pub fn parse(top: &Section, env: Env) -> Result<Vec<Registry>, SchemaError> {
    let mut out = Vec::new();
    for (entry, line) in top.list(
        "registries",
        &["host", "username", "password_file", "password_env"],
    )? {
        let host = entry.required("host", line, env)?;
        let host_line = entry.string("host", env)?.map_or(line, |(_, l)| l);
        if host.is_empty() || host.contains('/') || host.chars().any(char::is_whitespace) {
            return Err(SchemaError::InvalidValue {
                line: host_line,
                key: entry.key_path("host"),
                value: host,
                expected: "a registry host as images name it, such as registry.example.com or 127.0.0.1:5000".into(),
            });
        }
        let username = entry.required("username", line, env)?;
        let file = entry.string("password_file", env)?;
        let var = entry.string("password_env", env)?;
        let password = match (file, var) {
            (Some((path, _)), None) => SecretRef::File(path.into()),
            (None, Some((name, _))) => SecretRef::Env(name),
            (Some(_), Some((_, l))) => {
                return Err(SchemaError::InvalidValue {
                    line: l,
                    key: entry.key_path("password_env"),
                    value: "(both)".into(),
                    expected: "either password_file or password_env, not both".into(),
                });
            }
            (None, None) => {
                return Err(SchemaError::Missing {
                    line,
                    key: entry.key_path("password_file` or `password_env"),
                });
            }
        };
        out.push(Registry {
            host,
            username,
            password,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<Registry>, String> {
        let env = |k: &str| (k == "REG_USER").then(|| "ci".to_string());
        super::super::parse_file(text, &env)
            .map(|c| c.registries)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn registries_table() {
        assert_eq!(parse("log:\n  level: info\n").unwrap(), vec![]);
        assert_eq!(
            parse(
                "registries:\n  - host: 127.0.0.1:5000\n    username: ${REG_USER}\n    password_env: REG_PASSWORD\n  - host: reg.example.com\n    username: bot\n    password_file: /etc/kedge/reg\n"
            )
            .unwrap(),
            vec![
                Registry {
                    host: "127.0.0.1:5000".into(),
                    username: "ci".into(),
                    password: SecretRef::Env("REG_PASSWORD".into()),
                },
                Registry {
                    host: "reg.example.com".into(),
                    username: "bot".into(),
                    password: SecretRef::File("/etc/kedge/reg".into()),
                },
            ]
        );
        for (text, want) in [
            ("registries: x\n", "line 1: `registries` must be a list"),
            (
                "registries:\n  - host: h\n    password_env: P\n",
                "line 2: `registries[0].username` is required",
            ),
            (
                "registries:\n  - host: h\n    username: u\n",
                "line 2: `registries[0].password_file` or `password_env` is required",
            ),
            (
                "registries:\n  - host: h\n    username: u\n    password: p\n",
                "line 4: unknown key `registries[0].password`",
            ),
            (
                "registries:\n  - host: https://h/v2\n    username: u\n    password_env: P\n",
                "line 2: `registries[0].host`: invalid value",
            ),
            (
                "registries:\n  - host: h\n    username: u\n    password_env: P\n    password_file: f\n",
                "`registries[0].password_env`: invalid value",
            ),
        ] {
            let got = parse(text).unwrap_err();
            assert!(got.contains(want), "{got} ∌ {want}");
        }
    }
}
