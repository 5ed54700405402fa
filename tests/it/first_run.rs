//! The first run as a new user meets it: `serve` with nothing to do says how
//! to add a repository, and `scripts/serve.sh` on an empty data dir
//! registers the bundled example, deploys it and deploys a commit to it.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::net::free_port;
use crate::support::*;

/// A GET on loopback; None while nothing answers.
pub fn try_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((status, body))
}

#[test]
fn serve_without_repositories_says_how_to_add_one() {
    let k = Kedge::new();
    let serve = k.serve("1s");
    let line = wait_for(20, "the hint", || {
        serve
            .log()
            .lines()
            .find(|l| l.contains("no repository registered yet"))
            .map(String::from)
    });
    assert!(line.contains("add one with `kedge repo add URL`"), "{line}");
}

fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `scripts/serve.sh` as a new user runs it, on a data dir of its own; the
/// machine is provisioned and the binary built already (the suite did both).
struct FirstRun {
    dir: tempfile::TempDir,
    child: ChildGuard,
    log: std::path::PathBuf,
}

impl FirstRun {
    fn start(name: &str, port: u16, args: &[&str]) -> FirstRun {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("serve.log");
        let file = std::fs::File::create(&log).unwrap();
        let mut cmd = Command::new("bash");
        cmd.arg(repo_root().join("scripts/serve.sh"))
            .args(args)
            .current_dir(dir.path());
        for (k, _) in std::env::vars() {
            if k.starts_with("KEDGE_") {
                cmd.env_remove(k);
            }
        }
        cmd.env("HOME", dir.path())
            .env("KEDGE_SKIP_PROVISION", "1")
            .env("KEDGE_BIN", assert_cmd::cargo::cargo_bin!("kedge"))
            .env("KEDGE_DATA_DIR", dir.path().join("data"))
            .env("KEDGE_EXAMPLE_NAME", name)
            .env("KEDGE_LISTEN", "127.0.0.1:0")
            .env("HELLO_PORT", port.to_string())
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file);
        let child = ChildGuard(cmd.spawn().expect("start scripts/serve.sh"));
        FirstRun { dir, child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn kedge(&self, args: &[&str]) -> serde_json::Value {
        let out = Command::new(assert_cmd::cargo::cargo_bin!("kedge"))
            .arg("--data-dir")
            .arg(self.dir.path().join("data"))
            .args(args)
            .args(["-o", "json"])
            .env("HOME", self.dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

impl Drop for FirstRun {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- scripts/serve.sh\n{}", self.log());
        }
        // serve.sh execs kedge serve: SIGTERM lets it stop as an operator's ^C would.
        let pid = self.child.0.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let _ = self.child.wait_exit(60);
    }
}

#[test]
fn serve_sh_deploys_the_example_and_then_a_commit_to_it() {
    let name = unique_name("k18-hello");
    let project = ComposeProject::named(&name);
    let port = free_port();
    let run = FirstRun::start(&name, port, &["--poll-interval", "2s"]);

    // What it printed: where the repository is, how to watch and change it.
    let log = wait_for(30, "the first-run instructions", || {
        let log = run.log();
        log.contains("Kedge checks the repository every")
            .then_some(log)
    });
    assert!(
        log.contains(&format!("the example stack '{name}'")),
        "{log}"
    );
    assert!(log.contains("events --follow"), "{log}");
    assert!(log.contains(" status"), "{log}");
    assert!(log.contains("every 2s"), "{log}");
    let change = log
        .lines()
        .find(|l| l.trim_start().starts_with("cd ") && l.contains("git commit"))
        .unwrap_or_else(|| panic!("no change command in\n{log}"))
        .trim()
        .to_string();

    // Up without any other command: both services, the page, status synced.
    let first = wait_for(90, "the example's page", || {
        try_get(port, "/").filter(|(s, b)| *s == 200 && b.contains("Hello from Kedge"))
    });
    assert_eq!(first.0, 200);
    let status = wait_for(30, "status synced", || {
        let s = run.kedge(&["status", "--repo", &name]);
        let s = s.as_array()?.first()?.clone();
        (s["sync_state"] == "synced").then_some(s)
    });
    let services: Vec<_> = status["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["service"].as_str().unwrap().to_string(),
                s["state"].clone(),
            )
        })
        .collect();
    assert_eq!(services.len(), 2, "{status}");
    assert!(
        services.iter().all(|(_, state)| state == "running"),
        "{status}"
    );
    let worker = |p: &ComposeProject| {
        p.running()
            .into_iter()
            .find(|c| c.service() == "worker")
            .map(|c| c.id)
    };
    let worker_before = worker(&project).expect("the worker runs");

    // The one-line change it printed, as the user would type it.
    let out = Command::new("sh")
        .args(["-c", &change])
        .env("HOME", run.dir.path())
        .env("GIT_AUTHOR_NAME", "New User")
        .env("GIT_AUTHOR_EMAIL", "user@kedge.invalid")
        .env("GIT_COMMITTER_NAME", "New User")
        .env("GIT_COMMITTER_EMAIL", "user@kedge.invalid")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{change}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let example = change
        .strip_prefix("cd ")
        .and_then(|r| r.split(" && ").next())
        .unwrap();
    let head = crate::support::git::git(Path::new(example), &["rev-parse", "HEAD"]);

    // Detected within the poll interval (2 s) and then deployed through the
    // health gate (a healthcheck every 2 s); the ceiling is generous.
    wait_for(60, "the commit deployed", || {
        let history = run.kedge(&["history", "--repo", &name]);
        let newest = history.as_array()?.first()?.clone();
        (newest["commit"] == head.as_str() && newest["status"] == "success").then_some(())
    });
    let page = try_get(port, "/").expect("the page");
    assert!(page.1.contains("Hello again"), "{page:?}");
    // Only web changed: the worker kept running.
    assert_eq!(worker(&project).as_deref(), Some(worker_before.as_str()));
}
