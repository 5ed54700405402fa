//! desired/secrets: the five file formats sops writes — dotenv, INI, YAML,
//! JSON and binary — recognised by content, read into the tree sops walks
//! and written back decrypted as `sops decrypt` would.

use std::collections::BTreeMap;

use zeroize::Zeroizing;

use super::keys::Identities;
use super::node::{self, Key, Node};
use super::sops::{self, Metadata, SopsError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Dotenv,
    Ini,
    Yaml,
    Json,
    Binary,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Dotenv => "dotenv",
            Format::Ini => "ini",
            Format::Yaml => "yaml",
            Format::Json => "json",
            Format::Binary => "binary",
        }
    }
}

/// A decrypted file: its plaintext as sops would print it, and each value
/// by name (`KEY`, `section.key`, `a.b.c`) for change reports.
pub struct Plain {
    pub format: Format,
    pub bytes: Zeroizing<Vec<u8>>,
    pub values: Vec<(String, Zeroizing<String>)>,
}

impl std::fmt::Debug for Plain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Plain({}, {} values)",
            self.format.as_str(),
            self.values.len()
        )
    }
}

/// The SOPS format of `bytes`, a file named `name`, or `None` when it is
/// not a SOPS file: dotenv and INI by their `sops_mac=` / `[sops]` lines,
/// YAML and JSON by a top-level `sops` map holding `mac`, binary as JSON
/// with only `data` and `sops`.
pub fn detect(name: &str, bytes: &[u8]) -> Option<Format> {
    let text = std::str::from_utf8(bytes).ok()?;
    // A file with encrypted values and its sops block cut off is still one:
    // it is then refused as tampered, not deployed as ciphertext.
    let encrypted = text.contains(ENCRYPTED);
    if text.lines().any(|l| {
        l.starts_with("sops_mac=")
            || l.split_once('=').is_some_and(|(k, v)| {
                !k.is_empty() && !k.contains([' ', '"', ':']) && v.starts_with(ENCRYPTED)
            })
    }) {
        return Some(Format::Dotenv);
    }
    if text.lines().any(|l| l.trim() == "[sops]")
        && text.lines().any(|l| {
            l.trim_start()
                .strip_prefix("mac")
                .is_some_and(|r| r.trim_start().starts_with('='))
        })
        || text.lines().any(|l| l.contains(&format!(" = {ENCRYPTED}")))
    {
        return Some(Format::Ini);
    }
    // Cheap refusal before a parse: the sops block names `mac`.
    if !encrypted && (!text.contains("mac") || !text.contains("sops")) {
        return None;
    }
    let doc = parse_structured(text).ok()?;
    if !encrypted {
        doc.get("sops")?.get("mac")?;
    }
    let lower = name.to_ascii_lowercase();
    if lower.ends_with(".json") {
        return Some(Format::Json);
    }
    if lower.ends_with(".yaml") || lower.ends_with(".yml") {
        return Some(Format::Yaml);
    }
    if let Node::Map(items) = &doc
        && items.len() <= 2
        && doc.get("data").is_some_and(|d| d.as_str().is_some())
    {
        return Some(Format::Binary);
    }
    Some(if text.trim_start().starts_with('{') {
        Format::Json
    } else {
        Format::Yaml
    })
}

/// How every encrypted value starts.
const ENCRYPTED: &str = "ENC[AES256_GCM,";

fn parse_structured(text: &str) -> Result<Node, SopsError> {
    if text.trim_start().starts_with('{') {
        serde_json::from_str(text).map_err(|e| SopsError::Format(format!("not JSON: {e}")))
    } else {
        serde_saphyr::from_str(text).map_err(|_| SopsError::Format("not YAML".into()))
    }
}

/// Decrypts a SOPS file with `ids`, checking its MAC.
pub fn decrypt(format: Format, bytes: &[u8], ids: &Identities) -> Result<Plain, SopsError> {
    let (mut tree, md) = read(format, bytes)?;
    let key = md.data_key(ids)?;
    sops::decrypt_tree(&mut tree, &md, &key)?;
    let mut values = Vec::new();
    collect_values(&tree, &mut Vec::new(), &mut values);
    let bytes: Vec<u8> = match format {
        Format::Dotenv => emit_dotenv(&tree).into_bytes(),
        Format::Ini => emit_ini(&tree).into_bytes(),
        Format::Yaml => node::to_yaml(&tree).into_bytes(),
        Format::Json => node::to_json(&tree).into_bytes(),
        Format::Binary => match tree.get("data") {
            Some(Node::Bytes(b)) => b.clone(),
            Some(other) => other.scalar_text().into_bytes(),
            None => return Err(SopsError::Format("a binary file without data".into())),
        },
    };
    Ok(Plain {
        format,
        bytes: Zeroizing::new(bytes),
        values,
    })
}

/// The tree to decrypt and the metadata of a file.
fn read(format: Format, bytes: &[u8]) -> Result<(Node, Metadata), SopsError> {
    let text =
        std::str::from_utf8(bytes).map_err(|_| SopsError::Format("not UTF-8 text".into()))?;
    match format {
        Format::Dotenv => {
            let (tree, flat) = read_dotenv(text)?;
            Ok((tree, Metadata::from_flat(&flat)?))
        }
        Format::Ini => {
            let (tree, flat) = read_ini(text)?;
            Ok((tree, Metadata::from_flat(&flat)?))
        }
        Format::Yaml | Format::Json | Format::Binary => {
            let doc = parse_structured(text)?;
            let Node::Map(items) = doc else {
                return Err(SopsError::Format("not a map at the top".into()));
            };
            let (sops, data): (Vec<_>, Vec<_>) = items
                .into_iter()
                .partition(|(k, _)| *k == Key::Name("sops".into()));
            let sops = sops
                .into_iter()
                .next()
                .map(|(_, v)| v)
                .ok_or_else(|| SopsError::Tampered("its sops block is missing".into()))?;
            Ok((Node::Map(data), Metadata::from_tree(&sops)?))
        }
    }
}

fn read_dotenv(text: &str) -> Result<(Node, BTreeMap<String, String>), SopsError> {
    let mut items = Vec::new();
    let mut flat = BTreeMap::new();
    for (i, line) in text.split('\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            items.push((Key::Comment(comment.to_string()), Node::Null));
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .ok_or_else(|| SopsError::Format(format!("line {} is not KEY=value", i + 1)))?;
        match k.strip_prefix("sops_") {
            Some(md) => {
                flat.insert(md.to_string(), v.to_string());
            }
            None => items.push((Key::Name(k.to_string()), Node::Str(v.replace("\\n", "\n")))),
        }
    }
    if flat.is_empty() {
        return Err(SopsError::Tampered("its sops metadata is missing".into()));
    }
    Ok((Node::Map(items), flat))
}

fn emit_dotenv(tree: &Node) -> String {
    let mut out = String::new();
    if let Node::Map(items) = tree {
        for (k, v) in items {
            match k {
                Key::Comment(c) => out.push_str(&format!("#{c}\n")),
                Key::Name(n) => {
                    out.push_str(&format!("{n}={}\n", v.scalar_text().replace('\n', "\\n")))
                }
            }
        }
    }
    out
}

/// INI as sops reads it (through go-ini): sections, the keys before the
/// first one in `DEFAULT`, comment lines kept for the key or section they
/// precede, the `[sops]` section the metadata.
fn read_ini(text: &str) -> Result<(Node, BTreeMap<String, String>), SopsError> {
    let mut sections: Vec<(String, Vec<(Key, Node)>)> = vec![("DEFAULT".into(), Vec::new())];
    let mut pending: Vec<String> = Vec::new();
    let strip = |c: &str| -> String {
        let c = c.trim();
        if c.starts_with(';') {
            c.trim_start_matches([';', ' ']).to_string()
        } else {
            c.trim_start_matches(['#', ' ']).to_string()
        }
    };
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() {
            continue;
        }
        if line.starts_with(';') || line.starts_with('#') {
            pending.push(line.to_string());
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let mut items = Vec::new();
            if !pending.is_empty() {
                items.push((Key::Comment(strip(&pending.join("\n"))), Node::Null));
                pending.clear();
            }
            sections.push((name.trim().to_string(), items));
            continue;
        }
        let at = line
            .find(['=', ':'])
            .ok_or_else(|| SopsError::Format(format!("line {} is not key = value", i + 1)))?;
        let key = line[..at].trim().to_string();
        let mut value = line[at + 1..].trim();
        for q in ["\"\"\"", "`", "\""] {
            if value.len() >= 2 * q.len() && value.starts_with(q) && value.ends_with(q) {
                value = &value[q.len()..value.len() - q.len()];
                break;
            }
        }
        let items = &mut sections.last_mut().expect("DEFAULT is first").1;
        items.push((Key::Name(key), Node::Str(value.to_string())));
        if !pending.is_empty() {
            items.push((Key::Comment(strip(&pending.join("\n"))), Node::Null));
            pending.clear();
        }
    }
    let mut flat = BTreeMap::new();
    let mut tree = Vec::new();
    for (name, items) in sections {
        if name == "sops" {
            for (k, v) in items {
                if let Key::Name(k) = k {
                    flat.insert(k, v.scalar_text());
                }
            }
        } else {
            tree.push((Key::Name(name), Node::Map(items)));
        }
    }
    if flat.is_empty() {
        return Err(SopsError::Tampered("its [sops] section is missing".into()));
    }
    Ok((Node::Map(tree), flat))
}

/// As go-ini writes a file: keys aligned per section, a blank line between
/// sections, comments with `; `.
fn emit_ini(tree: &Node) -> String {
    let comment = |c: &str, out: &mut String| {
        for line in c.split('\n') {
            if line.starts_with(';') || line.starts_with('#') {
                out.push_str(line);
            } else {
                out.push_str("; ");
                out.push_str(line);
            }
            out.push('\n');
        }
    };
    let mut blocks: Vec<String> = Vec::new();
    let Node::Map(sections) = tree else {
        return String::new();
    };
    for (name, body) in sections {
        let (Key::Name(name), Node::Map(items)) = (name, body) else {
            continue;
        };
        let mut out = String::new();
        let mut rest: &[(Key, Node)] = items;
        if let Some((Key::Comment(c), _)) = rest.first() {
            comment(c, &mut out);
            rest = &rest[1..];
        }
        let has_keys = rest.iter().any(|(k, _)| matches!(k, Key::Name(_)));
        if name == "DEFAULT" && !has_keys {
            continue;
        }
        if name != "DEFAULT" {
            out.push_str(&format!("[{name}]\n"));
        }
        let width = rest
            .iter()
            .filter_map(|(k, _)| match k {
                Key::Name(n) => Some(n.chars().count()),
                Key::Comment(_) => None,
            })
            .max()
            .unwrap_or(0);
        // A key's comment follows it in the tree and precedes it in the file.
        for (i, (k, v)) in rest.iter().enumerate() {
            let Key::Name(n) = k else { continue };
            if let Some((Key::Comment(c), _)) = rest.get(i + 1) {
                comment(c, &mut out);
            }
            let value = ini_value(&v.scalar_text());
            let pad = width - n.chars().count();
            out.push_str(&format!("{n}{} = {value}\n", " ".repeat(pad)));
        }
        blocks.push(out);
    }
    blocks.join("\n")
}

fn ini_value(v: &str) -> String {
    if v.contains('\n') {
        format!("\"\"\"{v}\"\"\"")
    } else if v.starts_with(' ') || v.ends_with(' ') || v.contains(';') || v.contains('#') {
        if v.contains('`') {
            format!("\"\"\"{v}\"\"\"")
        } else {
            format!("`{v}`")
        }
    } else {
        v.to_string()
    }
}

fn collect_values(node: &Node, path: &mut Vec<String>, out: &mut Vec<(String, Zeroizing<String>)>) {
    match node {
        Node::Map(items) => {
            for (k, v) in items {
                if let Key::Name(n) = k {
                    path.push(n.clone());
                    collect_values(v, path, out);
                    path.pop();
                }
            }
        }
        Node::List(items) => {
            for (i, v) in items.iter().enumerate() {
                path.push(i.to_string());
                collect_values(v, path, out);
                path.pop();
            }
        }
        Node::Null => {}
        leaf => out.push((path.join("."), Zeroizing::new(leaf.scalar_text()))),
    }
}
