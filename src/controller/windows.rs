//! controller: sync windows (fleet.md §5). A new commit (or an update
//! deployed without one) found while its `reconciliation.windows` are
//! closed waits, recorded with the next opening; the stack's task looks
//! again then. `kedge sync --force` and rollbacks go ahead; healing goes
//! on unless `heal_in_window_only`.

use std::sync::Arc;

use super::Shared;
use super::task::{ReconcileError, RepoTask, Trigger};
use crate::events::{EventKind, NewEvent};
use crate::model::settings::{Mode, SyncWindows};
use crate::plan::window::Windows;
use crate::record::RepoState;
use crate::short;
use crate::time::now_ms;

/// Whether `commit`, rendered with `windows`, must wait: `Some(opens)`
/// (when they next open; `None` within a week) after recording it and,
/// the first time for this commit, saying so; `None` when it may deploy
/// now (a commit that waited is then said to go ahead).
pub(super) async fn hold(
    shared: &Arc<Shared>,
    task: &RepoTask,
    windows: &SyncWindows,
    commit: &str,
    trigger: Trigger,
) -> Result<Option<Option<i64>>, ReconcileError> {
    let id = task.id();
    let state = shared.db.read(|s| s.repo_state(id))?;
    let now = now_ms();
    let exempt = matches!(trigger, Trigger::Rollback | Trigger::AutoRollback) || task.force_window;
    let set = Windows::of(windows);
    if exempt || set.is_empty() || set.open(now) {
        if let Some((waited, _)) = state.waiting {
            shared
                .db
                .write(move |s| s.mark_waiting(id, None, None))
                .await?;
            let why = match (exempt, trigger) {
                (false, _) => format!("the sync window is open: deploying {}", short(commit)),
                (true, Trigger::Rollback) => format!(
                    "`kedge rollback` to {} replaces {}, which waited for the sync window",
                    short(commit),
                    short(&waited)
                ),
                (true, _) => format!("`kedge sync --force` deploys {} now", short(commit)),
            };
            task.emit(
                shared,
                NewEvent::new(&task.repo.name, EventKind::WindowOpened, why)
                    .commit(commit)
                    .field("waited", waited),
            );
        }
        return Ok(None);
    }
    let opens = set.next_opening(now);
    let first = state.waiting.as_ref().is_none_or(|(c, _)| c != commit);
    let waiting = commit.to_string();
    shared
        .db
        .write(move |s| s.mark_waiting(id, Some(&waiting), opens))
        .await?;
    if first {
        let until = until_text(opens);
        tracing::info!(repo = %task.repo.name, stack = task.stack_name(), commit = short(commit), "new commit waits for the sync window ({until})");
        let mut event = NewEvent::new(
            &task.repo.name,
            EventKind::WindowClosedWait,
            format!(
                "{} waits for the sync window ({until}); `kedge sync --force` deploys it now",
                short(commit)
            ),
        )
        .commit(commit)
        .field("trigger", trigger.as_str());
        if let Some(t) = opens {
            event = event.field("opens_at", crate::time::rfc3339(t));
        }
        task.emit(shared, event);
    }
    Ok(Some(opens))
}

/// When a commit that waits for `commit`'s window may look again without
/// rendering it: `Some(until)` while the recorded opening is ahead.
pub(super) fn still_waiting(state: &RepoState, commit: &str) -> Option<i64> {
    match &state.waiting {
        Some((c, Some(until))) if c == commit && *until > now_ms() => Some(*until),
        _ => None,
    }
}

/// The mode drift is handled in now: `notify` (reported, not healed)
/// while the windows are closed and `heal_in_window_only` is set.
pub fn heal_mode(state: &RepoState, mode: Mode) -> Mode {
    let w = &state.windows;
    if mode == Mode::Auto
        && w.heal_in_window_only
        && !w.is_empty()
        && !Windows::of(w).open(now_ms())
    {
        return Mode::Notify;
    }
    mode
}

/// Why updates are held now, if the sync windows are closed.
pub(super) fn held_updates(state: &RepoState) -> Option<String> {
    let set = Windows::of(&state.windows);
    if set.is_empty() || set.open(now_ms()) {
        return None;
    }
    Some(format!(
        "held: outside the sync window ({})",
        until_text(set.next_opening(now_ms()))
    ))
}

/// `opens 2026-12-08 08:00:00`, in the host's local time as `status` shows
/// times; or that it does not within a week.
pub fn until_text(opens: Option<i64>) -> String {
    match opens {
        Some(t) => format!("opens {}", crate::time::local_time(t)),
        None => "no opening within a week".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(allow: &[&str], deny: &[&str], heal_in_window_only: bool) -> RepoState {
        RepoState {
            windows: SyncWindows {
                allow: allow.iter().map(|s| s.to_string()).collect(),
                deny: deny.iter().map(|s| s.to_string()).collect(),
                heal_in_window_only,
            },
            ..RepoState::default()
        }
    }

    const ALWAYS: &str = "Mon-Sun 00:00-24:00 UTC";

    #[test]
    fn healing_waits_for_the_window_only_when_asked_to() {
        let closed = state(&[], &[ALWAYS], true);
        assert_eq!(heal_mode(&closed, Mode::Auto), Mode::Notify);
        assert_eq!(heal_mode(&closed, Mode::Manual), Mode::Manual);
        assert_eq!(
            heal_mode(&state(&[], &[ALWAYS], false), Mode::Auto),
            Mode::Auto
        );
        assert_eq!(
            heal_mode(&state(&[ALWAYS], &[], true), Mode::Auto),
            Mode::Auto
        );
        assert_eq!(heal_mode(&state(&[], &[], true), Mode::Auto), Mode::Auto);
    }

    #[test]
    fn updates_are_held_while_the_windows_are_closed() {
        assert_eq!(
            held_updates(&state(&[], &[ALWAYS], false)).as_deref(),
            Some("held: outside the sync window (no opening within a week)")
        );
        assert_eq!(held_updates(&state(&[ALWAYS], &[], false)), None);
        assert_eq!(held_updates(&state(&[], &[], false)), None);
    }
}
