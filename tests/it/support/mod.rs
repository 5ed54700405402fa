//! Test helpers: a fluent runner for the `kedge` binary, git remotes on
//! disk, and compose projects on the real engine that always clean up.

// Shared by two test binaries, each using a part.
#![allow(dead_code, unused_imports)]

pub mod docker;
pub mod git;
pub mod hanging;
pub mod http_git;
pub mod kedge;
pub mod stack;

pub use docker::{ComposeProject, containers_by_label, image_id, require_docker};
pub use git::GitRemote;
pub use kedge::{Kedge, wait_for};
pub use stack::{Stack, apply_in_flight, sleepers};

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
