//! model: what a deployed stack was made of (fleet.md §1): the repository
//! paths its deployment read, and a fingerprint of their git object ids
//! and of the environment compose saw. Made by `desired`, kept by `record`
//! with the stack's state, compared by the controller at each new commit.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StackInputs {
    /// Repository-relative paths (files or directories, present or not),
    /// sorted and unique.
    pub paths: Vec<String>,
    /// `desired::stack_inputs::fingerprint` of `paths` at the deployed commit.
    pub fingerprint: String,
}

impl StackInputs {
    /// As stored: JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// A stored value; `None` when it cannot be read (then every new commit
    /// is rendered, as before fingerprints were kept).
    pub fn from_json(text: &str) -> Option<StackInputs> {
        serde_json::from_str(text).ok()
    }
}

/// A SOPS file a deployed stack read (fleet.md §2): its repository path
/// and each value's name with an HMAC of it under the install's key —
/// enough to say which values changed, nothing to learn them from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretPrint {
    pub path: String,
    pub values: std::collections::BTreeMap<String, String>,
}
