//! Remotes over the network: a real smart-HTTP git server with basic auth,
//! and one that accepts connections and never answers.

use std::time::{Duration, Instant};

use crate::support::docker::IMAGE_1;
use crate::support::hanging::HangingRemote;
use crate::support::http_git::HttpGit;
use crate::support::*;

/// A remote holding one sleeper service, and an HTTP server for it.
fn served(prefix: &str) -> (String, GitRemote, HttpGit) {
    let name = unique_name(prefix);
    let remote = GitRemote::new(&name);
    remote.write("compose.yaml", &sleepers(&[("web", IMAGE_1)]));
    remote.write("kedge.yaml", QUICK_GATE);
    remote.commit("first");
    let password = format!("pw-{}", unique_name("secret"));
    let root = remote.bare.parent().unwrap();
    let server = HttpGit::start(root, "bot", &password);
    (name, remote, server)
}

/// Regression: `ls-remote` carried the URL's credentials but `clone` did
/// not, so a private repository over http(s) could never be cloned.
#[test]
fn credentials_in_an_http_url_never_work() {
    let (name, remote, server) = served("cred");
    let project = ComposeProject::named(&name);
    let k = Kedge::new();
    k.run(["repo", "add", &server.url_with_credentials(&name)])
        .success();

    let first = remote.remote_head();
    k.run(["sync", "--repo", &name]).success();
    let running = project.running();
    assert_eq!(running.len(), 1, "{running:?}");
    assert_eq!(running[0].label("io.kedge.commit"), Some(first.as_str()));

    // A new commit comes in through fetch, with the same credentials.
    remote.write("README.md", "two\n");
    let second = remote.commit("second");
    k.run(["sync", "--repo", &name])
        .success()
        .stdout_has(&second[..7]);
    let status = k.run(["status", "--repo", &name, "-o", "json"]).json();
    assert_eq!(status[0]["deployed_commit"], second.as_str());

    // The secret went nowhere git's arguments or the clone's config show.
    let config =
        std::fs::read_to_string(k.data_dir().join("repos").join(&name).join(".git/config"))
            .unwrap();
    assert!(!config.contains(&server.password), "{config}");
    // Nor the database: the credentials went to the credential store.
    let rows = k.db_snapshot().join("\n");
    assert!(!rows.contains(&server.password), "{rows}");
    k.run(["repo", "list"])
        .success()
        .stdout_has(&server.url(&name));
}

/// Regression: a failed clone or fetch was retried forever while `status`
/// said `Last error: -`.
#[test]
fn clone_errors_reach_status() {
    let (name, remote, server) = served("clonerr");
    // The branch head's tree object is lost: ls-remote reads only the refs
    // and succeeds, the clone cannot send the objects and fails.
    let tree = crate::support::git::git(&remote.bare, &["rev-parse", "HEAD^{tree}"]);
    std::fs::remove_file(
        remote
            .bare
            .join("objects")
            .join(&tree[..2])
            .join(&tree[2..]),
    )
    .unwrap();
    let _project = ComposeProject::named(&name);
    let k = Kedge::new();
    k.run(["repo", "add", &server.url_with_credentials(&name)])
        .success();
    let _serve = k.serve("300ms");
    let error = wait_for(30, "the clone error in status", || {
        let status = k.run(["status", "--repo", &name, "-o", "json"]).json();
        status[0]["last_error"].as_str().map(String::from)
    });
    assert!(error.contains("cannot clone"), "{error}");
    assert!(!error.contains(&server.password), "{error}");
    k.run(["status", "--repo", &name])
        .success()
        .stdout_has("Last error:  cannot clone");
}

/// Runs a command with its own, short, git timeout; returns what it printed
/// and how long it took.
fn timed(k: &Kedge, args: &[&str]) -> (std::process::Output, Duration) {
    let started = Instant::now();
    let out = k
        .command(args)
        .env("KEDGE_GIT_TIMEOUT", "1s")
        .output()
        .expect("run kedge");
    (out, started.elapsed())
}

/// Regression: against a remote that accepts and never answers, serve held
/// the repository's lock through its 60 s `ls-remote` (so `repo remove`
/// and `diff` waited on it), SIGTERM waited for it too, and the timeout
/// killed `git` but orphaned its `git-remote-http` helpers.
#[test]
fn a_hanging_remote_leaks_processes_and_blocks_everything_behind_the_lock() {
    let remote = HangingRemote::start();
    let (kept, removed) = (unique_name("hang"), unique_name("hang"));
    // serve's own remote checks hang for 10 minutes, far beyond every
    // ceiling below: what waited on them could not pass.
    let k = Kedge::new().env("KEDGE_GIT_TIMEOUT", "10m");
    for name in [&kept, &removed] {
        k.run(["repo", "add", &remote.url(name)]).success();
    }
    let mut serve = k.serve("300ms");
    wait_for(30, "serve asking both remotes", || {
        (remote.requests_for(&kept) > 0 && remote.requests_for(&removed) > 0).then_some(())
    });

    let (diff, took) = timed(&k, &["diff", "--repo", &kept]);
    let stderr = String::from_utf8_lossy(&diff.stderr);
    assert!(diff.status.success(), "{stderr}");
    assert!(!stderr.contains("waiting for another apply"), "{stderr}");
    assert!(stderr.contains("cannot check the remote"), "{stderr}");
    assert!(took < Duration::from_secs(60), "diff took {took:?}");

    let (remove, took) = timed(&k, &["repo", "remove", &removed]);
    let stderr = String::from_utf8_lossy(&remove.stderr);
    assert!(remove.status.success(), "{stderr}");
    assert!(!stderr.contains("waiting for another apply"), "{stderr}");
    assert!(took < Duration::from_secs(60), "repo remove took {took:?}");

    // serve still hangs on `kept`; no apply is in flight.
    assert!(!remote.clients().is_empty(), "serve's ls-remote is running");
    // Exited by itself (`terminate` kills it after 60 s): it did not wait
    // for the check.
    assert_eq!(serve.terminate(), Some(0), "{}", serve.log());

    wait_for(30, "every git process of this remote gone", || {
        remote.clients().is_empty().then_some(())
    });
}

/// Regression: `status` said `synced` while the remote did not answer, and
/// not since when.
#[test]
fn status_says_synced_while_the_remote_is_unreachable() {
    let s = Stack::new(
        "unreach",
        &[("compose.yaml", &sleepers(&[("web", IMAGE_1)]))],
    );
    let _serve = s.kedge.serve("300ms");
    wait_for(60, "the stack deployed and synced", || {
        let st = s.status();
        (st["sync_state"] == "synced").then_some(())
    });

    let away = s.remote.bare.with_extension("away");
    std::fs::rename(&s.remote.bare, &away).unwrap();
    // Times are shown to the second: wait for a failing check in a later
    // second than the last success, so the two can be told apart.
    let st = wait_for(30, "the failing check in status", || {
        let st = s.status();
        (st["remote_failing"] == true && st["last_successful_check"] != st["checked_at"])
            .then_some(st)
    });
    assert_eq!(st["sync_state"], "unknown", "{st:#}");
    let error = st["last_error"].as_str().unwrap_or_default();
    assert!(error.contains("cannot reach remote"), "{st:#}");
    assert!(st["last_successful_check"].is_string(), "{st:#}");
    let text = s.kedge.run(["status", "--repo", &s.name]);
    text.success()
        .stdout_has("Sync state:  unknown")
        .stdout_has("Last error:  cannot reach remote")
        .stdout_has("(last successful check ");

    // The remote back: synced, the error cleared.
    std::fs::rename(&away, &s.remote.bare).unwrap();
    wait_for(30, "synced again", || {
        let st = s.status();
        (st["sync_state"] == "synced" && st["last_error"].is_null()).then_some(())
    });
}

/// Pids of `serve`'s own children whose command line names `remote`.
fn checks_of(serve_pid: u32, remote: &HangingRemote) -> Vec<String> {
    let parent = format!("PPid:\t{serve_pid}\n");
    remote
        .clients()
        .into_iter()
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/status"))
                .is_ok_and(|status| status.contains(&parent))
        })
        .collect()
}

/// Regression: with serve running, every `GET /api/v1/repos/{name}` (and
/// dashboard page, and `kedge status`) of a repository whose remote fails
/// or hangs ran its own `git ls-remote` and waited for it: 150 concurrent
/// GETs were 150 git processes, each held for `git.timeout`. Reads answer
/// from serve's last check; serve's is the one check in flight.
#[test]
fn a_read_token_spawns_a_git_ls_remote_per_request() {
    let remote = HangingRemote::start();
    let name = unique_name("flight");
    let k = Kedge::new();
    k.run(["repo", "add", &remote.url(&name)]).success();
    let read = k.token(&unique_name("reader"), "read");
    // serve's own check hangs for the default 60 s.
    let api = k.serve_api(&["--poll-interval", "300ms"], &[]);
    let serve_pid = api.serve.child.id();
    wait_for(30, "serve asking the remote", || {
        (!checks_of(serve_pid, &remote).is_empty()).then_some(())
    });

    let api = std::sync::Arc::new(api);
    let path = format!("/api/v1/repos/{name}");
    let readers: Vec<_> = (0..40)
        .map(|_| {
            let (api, path, read) = (api.clone(), path.clone(), read.clone());
            std::thread::spawn(move || {
                let started = Instant::now();
                let answer = api.get(&path, &read);
                (answer, started.elapsed())
            })
        })
        .collect();
    let mut most = 0;
    while readers.iter().any(|r| !r.is_finished()) {
        most = most.max(checks_of(serve_pid, &remote).len());
        std::thread::sleep(Duration::from_millis(20));
    }
    for reader in readers {
        let (answer, took) = reader.join().unwrap();
        assert_eq!(answer.status, 200, "{answer:?}");
        assert!(took < Duration::from_secs(30), "a GET took {took:?}");
    }
    assert!(most <= 1, "{most} checks of one remote at once");

    // `kedge status` beside serve answers from serve's check too.
    let started = Instant::now();
    k.run(["status", "--repo", &name]).success();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(30), "status took {took:?}");
    assert!(checks_of(serve_pid, &remote).len() <= 1);
}

/// Regression: `repo add` (CLI and API) accepted git's `<helper>::` URLs:
/// `ext::` runs a command when the host's git config allows it, `fd::0`
/// hangs until the timeout. And git read the system's and the user's git
/// config, so an `insteadOf` there sent Kedge's git to another remote and
/// `protocol.ext.allow` let a stored `ext::` URL run its command.
#[test]
fn remote_helper_urls_are_accepted_and_the_hosts_git_config_is_honoured() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ext-ran");
    let script = dir.path().join("helper.sh");
    std::fs::write(
        &script,
        format!("#!/bin/sh\ntouch {}\nexit 1\n", marker.display()),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let ext = format!("ext::{}", script.display());

    // The real remote, and a URL that names no repository at all: an
    // `insteadOf` in a git config outside Kedge would turn one into the other.
    let real = GitRemote::new(&unique_name("real"));
    real.write("README.md", "x\n");
    real.commit("first");
    let decoy = format!("file://{}/decoy.git", dir.path().display());
    let rewrite = format!(
        "[url \"{}\"]\n\tinsteadOf = {decoy}\n[protocol \"ext\"]\n\tallow = always\n",
        real.url()
    );
    let system = dir.path().join("system-gitconfig");
    std::fs::write(&system, &rewrite).unwrap();

    for (label, k) in [
        ("global", Kedge::new()),
        (
            "system",
            Kedge::new().env("GIT_CONFIG_SYSTEM", system.to_str().unwrap()),
        ),
    ] {
        if label == "global" {
            std::fs::write(k.cwd().join(".gitconfig"), &rewrite).unwrap();
        }
        for url in [ext.as_str(), "fd::0", "testgit::/srv/app.git", "foo::bar"] {
            k.run(["repo", "add", url, "--name", "helper"])
                .code(1)
                .stderr_has("asks git for a remote helper");
        }
        let name = unique_name("decoy");
        k.run(["repo", "add", &decoy, "--name", &name]).success();
        let st = k.run(["status", "--repo", &name, "-o", "json"]).json();
        assert!(st[0]["remote_head"].is_null(), "{label}: {st:#}");
        assert!(
            st[0]["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("cannot reach remote")),
            "{label}: {st:#}"
        );

        // A URL stored by an earlier version is refused by git itself.
        let conn = rusqlite::Connection::open(k.db_path()).unwrap();
        conn.execute(
            "UPDATE repositories SET url = ?1 WHERE name = ?2",
            [ext.as_str(), name.as_str()],
        )
        .unwrap();
        drop(conn);
        k.run(["status", "--repo", &name, "-o", "json"]).success();
        assert!(!marker.exists(), "{label}: the ext:: helper ran");
    }

    // The API refuses them as the CLI does.
    let k = Kedge::new();
    let admin = k.token(&unique_name("admin"), "write");
    let api = k.serve_api(&[], &[]);
    for url in [ext.as_str(), "fd::0"] {
        let body = serde_json::json!({ "url": url, "name": unique_name("helper") }).to_string();
        let answer = api.post("/api/v1/repos", &admin, &body);
        answer.refused(422);
        assert!(answer.body.contains("remote helper"), "{answer:?}");
    }
    assert!(!marker.exists(), "the ext:: helper ran");
}
