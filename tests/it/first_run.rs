//! The first run as a new user meets it: `serve` with nothing to do says how
//! to add a repository, and `scripts/serve.sh` on an empty data dir
//! registers the bundled example, deploys it and deploys a commit to it; on
//! a taken port it registers nothing and says how to choose another.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::rc::Rc;
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
    dir: Rc<tempfile::TempDir>,
    child: ChildGuard,
    log: std::path::PathBuf,
}

impl FirstRun {
    fn start(name: &str, port: u16, args: &[&str]) -> FirstRun {
        FirstRun::start_in(Rc::new(tempfile::tempdir().unwrap()), name, port, args)
    }

    /// A run on the data dir (and HOME) of `dir`, which earlier runs may have used.
    fn start_in(dir: Rc<tempfile::TempDir>, name: &str, port: u16, args: &[&str]) -> FirstRun {
        let runs = std::fs::read_dir(dir.path()).unwrap().count();
        let log = dir.path().join(format!("serve-{runs}.log"));
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

    fn data_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("data")
    }

    /// Its log once `kedge serve` listens: whatever the script printed
    /// before it handed over is there.
    fn log_when_serving(&self) -> String {
        wait_for(60, "kedge serve listening", || {
            let log = self.log();
            log.contains("listening on ").then_some(log)
        })
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
        // A run that ended already is reaped: its pid may be another's now.
        if let Ok(None) = self.child.0.try_wait() {
            let pid = self.child.0.id().to_string();
            let _ = Command::new("kill").args(["-TERM", &pid]).status();
            let _ = self.child.wait_exit(60);
        }
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

/// The lines of the walkthrough in `log`, from its first line to its last.
fn walkthrough(log: &str) -> Option<String> {
    let start = log.find("kedge: ")?;
    let end =
        start + log[start..].find("(only web is recreated).")? + "(only web is recreated).".len();
    Some(log[start..end].to_string())
}

/// The README's sample of what `serve.sh` prints on the first run.
fn readme_walkthrough() -> String {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let at = readme
        .find("and `serve.sh` prints what to")
        .expect("the Quick start section");
    let block = &readme[at..];
    let start = block.find("```text\n").unwrap() + "```text\n".len();
    let end = start + block[start..].find("\n```").unwrap();
    block[start..end].to_string()
}

/// Regression: with the listen port taken, `serve.sh` registered the example,
/// printed its walkthrough, then died with "Address already in use"; the
/// rerun on another port printed no walkthrough at all.
#[test]
fn serve_sh_on_a_taken_port_registers_nothing_and_every_rerun_shows_the_walkthrough() {
    let name = unique_name("k24-taken");
    let _project = ComposeProject::named(&name);
    let hello_port = free_port();
    let dir = Rc::new(tempfile::tempdir().unwrap());
    let held = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let taken = held.local_addr().unwrap().to_string();
    let port = held.local_addr().unwrap().port();

    // Refused at once, saying which port and how to choose another.
    let mut refused = FirstRun::start_in(
        dir.clone(),
        &name,
        hello_port,
        &["--listen", taken.as_str()],
    );
    let status = refused.child.wait_exit(30);
    let log = refused.log();
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(
        log.contains(&format!(
            "kedge: cannot listen on {taken}: port {port} is taken"
        )),
        "{log}"
    );
    assert!(
        log.contains(&format!("--listen 127.0.0.1:{}", port + 1)),
        "{log}"
    );
    assert!(log.contains("KEDGE_LISTEN="), "{log}");
    assert!(walkthrough(&log).is_none(), "{log}");
    // Nothing registered, made or started: not even the data dir exists.
    assert!(!refused.data_dir().exists(), "{log}");
    drop(refused);
    drop(held);

    // The rerun on a free port (KEDGE_LISTEN=127.0.0.1:0): the walkthrough of
    // a first run, as the README shows it.
    let run = FirstRun::start_in(dir.clone(), &name, hello_port, &[]);
    let log = run.log_when_serving();
    let first = walkthrough(&log).unwrap_or_else(|| panic!("no walkthrough in\n{log}"));
    assert!(
        first.starts_with(&format!(
            "kedge: no repository was registered, so the example stack '{name}' is:"
        )),
        "{first}"
    );
    // The README's sample is this output with the defaults: the binary
    // built in the checkout, the default data dir, names and ports.
    let bin = assert_cmd::cargo::cargo_bin!("kedge").display().to_string();
    let data = run.data_dir().display().to_string();
    let as_documented = first
        .replace(&format!("{bin} --data-dir {data}"), "target/release/kedge")
        .replace(
            &format!("{data}/example/hello"),
            "/srv/kedge/.kedge/example/hello",
        )
        .replace(&repo_root().display().to_string(), "/srv/kedge")
        .replace(&format!("'{name}'"), "'hello'")
        .replace(&format!("127.0.0.1:{hello_port}/"), "127.0.0.1:8080/")
        .replace("127.0.0.1:0/", "127.0.0.1:9470/");
    // The comments are lined up after the longest command: its length
    // differs with the ports.
    let unpadded = |text: &str| -> String {
        text.lines()
            .map(|l| match l.split_once("  # ") {
                Some((command, comment)) => format!("{} # {comment}", command.trim_end()),
                None => l.to_string(),
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(unpadded(&as_documented), unpadded(&readme_walkthrough()));
    drop(run);

    // Stopped and started again: the example is still the only repository,
    // so the walkthrough is printed again, said so.
    let again = FirstRun::start_in(dir.clone(), &name, hello_port, &[]);
    let log = again.log_when_serving();
    let second = walkthrough(&log).unwrap_or_else(|| panic!("no walkthrough in\n{log}"));
    let (head, rest) = second.split_once('\n').unwrap();
    assert_eq!(
        head,
        format!("kedge: the example stack '{name}' is the only repository registered:")
    );
    assert_eq!(Some(rest), first.split_once('\n').map(|(_, rest)| rest));
    assert_eq!(
        again.kedge(&["repo", "list"]).as_array().map(Vec::len),
        Some(1)
    );
    drop(again);

    // With a repository of the operator's own beside it: no walkthrough.
    let other = unique_name("k24-own");
    let cwd = dir.path().display().to_string();
    let added = Command::new(assert_cmd::cargo::cargo_bin!("kedge"))
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["repo", "add", &format!("{cwd}/nowhere"), "--name", &other])
        .env("HOME", dir.path())
        .output()
        .unwrap();
    assert!(added.status.success(), "{added:?}");
    let mixed = FirstRun::start_in(dir.clone(), &name, hello_port, &[]);
    let log = mixed.log_when_serving();
    assert!(walkthrough(&log).is_none(), "{log}");
}

/// `kedge serve` itself on a taken port (started by hand, or taken after
/// `serve.sh` checked): which port, and how to choose another.
#[test]
fn serve_on_a_taken_port_says_which_and_how_to_choose_another() {
    let held = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let addr = held.local_addr().unwrap();
    let k = Kedge::new();
    let mut serve = ChildGuard(
        k.command(["serve", "--listen", &addr.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let status = serve.wait_exit(30);
    let mut stderr = String::new();
    serve
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "error: cannot listen on {addr}: port {} is taken",
            addr.port()
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("--listen 127.0.0.1:{}", addr.port() + 1)),
        "{stderr}"
    );
    assert!(stderr.contains("KEDGE_LISTEN"), "{stderr}");
}
