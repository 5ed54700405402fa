//! controller: the branch head as the commands that report it see it.
//! `status`, `diff`, the API and the dashboard read it the same way, so
//! they never disagree. With `serve` running, a read is its last check as
//! stored, failed or not: a read never waits for the network, however many
//! come in (serve's task is the one check in flight). Without `serve`, the
//! remote is asked now, bounded by `git.timeout`, one check per repository
//! in flight whoever asks, and what it said stored for the next reader.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{LazyLock, Mutex};

use futures_util::future::{BoxFuture, FutureExt, Shared as SharedFuture};

use super::Shared;
use crate::error_chain;
use crate::model::report::PinView;
use crate::record::RepoState;
use crate::source::git::Repository;

/// The branch head and, when the remote did not answer, why.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RemoteHead {
    pub head: Option<String>,
    pub error: Option<String>,
    /// The remote was asked just now (rather than `serve`'s last check).
    pub live: bool,
    /// It refused Kedge's credentials.
    pub refused: bool,
}

/// What `serve` has not yet found out, for `diff` to say.
const NOT_CHECKED_YET: &str = "serve has not finished a check of the remote yet";

/// The branch head for a report: see the module comment.
pub async fn current_head(
    shared: &Shared,
    git: &Repository,
    repo_id: i64,
    state: &RepoState,
) -> RemoteHead {
    if shared.serve_running() {
        return stored(state);
    }
    let checked = check_once(git).await;
    match checked.head {
        Ok(head) => {
            let news = state.remote_head.as_deref() != Some(head.as_str())
                || state.remote_failing()
                || state.access_refused;
            if news {
                let checked = head.clone();
                shared.db.write_later("record the remote head", move |s| {
                    s.mark_checked(repo_id, &checked)
                });
            }
            RemoteHead {
                head: Some(head),
                error: None,
                live: true,
                refused: false,
            }
        }
        Err(error) => RemoteHead {
            head: state.remote_head.clone(),
            error: Some(error),
            live: true,
            refused: checked.refused,
        },
    }
}

/// `serve`'s last check as stored: a failure is as good an answer as a head.
fn stored(state: &RepoState) -> RemoteHead {
    let error = if state.checked_at.is_none() {
        Some(NOT_CHECKED_YET.to_string())
    } else if state.remote_failing() {
        Some(
            state
                .last_error
                .clone()
                .unwrap_or_else(|| "the last check of the remote failed".into()),
        )
    } else {
        None
    };
    RemoteHead {
        head: state.remote_head.clone(),
        error,
        live: false,
        refused: state.access_refused,
    }
}

/// One check's outcome, shared by everyone who waited for it.
#[derive(Debug, Clone)]
struct Checked {
    head: Result<String, String>,
    refused: bool,
}

type Check = SharedFuture<BoxFuture<'static, Checked>>;

/// The checks in flight, by clone directory (one per repository).
static IN_FLIGHT: LazyLock<Mutex<HashMap<PathBuf, Check>>> = LazyLock::new(Default::default);

fn in_flight() -> std::sync::MutexGuard<'static, HashMap<PathBuf, Check>> {
    IN_FLIGHT.lock().unwrap_or_else(|p| p.into_inner())
}

/// Asks the remote for the branch head, joining a check of the same
/// repository already in flight instead of starting another. The check
/// runs as a task of its own: a caller that goes away (a closed HTTP
/// request) neither kills it nor leaves the next caller a second one.
async fn check_once(git: &Repository) -> Checked {
    let key = git.clone.clone();
    let check = {
        let mut checks = in_flight();
        checks
            .entry(key.clone())
            .or_insert_with(|| {
                let git = git.clone();
                let task = tokio::spawn(async move {
                    let head = git.remote_head().await;
                    in_flight().remove(&key);
                    Checked {
                        refused: head.as_ref().is_err_and(|e| e.is_refusal()),
                        head: head.map_err(|e| error_chain(&e)),
                    }
                });
                async move {
                    task.await.unwrap_or_else(|_| Checked {
                        head: Err("the check of the remote stopped".into()),
                        refused: false,
                    })
                }
                .boxed()
                .shared()
            })
            .clone()
    };
    check.await
}

/// A rollback pin as `status` and `diff` show it, from the repository's
/// state and the branch head now.
pub fn pin_view(state: &RepoState, head: Option<&str>) -> Option<PinView> {
    let commit = state.pinned_commit.clone()?;
    let newer_head = head
        .filter(|h| state.pinned_at_head.as_deref() != Some(*h))
        .map(String::from);
    Some(PinView {
        commit,
        at_head: state.pinned_at_head.clone(),
        newer_head,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pinned(at_head: &str) -> RepoState {
        RepoState {
            pinned_commit: Some("c1c1c1c1c1".into()),
            pinned_at_head: Some(at_head.into()),
            ..Default::default()
        }
    }

    /// This process's own children whose command line names `port`.
    fn git_children(port: u16) -> usize {
        let (me, needle) = (std::process::id(), format!("127.0.0.1:{port}"));
        let parent = format!("PPid:\t{me}\n");
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter(|p| {
                std::fs::read(p.path().join("cmdline"))
                    .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&needle))
                    && std::fs::read_to_string(p.path().join("status"))
                        .is_ok_and(|s| s.contains(&parent))
            })
            .count()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_checks_of_one_repository_run_one_git() {
        // Connections queue in the backlog and are never answered: every
        // check hangs until its timeout.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let dir = tempfile::tempdir().unwrap();
        let git = Repository::new(
            &format!("http://127.0.0.1:{port}/app.git"),
            "main",
            dir.path().join("clone"),
        )
        .with_timeout(std::time::Duration::from_secs(3));
        let checks = tokio::spawn({
            let git = git.clone();
            async move {
                let checks = (0..20).map(|_| check_once(&git));
                futures_util::future::join_all(checks).await
            }
        });
        let mut most = 0;
        while !checks.is_finished() {
            most = most.max(git_children(port));
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let results = checks.await.unwrap();
        assert_eq!(most, 1, "git processes at once");
        let first = &results[0].head;
        assert!(first.is_err(), "{first:?}");
        assert!(results.iter().all(|r| &r.head == first), "{results:?}");
        // Done: the next check is a new one.
        assert!(in_flight().get(&git.clone).is_none());
    }

    #[test]
    fn a_pin_holds_until_the_branch_moves() {
        assert_eq!(pin_view(&RepoState::default(), Some("c2")), None);
        let holding = pin_view(&pinned("c2c2c2c2c2"), Some("c2c2c2c2c2")).unwrap();
        assert!(holding.holds());
        assert_eq!(
            holding.describe(),
            "pinned to c1c1c1c by a rollback until the branch moves or `kedge sync`"
        );
        // No answer from the remote: what is known still holds.
        assert!(pin_view(&pinned("c2"), None).unwrap().holds());
        let moved = pin_view(&pinned("c2c2c2c2c2"), Some("c3c3c3c3c3")).unwrap();
        assert!(!moved.holds());
        assert_eq!(
            moved.describe(),
            "pinned to c1c1c1c; branch head c3c3c3c is newer: the next pass releases the pin"
        );
    }
}
