//! desired/secrets: the SOPS format — its metadata, the data key from an
//! age stanza, each value AES-256-GCM with its path as additional data,
//! and the MAC over the values, checked as sops computes it.

use std::collections::BTreeMap;

use aes_gcm::AesGcm;
use aes_gcm::aead::consts::U32;
use aes_gcm::aead::generic_array::GenericArray;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::aes::Aes256;
use base64::Engine as _;
use sha2::{Digest, Sha512};
use zeroize::Zeroizing;

use super::keys::Identities;
use super::node::{Key, Node};

/// What cannot be decrypted. Never holds a value of the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SopsError {
    #[error("its sops metadata is incomplete: {0}")]
    Metadata(String),
    #[error("it uses {0}, which Kedge does not support")]
    Unsupported(String),
    #[error("it is encrypted for none of Kedge's age keys (recipients: {})", recipients.join(", "))]
    NoKey { recipients: Vec<String> },
    #[error("tampered: {0}")]
    Tampered(String),
    #[error("{0}")]
    Format(String),
}

/// The sops block of a file.
#[derive(Debug, Clone, Default)]
pub struct Metadata {
    /// (recipient, armored age file holding the data key).
    pub age: Vec<(String, String)>,
    pub lastmodified: String,
    pub mac: String,
    pub unencrypted_suffix: Option<String>,
    pub encrypted_suffix: Option<String>,
    pub unencrypted_regex: Option<regex::Regex>,
    pub encrypted_regex: Option<regex::Regex>,
    pub mac_only_encrypted: bool,
}

/// sops's constant start of a MAC over encrypted values only (the SHA-256
/// of "sops"), so that the two MACs of one tree never agree.
const MAC_ONLY_ENCRYPTED_INIT: [u8; 32] = [
    0x8a, 0x3f, 0xd2, 0xad, 0x54, 0xce, 0x66, 0x52, 0x7b, 0x10, 0x34, 0xf3, 0xd1, 0x47, 0xbe, 0x0b,
    0x0b, 0x97, 0x5b, 0x3b, 0xf4, 0x4f, 0x72, 0xc6, 0xfd, 0xad, 0xec, 0x81, 0x76, 0xf2, 0x7d, 0x69,
];

impl Metadata {
    /// From the `sops` map of a YAML, JSON or binary file.
    pub fn from_tree(sops: &Node) -> Result<Metadata, SopsError> {
        let text = |name: &str| {
            sops.get(name)
                .map(Node::scalar_text)
                .filter(|s| !s.is_empty())
        };
        for unsupported in ["unencrypted_comment_regex", "encrypted_comment_regex"] {
            if text(unsupported).is_some() {
                return Err(SopsError::Unsupported(unsupported.into()));
            }
        }
        let mut age = stanzas(sops.get("age"));
        if let Some(Node::List(groups)) = sops.get("key_groups") {
            if groups.len() > 1 {
                return Err(SopsError::Unsupported("several key groups (Shamir)".into()));
            }
            for g in groups {
                age.extend(stanzas(g.get("age")));
            }
        }
        let regex = |name: &str| -> Result<Option<regex::Regex>, SopsError> {
            text(name)
                .map(|r| {
                    regex::Regex::new(&r).map_err(|_| {
                        SopsError::Metadata(format!("{name} is not a regular expression"))
                    })
                })
                .transpose()
        };
        let mut md = Metadata {
            age,
            lastmodified: text("lastmodified")
                .ok_or_else(|| SopsError::Metadata("no lastmodified".into()))?,
            mac: text("mac").ok_or_else(|| SopsError::Tampered("it has no MAC".into()))?,
            unencrypted_suffix: text("unencrypted_suffix"),
            encrypted_suffix: text("encrypted_suffix"),
            unencrypted_regex: regex("unencrypted_regex")?,
            encrypted_regex: regex("encrypted_regex")?,
            mac_only_encrypted: matches!(sops.get("mac_only_encrypted"), Some(Node::Bool(true)))
                || text("mac_only_encrypted").as_deref() == Some("true"),
        };
        if md.unencrypted_suffix.is_none()
            && md.encrypted_suffix.is_none()
            && md.unencrypted_regex.is_none()
            && md.encrypted_regex.is_none()
        {
            md.unencrypted_suffix = Some("_unencrypted".into());
        }
        if md.age.is_empty() {
            return Err(SopsError::Unsupported(
                "no age recipient (only age keys are supported)".into(),
            ));
        }
        Ok(md)
    }

    /// From the flattened keys of a dotenv or INI file (`age__list_0__map_enc`).
    pub fn from_flat(flat: &BTreeMap<String, String>) -> Result<Metadata, SopsError> {
        let mut root = Node::Map(Vec::new());
        for (k, v) in flat {
            insert_flat(&mut root, &tokens(k), Node::Str(v.replace("\\n", "\n")));
        }
        Metadata::from_tree(&root)
    }

    /// sops's `shouldBeEncrypted` for a value at `path`.
    fn encrypts(&self, path: &[String]) -> bool {
        let mut encrypted = true;
        if let Some(suffix) = &self.unencrypted_suffix
            && path.iter().any(|p| p.ends_with(suffix.as_str()))
        {
            encrypted = false;
        }
        if let Some(suffix) = &self.encrypted_suffix {
            encrypted = path.iter().any(|p| p.ends_with(suffix.as_str()));
        }
        if let Some(re) = &self.unencrypted_regex
            && path.iter().any(|p| re.is_match(p))
        {
            encrypted = false;
        }
        if let Some(re) = &self.encrypted_regex {
            encrypted = path.iter().any(|p| re.is_match(p));
        }
        encrypted
    }

    pub fn recipients(&self) -> Vec<String> {
        self.age.iter().map(|(r, _)| r.clone()).collect()
    }

    /// The data key, from the first stanza one of `ids` opens.
    pub fn data_key(&self, ids: &Identities) -> Result<Zeroizing<Vec<u8>>, SopsError> {
        for (_, enc) in &self.age {
            if let Some(key) = ids.open(enc.as_bytes()) {
                if key.len() != 32 {
                    return Err(SopsError::Tampered("its data key is not 32 bytes".into()));
                }
                return Ok(key);
            }
        }
        Err(SopsError::NoKey {
            recipients: self.recipients(),
        })
    }

    /// `lastmodified` as Go's RFC 3339 format writes it: the MAC's
    /// additional data.
    fn mac_additional_data(&self) -> String {
        match chrono::DateTime::parse_from_rfc3339(&self.lastmodified) {
            Ok(t) => {
                let base = t.format("%Y-%m-%dT%H:%M:%S").to_string();
                if t.offset().local_minus_utc() == 0 {
                    format!("{base}Z")
                } else {
                    format!("{base}{}", t.format("%:z"))
                }
            }
            Err(_) => self.lastmodified.clone(),
        }
    }
}

fn stanzas(list: Option<&Node>) -> Vec<(String, String)> {
    match list {
        Some(Node::List(items)) => items
            .iter()
            .filter_map(|s| {
                Some((
                    s.get("recipient")?.scalar_text(),
                    s.get("enc")?.as_str()?.to_string(),
                ))
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// `a__list_0__map_b` → [Name(a), Index(0), Name(b)].
enum Token {
    Name(String),
    Index(usize),
}

fn tokens(flat: &str) -> Vec<Token> {
    let mut out = Vec::new();
    let mut rest = flat;
    let mut kind_list = false;
    loop {
        let next = [("__map_", false), ("__list_", true)]
            .iter()
            .filter_map(|(sep, list)| rest.find(sep).map(|i| (i, *sep, *list)))
            .min_by_key(|(i, _, _)| *i);
        let (part, after) = match next {
            Some((i, sep, list)) => {
                let part = &rest[..i];
                let after = (&rest[i + sep.len()..], list);
                (part, Some(after))
            }
            None => (rest, None),
        };
        out.push(if kind_list {
            Token::Index(part.parse().unwrap_or(0))
        } else {
            Token::Name(part.to_string())
        });
        match after {
            Some((r, list)) => {
                rest = r;
                kind_list = list;
            }
            None => return out,
        }
    }
}

fn insert_flat(node: &mut Node, path: &[Token], value: Node) {
    let Some((first, rest)) = path.split_first() else {
        *node = value;
        return;
    };
    let fresh = || match rest.first() {
        Some(Token::Index(_)) => Node::List(Vec::new()),
        Some(Token::Name(_)) => Node::Map(Vec::new()),
        None => Node::Null,
    };
    match (first, node) {
        (Token::Name(n), Node::Map(items)) => {
            let at = match items.iter().position(|(k, _)| *k == Key::Name(n.clone())) {
                Some(i) => i,
                None => {
                    items.push((Key::Name(n.clone()), fresh()));
                    items.len() - 1
                }
            };
            insert_flat(&mut items[at].1, rest, value);
        }
        (Token::Index(i), Node::List(items)) => {
            while items.len() <= *i {
                items.push(fresh());
            }
            if matches!(items[*i], Node::Null) {
                items[*i] = fresh();
            }
            insert_flat(&mut items[*i], rest, value);
        }
        _ => {}
    }
}

type Gcm = AesGcm<Aes256, U32>;

/// One `ENC[AES256_GCM,data:…,iv:…,tag:…,type:…]` value, decrypted.
pub fn decrypt_value(value: &str, key: &[u8], additional: &str) -> Result<Node, SopsError> {
    if value.is_empty() {
        return Ok(Node::Str(String::new()));
    }
    let bad = || SopsError::Tampered("a value is not in sops's encrypted form".into());
    let inner = value
        .strip_prefix("ENC[AES256_GCM,")
        .and_then(|v| v.strip_suffix(']'))
        .ok_or_else(bad)?;
    let mut parts: BTreeMap<&str, &str> = BTreeMap::new();
    for part in inner.split(',') {
        let (k, v) = part.split_once(':').ok_or_else(bad)?;
        parts.insert(k, v);
    }
    let b64 = |name: &str| -> Result<Vec<u8>, SopsError> {
        base64::engine::general_purpose::STANDARD
            .decode(parts.get(name).ok_or_else(bad)?)
            .map_err(|_| bad())
    };
    let (mut data, iv, tag) = (b64("data")?, b64("iv")?, b64("tag")?);
    let kind = *parts.get("type").ok_or_else(bad)?;
    if iv.len() != 32 || tag.len() != 16 {
        return Err(bad());
    }
    data.extend_from_slice(&tag);
    let cipher = Gcm::new(GenericArray::from_slice(key));
    let plain = Zeroizing::new(
        cipher
            .decrypt(
                GenericArray::from_slice(&iv),
                Payload {
                    msg: &data,
                    aad: additional.as_bytes(),
                },
            )
            .map_err(|_| {
                SopsError::Tampered("a value does not decrypt with its file's data key".into())
            })?,
    );
    let text = || String::from_utf8(plain.to_vec()).map_err(|_| bad());
    Ok(match kind {
        // Go strings hold any bytes: a binary file's are not always UTF-8.
        "str" => match String::from_utf8(plain.to_vec()) {
            Ok(s) => Node::Str(s),
            Err(e) => Node::Bytes(e.into_bytes()),
        },
        "int" | "int64" => Node::Int(text()?.parse().map_err(|_| bad())?),
        "float" => Node::Float(text()?.parse().map_err(|_| bad())?),
        "bool" => Node::Bool(match text()?.as_str() {
            "1" | "t" | "T" | "true" | "TRUE" | "True" => true,
            "0" | "f" | "F" | "false" | "FALSE" | "False" => false,
            _ => return Err(bad()),
        }),
        "bytes" => Node::Bytes(plain.to_vec()),
        "comment" => Node::Str(text()?),
        _ => return Err(bad()),
    })
}

/// Decrypts `tree` (the document without its sops block) in place and
/// checks the MAC; on any error the tree is partly decrypted and must be
/// dropped.
pub fn decrypt_tree(tree: &mut Node, md: &Metadata, key: &[u8]) -> Result<(), SopsError> {
    let mut hash = Sha512::new();
    if md.mac_only_encrypted {
        hash.update(MAC_ONLY_ENCRYPTED_INIT);
    }
    let mut path = Vec::new();
    walk(tree, &mut path, md, key, &mut hash)?;
    let computed = hex_upper(&hash.finalize());
    let stored = decrypt_value(&md.mac, key, &md.mac_additional_data())
        .map_err(|_| SopsError::Tampered("its MAC does not decrypt".into()))?;
    if stored.as_str() != Some(computed.as_str()) {
        return Err(SopsError::Tampered(
            "its MAC does not match its values".into(),
        ));
    }
    Ok(())
}

fn walk(
    node: &mut Node,
    path: &mut Vec<String>,
    md: &Metadata,
    key: &[u8],
    hash: &mut Sha512,
) -> Result<(), SopsError> {
    match node {
        Node::Map(items) => {
            for (k, v) in items.iter_mut() {
                match k {
                    Key::Comment(c) => {
                        // An encrypted comment is decrypted; one that does not
                        // decrypt was written in clear (older sops). Never in
                        // the MAC.
                        if md.encrypts(path)
                            && let Ok(Node::Str(plain)) = decrypt_value(c, key, &additional(path))
                        {
                            *c = plain;
                        }
                    }
                    Key::Name(n) => {
                        path.push(n.clone());
                        let r = walk(v, path, md, key, hash);
                        path.pop();
                        r?;
                    }
                }
            }
            Ok(())
        }
        Node::List(items) => {
            for v in items.iter_mut() {
                walk(v, path, md, key, hash)?;
            }
            Ok(())
        }
        Node::Null => Ok(()),
        leaf => {
            let encrypted = md.encrypts(path);
            if encrypted {
                let Node::Str(text) = leaf else {
                    return Err(SopsError::Tampered(format!(
                        "the value at {} should be encrypted and is not",
                        path.join(".")
                    )));
                };
                *leaf = decrypt_value(text, key, &additional(path))?;
            }
            if (!md.mac_only_encrypted || encrypted)
                && let Some(bytes) = leaf.mac_bytes()
            {
                hash.update(&bytes);
            }
            Ok(())
        }
    }
}

fn additional(path: &[String]) -> String {
    let mut s = path.join(":");
    s.push(':');
    s
}

fn hex_upper(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}
