//! model: how a repository is reconciled, as its `kedge.yaml` says —
//! parsed by `desired`, kept by `record` with the repository's state.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Apply new commits and heal drift.
    #[default]
    Auto,
    /// Detect and report, change nothing.
    Notify,
    /// Detect, log the diff, wait for `kedge sync`.
    Manual,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Auto => "auto",
            Mode::Notify => "notify",
            Mode::Manual => "manual",
        }
    }

    pub fn parse(s: &str) -> Option<Mode> {
        match s {
            "auto" => Some(Mode::Auto),
            "notify" => Some(Mode::Notify),
            "manual" => Some(Mode::Manual),
            _ => None,
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `drift.unhealthy`: what a container the engine reports unhealthy gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Unhealthy {
    /// Record the `unhealthy` event only.
    #[default]
    Report,
    /// Restart the container (crash-loop backoff applies).
    Restart,
}

impl Unhealthy {
    pub fn as_str(self) -> &'static str {
        match self {
            Unhealthy::Report => "report",
            Unhealthy::Restart => "restart",
        }
    }

    pub fn parse(s: &str) -> Option<Unhealthy> {
        match s {
            "report" => Some(Unhealthy::Report),
            "restart" => Some(Unhealthy::Restart),
            _ => None,
        }
    }
}

/// `docker.target`: what Kedge deploys to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// `docker compose` on the engine Kedge talks to.
    #[default]
    Compose,
    /// `docker stack deploy` to the Swarm that engine manages.
    Swarm,
}

impl Target {
    pub fn as_str(self) -> &'static str {
        match self {
            Target::Compose => "compose",
            Target::Swarm => "swarm",
        }
    }

    pub fn parse(s: &str) -> Option<Target> {
        match s {
            "compose" => Some(Target::Compose),
            "swarm" => Some(Target::Swarm),
            _ => None,
        }
    }
}

/// The settings of the last rendered `kedge.yaml` the store keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedSettings {
    pub mode: Mode,
    pub prune: bool,
    pub unhealthy: Unhealthy,
    pub target: Target,
    /// `target.host`.
    pub host: String,
    /// `reconciliation.windows`, `heal_in_window_only`.
    pub windows: SyncWindows,
}

/// When new commits and updates may deploy, and whether healing waits
/// for the same windows.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SyncWindows {
    /// The windows as written, `allow` and `deny` (kept for the store).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny: Vec<String>,
    #[serde(default)]
    pub heal_in_window_only: bool,
}

impl SyncWindows {
    pub fn is_empty(&self) -> bool {
        self.allow.is_empty() && self.deny.is_empty()
    }
}
