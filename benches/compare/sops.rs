//! The `sops` row (fleet.md §2): decrypting a stack's 100 SOPS dotenv
//! files of 50 values each, made by the real sops, as a deployment does
//! it (detection, age, AES-GCM, MAC, HMACs) — beside `sops decrypt` of the
//! same files, in the same run.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use super::*;
use ::kedge::desired::secrets::{Identities, stack};
use support::sops::Sops;

const FILES: usize = 100;
const VALUES: usize = 50;

pub fn sops(runs: usize) -> Vec<Row> {
    let sops = Sops::new();
    let repo = tempfile::tempdir().unwrap();
    let mut candidates = BTreeSet::new();
    for f in 0..FILES {
        let plain: String = (0..VALUES)
            .map(|v| format!("KEY_{v}=value-{f}-{v}-{}\n", "x".repeat(24)))
            .collect();
        let name = format!("s{f:03}.env");
        std::fs::write(
            repo.path().join(&name),
            sops.encrypt(plain.as_bytes(), "dotenv", &[], &[]),
        )
        .unwrap();
        candidates.insert(name);
    }
    let ids = Identities::from_text(&std::fs::read_to_string(&sops.key_file).unwrap()).unwrap();
    let key = [7u8; 32];
    let mut kedge = Vec::new();
    for _ in 0..runs.max(9) {
        let start = Instant::now();
        let found = stack::find(repo.path(), &candidates, 1 << 20, &ids, &key).unwrap();
        kedge.push(start.elapsed());
        assert_eq!(found.paths().count(), FILES);
    }
    let mut baseline = Vec::new();
    for _ in 0..3 {
        let start = Instant::now();
        for name in &candidates {
            let out = sops
                .cmd()
                .args([
                    "decrypt",
                    "--input-type",
                    "dotenv",
                    "--output-type",
                    "dotenv",
                ])
                .arg(repo.path().join(name))
                .output()
                .unwrap();
            assert!(out.status.success());
        }
        baseline.push(start.elapsed());
    }
    let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1000.0);
    let (k, kmin, kmax) = stats(&kedge);
    let (b, bmin, bmax) = stats(&baseline);
    vec![Row {
        what: format!(
            "decrypt {FILES} SOPS files of {VALUES} values (median of {})",
            kedge.len()
        ),
        kedge: format!("{} (min {}, max {})", ms(k), ms(kmin), ms(kmax)),
        baseline: format!(
            "`sops decrypt` of each: {} (min {}, max {})",
            ms(b),
            ms(bmin),
            ms(bmax)
        ),
        goal: "≤ 50 ms".into(),
    }]
}
