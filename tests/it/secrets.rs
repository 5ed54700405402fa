//! Secrets never leak: while `serve` talks to private remotes, every child
//! process's argv and environment is sampled from /proc; afterwards the
//! logs (debug level), CLI and API answers and the database are searched.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;

use crate::support::api::Api;
use crate::support::docker::{IMAGE_1, IMAGE_2};
use crate::support::http_git::HttpGit;
use crate::support::net::descends_from;
use crate::support::ssh_git::SshGit;
use crate::support::*;

/// What a sampler saw of serve's descendants.
#[derive(Default)]
struct Sample {
    /// Processes seen (pid, program).
    seen: HashSet<(u32, String)>,
    /// git processes carrying the token header in `GIT_CONFIG_VALUE_*`.
    git_with_header: Arc<AtomicUsize>,
    /// ssh processes run with the deploy key.
    ssh_with_key: Arc<AtomicUsize>,
    leaks: Vec<String>,
}

/// One pass over /proc: `secrets` may appear in no argv, and in an
/// environment only as the value of a `GIT_CONFIG_VALUE_*` variable when
/// `allowed_in_git_config` says so.
fn sample(serve: u32, secrets: &[(&str, &str, bool)], out: &mut Sample) {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if !descends_from(pid, serve) {
            continue;
        }
        let (Ok(cmdline), Ok(environ)) = (
            std::fs::read(format!("/proc/{pid}/cmdline")),
            std::fs::read(format!("/proc/{pid}/environ")),
        ) else {
            continue;
        };
        let argv: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let program = argv.first().cloned().unwrap_or_default();
        // Forked and not yet exec'd: still Kedge itself, with its own
        // environment.
        if program.ends_with("/kedge") {
            continue;
        }
        let new = out.seen.insert((pid, program.clone()));
        for (label, secret, _) in secrets {
            if argv.iter().any(|a| a.contains(secret)) {
                out.leaks
                    .push(format!("{label} in the argv of {pid}: {argv:?}"));
            }
        }
        for var in environ.split(|b| *b == 0) {
            let var = String::from_utf8_lossy(var);
            let (key, value) = var.split_once('=').unwrap_or((&var, ""));
            for (label, secret, allowed) in secrets {
                if value.contains(secret) {
                    if *allowed && key.starts_with("GIT_CONFIG_VALUE_") {
                        if new && (program.ends_with("git") || program.contains("git-remote")) {
                            out.git_with_header.fetch_add(1, Ordering::Relaxed);
                        }
                    } else {
                        out.leaks
                            .push(format!("{label} in {key} of {pid} ({program})"));
                    }
                }
            }
        }
        if new && program == "ssh" && argv.iter().any(|a| a.contains("deploy_key")) {
            out.ssh_with_key.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The lines of a PEM private key between its armour: its content.
fn key_body(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("-----") && l.len() > 16)
        .map(String::from)
        .collect()
}

fn assert_clean(what: &str, text: &str, secrets: &[(&str, &str, bool)]) {
    for (label, secret, _) in secrets {
        assert!(!text.contains(secret), "{label} appears in {what}");
    }
}

#[test]
fn secrets_appear_in_no_argv_environment_log_output_or_database() {
    let https_name = unique_name("k13leakh");
    let ssh_name = unique_name("k13leaks");
    let file_name = unique_name("k13leakf");
    let https = GitRemote::new(&https_name);
    https.write("compose.yaml", &sleepers(&[("web", IMAGE_1)]));
    https.write("kedge.yaml", QUICK_GATE);
    https.commit("first");
    crate::support::git::git(&https.work, &["push", "-q", "origin", "main:other"]);
    let ssh = GitRemote::new(&ssh_name);
    ssh.write("compose.yaml", &sleepers(&[("web", IMAGE_1)]));
    ssh.write("kedge.yaml", QUICK_GATE);
    ssh.commit("first");

    let token = format!("tok-{}", unique_name("leak"));
    let http_server = HttpGit::start(https.bare.parent().unwrap(), "bot", &token);
    let ssh_server = SshGit::start(ssh.bare.parent().unwrap());
    let header = base64::engine::general_purpose::STANDARD.encode(format!("bot:{token}"));
    let body = key_body(&ssh_server.key);
    let mut secrets: Vec<(&str, &str, bool)> = vec![
        ("the token", &token, false),
        ("the token's header", &header, true),
    ];
    secrets.extend(body.iter().map(|l| ("the deploy key", l.as_str(), false)));

    let _projects = [
        ComposeProject::named(&https_name),
        ComposeProject::named(&ssh_name),
        ComposeProject::named(&file_name),
    ];
    let k = Kedge::new();
    let admin = k.token("admin", "write");
    k.run([
        "repo",
        "add",
        &http_server.url(&https_name),
        "--token-env",
        "KEDGE_TEST_LEAK_TOKEN",
        "--username",
        "bot",
    ])
    .success();
    k.run([
        "repo",
        "add",
        &ssh_server.url(&ssh_name),
        "--ssh-key",
        ssh_server.key.to_str().unwrap(),
    ])
    .success();
    let token_file = k.cwd().join("token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    std::fs::set_permissions(
        &token_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();

    // The API names the credential; the operator's config says where it is.
    std::fs::create_dir_all(k.cwd().join(".config/kedge")).unwrap();
    std::fs::write(
        k.cwd().join(".config/kedge/config.yaml"),
        format!(
            "credentials:\n  - name: leakfile\n    token_file: {}\n    username: bot\n",
            token_file.display()
        ),
    )
    .unwrap();
    let api = k.serve_api(
        &["--poll-interval", "100ms"],
        &[("KEDGE_LOG", "debug"), ("KEDGE_TEST_LEAK_TOKEN", &token)],
    );
    // The third repository through the API, with a credential of the config.
    let added = api.post(
        "/api/v1/repos",
        &admin,
        &serde_json::json!({
            "url": http_server.url(&https_name),
            "branch": "other",
            "name": file_name,
            "credential": "leakfile",
        })
        .to_string(),
    );
    assert_eq!(added.status, 201, "{}", added.body);
    assert_eq!(added.json()["auth"], "token");

    let serve_pid = api.serve.child.id();
    let stop = Arc::new(AtomicBool::new(false));
    let (git_seen, ssh_seen) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let sampler = {
        let stop = stop.clone();
        let mut out = Sample {
            git_with_header: git_seen.clone(),
            ssh_with_key: ssh_seen.clone(),
            ..Sample::default()
        };
        let secrets: Vec<(String, String, bool)> = secrets
            .iter()
            .map(|(l, s, a)| (l.to_string(), s.to_string(), *a))
            .collect();
        std::thread::spawn(move || {
            let secrets: Vec<(&str, &str, bool)> = secrets
                .iter()
                .map(|(l, s, a)| (l.as_str(), s.as_str(), *a))
                .collect();
            let deadline = Instant::now() + Duration::from_secs(90);
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                sample(serve_pid, &secrets, &mut out);
            }
            out
        })
    };

    // Pushes to every repository, each deployed: clones, fetches and a
    // stream of remote checks.
    for (name, remote, branch) in [(&https_name, &https, "main"), (&ssh_name, &ssh, "main")] {
        let first = remote.remote_head();
        wait_for(60, &format!("{name} deployed"), || {
            let status = k.run(["status", "--repo", name, "-o", "json"]).json();
            (status[0]["deployed_commit"] == first.as_str()).then_some(())
        });
        remote.write("compose.yaml", &sleepers(&[("web", IMAGE_2)]));
        let second = remote.commit("second");
        if name == &https_name {
            crate::support::git::git(&remote.work, &["push", "-q", "-f", "origin", "main:other"]);
        }
        wait_for(60, &format!("{name} deployed {branch} again"), || {
            let status = k.run(["status", "--repo", name, "-o", "json"]).json();
            (status[0]["deployed_commit"] == second.as_str()).then_some(())
        });
    }
    let file_head = https.remote_head();
    wait_for(60, "the API's repository deployed", || {
        let status = k.run(["status", "--repo", &file_name, "-o", "json"]).json();
        (status[0]["deployed_commit"] == file_head.as_str()).then_some(())
    });
    // The sampler goes on until it has caught git with the header and ssh
    // with the key a few times each: proof that it sees what it checks.
    wait_for(60, "the sampler to catch git and ssh at work", || {
        (git_seen.load(Ordering::Relaxed) >= 3 && ssh_seen.load(Ordering::Relaxed) >= 3)
            .then_some(())
    });
    stop.store(true, Ordering::Relaxed);
    let seen = sampler.join().unwrap();
    assert!(seen.leaks.is_empty(), "{:#?}", seen.leaks);
    assert!(seen.seen.len() >= 6, "{:?}", seen.seen);

    // Every answer Kedge gives about these repositories.
    for args in [
        vec!["repo", "list"],
        vec!["repo", "list", "-o", "json"],
        vec!["status"],
        vec!["status", "-o", "json"],
        vec!["history", "--repo", &https_name],
        vec!["events", "-o", "json"],
    ] {
        let out = k.run(&args);
        assert_clean(
            &format!("kedge {args:?}"),
            &format!("{}{}", out.stdout, out.stderr),
            &secrets,
        );
    }
    for path in [
        "/api/v1/repos".to_string(),
        format!("/api/v1/repos/{file_name}"),
        format!("/api/v1/repos/{https_name}/history"),
        "/api/v1/events".to_string(),
    ] {
        let answer = api.get(&path, &admin);
        assert_clean(&format!("GET {path}"), &answer.body, &secrets);
    }
    // The database while serve runs (the WAL holds the recent writes),
    // then after it stopped.
    let db = k.db_path();
    let read_db = || {
        let mut bytes = std::fs::read(&db).unwrap();
        bytes.extend(std::fs::read(db.with_extension("db-wal")).unwrap_or_default());
        String::from_utf8_lossy(&bytes).into_owned()
    };
    assert_clean("kedge.db and its WAL", &read_db(), &secrets);
    let Api { mut serve, .. } = api;
    serve.terminate();
    assert_clean("kedge.db after serve", &read_db(), &secrets);
    let log = serve.log();
    assert!(log.contains("DEBUG"), "serve did not log at debug level");
    assert_clean("serve's log at debug level", &log, &secrets);
    assert_clean(
        "the clones' git config",
        &std::fs::read_to_string(
            k.data_dir()
                .join("repos")
                .join(&file_name)
                .join(".git/config"),
        )
        .unwrap(),
        &secrets,
    );
}
