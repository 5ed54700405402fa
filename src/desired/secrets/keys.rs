//! desired/secrets: Kedge's age identities — `AGE-SECRET-KEY-1…` lines and
//! OpenSSH ed25519 private keys — read once at start from a file that
//! must be private to its owner, or from the environment as sops reads it.

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use zeroize::Zeroizing;

/// A key file is read whole, and no key file is this large.
const MAX_KEY_FILE: u64 = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    #[error("cannot read the age key file {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the age key file {} is accessible by group or others (mode {mode:03o}); `chmod 600` it",
        path.display()
    )]
    Open { path: PathBuf, mode: u32 },
    #[error("the age key file {} holds no age identity (AGE-SECRET-KEY-1… or an OpenSSH ed25519 key)", path.display())]
    Empty { path: PathBuf },
    #[error("{what} holds an identity that is not a valid age key (line {line})")]
    Invalid { what: String, line: usize },
    #[error("{} is an encrypted SSH key: give Kedge an unencrypted one", path.display())]
    EncryptedSsh { path: PathBuf },
}

/// The identities that open SOPS data keys. `Debug` shows how many, never
/// what.
#[derive(Default)]
pub struct Identities {
    ids: Vec<Box<dyn age::Identity + Send + Sync>>,
    /// Where they came from, for the log.
    pub sources: Vec<String>,
}

impl std::fmt::Debug for Identities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Identities({} from {:?})", self.ids.len(), self.sources)
    }
}

impl Identities {
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Kedge's keys: `file` (`sops.age_key_file`, or
    /// `KEDGE_SOPS_AGE_KEY_FILE`), else `SOPS_AGE_KEY_FILE`, plus the
    /// identities in `SOPS_AGE_KEY` and the SSH key in
    /// `SOPS_AGE_SSH_PRIVATE_KEY_FILE`. A named file that cannot be read,
    /// or that group or others may read, is an error.
    pub fn load(file: Option<&Path>) -> Result<Identities, KeysError> {
        let mut ids = Identities::default();
        let env_file = std::env::var_os("SOPS_AGE_KEY_FILE").map(PathBuf::from);
        if let Some(path) = file.map(Path::to_path_buf).or(env_file) {
            let text = read_private(&path)?;
            let before = ids.ids.len();
            ids.add_text(&text, &path.display().to_string(), Some(&path))?;
            if ids.ids.len() == before {
                return Err(KeysError::Empty { path });
            }
            ids.sources.push(path.display().to_string());
        }
        if let Ok(text) = std::env::var("SOPS_AGE_KEY") {
            let text = Zeroizing::new(text);
            ids.add_text(&text, "SOPS_AGE_KEY", None)?;
            ids.sources.push("SOPS_AGE_KEY".into());
        }
        if let Some(path) = std::env::var_os("SOPS_AGE_SSH_PRIVATE_KEY_FILE").map(PathBuf::from) {
            let text = read_private(&path)?;
            ids.add_text(&text, &path.display().to_string(), Some(&path))?;
            ids.sources.push(path.display().to_string());
        }
        Ok(ids)
    }

    /// Identities from the text of a key file (`#` comments allowed).
    pub fn from_text(text: &str) -> Result<Identities, KeysError> {
        let mut ids = Identities::default();
        ids.add_text(text, "the key text", None)?;
        Ok(ids)
    }

    fn add_text(&mut self, text: &str, what: &str, path: Option<&Path>) -> Result<(), KeysError> {
        if text.contains("-----BEGIN OPENSSH PRIVATE KEY-----") {
            let id = age::ssh::Identity::from_buffer(text.as_bytes(), None).map_err(|_| {
                KeysError::Invalid {
                    what: what.into(),
                    line: 1,
                }
            })?;
            match id {
                age::ssh::Identity::Unencrypted(_) => self.ids.push(Box::new(id)),
                _ => {
                    return Err(KeysError::EncryptedSsh {
                        path: path.map(Path::to_path_buf).unwrap_or_else(|| what.into()),
                    });
                }
            }
            return Ok(());
        }
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let id = age::x25519::Identity::from_str(line).map_err(|_| KeysError::Invalid {
                what: what.into(),
                line: i + 1,
            })?;
            self.ids.push(Box::new(id));
        }
        Ok(())
    }

    /// The plaintext of an armored age file (a SOPS data key), when one of
    /// these identities is among its recipients.
    pub fn open(&self, armored: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        let reader = age::armor::ArmoredReader::new(armored);
        let decryptor = age::Decryptor::new(reader).ok()?;
        let mut stream = decryptor
            .decrypt(self.ids.iter().map(|i| i.as_ref() as &dyn age::Identity))
            .ok()?;
        let mut out = Zeroizing::new(Vec::new());
        stream.by_ref().take(1024).read_to_end(&mut out).ok()?;
        Some(out)
    }
}

/// A key file's text, refused when group or others may read it.
fn read_private(path: &Path) -> Result<Zeroizing<String>, KeysError> {
    let err = |source| KeysError::Read {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(err)?;
    let mode = meta.mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeysError::Open {
            path: path.to_path_buf(),
            mode,
        });
    }
    let mut text = Zeroizing::new(String::new());
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_KEY_FILE).read_to_string(&mut text))
        .map_err(err)?;
    Ok(text)
}

/// Kedge's identities as the key file says now: read at start, read again
/// when the file changes (a key added, a mode fixed), so an operator's fix
/// and `kedge sync` deploy without a restart.
pub struct KeyRing {
    file: Option<PathBuf>,
    current: Mutex<(Arc<Identities>, Option<Stamp>)>,
}

/// What tells a key file changed: its modification time, size and mode.
type Stamp = (SystemTime, u64, u32);

fn stamp(path: &Path) -> Option<Stamp> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len(), m.mode()))
}

impl KeyRing {
    /// The identities of `file` (or sops's variables), refused as
    /// [`Identities::load`] refuses them.
    pub fn load(file: Option<&Path>) -> Result<KeyRing, KeysError> {
        let ids = Identities::load(file)?;
        let file = file
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os("SOPS_AGE_KEY_FILE").map(PathBuf::from));
        let at = file.as_deref().and_then(stamp);
        Ok(KeyRing {
            file,
            current: Mutex::new((Arc::new(ids), at)),
        })
    }

    /// As `load`, but a key file that cannot be used yet leaves the ring
    /// empty (logged) until it is fixed.
    pub fn lenient(file: Option<&Path>) -> KeyRing {
        KeyRing::load(file).unwrap_or_else(|e| {
            tracing::warn!("{}", crate::error_chain(&e));
            KeyRing {
                file: file.map(Path::to_path_buf),
                current: Mutex::new((Arc::new(Identities::default()), None)),
            }
        })
    }

    /// The identities now: the key file is read again when it changed
    /// since (a stat per call); a file that became unusable keeps the
    /// identities read before, and says why.
    pub fn current(&self) -> Arc<Identities> {
        let mut cur = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(file) = &self.file {
            let now = stamp(file);
            if now != cur.1 {
                match Identities::load(Some(file)) {
                    Ok(ids) => *cur = (Arc::new(ids), now),
                    Err(e) => {
                        tracing::warn!("{}", crate::error_chain(&e));
                        cur.1 = now;
                    }
                }
            }
        }
        cur.0.clone()
    }
}
