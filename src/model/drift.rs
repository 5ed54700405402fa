//! model: the drift types the planner finds and every face shows (the
//! spec's names), as values: what `status`, `diff`, events and metrics say.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExtraReason {
    NotInFile,
    BeyondReplicas,
}

/// The spec's drift types.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Drift {
    Missing {
        service: String,
        expected: u32,
        actual: u32,
    },
    Stopped {
        service: String,
        container: String,
        state: String,
        exit_code: Option<i64>,
    },
    WrongImage {
        service: String,
        container: String,
        expected: String,
        actual: String,
    },
    ConfigChanged {
        service: String,
        container: String,
        expected: String,
        actual: String,
    },
    Extra {
        service: String,
        container: String,
        reason: ExtraReason,
    },
    /// Running, but its healthcheck says unhealthy.
    Unhealthy { service: String, container: String },
    /// The engine keeps restarting it (`restart: always`, …): its process
    /// exits again and again. Kedge cannot heal that; it reports it.
    CrashLoop {
        service: String,
        container: String,
        exit_code: Option<i64>,
    },
}

impl Drift {
    pub fn service(&self) -> &str {
        match self {
            Drift::Missing { service, .. }
            | Drift::Stopped { service, .. }
            | Drift::WrongImage { service, .. }
            | Drift::ConfigChanged { service, .. }
            | Drift::Extra { service, .. }
            | Drift::Unhealthy { service, .. }
            | Drift::CrashLoop { service, .. } => service,
        }
    }

    /// One line for logs, events and `status`.
    pub fn describe(&self) -> String {
        match self {
            Drift::Missing {
                expected, actual, ..
            } => {
                format!("missing: {actual} of {expected} containers exist")
            }
            Drift::Stopped {
                container,
                state,
                exit_code,
                ..
            } => match exit_code {
                Some(code) => format!("stopped: {container} is {state} (exit code {code})"),
                None => format!("stopped: {container} is {state}"),
            },
            Drift::WrongImage {
                container,
                expected,
                actual,
                ..
            } => {
                format!("wrong image: {container} runs {actual}, expected {expected}")
            }
            Drift::ConfigChanged { container, .. } => {
                format!("config changed: {container} differs from what Kedge applied")
            }
            Drift::Extra {
                container, reason, ..
            } => match reason {
                ExtraReason::NotInFile => {
                    format!("extra: {container} belongs to no service in the compose file")
                }
                ExtraReason::BeyondReplicas => {
                    format!("extra: {container} is beyond the replica count")
                }
            },
            Drift::Unhealthy { container, .. } => {
                format!("unhealthy: {container}'s healthcheck fails")
            }
            Drift::CrashLoop {
                container,
                exit_code,
                ..
            } => match exit_code {
                Some(code) => format!(
                    "crash loop: {container} keeps exiting (exit code {code}) and the engine restarts it"
                ),
                None => format!("crash loop: {container} keeps exiting and the engine restarts it"),
            },
        }
    }

    /// Every drift type's name, as [`Drift::kind`] gives them.
    pub const KINDS: [&'static str; 7] = [
        "missing",
        "stopped",
        "wrong_image",
        "config_changed",
        "extra",
        "unhealthy",
        "crash_loop",
    ];

    /// The spec's name of the drift type.
    pub fn kind(&self) -> &'static str {
        match self {
            Drift::Missing { .. } => "missing",
            Drift::Stopped { .. } => "stopped",
            Drift::WrongImage { .. } => "wrong_image",
            Drift::ConfigChanged { .. } => "config_changed",
            Drift::Extra { .. } => "extra",
            Drift::Unhealthy { .. } => "unhealthy",
            Drift::CrashLoop { .. } => "crash_loop",
        }
    }
}
