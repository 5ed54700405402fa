//! model: deploy hooks (fleet.md §5, `deploy.before`/`deploy.after`): one
//! run of a hook service, as the deployment record and its event keep it.

use serde::{Deserialize, Serialize};

/// When a hook runs: before `up`, or after the health gate passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HookPhase {
    Before,
    After,
}

impl HookPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            HookPhase::Before => "before",
            HookPhase::After => "after",
        }
    }
}

/// One hook service run with `compose run --rm`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HookRun {
    #[schema(value_type = String)]
    pub phase: HookPhase,
    pub service: String,
    pub ok: bool,
    /// How it ended: `exit status: 0`, `exit status: 3`, `timed out after 2m`.
    pub status: String,
    pub duration_ms: u64,
    /// The end of what it wrote (stdout, then stderr), at most
    /// [`MAX_OUTPUT`] bytes each; a cut says so first.
    pub output: String,
}

/// How much of a hook's stdout and of its stderr is kept.
pub const MAX_OUTPUT: u64 = 2048;

impl HookRun {
    /// `deploy.before hook migrate failed (exit status: 3): <its last line>`.
    pub fn failure(&self) -> String {
        let last = self
            .output
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .map(|l| format!(": {}", l.trim()))
            .unwrap_or_default();
        format!(
            "deploy.{} hook {} failed ({}){last}",
            self.phase.as_str(),
            self.service,
            self.status
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_names_the_phase_the_service_the_status_and_the_last_line() {
        let mut run = HookRun {
            phase: HookPhase::Before,
            service: "migrate".into(),
            ok: false,
            status: "exit status: 3".into(),
            duration_ms: 20,
            output: "applying 0042\nERROR: relation exists\n\n".into(),
        };
        assert_eq!(
            run.failure(),
            "deploy.before hook migrate failed (exit status: 3): ERROR: relation exists"
        );
        run.output.clear();
        run.phase = HookPhase::After;
        assert_eq!(
            run.failure(),
            "deploy.after hook migrate failed (exit status: 3)"
        );
    }
}
