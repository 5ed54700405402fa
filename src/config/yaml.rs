//! A small YAML document tree that keeps the line of every node, so that
//! validation errors in `kedge.yaml` and the global config can name the key
//! and the line, whatever the value's type turned out to be.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

/// One YAML node and the line (1-based) it starts on.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub line: u32,
    pub value: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    /// Every scalar is kept as text: the caller decides what type it must be,
    /// after `${VAR}` interpolation where that applies.
    Scalar(String),
    Seq(Vec<Node>),
    /// Keys in document order, each with its own line.
    Map(Vec<Entry>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub key: String,
    pub line: u32,
    pub node: Node,
}

impl Value {
    /// How the value is named in a type error ("found a list").
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "nothing",
            Value::Scalar(_) => "a scalar",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }
}

/// A syntax error, with its position when the parser knows it.
#[derive(Debug, thiserror::Error)]
#[error("{}{message}", position(*line, *column))]
pub struct SyntaxError {
    pub line: Option<u32>,
    pub column: Option<u32>,
    pub message: String,
    /// The parser's budget (nodes, aliases, depth, size) ran out: the
    /// document is too large or too deeply aliased, not mistyped.
    pub exhausted: bool,
}

fn position(line: Option<u32>, column: Option<u32>) -> String {
    match (line, column) {
        (Some(l), Some(c)) => format!("line {l} column {c}: "),
        (Some(l), None) => format!("line {l}: "),
        _ => String::new(),
    }
}

/// Parses one YAML document. An empty document is `Value::Null`.
pub fn parse(text: &str) -> Result<Node, SyntaxError> {
    if text.trim().is_empty() {
        return Ok(Node {
            line: 1,
            value: Value::Null,
        });
    }
    match serde_saphyr::from_str::<Spanned<Value>>(text) {
        Ok(spanned) => Ok(Node {
            line: line_of(&spanned),
            value: spanned.value,
        }),
        Err(e) if exhausted(&e) => Err(SyntaxError {
            line: None,
            column: None,
            message: "too large or too deeply aliased".into(),
            exhausted: true,
        }),
        Err(e) => {
            let location = e.location();
            let message = e.without_snippet().to_string();
            // The plain rendering repeats the position; keep only the message.
            let message = match message.split_once(": ") {
                Some((head, rest)) if head.contains("line ") => rest.to_string(),
                _ => message,
            };
            let message = tidy(message.trim_start_matches("error: "));
            Err(SyntaxError {
                line: location.map(|l| l.line() as u32).filter(|l| *l > 0),
                column: location.map(|l| l.column() as u32).filter(|c| *c > 0),
                message,
                exhausted: false,
            })
        }
    }
}

/// Whether the parser gave up on its resource budget rather than on syntax.
fn exhausted(e: &serde_saphyr::Error) -> bool {
    use serde_saphyr::Error as E;
    let mut e = e.without_snippet();
    while let E::AliasError { error, .. } = e {
        e = error.without_snippet();
    }
    matches!(
        e,
        E::Budget { .. }
            | E::AliasReplayCounterOverflow { .. }
            | E::AliasReplayLimitExceeded { .. }
            | E::AliasExpansionLimitExceeded { .. }
            | E::AliasReplayStackDepthExceeded { .. }
    )
}

/// Drops the parser's advice to its own API users and the repeated position.
fn tidy(message: &str) -> String {
    let mut m = message.replace(", set DuplicateKeyPolicy in Options if acceptable", "");
    if let Some(i) = m.rfind(" at line ") {
        m.truncate(i);
    }
    m
}

fn line_of<T>(s: &Spanned<T>) -> u32 {
    s.referenced.line() as u32
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a YAML value")
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Value::deserialize(d)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Scalar(v.to_string()))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Scalar(v.to_string()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Scalar(v.to_string()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Scalar(v.to_string()))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Scalar(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::Scalar(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<Value>>()? {
            items.push(Node {
                line: line_of(&item),
                value: item.value,
            });
        }
        Ok(Value::Seq(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries: Vec<Entry> = Vec::new();
        while let Some(key) = map.next_key::<Spanned<Value>>()? {
            let key_line = line_of(&key);
            let key = match key.value {
                Value::Scalar(s) => s,
                Value::Null => String::new(),
                other => {
                    return Err(de::Error::custom(format!(
                        "line {key_line}: a key must be a scalar, found {}",
                        other.kind()
                    )));
                }
            };
            let node = map.next_value::<Spanned<Value>>()?;
            entries.push(Entry {
                key,
                line: key_line,
                node: Node {
                    line: line_of(&node),
                    value: node.value,
                },
            });
        }
        Ok(Value::Map(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(node: &Node) -> &[Entry] {
        match &node.value {
            Value::Map(e) => e,
            other => panic!("not a map: {other:?}"),
        }
    }

    #[test]
    fn keeps_lines_of_keys_and_values() {
        let doc = parse(
            "# c\ndocker:\n  project_name: app\n  compose_file:\n    - a.yaml\n    - b.yaml\n",
        )
        .unwrap();
        let top = map(&doc);
        assert_eq!(top[0].key, "docker");
        assert_eq!(top[0].line, 2);
        let docker = map(&top[0].node);
        assert_eq!(docker[0].line, 3);
        assert_eq!(docker[0].node.value, Value::Scalar("app".into()));
        match &docker[1].node.value {
            Value::Seq(items) => {
                assert_eq!(items[1].line, 6);
                assert_eq!(items[1].value, Value::Scalar("b.yaml".into()));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn scalars_stay_text() {
        let doc = parse("a: true\nb: 5\nc: ~\nd:\n").unwrap();
        let top = map(&doc);
        assert_eq!(top[0].node.value, Value::Scalar("true".into()));
        assert_eq!(top[1].node.value, Value::Scalar("5".into()));
        assert_eq!(top[2].node.value, Value::Null);
        assert_eq!(top[3].node.value, Value::Null);
    }

    #[test]
    fn syntax_errors_carry_a_position() {
        let err = parse("docker: [\n").unwrap_err();
        assert!(err.line.is_some(), "{err:?}");
        assert!(!err.message.is_empty());
    }

    #[test]
    fn duplicate_keys_are_refused() {
        let err = parse("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!(err.to_string(), "line 3 column 1: duplicate mapping key: a");
    }

    #[test]
    fn empty_document_is_null() {
        assert_eq!(parse("  \n").unwrap().value, Value::Null);
        assert_eq!(parse("# only a comment\n").unwrap().value, Value::Null);
    }
}
