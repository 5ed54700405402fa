//! `Kedge::new().run(["repo", "list"]).success().stdout_has("app")`

use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;

/// A Kedge installation of its own: a fresh working directory whose `.kedge`
/// is the default data dir, and a HOME without a global config.
pub struct Kedge {
    dir: TempDir,
    envs: Vec<(String, String)>,
    /// Another build of kedge (the upgrade test's previous release).
    binary: Option<PathBuf>,
}

impl Kedge {
    pub fn new() -> Self {
        Kedge {
            dir: tempfile::tempdir().expect("temp dir"),
            envs: Vec::new(),
            binary: None,
        }
    }

    /// Every later command runs `binary` (None: this build).
    pub fn binary(mut self, binary: Option<PathBuf>) -> Self {
        self.binary = binary;
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.envs.push((key.into(), value.into()));
        self
    }

    /// The working directory every command runs in.
    pub fn cwd(&self) -> &Path {
        self.dir.path()
    }

    /// The default data dir, `.kedge` in the working directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join(".kedge")
    }

    pub fn db_path(&self) -> PathBuf {
        self.data_dir().join("kedge.db")
    }

    /// `kedge ARGS` started in the background, its output discarded; killed
    /// when the guard drops.
    pub fn spawn_quiet<I, S>(&self, args: I) -> super::ChildGuard
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        super::ChildGuard(
            self.command(args)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("start kedge"),
        )
    }

    pub fn command<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut cmd = match &self.binary {
            Some(binary) => Command::new(binary),
            None => Command::new(assert_cmd::cargo::cargo_bin!("kedge")),
        };
        cmd.args(args).current_dir(self.dir.path());
        for (k, _) in std::env::vars() {
            if k.starts_with("KEDGE_") {
                cmd.env_remove(k);
            }
        }
        cmd.env("HOME", self.dir.path()).env("NO_COLOR", "1");
        // Every `serve` listens on a port of its own: tests run in parallel,
        // beside other suites, and the default port is one for all.
        cmd.env("KEDGE_LISTEN", "127.0.0.1:0");
        for (k, v) in &self.envs {
            cmd.env(k, v);
        }
        cmd
    }

    pub fn run<I, S>(&self, args: I) -> Outcome
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut cmd = self.command(args);
        let shown = format!("{cmd:?}");
        let out = cmd.output().expect("run kedge");
        Outcome {
            command: shown,
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Every row of every Kedge table, as text: equal snapshots mean the
    /// database was left exactly as it was.
    pub fn db_snapshot(&self) -> Vec<String> {
        let path = self.db_path();
        if !path.exists() {
            return vec!["<no database>".into()];
        }
        let conn = rusqlite::Connection::open(&path).expect("open db");
        let mut out = Vec::new();
        for table in [
            "repositories",
            "stacks",
            "deployments",
            "stack_state",
            "events",
        ] {
            let mut stmt = conn
                .prepare(&format!("SELECT * FROM {table} ORDER BY 1"))
                .unwrap();
            let columns = stmt.column_count();
            let rows = stmt
                .query_map([], |row| {
                    let mut cells = Vec::new();
                    for i in 0..columns {
                        let v: rusqlite::types::Value = row.get(i)?;
                        cells.push(format!("{v:?}"));
                    }
                    Ok(format!("{table}: {}", cells.join(" | ")))
                })
                .unwrap();
            out.extend(rows.map(Result::unwrap));
        }
        out
    }
}

/// What one run printed, with chainable checks that say what they saw.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub command: String,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    fn context(&self) -> String {
        format!(
            "\ncommand: {}\nexit: {:?}\n--- stdout\n{}--- stderr\n{}",
            self.command, self.code, self.stdout, self.stderr
        )
    }

    #[track_caller]
    pub fn code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code,
            Some(code),
            "unexpected exit code{}",
            self.context()
        );
        self
    }

    #[track_caller]
    pub fn success(&self) -> &Self {
        self.code(0)
    }

    #[track_caller]
    pub fn stdout_has(&self, needle: &str) -> &Self {
        assert!(
            self.stdout.contains(needle),
            "stdout lacks {needle:?}{}",
            self.context()
        );
        self
    }

    #[track_caller]
    pub fn stderr_has(&self, needle: &str) -> &Self {
        assert!(
            self.stderr.contains(needle),
            "stderr lacks {needle:?}{}",
            self.context()
        );
        self
    }

    #[track_caller]
    pub fn stdout_is(&self, want: &str) -> &Self {
        assert_eq!(self.stdout, want, "stdout differs{}", self.context());
        self
    }

    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not one JSON document: {e}{}", self.context()))
    }
}

/// `kedge serve` running in the background; stopped (SIGTERM, then KILL)
/// when dropped.
pub struct Serve {
    pub child: std::process::Child,
    log: PathBuf,
}

impl Kedge {
    pub fn serve(&self, poll: &str) -> Serve {
        self.serve_with(&["serve", "--poll-interval", poll])
    }

    pub fn serve_with(&self, args: &[&str]) -> Serve {
        self.spawn_serve(args, &[])
    }

    /// `kedge serve` logging at debug level, as JSON: what a test reads
    /// (`Serve::records`, `Serve::wait_passes`) to know serve has looked
    /// before it asserts that something did not happen.
    pub fn serve_debug(&self, args: &[&str]) -> Serve {
        self.spawn_serve(
            args,
            &[("KEDGE_LOG", "debug"), ("KEDGE_LOG_FORMAT", "json")],
        )
    }

    pub fn spawn_serve(&self, args: &[&str], envs: &[(&str, &str)]) -> Serve {
        self.spawn_serve_with(args, envs, None)
    }

    /// As `spawn_serve`, with at most `nofile` open descriptors (soft and
    /// hard `RLIMIT_NOFILE`): a few hundred connections reach the limit.
    pub fn spawn_serve_nofile(&self, args: &[&str], envs: &[(&str, &str)], nofile: u64) -> Serve {
        self.spawn_serve_with(args, envs, Some(nofile))
    }

    fn spawn_serve_with(&self, args: &[&str], envs: &[(&str, &str)], nofile: Option<u64>) -> Serve {
        let log = self.cwd().join(format!("serve-{}.log", std::process::id()));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let mut cmd = self.command(args);
        cmd.envs(envs.iter().copied())
            .stdout(file.try_clone().unwrap())
            .stderr(file);
        if let Some(n) = nofile {
            use std::os::unix::process::CommandExt as _;
            let limit = libc::rlimit {
                rlim_cur: n,
                rlim_max: n,
            };
            // SAFETY: setrlimit is async-signal-safe; nothing is allocated
            // between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let child = cmd.spawn().expect("start kedge serve");
        Serve { child, log }
    }
}

impl Serve {
    /// `serve`'s resident memory now, in KiB (`VmRSS`).
    pub fn rss_kib(&self) -> u64 {
        rss_kib(self.child.id())
    }

    pub fn log(&self) -> String {
        // Lossy: a read may catch a line half written.
        std::fs::read(&self.log)
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default()
    }

    /// The complete lines of the log so far (not one still being written).
    fn lines(&self) -> Vec<String> {
        let log = self.log();
        let complete = log.rfind('\n').map_or("", |end| &log[..end]);
        complete.lines().map(String::from).collect()
    }

    /// Where the log is now: `records_since(mark)` are the records logged
    /// after this call.
    pub fn mark(&self) -> usize {
        self.lines().len()
    }

    /// The JSON records (`serve_debug`) logged after `mark`, each with its
    /// own mark (the mark just after it). Lines that are not JSON are left out.
    pub fn records_since(&self, mark: usize) -> Vec<(usize, serde_json::Value)> {
        self.lines()
            .iter()
            .enumerate()
            .skip(mark)
            .filter_map(|(i, line)| Some((i + 1, serde_json::from_str(line).ok()?)))
            .collect()
    }

    /// The first record after `mark` that `matches`, with its own mark.
    pub fn find_since(
        &self,
        mark: usize,
        matches: impl Fn(&serde_json::Value) -> bool,
    ) -> Option<(usize, serde_json::Value)> {
        self.records_since(mark)
            .into_iter()
            .find(|(_, r)| matches(r))
    }

    /// Waits until `repo`'s task has finished `n` passes after `mark`
    /// (`serve_debug`: a pass that ends logs "pass done"); returns the mark
    /// after the n-th. Each pass looked at the remote when its check was
    /// due and at the containers: the proof that serve had its chance to act.
    #[track_caller]
    pub fn wait_passes(&self, repo: &str, mark: usize, n: usize, secs: u64) -> usize {
        wait_for(secs, &format!("{n} passes of {repo}"), || {
            self.records_since(mark)
                .into_iter()
                .filter(|(_, r)| r["message"] == "pass done" && r["repo"] == repo)
                .nth(n - 1)
                .map(|(at, _)| at)
        })
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, without waiting.
    pub fn sigterm(&self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
    }

    /// SIGTERM and wait for a graceful exit; returns the exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        self.sigterm();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        self.kill9();
        None
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.terminate();
        }
        if std::thread::panicking() {
            eprintln!("--- kedge serve log\n{}", self.log());
        }
    }
}

/// A process's resident memory now, in KiB (`VmRSS`; 0 once it is gone).
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Polls `check` until it returns Some, or panics after `secs` with `what`.
#[track_caller]
pub fn wait_for<T>(secs: u64, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if let Some(v) = check() {
            return v;
        }
        if std::time::Instant::now() > deadline {
            panic!("timed out after {secs}s waiting for {what}");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}
