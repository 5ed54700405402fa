//! ops: git webhooks. Which secrets a hook may be signed with (the global
//! one, and the repositories' own, read from their files at each use), which
//! repositories a verified push concerns, and waking their tasks for an
//! immediate remote check. The HTTP details (headers, signatures, payload
//! formats) are the face's.

use std::io::Read as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use super::{Ops, OpsError};
use crate::config::Secret;
use crate::controller::Reason;
use crate::desired::webhook_refs::RefFilter;
use crate::source::url;

/// Why a repository's own webhook secret file is refused (at `repo add`)
/// or cannot be used (at a hook).
#[derive(Debug, thiserror::Error)]
pub enum SecretFileError {
    #[error("cannot read the webhook secret file {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the webhook secret file {} is empty", path.display())]
    Empty { path: PathBuf },
    #[error(
        "the webhook secret file {} is accessible by group or others (mode {mode:03o}); `chmod 600` it",
        path.display()
    )]
    TooOpen { path: PathBuf, mode: u32 },
}

/// A repository's own webhook secret, read now: its content without the
/// trailing newline. Like ssh with a private key, a file that its group or
/// others may read or write is refused.
pub fn read_secret_file(path: &Path) -> Result<Secret, SecretFileError> {
    let read = |source| SecretFileError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(read)?;
    let mode = file.metadata().map_err(read)?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(SecretFileError::TooOpen {
            path: path.to_path_buf(),
            mode,
        });
    }
    let mut text = String::new();
    file.read_to_string(&mut text).map_err(read)?;
    let secret = text.trim_end_matches(['\n', '\r']);
    if secret.is_empty() {
        return Err(SecretFileError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(Secret(secret.to_string()))
}

/// What a repository's hooks must be signed with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepoSecret {
    /// It has none of its own: the global secret.
    Global,
    /// Its own, the only one accepted for it.
    Own(Secret),
    /// Its own, but its file cannot be used now: nothing triggers it.
    Unusable,
}

/// A registered repository as the hooks see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookRepo {
    pub name: String,
    pub url: String,
    pub branch: String,
    pub secret: RepoSecret,
}

/// Everything a hook is checked against, read at the hook.
#[derive(Debug, Clone)]
pub struct Hooks {
    pub global: Option<Secret>,
    pub repos: Vec<HookRepo>,
}

/// What a hook asks for once its body is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookTarget {
    /// A push: the repository's addresses as the host spells them, and the
    /// full refs it moved (`refs/heads/main`, `refs/tags/v1`).
    Push {
        urls: Vec<String>,
        refs: Vec<String>,
    },
    /// The generic hook's `{"repo": NAME}`.
    Repo(String),
}

/// Which secrets a hook's signature verified with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verified {
    /// The global secret.
    pub global: bool,
    /// The repositories whose own secret it was.
    pub repos: Vec<String>,
}

impl Verified {
    pub fn any(&self) -> bool {
        self.global || !self.repos.is_empty()
    }
}

impl Hooks {
    /// Whether any secret is configured: without one the hooks are off.
    pub fn enabled(&self) -> bool {
        self.global.is_some() || self.repos.iter().any(|r| r.secret != RepoSecret::Global)
    }

    /// Whether any secret here can verify a hook now: without one, a hook
    /// that names its repository cannot be valid.
    pub fn usable(&self) -> bool {
        self.global.is_some()
            || self
                .repos
                .iter()
                .any(|r| matches!(r.secret, RepoSecret::Own(_)))
    }

    /// The repositories a verified hook is addressed to: those it names
    /// (by address, or by name) that the verifying secret may trigger —
    /// the global one those without their own, their own one the others.
    /// Whether the pushed refs concern them is `accepts`'.
    pub fn addressed(&self, target: &HookTarget, verified: &Verified) -> Vec<HookRepo> {
        let keys: Vec<String> = match target {
            HookTarget::Push { urls, .. } => {
                urls.iter().filter_map(|u| url::remote_key(u)).collect()
            }
            HookTarget::Repo(_) => Vec::new(),
        };
        self.repos
            .iter()
            .filter(|r| match &r.secret {
                RepoSecret::Global => verified.global,
                RepoSecret::Own(_) => verified.repos.contains(&r.name),
                RepoSecret::Unusable => false,
            })
            .filter(|r| match target {
                HookTarget::Repo(name) => r.name == *name,
                HookTarget::Push { .. } => {
                    url::remote_key(&r.url).is_some_and(|k| keys.contains(&k))
                }
            })
            .cloned()
            .collect()
    }
}

impl HookRepo {
    /// Whether a push of `refs` wakes this repository: a ref its
    /// `webhooks.refs` filter allows, or without one, its own branch.
    pub fn accepts(&self, filter: Option<&RefFilter>, refs: &[String]) -> bool {
        match filter {
            Some(f) => refs.iter().any(|r| f.allows(r)),
            None => refs.contains(&format!("refs/heads/{}", self.branch)),
        }
    }

    /// Why a push of `refs` does not concern it, for the hook's answer.
    pub fn refused(&self, filter: Option<&RefFilter>, refs: &[String]) -> String {
        let pushed = match refs {
            [] => "the push moved no ref (a deletion)".to_string(),
            refs => refs.join(", "),
        };
        match filter {
            Some(f) => format!(
                "{pushed}: none matches webhooks.refs of {} ({})",
                self.name,
                f.globs().join(", ")
            ),
            None => format!(
                "{pushed}: not refs/heads/{}, the branch {} follows",
                self.branch, self.name
            ),
        }
    }
}

/// The host an address names, in lower case (`None` for a local path).
pub fn host_of(address: &str) -> Option<String> {
    let key = url::remote_key(address)?;
    if key.starts_with('/') {
        return None;
    }
    key.split('/').next().map(str::to_string)
}

/// A registered repository as the hooks see it, its own secret file read now.
impl Ops {
    /// The secrets and repositories a hook is checked against, read now:
    /// a repository's own secret file is read at each hook, so a changed
    /// secret needs no restart. A file that cannot be used is logged (its
    /// path, never its content) and its repository is triggered by nothing.
    pub fn hooks(&self) -> Result<Hooks, OpsError> {
        let repos = self.shared()?.db.read(|s| s.repos())?;
        Ok(Hooks {
            global: self.global_webhook_secret(),
            repos: repos.into_iter().map(|r| self.hook_repo(r)).collect(),
        })
    }

    /// A repository as hooks see it, with its secret read now.
    fn hook_repo(&self, r: crate::record::Repo) -> HookRepo {
        let secret = match (&r.webhook_secret, &r.webhook_secret_file) {
            (Some(name), _) => match self.named_secret(name) {
                Ok(secret) => RepoSecret::Own(secret),
                Err(why) => {
                    tracing::warn!(repo = %r.name, "its webhooks cannot be verified: {why}");
                    RepoSecret::Unusable
                }
            },
            (None, None) => RepoSecret::Global,
            (None, Some(path)) => match read_secret_file(path) {
                Ok(secret) => RepoSecret::Own(secret),
                Err(e) => {
                    tracing::warn!(repo = %r.name, "its webhooks cannot be verified: {}", crate::error_chain(&e));
                    RepoSecret::Unusable
                }
            },
        };
        HookRepo {
            name: r.name,
            url: r.url.expose().to_string(),
            branch: r.branch,
            secret,
        }
    }

    /// The global config's webhook secret `name`, read now (a file must be
    /// private); why not, in words that name no secret.
    fn named_secret(&self, name: &str) -> Result<Secret, String> {
        use crate::config::credentials::{CredentialKind, find};
        use crate::config::registries::SecretRef;
        match find(&self.settings.credentials, name).map(|c| &c.kind) {
            Some(CredentialKind::WebhookSecret(SecretRef::File(path))) => {
                read_secret_file(path).map_err(|e| crate::error_chain(&e))
            }
            Some(CredentialKind::WebhookSecret(secret)) => secret
                .read()
                .map(Secret)
                .map_err(|e| format!("the credential '{name}': {e}")),
            Some(_) => Err(format!("the credential '{name}' is not a webhook secret")),
            None => Err(format!(
                "no credential named '{name}' in the global config's `credentials:`"
            )),
        }
    }

    /// As [`Ops::hooks`] for a hook whose URL names its repository: that
    /// repository alone (only its secret file is read), `None` when no
    /// repository has that name.
    pub fn hooks_for(&self, name: &str) -> Result<Option<Hooks>, OpsError> {
        let Some(repo) = self.shared()?.db.read(|s| s.repo(name))? else {
            return Ok(None);
        };
        let repo = self.hook_repo(repo);
        // Only the secret that may trigger it is tried: one HMAC at most.
        let global = match repo.secret {
            RepoSecret::Global => self.global_webhook_secret(),
            RepoSecret::Own(_) | RepoSecret::Unusable => None,
        };
        Ok(Some(Hooks {
            global,
            repos: vec![repo],
        }))
    }

    /// The global webhook secret, when one is configured (an empty one is none).
    pub fn global_webhook_secret(&self) -> Option<Secret> {
        self.settings
            .webhook_secret
            .clone()
            .filter(|s| !s.0.is_empty())
    }

    /// A repository's `webhooks.refs`, from the root `kedge.yaml` of the
    /// branch head it last saw (or its deployed commit): read from the
    /// clone at each hook, so a filter changed in Git applies from the
    /// commit that changed it on. `None` when it names none, or when the
    /// file cannot be read or parsed now (its own branch then decides; the
    /// render of that commit says what is wrong with the file).
    pub async fn webhook_filter(&self, name: &str) -> Result<Option<RefFilter>, OpsError> {
        use crate::desired::kedge_yaml::{FILE_NAME, MAX_SIZE};
        let shared = self.shared()?;
        let Some(repo) = shared.db.read(|s| s.repo(name))? else {
            return Ok(None);
        };
        let id = repo.id;
        let state = shared.db.read(move |s| s.repo_state(id))?;
        let Some(commit) = state.remote_head.or(state.deployed_commit) else {
            return Ok(None);
        };
        let git = shared.repository(&repo);
        let bytes = match git
            .read_blob(&format!("{commit}:{FILE_NAME}"), MAX_SIZE)
            .await
        {
            Ok(bytes) => bytes,
            Err(e) => {
                tracing::debug!(repo = %name, "webhook: no kedge.yaml read at {commit}: {}", crate::error_chain(&e));
                return Ok(None);
            }
        };
        let Ok(text) = String::from_utf8(bytes) else {
            return Ok(None);
        };
        let filter = crate::config::yaml::parse(&text)
            .map_err(crate::config::schema::SchemaError::from)
            .and_then(|doc| crate::desired::webhook_refs::of(&doc, &crate::process::repo_env));
        Ok(filter.unwrap_or_else(|e| {
            tracing::debug!(repo = %name, "webhook: kedge.yaml at {commit}: {e}");
            None
        }))
    }

    /// Wakes these repositories' tasks for an immediate remote check (hooks
    /// in quick succession make one pass). Returns those whose task runs.
    pub fn webhook_wake(&self, names: &[String]) -> Result<Vec<String>, OpsError> {
        let shared = self.shared()?;
        Ok(names
            .iter()
            .filter(|name| {
                let woken = shared.wake(name, Reason::Webhook);
                if !woken {
                    tracing::debug!(repo = %name, "webhook: no task runs for this repository yet");
                }
                woken
            })
            .cloned()
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo(name: &str, url: &str, branch: &str, secret: RepoSecret) -> HookRepo {
        HookRepo {
            name: name.into(),
            url: url.into(),
            branch: branch.into(),
            secret,
        }
    }

    fn own(s: &str) -> RepoSecret {
        RepoSecret::Own(Secret(s.into()))
    }

    fn push(urls: &[&str], branches: &[&str]) -> HookTarget {
        HookTarget::Push {
            urls: urls.iter().map(|s| s.to_string()).collect(),
            refs: branches.iter().map(|b| format!("refs/heads/{b}")).collect(),
        }
    }

    fn hooks() -> Hooks {
        Hooks {
            global: Some(Secret("g".into())),
            repos: vec![
                repo(
                    "app",
                    "git@github.com:acme/app.git",
                    "main",
                    RepoSecret::Global,
                ),
                repo(
                    "app-staging",
                    "https://github.com/acme/app",
                    "staging",
                    RepoSecret::Global,
                ),
                repo(
                    "private",
                    "https://github.com/acme/private.git",
                    "main",
                    own("p"),
                ),
                repo(
                    "broken",
                    "https://github.com/acme/broken.git",
                    "main",
                    RepoSecret::Unusable,
                ),
                repo(
                    "local",
                    "file:///srv/git/local.git",
                    "main",
                    RepoSecret::Global,
                ),
            ],
        }
    }

    #[test]
    fn pushes_match_by_address_and_branch_with_the_secret_that_verified() {
        let global = Verified {
            global: true,
            repos: vec![],
        };
        let private = Verified {
            global: false,
            repos: vec!["private".into()],
        };
        let both = Verified {
            global: true,
            repos: vec!["private".into()],
        };
        let github = [
            "https://github.com/Acme/App.git",
            "git@github.com:Acme/App.git",
            "https://github.com/Acme/App",
        ];
        let cases: Vec<(HookTarget, &Verified, Vec<&str>)> = vec![
            (push(&github, &["main"]), &global, vec!["app"]),
            (push(&github, &["staging"]), &global, vec!["app-staging"]),
            (
                push(&github, &["main", "staging"]),
                &global,
                vec!["app", "app-staging"],
            ),
            (push(&github, &["feature"]), &global, vec![]),
            (push(&github, &[]), &global, vec![]),
            // A repository with its own secret: only that secret triggers it.
            (
                push(&["https://github.com/acme/private"], &["main"]),
                &global,
                vec![],
            ),
            (
                push(&["https://github.com/acme/private"], &["main"]),
                &private,
                vec!["private"],
            ),
            (
                push(&["https://github.com/acme/private"], &["main"]),
                &both,
                vec!["private"],
            ),
            // … and its own secret triggers no other repository.
            (push(&github, &["main"]), &private, vec![]),
            (
                push(&["https://github.com/acme/broken"], &["main"]),
                &both,
                vec![],
            ),
            (
                push(&["https://github.com/acme/unknown"], &["main"]),
                &global,
                vec![],
            ),
            (push(&["not a url", ""], &["main"]), &global, vec![]),
            (
                push(&["/srv/git/local", "file:///srv/git/local.git/"], &["main"]),
                &global,
                vec!["local"],
            ),
            (HookTarget::Repo("app".into()), &global, vec!["app"]),
            (HookTarget::Repo("private".into()), &global, vec![]),
            (
                HookTarget::Repo("private".into()),
                &private,
                vec!["private"],
            ),
            (HookTarget::Repo("nope".into()), &both, vec![]),
        ];
        let hooks = hooks();
        for (target, verified, want) in cases {
            // Without `webhooks.refs`, a repository's own branch decides.
            let woken: Vec<String> = hooks
                .addressed(&target, verified)
                .into_iter()
                .filter(|r| match &target {
                    HookTarget::Push { refs, .. } => r.accepts(None, refs),
                    HookTarget::Repo(_) => true,
                })
                .map(|r| r.name)
                .collect();
            assert_eq!(woken, want, "{target:?} verified by {verified:?}");
        }
    }

    #[test]
    fn a_refs_filter_decides_instead_of_the_branch_and_says_why_it_refused() {
        let doc =
            crate::config::yaml::parse("webhooks:\n  refs: ['refs/heads/main', 'refs/tags/v*']\n")
                .unwrap();
        let filter = crate::desired::webhook_refs::of(&doc, &|_| None)
            .unwrap()
            .unwrap();
        let app = repo("app", "/app", "main", RepoSecret::Global);
        let refs = |r: &[&str]| r.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        for (pushed, with_filter, without) in [
            (refs(&["refs/heads/main"]), true, true),
            (refs(&["refs/heads/feature"]), false, false),
            (refs(&["refs/tags/v1.0"]), true, false),
            (refs(&["refs/tags/1.0", "refs/heads/main"]), true, true),
            (refs(&[]), false, false),
        ] {
            assert_eq!(
                app.accepts(Some(&filter), &pushed),
                with_filter,
                "{pushed:?}"
            );
            assert_eq!(app.accepts(None, &pushed), without, "{pushed:?}");
        }
        assert_eq!(
            app.refused(Some(&filter), &refs(&["refs/heads/feature"])),
            "refs/heads/feature: none matches webhooks.refs of app (refs/heads/main, refs/tags/v*)"
        );
        assert_eq!(
            app.refused(None, &refs(&["refs/tags/v1"])),
            "refs/tags/v1: not refs/heads/main, the branch app follows"
        );
    }

    #[test]
    fn hooks_are_enabled_by_any_secret() {
        let mut h = hooks();
        assert!(h.enabled());
        h.global = None;
        assert!(h.enabled(), "own secrets");
        h.repos.retain(|r| r.secret == RepoSecret::Global);
        assert!(!h.enabled());
        h.repos.push(repo("x", "/x", "main", RepoSecret::Unusable));
        assert!(h.enabled(), "a configured but unusable file still counts");
    }

    #[test]
    fn a_hook_naming_its_repository_is_usable_only_with_a_secret_for_it() {
        let one = |global: Option<&str>, secret: RepoSecret| Hooks {
            global: global.map(|g| Secret(g.into())),
            repos: vec![repo("app", "/app", "main", secret)],
        };
        for (hooks, want) in [
            (one(Some("g"), RepoSecret::Global), true),
            (one(None, RepoSecret::Global), false),
            (one(None, own("mine")), true),
            (one(None, RepoSecret::Unusable), false),
        ] {
            assert_eq!(hooks.usable(), want, "{hooks:?}");
        }
    }

    #[test]
    fn secret_files_are_read_at_each_use_and_refused_when_open_or_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hook");
        let set = |content: &str, mode: u32| {
            std::fs::write(&path, content).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        };
        set("s3cret\n", 0o600);
        assert_eq!(read_secret_file(&path).unwrap(), Secret("s3cret".into()));
        set("other\r\n", 0o400);
        assert_eq!(read_secret_file(&path).unwrap(), Secret("other".into()));
        set("s3cret\n", 0o644);
        assert!(matches!(
            read_secret_file(&path),
            Err(SecretFileError::TooOpen { mode: 0o644, .. })
        ));
        set("s3cret\n", 0o620);
        assert!(matches!(
            read_secret_file(&path),
            Err(SecretFileError::TooOpen { .. })
        ));
        set("\n", 0o600);
        assert!(matches!(
            read_secret_file(&path),
            Err(SecretFileError::Empty { .. })
        ));
        assert!(matches!(
            read_secret_file(&dir.path().join("missing")),
            Err(SecretFileError::Read { .. })
        ));
    }
}
