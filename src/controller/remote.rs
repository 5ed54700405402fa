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
use serde::Serialize;

use super::Shared;
use crate::error_chain;
use crate::record::RepoState;
use crate::short;
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
            if news && let Err(e) = shared.store().mark_checked(repo_id, &head) {
                tracing::warn!("cannot record the remote head: {}", error_chain(&e));
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

/// A rollback pin as `status` and `diff` show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct PinView {
    pub commit: String,
    /// The branch head when the rollback was made.
    pub at_head: Option<String>,
    /// The branch head now, when it moved past `at_head`: the next pass of
    /// `serve` releases the pin and deploys it.
    pub newer_head: Option<String>,
}

impl PinView {
    pub fn new(state: &RepoState, head: Option<&str>) -> Option<PinView> {
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

    /// Whether the pin still holds the branch head back.
    pub fn holds(&self) -> bool {
        self.newer_head.is_none()
    }

    pub fn describe(&self) -> String {
        match &self.newer_head {
            Some(head) => format!(
                "pinned to {}; branch head {} is newer: the next pass releases the pin",
                short(&self.commit),
                short(head)
            ),
            None => format!(
                "pinned to {} by a rollback until the branch moves or `kedge sync`",
                short(&self.commit)
            ),
        }
    }
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

    #[test]
    fn a_pin_holds_until_the_branch_moves() {
        assert_eq!(PinView::new(&RepoState::default(), Some("c2")), None);
        let holding = PinView::new(&pinned("c2c2c2c2c2"), Some("c2c2c2c2c2")).unwrap();
        assert!(holding.holds());
        assert_eq!(
            holding.describe(),
            "pinned to c1c1c1c by a rollback until the branch moves or `kedge sync`"
        );
        // No answer from the remote: what is known still holds.
        assert!(PinView::new(&pinned("c2"), None).unwrap().holds());
        let moved = PinView::new(&pinned("c2c2c2c2c2"), Some("c3c3c3c3c3")).unwrap();
        assert!(!moved.holds());
        assert_eq!(
            moved.describe(),
            "pinned to c1c1c1c; branch head c3c3c3c is newer: the next pass releases the pin"
        );
    }
}
