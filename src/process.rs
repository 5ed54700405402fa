//! The one place Kedge starts child processes (`git`, `docker compose`):
//! argv only (never a shell string), a timeout, and stderr carried into the
//! error: at most its last [`MAX_STDERR`] bytes, so no child can fill a
//! record, an event, a notification or an answer; stdout is refused past
//! a limit ([`DEFAULT_MAX_STDOUT`] unless the caller sets one). Each child leads its own process group, and the whole group is
//! killed on timeout, when the run is dropped and when Kedge aborts: a
//! `git` killed alone would orphan its `git-remote-http` helpers. Secrets go
//! in the environment, never argv.

use std::collections::BTreeSet;
use std::ffi::{OsStr, OsString};
use std::os::fd::RawFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How much of a child's stderr is kept: the end, where compose and git
/// print the cause.
pub const MAX_STDERR: u64 = 64 * 1024;

/// How much a child may write to stdout before its run fails: far past
/// what any command Kedge runs answers (a `git ls-tree` of a very large
/// repository), short of what would exhaust memory.
pub const DEFAULT_MAX_STDOUT: u64 = 64 << 20;

static SPAWNED: AtomicU64 = AtomicU64::new(0);

/// How many child processes this process has started: the no-op reconcile
/// is measured by this staying put.
pub fn spawned() -> u64 {
    SPAWNED.load(Ordering::Relaxed)
}

/// Process groups of the children running now.
static GROUPS: Mutex<BTreeSet<i32>> = Mutex::new(BTreeSet::new());

/// Kills every running child's process group: for an abort that exits
/// without unwinding, so no destructor would.
pub fn kill_all() {
    let groups = GROUPS.lock().unwrap_or_else(|p| p.into_inner());
    for pgid in groups.iter() {
        kill_group(*pgid);
    }
}

fn kill_group(pgid: i32) {
    // SAFETY: kill(2) with a negative pid signals a process group; no memory is touched.
    unsafe {
        libc::kill(-pgid, libc::SIGKILL);
    }
}

/// A child and its process group. Fields drop in order: the group is
/// killed before the child is dropped and reaped, so its id is still ours.
struct Running {
    group: Group,
    child: tokio::process::Child,
}

/// A child's process group, killed when dropped unless the child was
/// waited for.
struct Group {
    pgid: Option<i32>,
    armed: bool,
}

impl Group {
    /// The child leads its group: the group id is its pid (none once it exited).
    fn new(pid: Option<u32>) -> Self {
        let pgid = pid.and_then(|p| i32::try_from(p).ok()).filter(|p| *p > 0);
        if let Some(pgid) = pgid {
            GROUPS
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(pgid);
        }
        Group { pgid, armed: true }
    }

    /// The leader exited and was reaped: from now on the id may name
    /// someone else's group.
    fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        let Some(pgid) = self.pgid else { return };
        if self.armed {
            kill_group(pgid);
        }
        GROUPS
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&pgid);
    }
}

/// A long-lived child (see `Cmd::spawn_kept`).
pub struct Kept {
    running: Running,
    err_file: std::fs::File,
    command: String,
}

impl Kept {
    /// `None` while it runs; once it has exited, the end of its stderr.
    pub async fn exited(&mut self) -> Option<String> {
        match self.running.child.try_wait() {
            Ok(None) | Err(_) => None,
            Ok(Some(_)) => {
                // Reaped: its group id may name someone else's from now on.
                self.running.group.disarm();
                let file = self.err_file.try_clone().ok()?;
                Some(read_tail(file, MAX_STDERR).await.unwrap_or_default())
            }
        }
    }

    pub fn command(&self) -> &str {
        &self.command
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("cannot start `{command}`")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` did not finish within {}s and was killed", after.as_secs_f32())]
    Timeout { command: String, after: Duration },
    #[error("`{command}` failed ({status}): {stderr}")]
    Failed {
        command: String,
        status: String,
        stderr: String,
    },
    #[error("`{command}` wrote more than {limit} bytes to its output")]
    TooMuchOutput { command: String, limit: u64 },
    #[error("cannot talk to `{command}`")]
    Io {
        command: String,
        #[source]
        source: std::io::Error,
    },
}

#[derive(Debug, Clone)]
pub struct Output {
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Output {
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

#[derive(Clone)]
pub struct Cmd {
    program: OsString,
    args: Vec<OsString>,
    cwd: Option<PathBuf>,
    env: Vec<(OsString, OsString)>,
    /// Variables of Kedge's environment this child does not inherit.
    unset: Vec<OsString>,
    stdin: Option<Vec<u8>>,
    timeout: Duration,
    keep_open: Option<RawFd>,
    max_stdout: u64,
}

/// Variables of Kedge's own environment that hold secrets (a repository's
/// `--token-env`, a registry's `password_env`, the webhook secret): no
/// child inherits them. Git gets a token as a header in `GIT_CONFIG_*`;
/// compose must not be able to put one into a container through `${VAR}`.
static HIDDEN_ENV: std::sync::RwLock<Vec<OsString>> = std::sync::RwLock::new(Vec::new());

/// Keeps the variable `name` out of every child's environment from now on.
pub fn hide_env(name: impl AsRef<OsStr>) {
    let name = name.as_ref();
    let mut hidden = HIDDEN_ENV.write().unwrap_or_else(|e| e.into_inner());
    if !hidden.iter().any(|h| h == name) {
        hidden.push(name.to_owned());
    }
}

/// A variable of Kedge's environment as a repository may read it (through
/// `${VAR}` in kedge.yaml): the hidden ones read as unset, as they are for
/// children. A push must not be able to quote another secret into an error.
pub fn repo_env(name: &str) -> Option<String> {
    let hidden = HIDDEN_ENV.read().unwrap_or_else(|e| e.into_inner());
    if hidden.iter().any(|h| h == name) {
        return None;
    }
    std::env::var(name).ok()
}

fn hidden_env() -> Vec<OsString> {
    HIDDEN_ENV.read().unwrap_or_else(|e| e.into_inner()).clone()
}

/// The environment may hold secrets: `Debug` names its variables only.
impl std::fmt::Debug for Cmd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cmd")
            .field("program", &self.program)
            .field("args", &self.args)
            .field("cwd", &self.cwd)
            .field("env", &self.env.iter().map(|(k, _)| k).collect::<Vec<_>>())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Cmd {
    pub fn new(program: impl AsRef<OsStr>) -> Self {
        Cmd {
            program: program.as_ref().to_owned(),
            args: Vec::new(),
            cwd: None,
            env: Vec::new(),
            unset: Vec::new(),
            stdin: None,
            timeout: Duration::from_secs(120),
            keep_open: None,
            max_stdout: DEFAULT_MAX_STDOUT,
        }
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    pub fn cwd(mut self, dir: impl AsRef<Path>) -> Self {
        self.cwd = Some(dir.as_ref().to_path_buf());
        self
    }

    /// Environment for the child only; values never appear in errors or logs.
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.env
            .push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    /// Keeps `key` of Kedge's own environment from the child.
    pub fn env_remove(mut self, key: impl AsRef<OsStr>) -> Self {
        self.unset.push(key.as_ref().to_owned());
        self
    }

    pub fn stdin(mut self, input: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(input.into());
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// A run whose stdout is longer than `bytes` fails with
    /// [`ProcessError::TooMuchOutput`], without reading it.
    pub fn max_stdout(mut self, bytes: u64) -> Self {
        self.max_stdout = bytes;
        self
    }

    /// The child inherits this descriptor (every other one Kedge holds is
    /// close-on-exec). Given a repository's lock, the child holds the lock
    /// too until it exits: a compose left running by a Kedge that was
    /// killed keeps the next apply on its project waiting. The descriptor
    /// must stay open until `run` returns.
    pub fn keep_open(mut self, fd: Option<RawFd>) -> Self {
        self.keep_open = fd;
        self
    }

    /// The command as shown in errors: program and arguments, no environment.
    pub fn display(&self) -> String {
        std::iter::once(&self.program)
            .chain(&self.args)
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Starts a child that lives as long as the returned handle (an SSH
    /// tunnel): its group is killed when the handle is dropped, or when
    /// Kedge aborts. No timeout: the caller watches it.
    pub fn spawn_kept(self) -> Result<Kept, ProcessError> {
        let command = self.display();
        let io_err = |source| ProcessError::Io {
            command: command.clone(),
            source,
        };
        let mut cmd = self.build();
        let err_file = tempfile::tempfile().map_err(io_err)?;
        cmd.stdout(Stdio::null())
            .stderr(err_file.try_clone().map_err(io_err)?);
        Ok(Kept {
            running: start(&mut cmd, &command)?,
            err_file,
            command,
        })
    }

    /// The tokio command: argv, directory, environment (hidden variables
    /// removed), its own process group, the descriptor kept open.
    fn build(&self) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(&self.program);
        cmd.args(&self.args)
            .stdin(if self.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .process_group(0)
            .kill_on_drop(true);
        if let Some(dir) = &self.cwd {
            cmd.current_dir(dir);
        }
        for name in hidden_env().iter().chain(&self.unset) {
            cmd.env_remove(name);
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        if let Some(fd) = self.keep_open {
            // SAFETY: runs in the forked child before exec and only calls
            // fcntl, which is async-signal-safe; it changes the child's
            // descriptor table, never the parent's.
            unsafe {
                cmd.pre_exec(move || {
                    let flags = libc::fcntl(fd, libc::F_GETFD);
                    if flags < 0 || libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        cmd
    }

    /// Runs to completion; a non-zero exit is an error carrying stderr.
    pub async fn run(self) -> Result<Output, ProcessError> {
        let max_stdout = self.max_stdout;
        let Exited {
            command,
            status,
            out_file,
            err_file,
        } = self.exec().await?;
        let io_err = |source| ProcessError::Io {
            command: command.clone(),
            source,
        };
        let stderr = read_tail(err_file, MAX_STDERR).await.map_err(io_err)?;
        if !status.success() {
            return Err(ProcessError::Failed {
                command,
                status: status.to_string(),
                stderr,
            });
        }
        let stdout = match read_up_to(out_file, max_stdout).await.map_err(io_err)? {
            Some(stdout) => stdout,
            None => {
                return Err(ProcessError::TooMuchOutput {
                    command,
                    limit: max_stdout,
                });
            }
        };
        Ok(Output { stdout, stderr })
    }

    /// Runs to completion whatever its exit status, keeping the last
    /// `keep` bytes of its stdout and of its stderr (a deploy hook's
    /// output is kept, not judged by its size). A timeout is still an error.
    pub async fn run_to_end(self, keep: u64) -> Result<Ended, ProcessError> {
        let Exited {
            command,
            status,
            out_file,
            err_file,
        } = self.exec().await?;
        let io_err = |source| ProcessError::Io {
            command: command.clone(),
            source,
        };
        Ok(Ended {
            success: status.success(),
            status: status.to_string(),
            stdout: read_tail(out_file, keep).await.map_err(io_err)?,
            stderr: read_tail(err_file, keep).await.map_err(io_err)?,
        })
    }

    /// Starts the command and waits for its exit within the timeout.
    async fn exec(self) -> Result<Exited, ProcessError> {
        let command = self.display();
        let mut cmd = self.build();
        // Output goes to unnamed temporary files, not pipes: a child that
        // outlives a killed Kedge (a compose holding the repository lock)
        // must not die of SIGPIPE at its next progress line, halfway
        // through changing a stack.
        let io_err = |source| ProcessError::Io {
            command: command.clone(),
            source,
        };
        let (out_file, err_file) = (
            tempfile::tempfile().map_err(io_err)?,
            tempfile::tempfile().map_err(io_err)?,
        );
        cmd.stdout(out_file.try_clone().map_err(io_err)?)
            .stderr(err_file.try_clone().map_err(io_err)?);
        let mut running = start(&mut cmd, &command)?;
        if let Some(input) = self.stdin {
            let mut pipe = running.child.stdin.take().expect("stdin is piped");
            // A child that exits without reading its input is judged by its status.
            let _ = pipe.write_all(&input).await;
            drop(pipe);
        }
        let status = match tokio::time::timeout(self.timeout, running.child.wait()).await {
            Ok(result) => {
                running.group.disarm();
                result.map_err(io_err)?
            }
            // Dropping `running` kills the child's whole group.
            Err(_) => {
                return Err(ProcessError::Timeout {
                    command,
                    after: self.timeout,
                });
            }
        };
        Ok(Exited {
            command,
            status,
            out_file,
            err_file,
        })
    }
}

/// A command that exited: as shown, its status, and the files that hold
/// its output.
struct Exited {
    command: String,
    status: std::process::ExitStatus,
    out_file: std::fs::File,
    err_file: std::fs::File,
}

/// How a command run by [`Cmd::run_to_end`] ended, and the ends of what
/// it wrote.
#[derive(Debug, Clone)]
pub struct Ended {
    pub success: bool,
    /// `exit status: 3`, `signal: 9 (SIGKILL)`.
    pub status: String,
    pub stdout: String,
    pub stderr: String,
}

/// What a child wrote to stdout, or `None` when it is longer than `limit`
/// (told by the file's length: nothing is read then).
async fn read_up_to(file: std::fs::File, limit: u64) -> std::io::Result<Option<Vec<u8>>> {
    use tokio::io::AsyncSeekExt;
    let mut file = tokio::fs::File::from_std(file);
    let len = file.metadata().await?.len();
    if len > limit {
        return Ok(None);
    }
    file.seek(std::io::SeekFrom::Start(0)).await?;
    let mut out = Vec::with_capacity(len as usize);
    // A grandchild still writing cannot grow it past the limit either.
    (&mut file).take(limit).read_to_end(&mut out).await?;
    Ok(Some(out))
}

/// The last `max` bytes a child wrote to stderr, trimmed, as text; a cut
/// says so first (`…[N bytes cut]…`).
async fn read_tail(file: std::fs::File, max: u64) -> std::io::Result<String> {
    use tokio::io::AsyncSeekExt;
    let mut file = tokio::fs::File::from_std(file);
    let len = file.metadata().await?.len();
    let cut = len.saturating_sub(max);
    file.seek(std::io::SeekFrom::Start(cut)).await?;
    let mut tail = Vec::with_capacity((len - cut) as usize);
    (&mut file).take(max).read_to_end(&mut tail).await?;
    Ok(tail_text(&tail, cut))
}

/// `tail`, the end of a text `cut` bytes longer, as a string that says
/// what it lost. A character the cut split is dropped whole.
fn tail_text(tail: &[u8], cut: u64) -> String {
    if cut == 0 {
        return String::from_utf8_lossy(tail).trim().to_string();
    }
    // UTF-8 continuation bytes are 0b10xx_xxxx; at most three precede a start.
    let skip = tail
        .iter()
        .take(3)
        .take_while(|b| (**b & 0xC0) == 0x80)
        .count();
    let text = String::from_utf8_lossy(&tail[skip..]);
    format!("…[{} bytes cut]…\n{}", cut + skip as u64, text.trim())
}

/// Starts a built command: counted, and in a process group of its own
/// that is killed with its `Running`.
fn start(cmd: &mut tokio::process::Command, command: &str) -> Result<Running, ProcessError> {
    let child = cmd.spawn().map_err(|source| ProcessError::Spawn {
        command: command.to_string(),
        source,
    })?;
    SPAWNED.fetch_add(1, Ordering::Relaxed);
    let group = Group::new(child.id());
    Ok(Running { group, child })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: a compose left running by a killed `serve` died of
    /// SIGPIPE at its next progress line (its stderr was a pipe nobody
    /// read any more), halfway through changing the stack.
    #[tokio::test]
    async fn a_childs_output_is_no_pipe_it_could_die_writing_to() {
        let out = Cmd::new("sh")
            .args([
                "-c",
                "for fd in 1 2; do if [ -p /proc/self/fd/$fd ]; then echo pipe; else echo file; fi; done; echo to-stderr >&2",
            ])
            .run()
            .await
            .unwrap();
        assert_eq!(out.stdout_text(), "file\nfile\n");
        assert_eq!(out.stderr, "to-stderr");
    }

    /// Regression: a child's whole stderr became the error, and from there
    /// a deployment's record, its event, notifications and HTTP answers: a
    /// compose printing megabytes of warnings filled them all.
    #[tokio::test]
    async fn a_childs_stderr_of_mebibytes_is_cut_to_its_last_64_kib() {
        // 4 MiB of noise, then the cause, as compose prints it: last.
        let err = Cmd::new("sh")
            .args([
                "-c",
                "{ head -c 4194304 /dev/zero | tr '\\0' x; echo; echo 'the cause'; } >&2; exit 1",
            ])
            .run()
            .await
            .unwrap_err();
        let ProcessError::Failed { stderr, .. } = &err else {
            panic!("{err:?}");
        };
        assert!(stderr.len() <= MAX_STDERR as usize + 64, "{}", stderr.len());
        assert!(
            stderr.ends_with("the cause"),
            "{}",
            &stderr[stderr.len() - 40..]
        );
        let cut = 4 * 1024 * 1024 + "\nthe cause\n".len() as u64 - MAX_STDERR;
        assert!(
            stderr.starts_with(&format!("…[{cut} bytes cut]…\n")),
            "{}",
            &stderr[..40]
        );
        // Short ones are kept whole, as before.
        let err = Cmd::new("sh")
            .args(["-c", "echo short >&2; exit 1"])
            .run()
            .await
            .unwrap_err();
        assert!(
            matches!(&err, ProcessError::Failed { stderr, .. } if stderr == "short"),
            "{err:?}"
        );
    }

    #[test]
    fn a_cut_never_splits_a_character() {
        let text = "é".repeat(10);
        // Cut after the first byte of a two-byte character.
        let tail = &text.as_bytes()[3..];
        assert_eq!(
            tail_text(tail, 3),
            format!("…[4 bytes cut]…\n{}", "é".repeat(8))
        );
        assert_eq!(tail_text(b"  whole \n", 0), "whole");
    }

    /// Stdout past the caller's limit fails the run instead of being read.
    #[tokio::test]
    async fn stdout_past_its_limit_is_refused_unread() {
        let err = Cmd::new("sh")
            .args(["-c", "head -c 2048 /dev/zero"])
            .max_stdout(2047)
            .run()
            .await
            .unwrap_err();
        assert!(
            matches!(err, ProcessError::TooMuchOutput { limit: 2047, .. }),
            "{err:?}"
        );
        let out = Cmd::new("sh")
            .args(["-c", "head -c 2048 /dev/zero"])
            .max_stdout(2048)
            .run()
            .await
            .unwrap();
        assert_eq!(out.stdout.len(), 2048);
    }

    #[tokio::test]
    async fn captures_stdout_and_counts_spawns() {
        let before = spawned();
        let out = Cmd::new("printf").arg("a b").run().await.unwrap();
        assert_eq!(out.stdout_text(), "a b");
        assert!(spawned() > before);
    }

    #[tokio::test]
    async fn failure_carries_stderr() {
        let err = Cmd::new("sh")
            .args(["-c", "echo broken >&2; exit 3"])
            .run()
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("broken"), "{text}");
        assert!(text.contains("exit status: 3"), "{text}");
    }

    /// Regression: children inherited the variable a repository's token
    /// is read from (`--token-env`), so git, ssh and compose all held it.
    #[tokio::test]
    async fn secret_variables_of_kedges_environment_reach_no_child() {
        // Set by cargo for the test binary; hiding it harms no other test.
        assert!(std::env::var_os("CARGO_PKG_VERSION").is_some());
        hide_env("CARGO_PKG_VERSION");
        // Nor can a repository's kedge.yaml read it through `${VAR}`
        // (regression: a push could quote a token into an error).
        assert_eq!(repo_env("CARGO_PKG_VERSION"), None);
        assert!(repo_env("CARGO_PKG_LICENSE").is_some());
        let out = Cmd::new("sh")
            .args(["-c", "echo ${CARGO_PKG_VERSION-hidden}"])
            .run()
            .await
            .unwrap();
        assert_eq!(out.stdout_text().trim(), "hidden");
        // What Kedge hands a child on purpose still reaches it.
        let out = Cmd::new("sh")
            .args(["-c", "echo $CARGO_PKG_VERSION"])
            .env("CARGO_PKG_VERSION", "given")
            .run()
            .await
            .unwrap();
        assert_eq!(out.stdout_text().trim(), "given");
    }

    #[tokio::test]
    async fn env_values_stay_out_of_errors() {
        let err = Cmd::new("sh")
            .args(["-c", "exit 1"])
            .env("KEDGE_SECRET", "hunter2")
            .run()
            .await
            .unwrap_err();
        assert!(!format!("{err:?}").contains("hunter2"));
        let cmd = Cmd::new("true").env("KEDGE_SECRET", "hunter2");
        let debug = format!("{cmd:?}");
        assert!(
            debug.contains("KEDGE_SECRET") && !debug.contains("hunter2"),
            "{debug}"
        );
    }

    #[tokio::test]
    async fn stdin_is_fed() {
        let out = Cmd::new("cat").stdin("hello").run().await.unwrap();
        assert_eq!(out.stdout_text(), "hello");
    }

    #[tokio::test]
    async fn a_hung_child_is_killed_at_the_timeout() {
        let started = std::time::Instant::now();
        let err = Cmd::new("sleep")
            .arg("30")
            .timeout(Duration::from_millis(200))
            .run()
            .await
            .unwrap_err();
        assert!(matches!(err, ProcessError::Timeout { .. }), "{err:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    /// Whether `pid` still runs (a zombie waiting for its reaper does not).
    fn alive(pid: &str) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
            stat.rsplit(')')
                .next()
                .is_some_and(|s| !s.trim_start().starts_with('Z'))
        })
    }

    /// Waits a little for the kernel to finish off killed processes.
    async fn gone(pid: &str) -> bool {
        for _ in 0..50 {
            if !alive(pid) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    /// A shell that starts a grandchild, writes its pid, and waits.
    fn with_grandchild(pid_file: &Path) -> Cmd {
        Cmd::new("sh").args([
            "-c",
            "sleep 30 & echo $! > \"$1\"; sleep 30",
            "sh",
            pid_file.to_str().unwrap(),
        ])
    }

    async fn read_pid(pid_file: &Path) -> String {
        for _ in 0..250 {
            if let Ok(pid) = std::fs::read_to_string(pid_file)
                && !pid.trim().is_empty()
            {
                return pid.trim().to_string();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the child never wrote {}", pid_file.display());
    }

    /// Regression: on timeout only the direct child was killed; what it had
    /// started (git's `git-remote-http` helpers) lived on as orphans.
    #[tokio::test]
    async fn a_timed_out_childs_grandchildren_are_killed_too() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("pid");
        let err = with_grandchild(&pid_file)
            .timeout(Duration::from_millis(500))
            .run()
            .await
            .unwrap_err();
        assert!(matches!(err, ProcessError::Timeout { .. }), "{err:?}");
        let grandchild = read_pid(&pid_file).await;
        assert!(gone(&grandchild).await, "grandchild {grandchild} survived");
    }

    #[tokio::test]
    async fn a_dropped_run_kills_the_childs_grandchildren() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("pid");
        let run = tokio::spawn(with_grandchild(&pid_file).run());
        let grandchild = read_pid(&pid_file).await;
        assert!(alive(&grandchild));
        run.abort();
        assert!(run.await.unwrap_err().is_cancelled());
        assert!(gone(&grandchild).await, "grandchild {grandchild} survived");
    }

    #[tokio::test]
    async fn a_missing_program_is_a_spawn_error() {
        let err = Cmd::new("kedge-no-such-program").run().await.unwrap_err();
        assert!(matches!(err, ProcessError::Spawn { .. }), "{err:?}");
    }
}
