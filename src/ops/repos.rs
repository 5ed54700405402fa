//! ops: registering, listing and removing repositories.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::credentials::{self, CredentialArgs};
use super::{Ops, OpsError};
use crate::controller::lock::RepoLock;
use crate::desired::kedge_yaml;
use crate::events::{EventKind, NewEvent};
use crate::record::{NewRepo, rfc3339};
use crate::source::{clone_dir, url};

/// What `repo add` is asked.
#[derive(Debug, Clone)]
pub struct AddRepo {
    pub url: String,
    pub branch: String,
    pub name: Option<String>,
    /// The file holding the repository's own webhook secret: its path is
    /// stored, the secret is read at each hook.
    pub webhook_secret_file: Option<PathBuf>,
    /// A deploy key or a token, by reference.
    pub credentials: CredentialArgs,
    /// A relative local path is taken from here.
    pub cwd: PathBuf,
}

/// A registered repository as the faces show it: credentials redacted.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RepoRow {
    pub name: String,
    pub url: String,
    pub branch: String,
    pub mode: Option<String>,
    pub created_at: String,
    /// How Kedge authenticates to the remote: `ssh-key`, `token` or `none`
    /// (the secret itself is never shown).
    #[schema(example = "ssh-key")]
    pub auth: String,
}

impl RepoRow {
    fn of(r: crate::record::Repo) -> Self {
        RepoRow {
            url: url::redact(&r.url),
            created_at: rfc3339(r.created_at),
            auth: r.auth.kind().to_string(),
            name: r.name,
            branch: r.branch,
            mode: r.mode,
        }
    }
}

/// What `repo add` did.
#[derive(Debug, Clone)]
pub struct Added {
    pub repo: RepoRow,
    /// A local path that does not exist (yet): accepted, and said.
    pub missing_path: Option<PathBuf>,
}

/// What `repo remove` did.
#[derive(Debug, Clone, Serialize)]
pub struct Removed {
    pub removed: String,
    pub down: bool,
}

impl Ops {
    /// Registers a repository. Everything is checked before the database
    /// is opened: a refusal leaves no trace.
    pub fn repo_add(&self, req: &AddRepo) -> Result<Added, OpsError> {
        let repo_url = url::normalize_url(&req.url, &req.cwd)?;
        let name = match &req.name {
            Some(name) => {
                url::validate_name(name)?;
                name.clone()
            }
            None => url::derive_name(&repo_url)?,
        };
        url::validate_branch(&req.branch)?;
        let secret_file = req.webhook_secret_file.as_ref().map(|p| req.cwd.join(p));
        if let Some(path) = &secret_file {
            super::hooks::read_secret_file(path)?;
        }
        let auth = credentials::resolve(&req.credentials, &repo_url, &req.cwd)?;
        // Registered while serving: hidden from children from now on.
        crate::source::auth::hide_token_env(&auth);
        let shared = self.shared()?;
        let repo = shared.store().add_repo(&NewRepo {
            name: &name,
            url: &repo_url,
            branch: &req.branch,
            webhook_secret_file: secret_file.as_deref(),
            auth: &auth,
        })?;
        tracing::debug!(repo = %repo.name, "registered");
        shared.emit(
            NewEvent::new(
                &repo.name,
                EventKind::RepoAdded,
                format!(
                    "registered {} (branch {})",
                    url::redact(&repo.url),
                    repo.branch
                ),
            )
            .field("url", url::redact(&repo.url))
            .field("branch", repo.branch.clone())
            .field("auth", repo.auth.kind()),
        );
        let missing_path = url::local_dir(&repo.url).filter(|dir| !dir.exists());
        Ok(Added {
            repo: RepoRow::of(repo),
            missing_path,
        })
    }

    pub fn repo_list(&self) -> Result<Vec<RepoRow>, OpsError> {
        Ok(self
            .shared()?
            .store()
            .repos()?
            .into_iter()
            .map(RepoRow::of)
            .collect())
    }

    /// Unregisters a repository, deleting its clone and history; `down`
    /// takes its stack down first (named volumes are kept). An apply in
    /// flight, by `serve` or another command, finishes first.
    pub async fn repo_remove(&self, name: &str, down: bool) -> Result<Removed, OpsError> {
        let repo = self.repo(name)?;
        let shared = self.shared()?;
        let data_dir = &self.settings.data_dir;
        let clone = clone_dir(data_dir, &repo.name);
        let lock = RepoLock::acquire_announced(data_dir, &repo.name).await?;
        if down {
            // What was deployed, as recorded then: not the checkout's
            // kedge.yaml read again with this shell's environment.
            let state = shared.store().repo_state(repo.id)?;
            let project = match state.project {
                Some(project) => project,
                // Never deployed: the name kedge.yaml would give it.
                None => kedge_yaml::load(&clone, &crate::process::repo_env)
                    .await
                    .map_err(|source| OpsError::Project {
                        repo: repo.name.clone(),
                        source,
                    })?
                    .project_name(&repo.name)
                    .to_string(),
            };
            // The child holds the lock too, even past this command killed meanwhile.
            if state.target.as_deref() == Some(kedge_yaml::Target::Swarm.as_str()) {
                crate::apply::stack::remove(&project, Some(lock.fd())).await?;
            } else {
                crate::apply::down_stack(&project, Some(lock.fd())).await?;
            }
            tracing::info!(repo = %repo.name, %project, "stack taken down");
        }
        shared.store().remove_repo(&repo.name)?;
        shared.emit(NewEvent::new(
            &repo.name,
            EventKind::RepoRemoved,
            if down {
                "unregistered; its stack was taken down"
            } else {
                "unregistered; its containers were left running"
            },
        ));
        remove_dir(&repo.name, &clone)?;
        // The render worktree beside the clone goes with it.
        let _ = std::fs::remove_dir_all(
            crate::source::git::Repository::new(&repo.url, &repo.branch, clone).render_dir(),
        );
        Ok(Removed {
            removed: repo.name,
            down,
        })
    }
}

fn remove_dir(repo: &str, path: &Path) -> Result<(), OpsError> {
    if !path.exists() {
        return Ok(());
    }
    std::fs::remove_dir_all(path).map_err(|source| OpsError::DeleteClone {
        repo: repo.to_string(),
        path: path.to_path_buf(),
        source,
    })
}
