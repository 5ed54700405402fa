//! Typed reading of a YAML tree with errors that name the key and the line:
//! unknown keys, wrong types and invalid values are refused, never ignored.

use super::interpolate::{Env, InterpolateError, interpolate};
use super::yaml::{Entry, Node, SyntaxError, Value};

#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error(transparent)]
    Syntax(#[from] SyntaxError),
    #[error("line {line}: unknown key `{key}` (expected one of: {expected})")]
    UnknownKey {
        line: u32,
        key: String,
        expected: String,
    },
    #[error("line {line}: `{key}` must be {expected}, found {found}")]
    WrongType {
        line: u32,
        key: String,
        expected: &'static str,
        found: &'static str,
    },
    #[error("line {line}: `{key}`: invalid value {value:?}, expected {expected}")]
    InvalidValue {
        line: u32,
        key: String,
        value: String,
        expected: String,
    },
    #[error("line {line}: `{key}` is required")]
    Missing { line: u32, key: String },
    /// A notification sink's key: never its value, which may be a secret.
    #[error("line {line}: notification `{sink}`, key `{key}`: {reason}")]
    Sink {
        line: u32,
        sink: String,
        key: String,
        reason: String,
    },
    #[error("line {line}: `{key}`")]
    Interpolation {
        line: u32,
        key: String,
        #[source]
        source: InterpolateError,
    },
}

/// The items of a top-level list such as `notifications:` (`key`): none
/// for an empty one, a wrong type naming what was `expected`.
pub fn items<'a>(
    node: &'a Node,
    key: &str,
    expected: &'static str,
) -> Result<&'a [Node], SchemaError> {
    match &node.value {
        Value::Seq(items) => Ok(items),
        Value::Null => Ok(&[]),
        other => Err(SchemaError::WrongType {
            line: node.line,
            key: key.into(),
            expected,
            found: other.kind(),
        }),
    }
}

/// A mapping whose keys were checked against the allowed set.
pub struct Section<'a> {
    path: String,
    entries: &'a [Entry],
}

impl<'a> Section<'a> {
    /// `node` must be a mapping (or empty) holding only `allowed` keys.
    pub fn new(node: &'a Node, path: &str, allowed: &[&str]) -> Result<Self, SchemaError> {
        let entries: &[Entry] = match &node.value {
            Value::Map(entries) => entries,
            Value::Null => &[],
            other => {
                return Err(SchemaError::WrongType {
                    line: node.line,
                    key: if path.is_empty() {
                        "(document)".into()
                    } else {
                        path.into()
                    },
                    expected: "a mapping",
                    found: other.kind(),
                });
            }
        };
        for e in entries {
            if !allowed.contains(&e.key.as_str()) {
                return Err(SchemaError::UnknownKey {
                    line: e.line,
                    key: join(path, &e.key),
                    expected: allowed.join(", "),
                });
            }
        }
        Ok(Section {
            path: path.to_string(),
            entries,
        })
    }

    pub fn key_path(&self, key: &str) -> String {
        join(&self.path, key)
    }

    /// The entry for `key`, unless absent or explicitly empty (`key:` / `~`).
    pub fn get(&self, key: &str) -> Option<&'a Entry> {
        self.entries
            .iter()
            .find(|e| e.key == key && e.node.value != Value::Null)
    }

    pub fn section(&self, key: &str, allowed: &[&str]) -> Result<Option<Section<'a>>, SchemaError> {
        self.get(key)
            .map(|e| Section::new(&e.node, &self.key_path(key), allowed))
            .transpose()
    }

    /// A mapping of names the caller chooses (`updates.services`): each
    /// name with its node; absent, none.
    pub fn section_any(&self, key: &str) -> Result<Option<Vec<(&'a str, &'a Node)>>, SchemaError> {
        let Some(e) = self.get(key) else {
            return Ok(None);
        };
        match &e.node.value {
            Value::Map(entries) => Ok(Some(
                entries.iter().map(|e| (e.key.as_str(), &e.node)).collect(),
            )),
            other => Err(SchemaError::WrongType {
                line: e.node.line,
                key: self.key_path(key),
                expected: "a mapping",
                found: other.kind(),
            }),
        }
    }

    /// A list of mappings, each holding only `allowed` keys, with the line
    /// each starts on (`registries:`); absent, an empty list.
    pub fn list(
        &self,
        key: &str,
        allowed: &[&str],
    ) -> Result<Vec<(Section<'a>, u32)>, SchemaError> {
        let Some(e) = self.get(key) else {
            return Ok(Vec::new());
        };
        let path = self.key_path(key);
        let Value::Seq(items) = &e.node.value else {
            return Err(SchemaError::WrongType {
                line: e.node.line,
                key: path,
                expected: "a list",
                found: e.node.value.kind(),
            });
        };
        items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                Ok((
                    Section::new(item, &format!("{path}[{i}]"), allowed)?,
                    item.line,
                ))
            })
            .collect()
    }

    /// A scalar that must be there.
    pub fn required(&self, key: &str, line: u32, env: Env) -> Result<String, SchemaError> {
        self.string(key, env)?
            .map(|(s, _)| s)
            .ok_or_else(|| SchemaError::Missing {
                line,
                key: self.key_path(key),
            })
    }

    /// A scalar after `${VAR}` expansion, with the line it came from.
    pub fn string(&self, key: &str, env: Env) -> Result<Option<(String, u32)>, SchemaError> {
        let Some(e) = self.get(key) else {
            return Ok(None);
        };
        scalar(&e.node, &self.key_path(key), env).map(Some)
    }

    /// A scalar or a list of scalars, each expanded.
    pub fn strings(&self, key: &str, env: Env) -> Result<Option<(Vec<String>, u32)>, SchemaError> {
        let Some(e) = self.get(key) else {
            return Ok(None);
        };
        let path = self.key_path(key);
        match &e.node.value {
            Value::Seq(items) => {
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    out.push(scalar(item, &path, env)?.0);
                }
                Ok(Some((out, e.node.line)))
            }
            _ => scalar(&e.node, &path, env).map(|(s, line)| Some((vec![s], line))),
        }
    }

    /// A value parsed from its expanded text; `parse` explains what it wanted.
    pub fn parsed<T>(
        &self,
        key: &str,
        env: Env,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<Option<T>, SchemaError> {
        let Some((text, line)) = self.string(key, env)? else {
            return Ok(None);
        };
        parse(&text)
            .map(Some)
            .map_err(|expected| SchemaError::InvalidValue {
                line,
                key: self.key_path(key),
                value: text,
                expected,
            })
    }

    pub fn bool(&self, key: &str, env: Env) -> Result<Option<bool>, SchemaError> {
        self.parsed(key, env, |s| match s {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err("true or false".into()),
        })
    }
}

fn scalar(node: &Node, path: &str, env: Env) -> Result<(String, u32), SchemaError> {
    match &node.value {
        Value::Scalar(s) => interpolate(s, env)
            .map(|v| (v, node.line))
            .map_err(|source| SchemaError::Interpolation {
                line: node.line,
                key: path.to_string(),
                source,
            }),
        other => Err(SchemaError::WrongType {
            line: node.line,
            key: path.to_string(),
            expected: "a scalar",
            found: other.kind(),
        }),
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}
