//! apply: changes the engine through the `docker compose` v2 CLI, the
//! reference implementation of the compose spec (source → desired → observe
//! → plan → **apply** → record).

use std::time::Duration;

use crate::process::{Cmd, ProcessError};

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("cannot take down compose project {project}")]
    Down {
        project: String,
        #[source]
        source: ProcessError,
    },
}

const DOWN_TIMEOUT: Duration = Duration::from_secs(300);

/// `docker compose -p PROJECT down --remove-orphans`. Compose finds the
/// containers by their project label, so no compose file is needed; named
/// volumes are kept (no `-v`): taking a stack down never loses data.
pub async fn down(project: &str) -> Result<(), ApplyError> {
    Cmd::new("docker")
        .args(["compose", "-p", project, "down", "--remove-orphans"])
        .cwd(std::env::temp_dir())
        .timeout(DOWN_TIMEOUT)
        .run()
        .await
        .map(drop)
        .map_err(|source| ApplyError::Down {
            project: project.to_string(),
            source,
        })
}
