//! Commands whose stdout is closed under them (`kedge status | head -1`)
//! stop quietly, with the status a shell reports for `git log | head -1`
//! (141), instead of panicking on the broken pipe.

use std::io::Read;
use std::os::fd::AsRawFd;
use std::process::{ExitStatus, Stdio};

use crate::support::*;

/// What a shell reports for a writer cut short by its reader (128 + SIGPIPE).
const CLOSED_STDOUT: i32 = 141;

/// The smallest pipe buffer Linux allows (a page): output past it waits for
/// the reader, so a reader that leaves makes the writer's next write fail
/// every time, whatever the timing.
const PIPE_SIZE: libc::c_int = 4096;

/// When the reader goes away.
#[derive(Debug, Clone, Copy)]
enum Reader {
    /// Before the command writes anything.
    Gone,
    /// After the first line, as `head -1` does.
    OneLine,
}

/// `kedge ARGS` with stdout a small pipe left as `reader` says: its exit
/// status, its stderr and the line read.
fn run_piped(k: &Kedge, args: &[&str], reader: Reader) -> (ExitStatus, String, String) {
    let (read, write) = std::io::pipe().expect("a pipe");
    // SAFETY: fcntl on a descriptor this function owns.
    let set = unsafe { libc::fcntl(write.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_SIZE) };
    assert!(
        set >= PIPE_SIZE,
        "F_SETPIPE_SZ: {}",
        std::io::Error::last_os_error()
    );
    let read = match reader {
        Reader::Gone => {
            drop(read);
            None
        }
        Reader::OneLine => Some(read),
    };
    let mut child = ChildGuard(
        k.command(args)
            .stdin(Stdio::null())
            .stdout(write)
            .stderr(Stdio::piped())
            .spawn()
            .expect("start kedge"),
    );
    let mut line = Vec::new();
    if let Some(mut read) = read {
        // A byte at a time: the reader takes the first line and no more.
        let mut byte = [0u8];
        while read.read(&mut byte).expect("read stdout") == 1 && byte[0] != b'\n' {
            line.push(byte[0]);
        }
    }
    let mut stderr = String::new();
    child
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let status = child.wait_exit(60);
    (status, stderr, String::from_utf8_lossy(&line).into_owned())
}

/// Regression: `kedge status | head -1` panicked about half the time with
/// "failed printing to stdout: Broken pipe". Each command's output here is
/// longer than the pipe holds, so each run meets the closed pipe.
#[test]
fn status_piped_into_head_exits_quietly_instead_of_panicking_on_the_broken_pipe() {
    let k = Kedge::new();
    // Registered at paths that do not exist: accepted, never cloned, and
    // each one a block of `status`, a row of `repo list`, an event.
    let long = "x".repeat(120);
    for i in 0..60 {
        let name = format!("r{i}");
        k.run([
            "repo",
            "add",
            &format!("/nonexistent/{long}/{name}"),
            "--name",
            &name,
        ])
        .success();
    }
    let commands: [(&[&str], &str); 6] = [
        (&["status"], "Repository: r"),
        (&["status", "-o", "json"], "["),
        (&["events"], "TIME "),
        (&["events", "--follow"], ""),
        (&["repo", "list"], "NAME "),
        (&["repo", "list", "-o", "json"], "["),
    ];
    for (args, first) in commands {
        for (reader, runs) in [(Reader::OneLine, 30), (Reader::Gone, 5)] {
            for run in 0..runs {
                let (status, stderr, line) = run_piped(&k, args, reader);
                let what = format!("kedge {} ({reader:?}, run {run})", args.join(" "));
                assert!(stderr.is_empty(), "{what}: stderr {stderr:?}");
                assert_eq!(status.code(), Some(CLOSED_STDOUT), "{what}: {status}");
                if let Reader::OneLine = reader {
                    assert!(line.starts_with(first), "{what}: first line {line:?}");
                }
            }
        }
    }
}
