//! desired/secrets: SOPS files among a stack's inputs, decrypted natively
//! at deploy time (fleet.md §2). Plaintext lives in memory and in one
//! private directory of the data dir (`private`); everything else —
//! hashes, the diff, the database — sees an HMAC of it.

pub mod formats;
pub mod keys;
pub mod node;
pub mod sops;

pub use formats::{Format, Plain, decrypt, detect};
pub use keys::{Identities, KeyRing, KeysError};
pub use sops::SopsError;
pub mod private;
pub mod stack;

pub use stack::{SecretError, SecretPrint, StackSecrets};

/// The compose override, in a stack's private directory, that points its
/// services at the decrypted files and values.
pub const OVERRIDE: &str = "override.yaml";
/// The deployed deployment's override, kept while a new one is tried: a
/// restore puts it back.
pub const OVERRIDE_KEPT: &str = "override.prev.yaml";
