//! events: the typed event every decision and action of Kedge becomes.
//! Stored by `record` with a monotonic id; the HTTP stream, notifications,
//! metrics and the dashboard read them. Pure types: no I/O here.

use serde::{Deserialize, Serialize};

/// What happened, with the names of the spec (operations.md §1).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    RepoAdded,
    RepoRemoved,
    RepoRenamed,
    CommitDetected,
    DeployStarted,
    DeploySucceeded,
    DeployFailed,
    RolledBack,
    PinReleased,
    DriftDetected,
    DriftHealed,
    HealFailed,
    CrashLoop,
    Unhealthy,
    StackUnchanged,
    StackAdded,
    StackOrphaned,
    StackRemoved,
    UpdateAvailable,
    UpdateApplied,
    UpdateFailed,
    HostUnreachable,
    HostRecovered,
    WindowClosedWait,
    WindowOpened,
}

impl EventKind {
    pub const ALL: [EventKind; 25] = [
        EventKind::RepoAdded,
        EventKind::RepoRemoved,
        EventKind::RepoRenamed,
        EventKind::CommitDetected,
        EventKind::DeployStarted,
        EventKind::DeploySucceeded,
        EventKind::DeployFailed,
        EventKind::RolledBack,
        EventKind::PinReleased,
        EventKind::DriftDetected,
        EventKind::DriftHealed,
        EventKind::HealFailed,
        EventKind::CrashLoop,
        EventKind::Unhealthy,
        EventKind::StackUnchanged,
        EventKind::StackAdded,
        EventKind::StackOrphaned,
        EventKind::StackRemoved,
        EventKind::UpdateAvailable,
        EventKind::UpdateApplied,
        EventKind::UpdateFailed,
        EventKind::HostUnreachable,
        EventKind::HostRecovered,
        EventKind::WindowClosedWait,
        EventKind::WindowOpened,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::RepoAdded => "repo_added",
            EventKind::RepoRemoved => "repo_removed",
            EventKind::RepoRenamed => "repo_renamed",
            EventKind::CommitDetected => "commit_detected",
            EventKind::DeployStarted => "deploy_started",
            EventKind::DeploySucceeded => "deploy_succeeded",
            EventKind::DeployFailed => "deploy_failed",
            EventKind::RolledBack => "rolled_back",
            EventKind::PinReleased => "pin_released",
            EventKind::DriftDetected => "drift_detected",
            EventKind::DriftHealed => "drift_healed",
            EventKind::HealFailed => "heal_failed",
            EventKind::CrashLoop => "crash_loop",
            EventKind::Unhealthy => "unhealthy",
            EventKind::StackUnchanged => "stack_unchanged",
            EventKind::StackAdded => "stack_added",
            EventKind::StackOrphaned => "stack_orphaned",
            EventKind::StackRemoved => "stack_removed",
            EventKind::UpdateAvailable => "update_available",
            EventKind::UpdateApplied => "update_applied",
            EventKind::UpdateFailed => "update_failed",
            EventKind::HostUnreachable => "host_unreachable",
            EventKind::HostRecovered => "host_recovered",
            EventKind::WindowClosedWait => "window_closed_wait",
            EventKind::WindowOpened => "window_opened",
        }
    }

    pub fn parse(s: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The spec's severity of each kind; `commit_detected` is a warning
    /// when the commit waits (see [`NewEvent::severity`]).
    pub fn severity(self) -> Severity {
        match self {
            EventKind::DeployFailed
            | EventKind::HealFailed
            | EventKind::CrashLoop
            | EventKind::UpdateFailed => Severity::Error,
            EventKind::RolledBack
            | EventKind::DriftDetected
            | EventKind::Unhealthy
            | EventKind::StackOrphaned
            | EventKind::HostUnreachable => Severity::Warning,
            EventKind::StackUnchanged => Severity::Debug,
            _ => Severity::Info,
        }
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// What explains Kedge's silence (`stack_unchanged`): never notified
    /// unless a sink names the kind.
    Debug,
    Info,
    Warning,
    Error,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Debug => "debug",
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }

    pub fn parse(s: &str) -> Option<Severity> {
        [
            Severity::Debug,
            Severity::Info,
            Severity::Warning,
            Severity::Error,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }
}

/// A stored event. Its JSON form is the spec's: `time` in RFC 3339,
/// `service` and `commit` null when they do not apply.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Event {
    pub id: i64,
    /// RFC 3339, milliseconds, UTC
    #[serde(serialize_with = "time_rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub time: i64,
    pub repo: String,
    /// The stack of the repository it concerns, for a repository with
    /// several (fleet.md §1); absent for a repository's own stack.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stack: Option<String>,
    pub kind: EventKind,
    pub severity: Severity,
    pub service: Option<String>,
    pub commit: Option<String>,
    pub message: String,
    /// Kind-specific details (see the README's event table).
    #[schema(value_type = Object)]
    pub fields: serde_json::Map<String, serde_json::Value>,
    /// Which `serve` emitted it and its number there (`<serve>/<n>`); `None`
    /// for an event of a command line. Not part of the event's JSON.
    #[serde(skip)]
    #[schema(ignore)]
    pub origin: Option<String>,
}

impl Event {
    /// Its repository, or `repo/stack` for a declared stack's event.
    pub fn address(&self) -> String {
        match &self.stack {
            Some(stack) => format!("{}/{stack}", self.repo),
            None => self.repo.clone(),
        }
    }

    /// `new` as `serve` emits it at `time`, before the log gives it an id
    /// (0 until then).
    pub fn emitted(new: NewEvent, time: i64, origin: String) -> Event {
        Event {
            id: 0,
            time,
            repo: new.repo,
            stack: new.stack,
            kind: new.kind,
            severity: new.severity,
            service: new.service,
            commit: new.commit,
            message: new.message,
            fields: new.fields,
            origin: Some(origin),
        }
    }
}

/// What the event broadcast carries inside `serve`.
#[derive(Debug, Clone)]
pub enum Live {
    /// Emitted by this `serve` a moment ago, not stored yet (`id` 0): a
    /// follower shows it at once. The same event comes again as
    /// [`Live::Stored`] once the log has it, with the same `origin`.
    Announced(Event),
    /// A row of the log, by any process, in id order.
    Stored(Event),
}

impl Live {
    pub fn event(&self) -> &Event {
        match self {
            Live::Announced(e) | Live::Stored(e) => e,
        }
    }
}

fn time_rfc3339<S: serde::Serializer>(ms: &i64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&crate::time::rfc3339_ms(*ms))
}

/// An event to store: [`NewEvent::new`] and the setters.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub repo: String,
    pub stack: Option<String>,
    pub kind: EventKind,
    pub severity: Severity,
    pub service: Option<String>,
    pub commit: Option<String>,
    pub message: String,
    pub fields: serde_json::Map<String, serde_json::Value>,
}

impl NewEvent {
    pub fn new(repo: &str, kind: EventKind, message: impl Into<String>) -> NewEvent {
        NewEvent {
            repo: repo.to_string(),
            stack: None,
            kind,
            severity: kind.severity(),
            service: None,
            commit: None,
            message: message.into(),
            fields: serde_json::Map::new(),
        }
    }

    /// Of this stack of the repository (not its root stack).
    pub fn stack(mut self, stack: Option<&str>) -> NewEvent {
        self.stack = stack.map(str::to_string);
        self
    }

    pub fn service(mut self, service: &str) -> NewEvent {
        self.service = Some(service.to_string());
        self
    }

    pub fn commit(mut self, commit: &str) -> NewEvent {
        self.commit = Some(commit.to_string());
        self
    }

    pub fn severity(mut self, severity: Severity) -> NewEvent {
        self.severity = severity;
        self
    }

    pub fn field(mut self, key: &str, value: impl Into<serde_json::Value>) -> NewEvent {
        self.fields.insert(key.to_string(), value.into());
        self
    }

    /// `field`, when `when` holds.
    pub fn field_if(self, when: bool, key: &str, value: impl Into<serde_json::Value>) -> NewEvent {
        match when {
            true => self.field(key, value),
            false => self,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_severities_are_the_specs() {
        for kind in EventKind::ALL {
            assert_eq!(EventKind::parse(kind.as_str()), Some(kind));
            assert_eq!(
                serde_json::to_value(kind).unwrap(),
                serde_json::json!(kind.as_str())
            );
        }
        let errors: Vec<&str> = EventKind::ALL
            .into_iter()
            .filter(|k| k.severity() == Severity::Error)
            .map(EventKind::as_str)
            .collect();
        assert_eq!(
            errors,
            [
                "deploy_failed",
                "heal_failed",
                "crash_loop",
                "update_failed"
            ]
        );
        let warnings: Vec<&str> = EventKind::ALL
            .into_iter()
            .filter(|k| k.severity() == Severity::Warning)
            .map(EventKind::as_str)
            .collect();
        assert_eq!(
            warnings,
            [
                "rolled_back",
                "drift_detected",
                "unhealthy",
                "stack_orphaned",
                "host_unreachable"
            ]
        );
    }

    #[test]
    fn the_json_form_is_the_specs() {
        let e = Event {
            id: 7,
            time: 1_700_000_000_000,
            repo: "app".into(),
            kind: EventKind::DriftDetected,
            severity: Severity::Warning,
            service: Some("web".into()),
            commit: None,
            message: "stopped".into(),
            fields: serde_json::Map::from_iter([("drift".to_string(), "stopped".into())]),
            origin: None,
            stack: None,
        };
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            serde_json::json!({
                "id": 7, "time": "2023-11-14T22:13:20.000Z", "repo": "app",
                "kind": "drift_detected", "severity": "warning", "service": "web",
                "commit": null, "message": "stopped", "fields": {"drift": "stopped"}
            })
        );
    }
}
