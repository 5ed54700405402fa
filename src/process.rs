//! The one place Kedge starts child processes (`git`, `docker compose`):
//! argv only (never a shell string), a timeout, killed when dropped, and
//! stderr carried into the error. Secrets go in the environment, never argv.

use std::ffi::{OsStr, OsString};
use std::os::fd::RawFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::AsyncWriteExt;

static SPAWNED: AtomicU64 = AtomicU64::new(0);

/// How many child processes this process has started: the no-op reconcile
/// is measured by this staying put.
pub fn spawned() -> u64 {
    SPAWNED.load(Ordering::Relaxed)
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

#[derive(Debug, Clone)]
pub struct Cmd {
    program: OsString,
    args: Vec<OsString>,
    cwd: Option<PathBuf>,
    env: Vec<(OsString, OsString)>,
    stdin: Option<Vec<u8>>,
    timeout: Duration,
    keep_open: Option<RawFd>,
}

impl Cmd {
    pub fn new(program: impl AsRef<OsStr>) -> Self {
        Cmd {
            program: program.as_ref().to_owned(),
            args: Vec::new(),
            cwd: None,
            env: Vec::new(),
            stdin: None,
            timeout: Duration::from_secs(120),
            keep_open: None,
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

    pub fn stdin(mut self, input: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(input.into());
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
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

    /// Runs to completion; a non-zero exit is an error carrying stderr.
    pub async fn run(self) -> Result<Output, ProcessError> {
        let command = self.display();
        let mut cmd = tokio::process::Command::new(&self.program);
        cmd.args(&self.args)
            .stdin(if self.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(dir) = &self.cwd {
            cmd.current_dir(dir);
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
        let mut child = cmd.spawn().map_err(|source| ProcessError::Spawn {
            command: command.clone(),
            source,
        })?;
        SPAWNED.fetch_add(1, Ordering::Relaxed);
        if let Some(input) = self.stdin {
            let mut pipe = child.stdin.take().expect("stdin is piped");
            // A child that exits without reading its input is judged by its status.
            let _ = pipe.write_all(&input).await;
            drop(pipe);
        }
        let output = match tokio::time::timeout(self.timeout, child.wait_with_output()).await {
            Ok(result) => result.map_err(|source| ProcessError::Io {
                command: command.clone(),
                source,
            })?,
            // Dropping the future drops the child, which kills it.
            Err(_) => {
                return Err(ProcessError::Timeout {
                    command,
                    after: self.timeout,
                });
            }
        };
        let stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
        if !output.status.success() {
            return Err(ProcessError::Failed {
                command,
                status: output.status.to_string(),
                stderr,
            });
        }
        Ok(Output {
            stdout: output.stdout,
            stderr,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[tokio::test]
    async fn env_values_stay_out_of_errors() {
        let err = Cmd::new("sh")
            .args(["-c", "exit 1"])
            .env("KEDGE_SECRET", "hunter2")
            .run()
            .await
            .unwrap_err();
        assert!(!format!("{err:?}").contains("hunter2"));
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

    #[tokio::test]
    async fn a_missing_program_is_a_spawn_error() {
        let err = Cmd::new("kedge-no-such-program").run().await.unwrap_err();
        assert!(matches!(err, ProcessError::Spawn { .. }), "{err:?}");
    }
}
