//! model: what the operations are asked and report, as values: how a sync
//! runs; a sync, a rollback, a diff and what it would change, a rollback
//! pin, remote checks. Built by the controller, returned by `ops`, shown
//! by the faces.

use serde::Serialize;

use super::drift::Drift;
use super::settings::Mode;
use crate::short;

/// How a sync runs: `dry_run` changes nothing, `no_wait` skips the health
/// gate, `force` deploys whatever the sync windows say.
#[derive(Debug, Clone, Copy, Default)]
pub struct SyncHow {
    pub dry_run: bool,
    pub no_wait: bool,
    pub force: bool,
}

/// What `sync` did or, with `--dry-run`, would do.
#[derive(Debug, Clone, Serialize)]
pub struct SyncReport {
    pub repo: String,
    pub commit: String,
    pub dry_run: bool,
    /// Services the commit (re)creates.
    pub changed: Vec<String>,
    /// Drift healed (or to heal) after the deployment.
    pub heals: Vec<String>,
    pub released_pin: Option<String>,
    /// Whether the changed services went through the health gate.
    pub gated: bool,
}

/// What `rollback` did.
#[derive(Debug, Clone, Serialize)]
pub struct RollbackReport {
    pub repo: String,
    pub commit: String,
    pub changed: Vec<String>,
    pub pinned_at_head: Option<String>,
    /// The commit was gone from the repository: its stored compose snapshot
    /// was applied instead.
    pub from_snapshot: bool,
}

/// How a commit changes one service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ServiceChange {
    pub service: String,
    /// added, removed or updated
    #[schema(value_type = String)]
    pub change: &'static str,
    pub expected: String,
    pub actual: String,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Pending {
    pub commit: String,
    pub changes: Vec<ServiceChange>,
    /// The compose project the stack leaves, when the commit moves it to
    /// another (`docker.project_name` changed): every service is created
    /// anew in the new one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub moves_from: Option<String>,
    /// Set when the pending commit cannot be rendered.
    pub error: Option<String>,
    /// The SOPS files whose values the commit changes, each with the
    /// names of the values that differ (never a value).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets_changed: Vec<SecretChange>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct SecretChange {
    pub file: String,
    pub values: Vec<String>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DiffReport {
    pub repo: String,
    #[schema(value_type = Option<String>)]
    pub mode: Option<Mode>,
    pub deployed_commit: Option<String>,
    pub remote_head: Option<String>,
    pub pinned_commit: Option<String>,
    /// The rollback pin, and whether the branch moved past it.
    pub pin: Option<PinView>,
    pub drifts: Vec<Drift>,
    pub pending: Option<Pending>,
    /// Set when the remote could not be asked for its head.
    pub remote_error: Option<String>,
}

impl DiffReport {
    pub fn in_sync(&self) -> bool {
        self.drifts.is_empty() && self.pending.is_none()
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

/// How a repository's remote checks (`ls-remote`) went since `serve` started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GitChecks {
    pub success: u64,
    pub failure: u64,
}
