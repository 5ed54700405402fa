//! Test helpers: a fluent runner for the `kedge` binary, git remotes on
//! disk, and compose projects on the real engine that always clean up.

// Shared by two test binaries, each using a part.
#![allow(dead_code, unused_imports)]

pub mod api;
pub mod argv;
pub mod browser;
pub mod compose_calls;
pub mod docker;
pub mod git;
pub mod hanging;
pub mod hosts_lab;
pub mod http;
pub mod http_git;
pub mod kedge;
pub mod net;
pub mod plain_http;
pub mod receiver;
pub mod registry;
pub mod smallfs;
pub mod sops;
pub mod ssh_git;
pub mod stack;
pub mod swarm_lab;

pub use docker::{ComposeProject, containers_by_label, image_id, require_docker};
pub use git::GitRemote;
pub use kedge::{Kedge, wait_for};
pub use stack::{QUICK_GATE, Stack, apply_in_flight, sleepers, wait_deployed};

use std::sync::atomic::{AtomicU32, Ordering};

/// A name no other test, parallel or earlier, uses: valid as a compose
/// project name and as a Kedge repository name.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("kt-{prefix}-{}-{n}-{:x}", std::process::id(), nanos)
}

/// A child process killed when the guard drops, even on panic.
pub struct ChildGuard(pub std::process::Child);

impl ChildGuard {
    /// Waits up to `secs` for the child to exit; panics (killing it) if not.
    #[track_caller]
    pub fn wait_exit(&mut self, secs: u64) -> std::process::ExitStatus {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                return status;
            }
            if std::time::Instant::now() > deadline {
                panic!("the child did not exit within {secs}s");
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}
