//! SOPS files made by the real `sops` at test time, decrypted by Kedge:
//! each format to what `sops decrypt` prints, every encryption rule sops
//! offers, and refusals of tampered and foreign files.

use kedge::desired::secrets::node::Node;
use kedge::desired::secrets::{self, Format, Identities, SopsError};

use crate::support::sops::{Sops, flip_after};

const DOTENV: &str =
    "DB_PASSWORD=s3cr3t$x\n# the api's key\nAPI_KEY=abc=def\nEMPTY=\nMULTI=line1\\nline2\n";
const INI: &str =
    "; top comment\nglobal=1\n[db]\nuser = admin\npassword = p@ss w0rd\n# c2\n[api]\ntoken=xyz\n";
const YAML: &str = "a: 1\nb:\n  c: hello  # x\n  d: [1, two, 3.5, true]\n  e: {f: g}\n# top\nempty: \"\"\nnothing: null\nf_unencrypted: plain\npassword: hunter2\nlist_of_maps:\n  - name: one\n    secret_value: s1\n";
const JSON: &str = r#"{"a": 1, "b": {"c": "x", "d": [1.5, true, null]}, "e_unencrypted": 2, "password": "p", "big": 12345}"#;

fn ids(sops: &Sops) -> Identities {
    Identities::from_text(&std::fs::read_to_string(&sops.key_file).unwrap()).unwrap()
}

/// What a structured plaintext says, in order and typed.
fn tree(bytes: &[u8]) -> Node {
    serde_saphyr::from_slice(bytes).expect("YAML or JSON")
}

/// Kedge's plaintext of `encrypted` against sops's own: byte for byte,
/// but YAML, which is compared as the same ordered, typed tree (sops
/// writes it through yaml.v3, whose quoting and comments Kedge does not
/// reproduce).
fn check(sops: &Sops, ids: &Identities, kind: &str, format: Format, encrypted: &[u8], what: &str) {
    let name = format!("file.{kind}");
    assert_eq!(
        secrets::detect(&name, encrypted),
        Some(format),
        "{what}: detected"
    );
    let plain = secrets::decrypt(format, encrypted, ids).unwrap_or_else(|e| panic!("{what}: {e}"));
    let expected = sops.decrypt(encrypted, kind);
    match format {
        Format::Yaml => assert_eq!(
            tree(&plain.bytes),
            tree(&expected),
            "{what}: {}\n--- sops:\n{}",
            String::from_utf8_lossy(&plain.bytes),
            String::from_utf8_lossy(&expected)
        ),
        _ => assert_eq!(
            String::from_utf8_lossy(&plain.bytes),
            String::from_utf8_lossy(&expected),
            "{what}"
        ),
    }
}

#[test]
fn each_format_decrypts_to_exactly_what_sops_decrypt_prints() {
    let sops = Sops::new();
    let ids = ids(&sops);
    let cases: &[(&str, Format, &[u8])] = &[
        ("dotenv", Format::Dotenv, DOTENV.as_bytes()),
        ("ini", Format::Ini, INI.as_bytes()),
        ("yaml", Format::Yaml, YAML.as_bytes()),
        ("json", Format::Json, JSON.as_bytes()),
        ("binary", Format::Binary, b"raw\x00bytes\nline2\xff"),
    ];
    for (kind, format, plain) in cases {
        let encrypted = sops.encrypt(plain, kind, &[], &[]);
        check(&sops, &ids, kind, *format, &encrypted, kind);
    }
    // The binary file's bytes come back exactly, not as text.
    let encrypted = sops.encrypt(b"raw\x00bytes\xff", "binary", &[], &[]);
    let plain = secrets::decrypt(Format::Binary, &encrypted, &ids).unwrap();
    assert_eq!(&plain.bytes[..], b"raw\x00bytes\xff");
}

#[test]
fn every_encryption_rule_sops_offers_is_honoured_and_its_mac_checked() {
    let sops = Sops::new();
    let ids = ids(&sops);
    let rules: &[&[&str]] = &[
        &["--encrypted-regex", "^(password|c|secret_value)$"],
        &["--unencrypted-regex", "^(a|d)$"],
        &["--encrypted-suffix", "_value"],
        &["--unencrypted-suffix", "_unencrypted"],
        &["--encrypted-regex", "^password$", "--mac-only-encrypted"],
        &["--mac-only-encrypted"],
    ];
    for extra in rules {
        for (kind, format, plain) in [
            ("yaml", Format::Yaml, YAML),
            ("json", Format::Json, JSON),
            ("dotenv", Format::Dotenv, DOTENV),
        ] {
            let encrypted = sops.encrypt(plain.as_bytes(), kind, &[], extra);
            check(
                &sops,
                &ids,
                kind,
                format,
                &encrypted,
                &format!("{kind} {extra:?}"),
            );
        }
    }
}

#[test]
fn an_ssh_ed25519_identity_opens_what_sops_encrypted_for_its_public_key() {
    let sops = Sops::new();
    let key = sops.dir.path().join("id_ed25519");
    let out = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "kedge-test", "-f"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    let public = public
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ");
    let encrypted = sops.encrypt(DOTENV.as_bytes(), "dotenv", &[&public], &[]);
    let ssh = Identities::from_text(&std::fs::read_to_string(&key).unwrap()).unwrap();
    let plain = secrets::decrypt(Format::Dotenv, &encrypted, &ssh).unwrap();
    assert_eq!(String::from_utf8_lossy(&plain.bytes), DOTENV);
}

#[test]
fn tampered_files_and_files_for_other_keys_are_refused_by_name() {
    let sops = Sops::new();
    let ids = ids(&sops);
    let encrypted = String::from_utf8(sops.encrypt(YAML.as_bytes(), "yaml", &[], &[])).unwrap();
    let tampered = |e: Result<secrets::Plain, SopsError>, what: &str| match e {
        Err(SopsError::Tampered(why)) => why,
        other => panic!("{what}: expected tampered, got {other:?}"),
    };

    // A byte of a value's ciphertext flipped.
    let flipped = flip_after(&encrypted, "data:");
    tampered(
        secrets::decrypt(Format::Yaml, flipped.as_bytes(), &ids),
        "a value flipped",
    );

    // A value swapped for another encrypted under another path.
    let lines: Vec<&str> = encrypted.lines().collect();
    let pw = lines
        .iter()
        .position(|l| l.starts_with("password:"))
        .unwrap();
    let c = lines
        .iter()
        .position(|l| l.trim_start().starts_with("c:"))
        .unwrap();
    let mut swapped: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    swapped[pw] = format!(
        "password: {}",
        lines[c].trim_start().trim_start_matches("c: ")
    );
    let why = tampered(
        secrets::decrypt(Format::Yaml, swapped.join("\n").as_bytes(), &ids),
        "a value moved to another key",
    );
    assert!(why.contains("does not decrypt"), "{why}");

    // The MAC flipped.
    let flipped = flip_after(&encrypted, "mac: ENC[AES256_GCM,data:");
    tampered(
        secrets::decrypt(Format::Yaml, flipped.as_bytes(), &ids),
        "the MAC flipped",
    );

    // A plaintext value set where an encrypted one was: the MAC no longer
    // matches.
    let edited = encrypted.replace(lines[pw], "password: not-encrypted");
    tampered(
        secrets::decrypt(Format::Yaml, edited.as_bytes(), &ids),
        "a value in clear",
    );

    // The sops block cut off: still recognised, refused.
    let cut = &encrypted[..encrypted.find("sops:").unwrap()];
    assert_eq!(
        secrets::detect("x.yaml", cut.as_bytes()),
        Some(Format::Yaml)
    );
    tampered(
        secrets::decrypt(Format::Yaml, cut.as_bytes(), &ids),
        "no sops block",
    );

    // Encrypted for another key only: refused, naming its recipient.
    let other = Sops::new();
    let foreign = other.encrypt(DOTENV.as_bytes(), "dotenv", &[], &[]);
    match secrets::decrypt(Format::Dotenv, &foreign, &ids) {
        Err(SopsError::NoKey { recipients }) => {
            assert_eq!(recipients, vec![other.recipient.clone()])
        }
        other => panic!("expected no key, got {other:?}"),
    }
    // A plain file is no SOPS file.
    assert_eq!(secrets::detect("x.env", DOTENV.as_bytes()), None);
    assert_eq!(secrets::detect("x.yaml", YAML.as_bytes()), None);
}
