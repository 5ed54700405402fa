//! ops: `events`, the event log: a page of it, or followed as it grows
//! (rows written by any process, a `kedge sync` in another shell included).

use std::time::Duration;

use super::{Ops, OpsError};
use crate::events::Event;
use crate::record::{EventQuery, now_ms};

/// The most rows one listing returns, of events or of deployments: a
/// larger `limit` gets this many. One answer stays a few MiB, whatever
/// is asked.
pub const MAX_LIMIT: usize = 10_000;

/// How often a follower looks for new rows: one indexed query.
pub const FOLLOW_EVERY: Duration = Duration::from_millis(250);

/// Where a listing starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Since {
    /// This long ago.
    Ago(Duration),
    /// At this time (ms since the epoch).
    At(i64),
}

impl Since {
    /// `10m`, `2h`, `30d`… or an RFC 3339 time.
    pub fn parse(s: &str) -> Result<Since, String> {
        if let Ok(d) = crate::config::duration::parse_duration(s) {
            return Ok(Since::Ago(d));
        }
        chrono::DateTime::parse_from_rfc3339(s.trim())
            .map(|t| Since::At(t.timestamp_millis()))
            .map_err(|_| format!("{s:?} is neither a duration (10m, 2h, 30d) nor an RFC 3339 time"))
    }

    fn at(self) -> i64 {
        match self {
            Since::Ago(d) => now_ms().saturating_sub(d.as_millis().min(i64::MAX as u128) as i64),
            Since::At(ms) => ms,
        }
    }
}

/// `REPO/STACK` as the log's repository and stack (a repository's own
/// stack, `REPO/REPO`, is the repository's events).
fn split(address: Option<&str>) -> (Option<String>, Option<String>) {
    match address.map(|a| a.split_once('/')) {
        Some(Some((repo, stack))) if repo != stack => {
            (Some(repo.to_string()), Some(stack.to_string()))
        }
        Some(Some((repo, _))) => (Some(repo.to_string()), None),
        Some(None) => (address.map(String::from), None),
        None => (None, None),
    }
}

/// Which events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventsRequest {
    pub repo: Option<String>,
    pub since: Option<Since>,
    /// The newest this many (all of them, oldest first), at most
    /// [`MAX_LIMIT`].
    pub limit: usize,
}

impl Ops {
    /// The newest `limit` events that match, oldest first.
    pub fn events(&self, req: &EventsRequest) -> Result<Vec<Event>, OpsError> {
        if let Some(repo) = &req.repo {
            self.known_to_events(repo)?;
        }
        let (repo, stack) = split(req.repo.as_deref());
        Ok(self.shared()?.db.read(|s| {
            s.events(&EventQuery {
                repo,
                stack,
                since: req.since.map(Since::at),
                after_id: None,
                limit: req.limit.min(MAX_LIMIT),
            })
        })?)
    }

    /// Events stored after `after_id`, oldest first, as they come: `each`
    /// gets every one and returns false to stop.
    pub async fn follow_events(
        &self,
        req: &EventsRequest,
        mut after_id: i64,
        mut each: impl FnMut(&Event) -> bool,
    ) -> Result<(), OpsError> {
        let shared = self.shared()?;
        let (repo, stack) = split(req.repo.as_deref());
        loop {
            let page = shared.db.read(|s| {
                s.events(&EventQuery {
                    repo: repo.clone(),
                    stack: stack.clone(),
                    since: None,
                    after_id: Some(after_id),
                    limit: 1000,
                })
            })?;
            let full = page.len() == 1000;
            for event in &page {
                after_id = event.id;
                if !each(event) {
                    return Ok(());
                }
            }
            if !full {
                tokio::time::sleep(FOLLOW_EVERY).await;
            }
        }
    }

    /// Events after `after_id`, oldest first, at most `limit` (and
    /// [`MAX_LIMIT`]).
    pub fn events_after(
        &self,
        repo: Option<&str>,
        after_id: i64,
        limit: usize,
    ) -> Result<Vec<Event>, OpsError> {
        if let Some(repo) = repo {
            self.known_to_events(repo)?;
        }
        let (repo, stack) = split(repo);
        Ok(self.shared()?.db.read(|s| {
            s.events(&EventQuery {
                repo,
                stack,
                since: None,
                after_id: Some(after_id),
                limit: limit.min(MAX_LIMIT),
            })
        })?)
    }

    /// A name the event log can be asked about: a registered repository, or
    /// a removed one whose events the log keeps. Anything else is a typo,
    /// said so rather than answered with nothing.
    fn known_to_events(&self, address: &str) -> Result<(), OpsError> {
        if let Some((repo, stack)) = address.split_once('/') {
            // A registered stack, or one the log still knows.
            let (repo_name, stack_name) = (repo.to_string(), stack.to_string());
            let logged = self.shared()?.db.read(|s| {
                Ok(!s
                    .events(&EventQuery {
                        repo: Some(repo_name),
                        stack: Some(stack_name),
                        limit: 1,
                        ..Default::default()
                    })?
                    .is_empty())
            })?;
            return match self.units(address) {
                Err(OpsError::UnknownStack { .. } | OpsError::UnknownRepo(_)) if logged => Ok(()),
                other => other.map(drop),
            };
        }
        let repo = address;
        match self.repo(repo) {
            Err(OpsError::UnknownRepo(_))
                if self.shared()?.db.read(|s| s.has_events_of(repo))? =>
            {
                Ok(())
            }
            other => other.map(drop),
        }
    }

    /// The newest event's id: where a follower that wants only new events starts.
    pub fn last_event_id(&self) -> Result<i64, OpsError> {
        Ok(self.shared()?.db.read(|s| s.last_event_id())?)
    }

    /// The events emitted from now on, as they are emitted.
    pub fn subscribe(
        &self,
    ) -> Result<tokio::sync::broadcast::Receiver<crate::events::Live>, OpsError> {
        Ok(self.shared()?.hub.subscribe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_is_a_duration_or_a_time() {
        assert_eq!(
            Since::parse("10m"),
            Ok(Since::Ago(Duration::from_secs(600)))
        );
        assert_eq!(
            Since::parse("2026-11-28T03:00:00Z"),
            Ok(Since::At(1_795_834_800_000))
        );
        assert!(Since::parse("nonsense").is_err());
        assert!(Since::parse("").is_err());
    }
}
