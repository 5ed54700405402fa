//! ops: a diff report as text, in the spec's `kedge diff` format — what
//! the CLI prints and the dashboard shows.

use super::DiffReport;
use crate::plan::{Drift, ExtraReason};
use crate::short;

/// The spec's format: a block per service with Status, Expected and Actual.
pub fn diff_text(r: &DiffReport) -> String {
    let mut out = String::new();
    let mut block = |service: &str, status: &str, expected: &str, actual: &str| {
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(&format!(
            "Service: {service}\n  Status: {status}\n  Expected: {expected}\n  Actual: {actual}\n"
        ));
    };
    for d in &r.drifts {
        match d {
            Drift::Missing {
                service,
                expected,
                actual,
            } => block(
                service,
                "Missing",
                &containers(*expected),
                &containers(*actual),
            ),
            Drift::Stopped {
                service,
                container,
                state,
                exit_code,
            } => {
                let actual = match exit_code {
                    Some(code) => format!("{state} (exit code {code}, {container})"),
                    None => format!("{state} ({container})"),
                };
                block(service, "Not running", "running", &actual)
            }
            Drift::WrongImage {
                service,
                expected,
                actual,
                ..
            } => block(service, "Image mismatch", expected, actual),
            Drift::ConfigChanged {
                service,
                expected,
                actual,
                ..
            } => block(
                service,
                "Config changed",
                &format!("config hash {}", &expected[..expected.len().min(12)]),
                &format!("config hash {}", &actual[..actual.len().min(12)]),
            ),
            Drift::Extra {
                service,
                container,
                reason,
            } => {
                let expected = match reason {
                    ExtraReason::NotInFile => "no such service in the compose file",
                    ExtraReason::BeyondReplicas => "fewer replicas",
                };
                block(service, "Extra container", expected, container)
            }
            Drift::Unhealthy { service, container } => block(
                service,
                "Unhealthy",
                "healthy",
                &format!("unhealthy ({container})"),
            ),
            Drift::CrashLoop {
                service,
                container,
                exit_code,
            } => {
                let actual = match exit_code {
                    Some(code) => format!("restarting (exit code {code}, {container})"),
                    None => format!("restarting ({container})"),
                };
                block(service, "Crash loop", "running", &actual)
            }
        }
    }
    let drift_text = out;
    let mut text = drift_text;
    // A pin the branch moved past is news: say so before what it brings.
    if let Some(pin) = r.pin.as_ref().filter(|p| !p.holds()) {
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(&format!("Rollback: {}\n", pin.describe()));
    }
    if let Some(p) = &r.pending {
        if !text.is_empty() {
            text.push('\n');
        }
        if r.deployed_commit.as_deref() == Some(p.commit.as_str()) {
            text.push_str(&format!(
                "Deployed commit {} renders differently now (a file or variable outside git changed); `kedge sync` would apply:\n",
                short(&p.commit)
            ));
        } else {
            text.push_str(&format!(
                "Pending commit {} (deployed {}):\n",
                short(&p.commit),
                r.deployed_commit.as_deref().map(short).unwrap_or("nothing")
            ));
        }
        if let Some(from) = &p.moves_from {
            text.push_str(&format!(
                "  moves the stack from compose project {from}: every service is created in the new project, and {from} is taken down once it passes its health gate (before its `up`, when both publish the same host ports); volumes without a fixed `name:` start empty in the new project\n"
            ));
        }
        if let Some(e) = &p.error {
            text.push_str(&format!("  cannot be deployed: {e}\n"));
        }
        for c in &p.secrets_changed {
            text.push_str(&format!(
                "  secret changed: {} ({})\n",
                c.file,
                c.values.join(", ")
            ));
        }
        if p.changes.is_empty() && p.error.is_none() {
            text.push_str("  changes no service\n");
        }
        for c in &p.changes {
            text.push_str(&format!(
                "\nService: {}\n  Status: Will be {}\n  Expected: {}\n  Actual: {}\n",
                c.service, c.change, c.expected, c.actual
            ));
        }
    }
    if text.is_empty() {
        text = match (&r.deployed_commit, &r.pin) {
            (_, Some(pin)) => format!("In sync: {}\n", pin.describe()),
            (Some(c), None) => format!("In sync: the containers match commit {}\n", short(c)),
            (None, None) => "Nothing deployed yet\n".to_string(),
        };
    }
    text
}

fn containers(n: u32) -> String {
    if n == 1 {
        "1 container".into()
    } else {
        format!("{n} containers")
    }
}
