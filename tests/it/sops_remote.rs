//! SOPS files and the files a stack reads, where compose does not run:
//! a heal and a restore recreate a SOPS reader with its plaintext
//! (regressions), and a
//! stack on a host reached over SSH gets its decrypted values, secrets,
//! bind-mounted SOPS file and `configs:` file there, private, with no
//! plaintext left on this machine's side of the way.

use crate::hosts::kedge_for;
use crate::support::docker::{IMAGE_1, docker_ok};
use crate::support::hosts_lab::HostsLab;
use crate::support::sops::Sops;
use crate::support::*;

const COMPOSE: &str = "services:
  app:
    image: IMAGE
    command: [sleep, '3600']
    stop_signal: SIGKILL
    env_file: [db.env]
    secrets: [token]
    configs: [{source: site, target: /etc/site.conf}]
    volumes: [./conf.yaml:/etc/conf.yaml:ro]
secrets:
  token:
    file: ./token.yaml
configs:
  site:
    file: ./site.conf
";

/// The repository's files: a SOPS dotenv, a SOPS `secrets:` file, a
/// bind-mounted SOPS file and a plain `configs:` file.
fn files(sops: &Sops) -> Vec<(&'static str, String)> {
    let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
    vec![
        ("compose.yaml", COMPOSE.replace("IMAGE", IMAGE_1)),
        (
            "db.env",
            text(sops.encrypt(b"DB_PASSWORD=kt-remote-pw-31c7\n", "dotenv", &[], &[])),
        ),
        (
            "token.yaml",
            text(sops.encrypt(b"token: kt-remote-token-8e02\n", "yaml", &[], &[])),
        ),
        (
            "conf.yaml",
            text(sops.encrypt(b"password: kt-remote-conf-4b19\n", "yaml", &[], &[])),
        ),
        ("site.conf", "listen 8080\n".into()),
    ]
}

/// `app` (container `id`) removed by hand and healed by serve's drift
/// check: the new container's id.
fn removed_and_healed(s: &Stack, id: &str) -> String {
    let _serve = s
        .kedge
        .serve_api(&["--poll-interval", "60s", "--check-interval", "1s"], &[]);
    docker_ok(&["rm", "-f", id]);
    wait_for(60, "app healed by a new container", || {
        let c = s.running().get("app")?.id.clone();
        (c != id).then_some(c)
    })
}

/// Regression: a heal that recreated a service reading a SOPS file ran
/// compose without the override of decrypted values, so the new container
/// read the file still encrypted.
#[test]
fn a_removed_sops_reader_comes_back_with_its_plaintext() {
    let sops = Sops::new();
    let kedge = Kedge::new().env("KEDGE_SOPS_AGE_KEY_FILE", sops.key_file.to_str().unwrap());
    let owned = files(&sops);
    let refs: Vec<(&str, &str)> = owned.iter().map(|(p, t)| (*p, t.as_str())).collect();
    let s = Stack::with_kedge("sopsheal", &refs, kedge);
    s.kedge.run(["sync", "--repo", &s.name]).success();
    let app = s.running()["app"].id.clone();
    let env = docker_ok(&["exec", &app, "env"]);
    assert!(env.contains("DB_PASSWORD=kt-remote-pw-31c7"), "{env}");

    // Healed by serve's drift check, not redeployed.
    let again = removed_and_healed(&s, &app);
    let env = docker_ok(&["exec", &again, "env"]);
    assert!(env.contains("DB_PASSWORD=kt-remote-pw-31c7"), "{env}");
    assert!(!env.contains("ENC["), "{env}");
    let token = docker_ok(&["exec", &again, "cat", "/run/secrets/token"]);
    assert!(token.contains("kt-remote-token-8e02"), "{token}");
    assert_eq!(
        s.history().as_array().unwrap().len(),
        1,
        "healed, not redeployed"
    );
}

/// Regression: the restore after a failed gate re-applied the deployed
/// commit without its override of decrypted values (and a heal after it
/// read the failed commit's): the restored reader saw its SOPS file still
/// encrypted.
#[test]
fn a_failed_gate_restores_a_sops_reader_with_the_deployed_plaintext() {
    let sops = Sops::new();
    let kedge = Kedge::new().env("KEDGE_SOPS_AGE_KEY_FILE", sops.key_file.to_str().unwrap());
    let owned = files(&sops);
    let refs: Vec<(&str, &str)> = owned.iter().map(|(p, t)| (*p, t.as_str())).collect();
    let s = Stack::with_kedge("sopsundo", &refs, kedge);
    s.kedge.run(["sync", "--repo", &s.name]).success();

    // A new password, and an app that exits at once: the gate fails.
    s.remote.write(
        "db.env",
        &String::from_utf8(sops.encrypt(b"DB_PASSWORD=kt-undo-new-77d1\n", "dotenv", &[], &[]))
            .unwrap(),
    );
    s.remote.write(
        "compose.yaml",
        &COMPOSE
            .replace("IMAGE", IMAGE_1)
            .replace("command: [sleep, '3600']", "command: [sh, -c, 'exit 3']"),
    );
    s.remote.commit("broken, with a new password");
    s.kedge.run(["sync", "--repo", &s.name]).code(1);
    assert_eq!(s.history()[0]["trigger"], "auto_rollback");
    let app = s.running()["app"].id.clone();
    let env = docker_ok(&["exec", &app, "env"]);
    assert!(env.contains("DB_PASSWORD=kt-remote-pw-31c7"), "{env}");
    assert!(!env.contains("ENC["), "{env}");

    // And a heal after it reads the deployed values too.
    let again = removed_and_healed(&s, &app);
    let env = docker_ok(&["exec", &again, "env"]);
    assert!(env.contains("DB_PASSWORD=kt-remote-pw-31c7"), "{env}");
    assert!(!env.contains("kt-undo-new-77d1"), "{env}");
}

#[test]
fn a_stack_on_an_ssh_host_gets_its_secrets_and_files_there_and_nowhere_else() {
    let sops = Sops::new();
    let lab = HostsLab::start();
    lab.load(&[IMAGE_1]);
    let (k, _config) = kedge_for(&lab, "");
    let k = k.env("KEDGE_SOPS_AGE_KEY_FILE", sops.key_file.to_str().unwrap());
    let sampler = crate::support::argv::ArgvSampler::start(&["ssh", "docker", "kedge"]);
    let name = unique_name("sopsremote");
    let remote = GitRemote::new(&name);
    for (path, text) in files(&sops) {
        remote.write(path, &text);
    }
    remote.write(
        "kedge.yaml",
        "target:\n  host: a\ndeploy:\n  stable_for: 0s\n",
    );
    remote.commit("secrets on a remote host");
    k.run(["repo", "add", &remote.url()]).success();
    k.run(["sync", "--repo", &name]).success();

    let app = lab
        .docker(
            1,
            &[
                "ps",
                "-q",
                "--filter",
                &format!("label=com.docker.compose.project={name}"),
            ],
        )
        .trim()
        .to_string();
    assert!(!app.is_empty(), "app runs on host a");
    let on_a = |args: &[&str]| {
        let mut all = vec!["exec", app.as_str()];
        all.extend_from_slice(args);
        lab.docker(1, &all)
    };
    assert!(on_a(&["env"]).contains("DB_PASSWORD=kt-remote-pw-31c7"));
    assert!(on_a(&["cat", "/run/secrets/token"]).contains("kt-remote-token-8e02"));
    assert!(on_a(&["cat", "/etc/conf.yaml"]).contains("kt-remote-conf-4b19"));
    assert_eq!(on_a(&["cat", "/etc/site.conf"]), "listen 8080\n");
    // The decrypted files are private on the host.
    let modes = lab.in_remote_dir(
        1,
        &format!("stat -c '%a %n' /remote/{name}/*/token.yaml /remote/{name}/*/conf.yaml"),
    );
    for line in modes.lines() {
        assert!(line.starts_with("600 "), "{modes}");
    }
    assert_eq!(modes.lines().count(), 2, "{modes}");

    // No plaintext in any argv, nor in what Kedge keeps on this machine
    // outside its private directory.
    let plaintext = [
        "kt-remote-pw-31c7",
        "kt-remote-token-8e02",
        "kt-remote-conf-4b19",
    ];
    for argv in sampler.finish() {
        for p in plaintext {
            assert!(!argv.contains(p), "plaintext in an argv: {argv}");
        }
    }
    let shipped = k.data_dir();
    let mut dirs = vec![shipped.clone()];
    while let Some(dir) = dirs.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let p = e.path();
            if p.starts_with(shipped.join("secrets")) {
                continue;
            }
            if p.is_dir() {
                dirs.push(p);
            } else if let Ok(bytes) = std::fs::read(&p) {
                let text = String::from_utf8_lossy(&bytes);
                for s in plaintext {
                    assert!(!text.contains(s), "plaintext in {}", p.display());
                }
            }
        }
    }
    assert!(
        !std::path::Path::new("/var/lib/kedge-remote")
            .join(&name)
            .exists()
    );
}
