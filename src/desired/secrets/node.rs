//! desired/secrets: a SOPS document as sops walks it — an ordered tree of
//! maps, lists and typed scalars — read from YAML or JSON, written back as
//! YAML or JSON once decrypted.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// A key of a map: a name, or a comment line (dotenv and INI keep them).
#[derive(Debug, Clone, PartialEq)]
pub enum Key {
    Name(String),
    Comment(String),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    /// In file order: the MAC covers the order too.
    Map(Vec<(Key, Node)>),
    List(Vec<Node>),
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Bytes(Vec<u8>),
    Null,
}

impl Node {
    pub fn get(&self, name: &str) -> Option<&Node> {
        match self {
            Node::Map(items) => items.iter().find_map(|(k, v)| match k {
                Key::Name(n) if n == name => Some(v),
                _ => None,
            }),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Node::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The bytes sops feeds its MAC for a scalar (`ToBytes`): floats in
    /// their shortest decimal form, booleans as `True`/`False`.
    pub fn mac_bytes(&self) -> Option<Vec<u8>> {
        Some(match self {
            Node::Str(s) => s.as_bytes().to_vec(),
            Node::Int(i) => i.to_string().into_bytes(),
            Node::Float(f) => format_float(*f).into_bytes(),
            Node::Bool(true) => b"True".to_vec(),
            Node::Bool(false) => b"False".to_vec(),
            Node::Bytes(b) => b.clone(),
            Node::Null | Node::Map(_) | Node::List(_) => return None,
        })
    }

    /// The scalar as text, as the dotenv and INI stores write it.
    pub fn scalar_text(&self) -> String {
        match self {
            Node::Str(s) => s.clone(),
            Node::Int(i) => i.to_string(),
            Node::Float(f) => format_float(*f),
            Node::Bool(b) => b.to_string(),
            Node::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
            Node::Null => String::new(),
            Node::Map(_) | Node::List(_) => String::new(),
        }
    }
}

/// Go's `strconv.FormatFloat(f, 'f', -1, 64)`: the shortest digits that
/// read back as `f`, never an exponent — what Rust's `Display` does.
pub fn format_float(f: f64) -> String {
    if f.is_finite() {
        format!("{f}")
    } else if f.is_nan() {
        "NaN".into()
    } else if f > 0.0 {
        "+Inf".into()
    } else {
        "-Inf".into()
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Node, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a YAML or JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Int(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Node, E> {
        Ok(i64::try_from(v).map_or(Node::Float(v as f64), Node::Int))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Node, E> {
        Ok(Node::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Str(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Node, E> {
        Ok(Node::Str(v))
    }
    fn visit_bytes<E>(self, v: &[u8]) -> Result<Node, E> {
        Ok(Node::Bytes(v.to_vec()))
    }
    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_none<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        Node::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Node::List(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut items: Vec<(Key, Node)> = Vec::new();
        while let Some(key) = map.next_key::<Node>()? {
            let name = match key {
                Node::Str(s) => s,
                other @ (Node::Int(_) | Node::Float(_) | Node::Bool(_)) => other.scalar_text(),
                _ => return Err(de::Error::custom("a map key that is not a scalar")),
            };
            let value = map.next_value()?;
            items.push((Key::Name(name), value));
        }
        Ok(Node::Map(items))
    }
}

/// JSON as sops writes it: tab-indented, keys in file order.
pub fn to_json(node: &Node) -> String {
    let mut out = String::new();
    json_into(node, 0, &mut out);
    out.push('\n');
    out
}

fn json_into(node: &Node, depth: usize, out: &mut String) {
    let pad = |d: usize, out: &mut String| out.extend(std::iter::repeat_n('\t', d));
    match node {
        Node::Map(items) => {
            let named: Vec<(&String, &Node)> = items
                .iter()
                .filter_map(|(k, v)| match k {
                    Key::Name(n) => Some((n, v)),
                    Key::Comment(_) => None,
                })
                .collect();
            if named.is_empty() {
                out.push_str("{}");
                return;
            }
            out.push_str("{\n");
            for (i, (k, v)) in named.iter().enumerate() {
                pad(depth + 1, out);
                out.push_str(&serde_json::to_string(k).unwrap_or_default());
                out.push_str(": ");
                json_into(v, depth + 1, out);
                out.push_str(if i + 1 < named.len() { ",\n" } else { "\n" });
            }
            pad(depth, out);
            out.push('}');
        }
        Node::List(items) => {
            if items.is_empty() {
                out.push_str("[]");
                return;
            }
            out.push_str("[\n");
            for (i, v) in items.iter().enumerate() {
                pad(depth + 1, out);
                json_into(v, depth + 1, out);
                out.push_str(if i + 1 < items.len() { ",\n" } else { "\n" });
            }
            pad(depth, out);
            out.push(']');
        }
        Node::Str(s) => out.push_str(&serde_json::to_string(s).unwrap_or_default()),
        Node::Bytes(b) => {
            out.push_str(&serde_json::to_string(&String::from_utf8_lossy(b)).unwrap_or_default())
        }
        Node::Int(i) => out.push_str(&i.to_string()),
        Node::Float(f) if f.is_finite() => out.push_str(&format_float(*f)),
        Node::Float(_) | Node::Null => out.push_str("null"),
        Node::Bool(b) => out.push_str(&b.to_string()),
    }
}

/// YAML in block style, four spaces deep as sops writes it; a string that
/// could read back as anything else is double-quoted.
pub fn to_yaml(node: &Node) -> String {
    let mut out = String::new();
    match node {
        Node::Map(items) if !items.is_empty() => yaml_map(items, 0, &mut out),
        Node::List(items) if !items.is_empty() => yaml_list(items, 0, &mut out),
        other => {
            out.push_str(&yaml_scalar(other));
            out.push('\n');
        }
    }
    out
}

fn yaml_map(items: &[(Key, Node)], indent: usize, out: &mut String) {
    for (k, v) in items {
        out.extend(std::iter::repeat_n(' ', indent));
        match k {
            Key::Comment(c) => {
                out.push('#');
                out.push_str(c);
                out.push('\n');
                continue;
            }
            Key::Name(n) => {
                out.push_str(&yaml_string(n));
                out.push(':');
            }
        }
        yaml_value(v, indent, out);
    }
}

fn yaml_list(items: &[Node], indent: usize, out: &mut String) {
    for v in items {
        out.extend(std::iter::repeat_n(' ', indent));
        out.push('-');
        yaml_value(v, indent, out);
    }
}

/// What follows a key's colon or a list item's dash: a collection on the
/// next lines, four deeper; a scalar on the same line.
fn yaml_value(v: &Node, indent: usize, out: &mut String) {
    match v {
        Node::Map(m) if !m.is_empty() => {
            out.push('\n');
            yaml_map(m, indent + 4, out);
        }
        Node::List(l) if !l.is_empty() => {
            out.push('\n');
            yaml_list(l, indent + 4, out);
        }
        other => {
            out.push(' ');
            out.push_str(&yaml_scalar(other));
            out.push('\n');
        }
    }
}

fn yaml_scalar(v: &Node) -> String {
    match v {
        Node::Map(_) => "{}".into(),
        Node::List(_) => "[]".into(),
        Node::Str(s) => yaml_string(s),
        Node::Bytes(b) => yaml_string(&String::from_utf8_lossy(b)),
        Node::Int(i) => i.to_string(),
        Node::Float(f) if f.is_nan() => ".nan".into(),
        Node::Float(f) if f.is_infinite() => (if *f > 0.0 { ".inf" } else { "-.inf" }).into(),
        Node::Float(f) => {
            // Keep it a float when read back: `1` would be an int.
            let s = format_float(*f);
            if s.contains('.') { s } else { format!("{s}.0") }
        }
        Node::Bool(b) => b.to_string(),
        Node::Null => "null".into(),
    }
}

/// Plain when it cannot be mistaken for anything but this string.
fn yaml_string(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == '/')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_./-@".contains(c))
        && !matches!(
            s.to_ascii_lowercase().as_str(),
            "true" | "false" | "null" | "yes" | "no" | "on" | "off" | "y" | "n" | "nan" | "inf"
        );
    if plain {
        s.to_string()
    } else {
        serde_json::to_string(s).unwrap_or_default()
    }
}
