//! ops: registering, listing and removing repositories.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::credentials::{self, CredentialArgs};
use super::{Ops, OpsError};
use crate::config::credentials::Credential;
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
    /// The global config's webhook secret for this repository, by name.
    pub webhook_secret: Option<String>,
    /// A deploy key or a token, by reference, or a credential by name.
    pub credentials: CredentialArgs,
    /// A relative local path is taken from here.
    pub cwd: PathBuf,
    /// Whether the request may name this host's files, variables and
    /// local paths: the CLI, run on the host by its operator. Over HTTP it
    /// may not: only remote addresses and names from the global config.
    pub host_paths: bool,
}

/// A registered repository as the faces show it: credentials redacted.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RepoRow {
    pub name: String,
    /// Credentials redacted
    #[schema(value_type = String)]
    pub url: url::RepoUrl,
    pub branch: String,
    #[schema(value_type = Option<String>)]
    pub mode: Option<kedge_yaml::Mode>,
    pub created_at: String,
    /// How Kedge authenticates to the remote: `ssh-key`, `token` or `none`
    /// (the secret itself is never shown).
    #[schema(example = "ssh-key")]
    pub auth: String,
    /// The global config's credential it authenticates with, by name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

impl RepoRow {
    fn of(r: crate::record::Repo, credentials: &[Credential]) -> Self {
        let auth = match &r.credential {
            Some(name) => crate::config::credentials::find(credentials, name)
                .map_or("unknown", Credential::kind_name),
            None => r.auth.kind(),
        };
        RepoRow {
            url: r.url,
            created_at: rfc3339(r.created_at),
            auth: auth.to_string(),
            credential: r.credential,
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

/// What `repo rename` did.
#[derive(Debug, Clone, Serialize)]
pub struct Renamed {
    pub from: String,
    pub to: String,
    /// The compose project its stack runs as, unchanged by the rename.
    pub project: Option<String>,
    /// The project its next deployment moves the stack to, when that is
    /// the new name (no `docker.project_name` pins it).
    pub moves_to: Option<String>,
}

impl Ops {
    /// Registers a repository. Everything is checked before the database
    /// is opened: a refusal leaves no trace.
    pub async fn repo_add(&self, req: &AddRepo) -> Result<Added, OpsError> {
        if !req.host_paths {
            // Judged on the form alone: nothing on the host is looked at.
            if url::is_local_form(&req.url) {
                return Err(url::UrlError::LocalOverApi(req.url.trim().to_string()).into());
            }
            if url::has_credentials(&req.url) {
                return Err(url::UrlError::CredentialsOverApi(url::redact(req.url.trim())).into());
            }
        }
        let mut repo_url = url::normalize_url(&req.url, &req.cwd)?;
        let name = match &req.name {
            Some(name) => {
                url::validate_name(name)?;
                name.clone()
            }
            None => url::derive_name(&repo_url)?,
        };
        url::validate_branch(&req.branch)?;
        let credentials = &self.settings.credentials;
        if req.webhook_secret.is_some() && req.webhook_secret_file.is_some() {
            return Err(credentials::CredentialError::Conflict(
                "--webhook-secret",
                "--webhook-secret-file",
            )
            .into());
        }
        if let Some(secret) = &req.webhook_secret {
            credentials::check_webhook_secret(secret, credentials)?;
        }
        let secret_file = req.webhook_secret_file.as_ref().map(|p| req.cwd.join(p));
        if let Some(path) = &secret_file {
            super::hooks::read_secret_file(path)?;
        }
        let mut auth = credentials::resolve(&req.credentials, &repo_url, &req.cwd, credentials)?;
        // Registered while serving: hidden from children from now on.
        crate::source::auth::hide_token_env(&auth);
        // Credentials in the URL go to the credential store, not the database.
        let mut stored = None;
        if url::has_credentials(&repo_url) {
            match url::split_userinfo(&repo_url) {
                Some((bare, userinfo)) if auth == crate::source::auth::GitAuth::None => {
                    let file =
                        crate::record::credstore::store(&self.settings.data_dir, &name, &userinfo)
                            .map_err(|source| OpsError::StoreCredential {
                                repo: name.clone(),
                                source,
                            })?;
                    auth = crate::source::auth::GitAuth::Token {
                        token: crate::config::registries::SecretRef::File(file.clone()),
                        username: crate::source::auth::USERINFO_USER.to_string(),
                    };
                    stored = Some(file);
                    repo_url = bare;
                }
                _ => repo_url = url::strip_credentials(&repo_url),
            }
        }
        let shared = self.shared()?;
        let (named, branch) = (name.clone(), req.branch.clone());
        let credential = req.credentials.credential.clone();
        let webhook_secret = req.webhook_secret.clone();
        let added = shared
            .db
            .write(move |s| {
                s.add_repo(&NewRepo {
                    name: &named,
                    url: &repo_url,
                    branch: &branch,
                    webhook_secret_file: secret_file.as_deref(),
                    auth: &auth,
                    credential: credential.as_deref(),
                    webhook_secret: webhook_secret.as_deref(),
                })
            })
            .await;
        let repo = match added {
            Ok(repo) => repo,
            Err(e) => {
                if let Some(file) = &stored {
                    crate::record::credstore::forget(&self.settings.data_dir, file);
                }
                return Err(e.into());
            }
        };
        tracing::debug!(repo = %repo.name, "registered");
        let kind = RepoRow::of(repo.clone(), credentials).auth;
        shared.emit(
            NewEvent::new(
                &repo.name,
                EventKind::RepoAdded,
                format!("registered {} (branch {})", repo.url, repo.branch),
            )
            .field("url", repo.url.to_string())
            .field("branch", repo.branch.clone())
            .field("auth", kind),
        );
        let missing_path = url::local_dir(repo.url.expose()).filter(|dir| !dir.exists());
        Ok(Added {
            repo: RepoRow::of(repo, credentials),
            missing_path,
        })
    }

    /// Renames a repository, keeping its history, state and events. Its
    /// stack keeps running as its compose project; when the project came
    /// from the name, the next deployment moves it (see `kedge diff`). An
    /// apply in flight finishes first.
    pub async fn repo_rename(&self, from: &str, to: &str) -> Result<Renamed, OpsError> {
        url::validate_name(to)?;
        let repo = self.repo(from)?;
        if self.repo(to).is_ok() {
            return Err(crate::record::StoreError::DuplicateName(to.to_string()).into());
        }
        let shared = self.shared()?;
        let data_dir = &self.settings.data_dir;
        let _lock = RepoLock::acquire_announced(data_dir, &repo.name).await?;
        let (old_clone, new_clone) = (clone_dir(data_dir, &repo.name), clone_dir(data_dir, to));
        let old_git =
            crate::source::git::Repository::new(repo.url.expose(), &repo.branch, old_clone.clone());
        if old_clone.exists() {
            tokio::fs::rename(&old_clone, &new_clone)
                .await
                .map_err(|source| OpsError::MoveClone {
                    repo: repo.name.clone(),
                    path: new_clone.clone(),
                    source,
                })?;
        }
        let (old, new) = (repo.name.clone(), to.to_string());
        if let Err(e) = shared.db.write(move |s| s.rename_repo(&old, &new)).await {
            // Put back: the registration did not change.
            if new_clone.exists() {
                let _ = tokio::fs::rename(&new_clone, &old_clone).await;
            }
            return Err(e.into());
        }
        // Made again beside the clone under its new name when needed.
        let _ = tokio::fs::remove_dir_all(old_git.render_dir()).await;
        let _ = tokio::fs::remove_file(old_git.trust_config()).await;
        let state = shared.db.read(|s| s.repo_state(repo.id))?;
        let named_by_repo = state.project.as_deref() == Some(repo.name.as_str());
        shared.emit(
            NewEvent::new(
                to,
                EventKind::RepoRenamed,
                format!("renamed from {}", repo.name),
            )
            .field("from", repo.name.clone()),
        );
        Ok(Renamed {
            from: repo.name,
            to: to.to_string(),
            moves_to: named_by_repo.then(|| to.to_string()),
            project: state.project,
        })
    }

    pub fn repo_list(&self) -> Result<Vec<RepoRow>, OpsError> {
        Ok(self
            .shared()?
            .db
            .read(|s| s.repos())?
            .into_iter()
            .map(|r| RepoRow::of(r, &self.settings.credentials))
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
            let state = shared.db.read(|s| s.repo_state(repo.id))?;
            let project = match state.project.clone() {
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
            let target = crate::target::Target::of_state(&state);
            let way = shared.hosts.way(target.host()).await?;
            target.take_down(&way, &project, Some(lock.fd())).await?;
            tracing::info!(repo = %repo.name, %project, "stack taken down");
            // And every stack the repository declares, each under its lock.
            let stacks = shared.db.read(|s| s.stacks(Some(repo.id)))?;
            for stack in stacks.iter().filter(|s| !s.root) {
                super::stacks::take_down(shared, &repo, stack).await?;
            }
        }
        for stack in shared
            .db
            .read(|s| s.stacks(Some(repo.id)))?
            .iter()
            .filter(|s| !s.root)
        {
            super::stacks::remove_files(data_dir, &repo.name, &stack.name, stack.id).await;
        }
        // The repository's own stack's decrypted secrets.
        crate::desired::secrets::private::remove(data_dir, repo.id);
        let named = repo.name.clone();
        shared.db.write(move |s| s.remove_repo(&named)).await?;
        shared.emit(NewEvent::new(
            &repo.name,
            EventKind::RepoRemoved,
            if down {
                "unregistered; its stack was taken down"
            } else {
                "unregistered; its containers were left running"
            },
        ));
        remove_dir(&repo.name, &clone).await?;
        if let crate::source::auth::GitAuth::Token {
            token: crate::config::registries::SecretRef::File(file),
            ..
        } = &repo.auth
        {
            crate::record::credstore::forget(data_dir, file);
        }
        // The render worktree and the trust config beside the clone go with it.
        let git = crate::source::git::Repository::new(repo.url.expose(), &repo.branch, clone);
        let _ = tokio::fs::remove_dir_all(git.render_dir()).await;
        let _ = tokio::fs::remove_file(git.trust_config()).await;
        Ok(Removed {
            removed: repo.name,
            down,
        })
    }
}

/// On the blocking pool: a large clone takes a while to delete.
async fn remove_dir(repo: &str, path: &Path) -> Result<(), OpsError> {
    if !path.exists() {
        return Ok(());
    }
    tokio::fs::remove_dir_all(path)
        .await
        .map_err(|source| OpsError::DeleteClone {
            repo: repo.to_string(),
            path: path.to_path_buf(),
            source,
        })
}
