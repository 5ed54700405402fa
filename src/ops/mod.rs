//! ops: one function per user action — add, list and remove repositories,
//! status, diff, sync, rollback, history, events, tokens, notification
//! sinks, serve. The faces (`cli`
//! today; the HTTP API and the dashboard next) call these with typed
//! arguments and get typed reports back; they never reach into the store,
//! the engine, git or compose themselves.

pub mod command;
pub mod credentials;
pub mod dashboard;
pub mod diff_text;
pub mod events;
pub mod history;
pub mod hooks;
pub mod hosts;
pub mod metrics;
pub mod notify;
pub mod repos;
pub mod stacks;
pub mod status;
pub mod tokens;
pub mod updates;
pub mod version;

use std::sync::{Arc, OnceLock};

use crate::config::Settings;
use crate::controller::Shared;
use crate::controller::commands::CommandError;
pub use crate::model::report::{DiffReport, Pending, RollbackReport, ServiceChange, SyncReport};
use crate::observe::Engine;
use crate::record::{Repo, Store, StoreError};

use crate::controller::ServeError;
pub use crate::record::Role;

#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    #[error("no repository named '{0}'")]
    UnknownRepo(String),
    #[error("no host named '{name}' (hosts: {})", known.join(", "))]
    UnknownHost { name: String, known: Vec<String> },
    /// The stack's host is not configured, or does not answer.
    #[error(transparent)]
    Host(#[from] crate::target::pool::PoolError),
    #[error("repository {repo} has no stack named '{stack}' (its stacks: {})", stacks.join(", "))]
    UnknownStack {
        repo: String,
        stack: String,
        stacks: Vec<String>,
    },
    #[error(
        "repository {repo} has several stacks ({}): name one as {repo}/STACK or with --stack",
        stacks.join(", ")
    )]
    SeveralStacks { repo: String, stacks: Vec<String> },
    #[error(
        "stack {address} is still in Git: remove it from the repository (stacks_removed says what happens then)"
    )]
    StackInGit { address: String },
    #[error("a token named '{0}' already exists")]
    TokenExists(String),
    #[error("no token named '{0}'")]
    UnknownToken(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Url(#[from] crate::source::url::UrlError),
    #[error(transparent)]
    Name(#[from] crate::source::url::NameError),
    #[error(transparent)]
    Branch(#[from] crate::source::url::BranchError),
    #[error(transparent)]
    SecretFile(#[from] hooks::SecretFileError),
    #[error(transparent)]
    Credentials(#[from] credentials::CredentialError),
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error(transparent)]
    Reconcile(#[from] crate::controller::task::ReconcileError),
    #[error(transparent)]
    Lock(#[from] crate::controller::lock::LockError),
    #[error("cannot tell which compose project '{repo}' deployed")]
    Project {
        repo: String,
        #[source]
        source: crate::desired::kedge_yaml::KedgeYamlError,
    },
    #[error(transparent)]
    Down(#[from] crate::apply::ApplyError),
    #[error("repository '{repo}' was unregistered but its clone {} could not be deleted", path.display())]
    DeleteClone {
        repo: String,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot move the clone of '{repo}' to {}", path.display())]
    MoveClone {
        repo: String,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot keep the credentials of '{repo}' in the credential store")]
    StoreCredential {
        repo: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Serve(#[from] ServeError),
    #[error(transparent)]
    Notify(#[from] crate::notify::NotifyError),
    #[error("notification sink '{sink}'")]
    NotifyTest {
        sink: String,
        #[source]
        source: crate::notify::NotifyError,
    },
}

/// The operations, over one data directory. A command line opens the
/// store on first use (a refused `repo add` leaves no database behind);
/// `serve`'s HTTP face shares the controller's.
pub struct Ops {
    settings: Settings,
    shared: OnceLock<Arc<Shared>>,
}

impl Ops {
    pub fn new(settings: Settings) -> Ops {
        Ops {
            settings,
            shared: OnceLock::new(),
        }
    }

    /// Operations inside `serve`, on its store and engine.
    pub fn serving(shared: Arc<Shared>) -> Ops {
        let settings = shared.settings.clone();
        let cell = OnceLock::new();
        let _ = cell.set(shared);
        Ops {
            settings,
            shared: cell,
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    fn shared(&self) -> Result<&Arc<Shared>, OpsError> {
        if let Some(shared) = self.shared.get() {
            return Ok(shared);
        }
        let store = Store::open(&self.settings.data_dir)?;
        let shared = Arc::new(Shared::new(self.settings.clone(), store, Engine::new()));
        Ok(self.shared.get_or_init(|| shared))
    }

    /// A registered repository by name.
    pub fn repo(&self, name: &str) -> Result<Repo, OpsError> {
        self.shared()?
            .db
            .read(|s| s.repo(name))?
            .ok_or_else(|| OpsError::UnknownRepo(name.to_string()))
    }

    /// `kedge serve`: until SIGINT/SIGTERM, with the notification sinks
    /// and `faces` (the HTTP listener) started on the controller's state.
    pub async fn serve<F, Fut>(&self, faces: F) -> Result<(), OpsError>
    where
        F: FnOnce(Arc<Shared>, tokio::sync::watch::Receiver<bool>) -> Fut,
        Fut: std::future::Future<
                Output = Result<Option<tokio::task::JoinHandle<()>>, crate::controller::FacesError>,
            >,
    {
        Ok(
            crate::controller::serve(self.settings.clone(), |shared, shutdown| {
                crate::notify::start(&shared.settings, &shared.hub);
                crate::notify::commit_status::start(
                    &shared.settings.commit_status,
                    &shared.settings.data_dir,
                    shared.settings.public_url.clone(),
                    &shared.hub,
                );
                faces(shared, shutdown)
            })
            .await?,
        )
    }
}

/// For the faces' tests: no `.rs` file under `src/<face>` (its
/// subdirectories included) names a module past the operations layer (the
/// store, the engine, git, compose, the controller, child processes) or
/// another face (`api` and `web` are mounted side by side by `http` and
/// never import each other); `at_least` files are looked at.
#[cfg(test)]
pub(crate) fn assert_face_stays_above_ops(face: &str, at_least: usize) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src")
        .join(face);
    // Spelled in parts, so that this file does not name them itself.
    let past_ops = [
        "record",
        "observe",
        "source",
        "apply",
        "compose",
        "controller",
        "process",
    ];
    let other_faces = ["cli", "api", "web"].into_iter().filter(|f| *f != face);
    let forbidden: Vec<String> = past_ops
        .into_iter()
        .chain(other_faces)
        .map(|m| format!("crate::{m}"))
        .collect();
    let seen = crate::layering::assert_no_file_names(&dir, &forbidden);
    assert!(seen >= at_least, "only {seen} files in src/{face}");
}
