//! SOPS secrets end to end on the real engine: a stack whose env file,
//! `secrets:` file and bind-mounted file are SOPS files deploys with their
//! plaintext; a changed value recreates only its readers, a re-encryption
//! nothing; tampered and foreign files fail the deployment and leave the
//! stack running; rollback restores old values; and no plaintext leaves
//! the private directory.

use crate::support::api::Api;
use crate::support::docker::{IMAGE_1, docker_ok};
use crate::support::receiver::{Mode, Receiver};
use crate::support::sops::{Sops, flip_after, keygen};
use crate::support::stack::Stack;
use crate::support::{Kedge, wait_for};

const COMPOSE: &str = "services:
  app:
    image: IMAGE
    command: [sleep, '3600']
    stop_signal: SIGKILL
    env_file: [db.env]
    secrets: [token]
  web:
    image: IMAGE
    command: [sleep, '3600']
    stop_signal: SIGKILL
    volumes: [./conf.yaml:/etc/conf.yaml:ro]
  plain:
    image: IMAGE
    command: [sleep, '3600']
    stop_signal: SIGKILL
secrets:
  token:
    file: ./token.yaml
";

fn db_env(password: &str) -> String {
    format!("DB_PASSWORD={password}\n# the api's key\nAPI_KEY=kt-api-key-0417\n")
}

/// Container ids by service.
fn ids(s: &Stack) -> std::collections::BTreeMap<String, String> {
    s.running().into_iter().map(|(k, c)| (k, c.id)).collect()
}

#[test]
fn sops_secrets_deploy_restart_only_their_readers_and_never_leak() {
    let sops = Sops::new();
    let receiver = Receiver::start(Mode::Status(200));
    let kedge = Kedge::new().env("KEDGE_SOPS_AGE_KEY_FILE", sops.key_file.to_str().unwrap());
    let compose = COMPOSE.replace("IMAGE", IMAGE_1);
    let first_password = "kt-first-pa$$word-9d1c";
    let db1 = sops.encrypt(db_env(first_password).as_bytes(), "dotenv", &[], &[]);
    let token = sops.encrypt(b"token: kt-token-value-51ae\n", "yaml", &[], &[]);
    let conf = sops.encrypt(
        b"listen: 8080\npassword: kt-conf-secret-7b20\n",
        "yaml",
        &[],
        &[],
    );
    let text = |b: &[u8]| String::from_utf8(b.to_vec()).unwrap();
    let s = Stack::with_kedge(
        "sops",
        &[
            ("compose.yaml", &compose),
            ("db.env", &text(&db1)),
            ("token.yaml", &text(&token)),
            ("conf.yaml", &text(&conf)),
        ],
        kedge,
    );
    let config_dir = s.kedge.cwd().join(".config/kedge");
    std::fs::create_dir_all(&config_dir).unwrap();
    std::fs::write(
        config_dir.join("config.yaml"),
        format!(
            "notifications:\n  - name: hook\n    type: webhook\n    url: {}\n    events: ['*']\n",
            receiver.url("/hook")
        ),
    )
    .unwrap();
    let c1 = s.remote.remote_head();
    let admin = s.kedge.token("leak-admin", "admin");
    let sampler = crate::support::argv::ArgvSampler::start(&["kedge", "docker"]);
    // Every CLI answer is searched for plaintext at the end.
    let mut answers: Vec<(String, String)> = Vec::new();
    let mut run = |args: &[&str]| {
        let out = s.kedge.run(args);
        answers.push((
            format!("kedge {}", args.join(" ")),
            format!("{}{}", out.stdout, out.stderr),
        ));
        out
    };
    run(&["sync", "--repo", &s.name]).success();

    // The containers see the plaintext; the sops variables are not there.
    let first = ids(&s);
    assert_eq!(first.keys().collect::<Vec<_>>(), ["app", "plain", "web"]);
    // `$$` is a `$`, as compose reads a plain env file.
    let env = docker_ok(&["exec", &first["app"], "env"]);
    assert!(env.contains("DB_PASSWORD=kt-first-pa$word-9d1c"), "{env}");
    assert!(env.contains("API_KEY=kt-api-key-0417"), "{env}");
    assert!(!env.contains("sops_"), "{env}");
    let seen = docker_ok(&["exec", &first["app"], "cat", "/run/secrets/token"]);
    assert!(seen.contains("kt-token-value-51ae"), "{seen}");
    let seen = docker_ok(&["exec", &first["web"], "cat", "/etc/conf.yaml"]);
    assert!(
        seen.contains("kt-conf-secret-7b20") && seen.contains("8080"),
        "{seen}"
    );
    run(&["diff", "--repo", &s.name, "--exit-code"])
        .success()
        .stdout_has("In sync");

    // A value changed and re-encrypted: diff names it, sync recreates only
    // its reader.
    let second_password = "kt-second-password-e4f2";
    s.remote.write(
        "db.env",
        &text(&sops.encrypt(db_env(second_password).as_bytes(), "dotenv", &[], &[])),
    );
    s.remote.commit("a new database password");
    run(&["diff", "--repo", &s.name])
        .stdout_has("secret changed: db.env (DB_PASSWORD)")
        .stdout_has("Service: app");
    run(&["sync", "--repo", &s.name]).success();
    let second = ids(&s);
    assert_ne!(second["app"], first["app"], "app reads db.env");
    assert_eq!(second["web"], first["web"]);
    assert_eq!(second["plain"], first["plain"]);
    let env = docker_ok(&["exec", &second["app"], "env"]);
    assert!(
        env.contains(&format!("DB_PASSWORD={second_password}")),
        "{env}"
    );

    // The bind-mounted file changed: only web.
    s.remote.write(
        "conf.yaml",
        &text(&sops.encrypt(
            b"listen: 8080\npassword: kt-conf-secret-2-c9d3\n",
            "yaml",
            &[],
            &[],
        )),
    );
    s.remote.commit("a new config secret");
    run(&["sync", "--repo", &s.name]).success();
    let third = ids(&s);
    assert_ne!(third["web"], second["web"], "web mounts conf.yaml");
    assert_eq!(third["app"], second["app"]);
    assert_eq!(third["plain"], second["plain"]);
    let seen = docker_ok(&["exec", &third["web"], "cat", "/etc/conf.yaml"]);
    assert!(seen.contains("kt-conf-secret-2-c9d3"), "{seen}");

    // `sops rotate` of every file (new data keys, same values): nothing
    // is recreated.
    for (file, kind) in [
        ("db.env", "dotenv"),
        ("token.yaml", "yaml"),
        ("conf.yaml", "yaml"),
    ] {
        sops.rotate(&s.remote.work_dir().join(file), kind);
    }
    s.remote.commit("rotate the data keys");
    run(&["sync", "--repo", &s.name]).success();
    assert_eq!(ids(&s), third, "a re-encryption restarts nothing");
    // `sops updatekeys` adding a recipient: nothing either.
    let (_, spare) = keygen(&sops.dir.path().join("spare.key"));
    let both = [sops.recipient.as_str(), spare.as_str()];
    for file in ["db.env", "token.yaml", "conf.yaml"] {
        sops.updatekeys(&s.remote.work_dir().join(file), &both);
    }
    s.remote.commit("a new recipient");
    run(&["sync", "--repo", &s.name]).success();
    assert_eq!(ids(&s), third, "a new recipient restarts nothing");

    // A byte flipped in a ciphertext value: refused as tampered, the
    // stack left as it runs.
    let good = std::fs::read_to_string(s.remote.work_dir().join("db.env")).unwrap();
    s.remote.write(
        "db.env",
        &flip_after(&good, "DB_PASSWORD=ENC[AES256_GCM,data:"),
    );
    s.remote.commit("tampered");
    let out = run(&["sync", "--repo", &s.name]);
    assert_ne!(out.code, Some(0), "{out:?}");
    assert!(
        format!("{}{}", out.stdout, out.stderr).contains("secret file db.env: tampered"),
        "{out:?}"
    );
    assert_eq!(ids(&s), third, "the running stack is untouched");
    // The MAC flipped: refused too.
    s.remote.write(
        "db.env",
        &flip_after(&good, "sops_mac=ENC[AES256_GCM,data:"),
    );
    s.remote.commit("tampered mac");
    let out = run(&["sync", "--repo", &s.name]);
    assert!(
        format!("{}{}", out.stdout, out.stderr).contains("tampered"),
        "{out:?}"
    );
    assert_eq!(ids(&s), third);
    // The sops metadata cut off: refused, not deployed as ciphertext.
    let cut: String = good
        .lines()
        .filter(|l| !l.starts_with("sops_"))
        .map(|l| format!("{l}\n"))
        .collect();
    s.remote.write("db.env", &cut);
    s.remote.commit("no metadata");
    let out = run(&["sync", "--repo", &s.name]);
    assert!(
        format!("{}{}", out.stdout, out.stderr).contains("secret file db.env: tampered"),
        "{out:?}"
    );
    assert_eq!(ids(&s), third);

    // Encrypted for another key only: the failure names the file and the
    // recipient; the key added to Kedge's key file and a sync deploy it.
    let other_key = sops.dir.path().join("other.key");
    let (_, other) = keygen(&other_key);
    let foreign = sops
        .cmd()
        .args([
            "encrypt",
            "--input-type",
            "dotenv",
            "--output-type",
            "dotenv",
            "--age",
            &other,
        ])
        .arg({
            let p = sops.dir.path().join("db-foreign.env");
            std::fs::write(&p, db_env(second_password)).unwrap();
            p
        })
        .output()
        .unwrap();
    assert!(foreign.status.success());
    s.remote.write("db.env", &text(&foreign.stdout));
    s.remote.commit("for another key");
    let out = run(&["sync", "--repo", &s.name]);
    let said = format!("{}{}", out.stdout, out.stderr);
    assert!(
        said.contains("secret file db.env") && said.contains(&other),
        "{out:?}"
    );
    assert_eq!(ids(&s), third);
    let both = format!(
        "{}{}",
        std::fs::read_to_string(&sops.key_file).unwrap(),
        std::fs::read_to_string(&other_key).unwrap()
    );
    std::fs::write(&sops.key_file, both).unwrap();
    run(&["sync", "--repo", &s.name]).success();
    let fourth = ids(&s);
    assert_eq!(
        fourth, third,
        "the same values under another key restart nothing"
    );

    // Rollback to the first commit, through serve (its API answers and
    // notifications are searched too): its older values come back.
    let api = s.kedge.serve_api(
        &["--poll-interval", "1h", "--check-interval", "1m"],
        &[("KEDGE_LOG", "debug")],
    );
    run(&["rollback", "--repo", &s.name, &c1[..7]]).success();
    let fifth = ids(&s);
    let env = docker_ok(&["exec", &fifth["app"], "env"]);
    assert!(env.contains("DB_PASSWORD=kt-first-pa$word-9d1c"), "{env}");
    let seen = docker_ok(&["exec", &fifth["web"], "cat", "/etc/conf.yaml"]);
    assert!(seen.contains("kt-conf-secret-7b20"), "{seen}");
    assert_eq!(fifth["plain"], first["plain"]);

    // The leak sampler: no plaintext outside the private directory.
    let secrets = [
        first_password,
        "kt-first-pa$word-9d1c",
        second_password,
        "kt-api-key-0417",
        "kt-token-value-51ae",
        "kt-conf-secret-7b20",
        "kt-conf-secret-2-c9d3",
    ];
    let clean = |what: &str, text: &str| {
        for secret in secrets {
            assert!(
                !text.contains(secret),
                "{what} holds a plaintext value: {secret}"
            );
        }
    };
    for args in [
        vec!["events", "-o", "json"],
        vec!["history", "--repo", &s.name, "-o", "json"],
        vec!["diff", "--repo", &s.name],
        vec!["diff", "--repo", &s.name, "-o", "json"],
        vec!["status", "-o", "json"],
    ] {
        run(&args);
    }
    for path in [
        format!("/api/v1/repos/{}", s.name),
        format!("/api/v1/repos/{}/history", s.name),
        format!("/api/v1/repos/{}/diff", s.name),
        "/api/v1/events".to_string(),
        "/api/v1/status".to_string(),
    ] {
        let answer = api.get(&path, &admin);
        answers.push((format!("GET {path}"), answer.body.clone()));
    }
    for (what, text) in &answers {
        clean(what, text);
    }
    wait_for(30, "notifications of the rollback", || {
        (receiver.delivered().len() >= 2).then_some(())
    });
    for r in receiver.requests() {
        clean("a notification", &String::from_utf8_lossy(&r.body));
    }
    for a in sampler.finish().iter() {
        clean("a process's argv", a);
    }
    let Api { mut serve, .. } = api;
    serve.terminate();
    clean("serve's log at debug level", &serve.log());
    // Every file of the data dir but the private directory, kedge.db raw.
    let data = s.kedge.data_dir();
    let private = data.join("secrets");
    let mut stack = vec![data.clone()];
    let mut private_files = 0;
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(bytes) = std::fs::read(&p) {
                let text = String::from_utf8_lossy(&bytes);
                if p.starts_with(&private) {
                    private_files += 1;
                    use std::os::unix::fs::PermissionsExt;
                    let mode = e.metadata().unwrap().permissions().mode() & 0o777;
                    assert_eq!(mode, 0o600, "{}", p.display());
                } else {
                    clean(&p.display().to_string(), &text);
                }
            }
        }
    }
    assert!(
        private_files >= 3,
        "the plaintext lives in the private directory"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&private).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
}

/// A key file others may read is refused at start, naming its mode.
#[test]
fn serve_refuses_a_key_file_others_may_read() {
    let sops = Sops::new();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&sops.key_file, std::fs::Permissions::from_mode(0o640)).unwrap();
    let kedge = Kedge::new().env("KEDGE_SOPS_AGE_KEY_FILE", sops.key_file.to_str().unwrap());
    kedge
        .run(["serve", "--listen", "none"])
        .code(1)
        .stderr_has("is accessible by group or others (mode 640)");
    let missing = sops.dir.path().join("nope.key");
    let kedge = Kedge::new().env("KEDGE_SOPS_AGE_KEY_FILE", missing.to_str().unwrap());
    kedge
        .run(["serve", "--listen", "none"])
        .code(1)
        .stderr_has("cannot read the age key file");
}

/// A SOPS `.env` is read by compose for interpolation: its values would
/// land in the stored rendering, so the deployment is refused by name; a
/// file `sops.files` names must be a SOPS file Kedge can open.
#[test]
fn a_sops_file_compose_interpolates_is_refused_by_name() {
    let sops = Sops::new();
    let kedge = Kedge::new().env("KEDGE_SOPS_AGE_KEY_FILE", sops.key_file.to_str().unwrap());
    let dotenv = sops.encrypt(b"KT_TAG=kt-interpolated-secret\n", "dotenv", &[], &[]);
    let s = Stack::with_kedge(
        "sopsenv",
        &[
            (
                "compose.yaml",
                &crate::support::stack::sleepers(&[("web", IMAGE_1)]),
            ),
            (".env", std::str::from_utf8(&dotenv).unwrap()),
        ],
        kedge,
    );
    let out = s.kedge.run(["sync", "--repo", &s.name]);
    assert_ne!(out.code, Some(0), "{out:?}");
    let said = format!("{}{}", out.stdout, out.stderr);
    assert!(
        said.contains("secret file .env is read by compose for interpolation"),
        "{said}"
    );
    assert!(s.running().is_empty());
    assert!(!said.contains("kt-interpolated-secret"));

    // Without the `.env`: `sops.files` names a plain file, then a SOPS
    // file for another key, then one Kedge opens.
    s.remote.remove(".env");
    s.remote.write("extra.env", "PLAIN=1\n");
    s.remote.write(
        "kedge.yaml",
        &format!(
            "sops:\n  files: [extra.env]\n{}",
            crate::support::QUICK_GATE
        ),
    );
    s.remote.commit("extra.env is listed");
    s.kedge
        .run(["sync", "--repo", &s.name])
        .code(1)
        .stderr_has("extra.env is listed in sops.files but is not a SOPS file");
    let other = Sops::new();
    let foreign = other.encrypt(b"EXTRA=kt-extra-secret\n", "dotenv", &[], &[]);
    s.remote
        .write("extra.env", std::str::from_utf8(&foreign).unwrap());
    s.remote.commit("extra.env for another key");
    s.kedge
        .run(["sync", "--repo", &s.name])
        .code(1)
        .stderr_has("secret file extra.env: it is encrypted for none of Kedge's age keys")
        .stderr_has(&other.recipient);
    let mine = sops.encrypt(b"EXTRA=kt-extra-secret\n", "dotenv", &[], &[]);
    s.remote
        .write("extra.env", std::str::from_utf8(&mine).unwrap());
    s.remote.commit("extra.env for Kedge");
    s.kedge.run(["sync", "--repo", &s.name]).success();
    assert_eq!(s.running().len(), 1);
}
