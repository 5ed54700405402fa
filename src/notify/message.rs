//! What a notification says, whatever the sink: a title, one line a person
//! understands ("shop: deploy of abc1234 'Bump api to 2.1' failed: …"),
//! the facts beside it, a link to the dashboard, and the event's JSON.

use serde_json::{Value, json};

use crate::events::{Event, EventKind, Severity};
use crate::short;

/// The longest one-line message; the webhook's JSON keeps the whole text.
const MAX_LINE: usize = 600;

/// One notification, ready for any sink.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    /// `shop: deploy failed`
    pub title: String,
    /// `shop: deploy of abc1234 'Bump api' failed: service api exited 1`
    pub line: String,
    pub severity: Severity,
    /// The event kind (`deploy_failed`), or `test` for `kedge notify test`.
    pub kind: String,
    pub repo: String,
    /// Label and value: repository, event, commit, service, time.
    pub facts: Vec<(&'static str, String)>,
    /// The repository's dashboard page, when `http.public_url` is set.
    pub link: Option<String>,
    /// RFC 3339.
    pub time: String,
    /// What the `webhook` sink posts: the event's JSON form.
    pub json: Value,
}

/// Text on one line: runs of whitespace (newlines too) become one space,
/// and a very long text is cut with an ellipsis.
pub fn one_line(text: &str, max: usize) -> String {
    let joined = text.split_whitespace().collect::<Vec<_>>().join(" ");
    cut(&joined, max)
}

/// At most `max` characters, the last one an ellipsis when cut.
pub fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

fn field<'a>(e: &'a Event, key: &str) -> Option<&'a str> {
    e.fields
        .get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// `abc1234 'Bump api to 2.1'`, `abc1234`, or nothing.
fn commit_phrase(e: &Event) -> Option<String> {
    let commit = short(e.commit.as_deref()?);
    Some(match field(e, "commit_message") {
        Some(subject) => format!("{commit} '{}'", one_line(subject, 80)),
        None => commit.to_string(),
    })
}

/// The one line that says what happened.
pub fn line(e: &Event) -> String {
    let repo = &e.address();
    let message = one_line(&e.message, MAX_LINE);
    let commit = commit_phrase(e);
    let of = commit
        .as_deref()
        .map(|c| format!(" {c}"))
        .unwrap_or_default();
    let service = e.service.as_deref().unwrap_or("?");
    let text = match e.kind {
        EventKind::DeployFailed => format!("{repo}: deploy of{of} failed: {message}"),
        EventKind::DeploySucceeded => match e.fields.get("duration_ms").and_then(Value::as_f64) {
            Some(ms) => format!("{repo}: deployed{of} in {:.1} s", ms / 1000.0),
            None => format!("{repo}: deployed{of}"),
        },
        EventKind::DeployStarted => format!("{repo}: deploying{of}"),
        EventKind::CommitDetected => match (e.fields.get("waits"), field(e, "mode")) {
            (Some(Value::Bool(true)), Some(mode)) => format!(
                "{repo}: new commit{of}, waiting: mode {mode} (`kedge sync --repo {repo}` deploys it)"
            ),
            _ if e.severity >= Severity::Warning => format!("{repo}: {message}"),
            _ => format!("{repo}: new commit{of}"),
        },
        EventKind::DriftDetected => {
            let healed = matches!(e.fields.get("healed"), Some(Value::Bool(false)));
            let tail = if healed { " (not healed)" } else { "" };
            format!("{repo}: service {service} drifted: {message}{tail}")
        }
        EventKind::DriftHealed => format!("{repo}: service {service} healed: {message}"),
        EventKind::HealFailed => format!("{repo}: heal of service {service} failed: {message}"),
        EventKind::CrashLoop => format!("{repo}: service {service} is {message}"),
        EventKind::Unhealthy => format!("{repo}: service {service} is unhealthy: {message}"),
        EventKind::UpdateAvailable | EventKind::UpdateApplied | EventKind::UpdateFailed => {
            format!("{repo}: service {service}: {message}")
        }
        EventKind::StackUnchanged
        | EventKind::WindowClosedWait
        | EventKind::WindowOpened
        | EventKind::HostUnreachable
        | EventKind::HostRecovered
        | EventKind::StackAdded
        | EventKind::StackOrphaned
        | EventKind::StackRemoved => format!("{repo}: {message}"),
        EventKind::RolledBack
        | EventKind::PinReleased
        | EventKind::RepoAdded
        | EventKind::RepoRemoved
        | EventKind::RepoRenamed => format!("{repo}: {message}"),
    };
    cut(&text, MAX_LINE)
}

impl Notice {
    /// The notification of a stored event; `public_url` without its
    /// trailing slash.
    pub fn of(e: &Event, public_url: Option<&str>) -> Notice {
        let time = crate::time::rfc3339_ms(e.time);
        let mut facts = vec![
            ("Repository", e.repo.clone()),
            (
                "Event",
                format!("{} ({})", e.kind.as_str(), e.severity.as_str()),
            ),
        ];
        if let Some(stack) = &e.stack {
            facts.insert(1, ("Stack", stack.clone()));
        }
        if let Some(commit) = commit_phrase(e) {
            facts.push(("Commit", commit));
        }
        if let Some(service) = &e.service {
            facts.push(("Service", service.clone()));
        }
        facts.push(("Time", time.clone()));
        Notice {
            title: format!("{}: {}", e.address(), e.kind.as_str().replace('_', " ")),
            line: line(e),
            severity: e.severity,
            kind: e.kind.as_str().to_string(),
            repo: e.repo.clone(),
            facts,
            link: public_url.map(|base| format!("{base}/repos/{}", e.repo)),
            time,
            json: serde_json::to_value(e).unwrap_or(Value::Null),
        }
    }

    /// What `kedge notify test NAME` sends: an event-shaped message of kind
    /// `test`, id 0, for no repository.
    pub fn test(sink: &str, public_url: Option<&str>, now_ms: i64) -> Notice {
        let time = crate::time::rfc3339_ms(now_ms);
        let message = format!("test notification for sink `{sink}` (kedge notify test)");
        Notice {
            title: "kedge: test notification".into(),
            line: format!("kedge: {message}"),
            severity: Severity::Info,
            kind: "test".into(),
            repo: String::new(),
            facts: vec![("Sink", sink.to_string()), ("Time", time.clone())],
            link: public_url.map(|base| format!("{base}/")),
            json: json!({
                "id": 0, "time": time, "repo": "", "kind": "test", "severity": "info",
                "service": null, "commit": null, "message": message, "fields": {"sink": sink}
            }),
            time,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: EventKind, message: &str) -> Event {
        Event {
            id: 42,
            time: 1_700_000_000_000,
            repo: "shop".into(),
            kind,
            severity: kind.severity(),
            service: None,
            commit: Some("abc1234def5678".into()),
            message: message.into(),
            fields: serde_json::Map::new(),
            origin: None,
            stack: None,
        }
    }

    fn with(mut e: Event, key: &str, value: Value) -> Event {
        e.fields.insert(key.into(), value);
        e
    }

    #[test]
    fn each_kind_reads_as_one_line() {
        let failed = with(
            event(
                EventKind::DeployFailed,
                "compose up failed:\n  service api exited 1",
            ),
            "commit_message",
            json!("Bump api to 2.1"),
        );
        assert_eq!(
            line(&failed),
            "shop: deploy of abc1234 'Bump api to 2.1' failed: compose up failed: service api exited 1"
        );
        let ok = with(
            with(
                event(EventKind::DeploySucceeded, "deployed abc1234 in 3.2 s"),
                "commit_message",
                json!("Bump api"),
            ),
            "duration_ms",
            json!(3210),
        );
        assert_eq!(line(&ok), "shop: deployed abc1234 'Bump api' in 3.2 s");
        let waiting = with(
            with(
                with(
                    event(EventKind::CommitDetected, "new commit abc1234 waits"),
                    "waits",
                    json!(true),
                ),
                "mode",
                json!("notify"),
            ),
            "commit_message",
            json!("Add db"),
        );
        assert_eq!(
            line(&waiting),
            "shop: new commit abc1234 'Add db', waiting: mode notify (`kedge sync --repo shop` deploys it)"
        );
        let mut drift = with(
            event(
                EventKind::DriftDetected,
                "stopped: shop-web-1 is exited (exit code 137)",
            ),
            "healed",
            json!(false),
        );
        drift.service = Some("web".into());
        drift.commit = None;
        assert_eq!(
            line(&drift),
            "shop: service web drifted: stopped: shop-web-1 is exited (exit code 137) (not healed)"
        );
        let mut heal = event(
            EventKind::HealFailed,
            "start shop-web-1: failed: no such image",
        );
        heal.service = Some("web".into());
        assert_eq!(
            line(&heal),
            "shop: heal of service web failed: start shop-web-1: failed: no such image"
        );
        let long = event(EventKind::DeployFailed, &"x".repeat(5000));
        assert_eq!(line(&long).chars().count(), MAX_LINE);
        assert!(line(&long).ends_with('…'));
    }

    #[test]
    fn a_notice_carries_the_facts_the_link_and_the_events_json() {
        let mut e = with(
            event(EventKind::DeployFailed, "boom"),
            "commit_message",
            json!("Bump"),
        );
        e.service = Some("api".into());
        let n = Notice::of(&e, Some("https://kedge.example.com"));
        assert_eq!(n.title, "shop: deploy failed");
        assert_eq!(
            n.link.as_deref(),
            Some("https://kedge.example.com/repos/shop")
        );
        assert_eq!(
            n.facts,
            [
                ("Repository", "shop".to_string()),
                ("Event", "deploy_failed (error)".to_string()),
                ("Commit", "abc1234 'Bump'".to_string()),
                ("Service", "api".to_string()),
                ("Time", "2023-11-14T22:13:20.000Z".to_string()),
            ]
        );
        assert_eq!(n.json["id"], 42);
        assert_eq!(n.json["kind"], "deploy_failed");
        assert_eq!(n.json["commit"], "abc1234def5678");
        assert_eq!(Notice::of(&e, None).link, None);
        let t = Notice::test("ops", None, 1_700_000_000_000);
        assert_eq!(t.json["kind"], "test");
        assert_eq!(t.json["fields"]["sink"], "ops");
        assert!(t.line.contains("`ops`"), "{}", t.line);
    }

    /// A declared stack's notification names `repo/stack`, and says the
    /// stack among its facts; its de-duplication key is its own.
    #[test]
    fn a_stacks_notice_names_the_stack() {
        let e = Event {
            stack: Some("db".into()),
            ..event(EventKind::DeployFailed, "compose up failed: port taken")
        };
        assert_eq!(
            line(&e),
            "shop/db: deploy of abc1234 failed: compose up failed: port taken"
        );
        let notice = Notice::of(&e, None);
        assert_eq!(notice.title, "shop/db: deploy failed");
        assert_eq!(notice.facts[1], ("Stack", "db".to_string()));
        let root = event(EventKind::DeployFailed, "compose up failed: port taken");
        assert_ne!(
            crate::notify::follow::dedup_key(&e),
            crate::notify::follow::dedup_key(&root)
        );
        assert_eq!(notice.json["stack"], "db");
        assert!(Notice::of(&root, None).json.get("stack").is_none());
    }
}
