//! controller: the branch head as the commands that report it see it.
//! `status` and `diff` read it the same way, so they never disagree: the
//! head a running `serve` checked within two poll intervals, else the
//! remote asked now (and what it said stored for the next reader).

use std::time::Duration;

use serde::Serialize;

use super::Shared;
use crate::error_chain;
use crate::record::{RepoState, now_ms};
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

/// Whether `serve` keeps this head fresh: it owns the data directory and
/// checked within two poll intervals.
fn served_fresh(shared: &Shared, state: &RepoState) -> bool {
    let Some(checked) = state.checked_at else {
        return false;
    };
    let age = Duration::from_millis(now_ms().saturating_sub(checked).max(0) as u64);
    age <= shared.settings.poll_interval * 2 && shared.serve_running()
}

/// The branch head for a report: see the module comment.
pub async fn current_head(
    shared: &Shared,
    git: &Repository,
    repo_id: i64,
    state: &RepoState,
) -> RemoteHead {
    if served_fresh(shared, state) && state.remote_head.is_some() {
        return RemoteHead {
            head: state.remote_head.clone(),
            error: None,
            live: false,
            refused: state.access_refused,
        };
    }
    match git.remote_head().await {
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
        Err(e) => RemoteHead {
            head: state.remote_head.clone(),
            error: Some(error_chain(&e)),
            live: true,
            refused: e.is_refusal(),
        },
    }
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
