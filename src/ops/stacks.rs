//! ops: listing a repository's stacks (`kedge stack list`, the API's
//! `/api/v1/repos/{repo}/stacks`).

use std::collections::HashMap;

use serde::Serialize;

use super::{Ops, OpsError};
use crate::controller::lock::RepoLock;
use crate::events::{EventKind, NewEvent};
use crate::model::settings::{Mode, Target};
use crate::record::{Repo, Stack};

/// What a scrape or the overview shows: each repository's own stack, or
/// the stacks it declares (not the orphaned ones: nothing deploys them).
pub(super) fn deployed_units<'a>(
    repos: &'a [Repo],
    stacks: &'a [Stack],
) -> Vec<(&'a Repo, &'a Stack)> {
    repos
        .iter()
        .flat_map(|repo| {
            let mine: Vec<&Stack> = stacks.iter().filter(|s| s.repo_id == repo.id).collect();
            let declares = mine.iter().any(|s| !s.root);
            mine.into_iter()
                .filter(move |s| match declares {
                    true => !s.root && s.orphaned_at.is_none(),
                    false => s.root,
                })
                .map(move |s| (repo, s))
        })
        .collect()
}

/// A stack's state from every stack's (`states`, by id), a declared
/// stack's with its repository's remote (see [`follow_root`]).
pub(super) fn state_of(
    states: &std::collections::HashMap<i64, crate::record::RepoState>,
    repo: &Repo,
    stack: &Stack,
) -> crate::record::RepoState {
    let mut state = states.get(&stack.id).cloned().unwrap_or_default();
    if !stack.root {
        follow_root(
            &mut state,
            &states.get(&repo.id).cloned().unwrap_or_default(),
        );
    }
    state
}

/// A declared stack's state with its repository's remote: the head the
/// repository's task fetched for it, and how its checks went.
pub(super) fn follow_root(state: &mut crate::record::RepoState, root: &crate::record::RepoState) {
    state.remote_head = root.target_commit.clone().or(root.remote_head.clone());
    state.checked_at = root.checked_at;
    state.remote_ok_at = root.remote_ok_at;
    state.access_refused = root.access_refused;
}

fn names(stacks: &[Stack]) -> Vec<String> {
    stacks.iter().map(|s| s.name.clone()).collect()
}

/// Stacks in `after:` order (ties by name); a stack whose dependencies
/// are gone or circular comes last.
fn in_after_order(mut left: Vec<Stack>) -> Vec<Stack> {
    left.sort_by(|a, b| a.name.cmp(&b.name));
    let mut out: Vec<Stack> = Vec::with_capacity(left.len());
    while !left.is_empty() {
        let ready = left.iter().position(|s| {
            s.after
                .iter()
                .all(|a| out.iter().any(|d| &d.name == a) || !left.iter().any(|l| &l.name == a))
        });
        out.push(left.remove(ready.unwrap_or(0)));
    }
    out
}

/// One stack as `kedge stack list` shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct StackRow {
    pub repo: String,
    pub stack: String,
    /// Its directory in the repository (`.` for the root).
    pub path: String,
    /// Its compose project.
    pub project: String,
    #[schema(value_type = Option<String>)]
    pub mode: Option<Mode>,
    /// `compose` or `swarm`, as its last rendered `kedge.yaml` says.
    #[schema(value_type = Option<String>)]
    pub target: Option<Target>,
    /// `orphaned` (its directory or entry left Git), else its sync state
    /// as `kedge status` computes it.
    pub state: String,
}

/// `REPO`, `REPO/STACK`, or `--repo REPO --stack STACK`, as one address.
pub fn address(repo: &str, stack: Option<&str>) -> String {
    match stack {
        Some(stack) => format!("{repo}/{stack}"),
        None => repo.to_string(),
    }
}

impl Ops {
    /// What an address names: `REPO/STACK` one stack (`REPO/REPO` is a
    /// repository's own stack); `REPO` its own stack, or every stack it
    /// declares (orphaned ones too), in `after:` order.
    pub fn units(&self, address: &str) -> Result<Vec<(Repo, Stack)>, OpsError> {
        let (name, stack) = match address.split_once('/') {
            Some((repo, stack)) => (repo, Some(stack)),
            None => (address, None),
        };
        let repo = self.repo(name)?;
        let stacks = self.shared()?.db.read(|s| s.stacks(Some(repo.id)))?;
        let declared: Vec<Stack> = stacks.iter().filter(|s| !s.root).cloned().collect();
        match stack {
            // A declared stack may be named like its repository: it wins
            // over the repository's own.
            Some(wanted) => match declared
                .iter()
                .chain(stacks.iter().filter(|s| s.root))
                .find(|s| s.name == wanted)
            {
                Some(s) => Ok(vec![(repo.clone(), s.clone())]),
                None => Err(OpsError::UnknownStack {
                    repo: repo.name.clone(),
                    stack: wanted.to_string(),
                    stacks: names(if declared.is_empty() {
                        &stacks
                    } else {
                        &declared
                    }),
                }),
            },
            None if declared.is_empty() => {
                let root = Stack::root_of(&repo);
                Ok(vec![(repo, root)])
            }
            None => Ok(in_after_order(declared)
                .into_iter()
                .map(|s| (repo.clone(), s))
                .collect()),
        }
    }

    /// The one stack an address names; a repository with several is
    /// refused, listing them.
    pub fn unit(&self, address: &str) -> Result<(Repo, Stack), OpsError> {
        let mut units = self.units(address)?;
        if units.len() == 1 {
            return Ok(units.remove(0));
        }
        Err(OpsError::SeveralStacks {
            repo: address.to_string(),
            stacks: units.into_iter().map(|(_, s)| s.name).collect(),
        })
    }

    /// Every stack, or those of one repository (an unknown one is an error).
    pub async fn stack_list(&self, repo: Option<&str>) -> Result<Vec<StackRow>, OpsError> {
        let shared = self.shared()?;
        let repo_id = match repo {
            Some(name) => Some(self.repo(name)?.id),
            None => None,
        };
        let (stacks, states) = shared
            .db
            .read(|s| Ok((s.stacks(repo_id)?, s.repo_states()?)))?;
        // A root stack's sync state is its repository's status.
        let (statuses, _) = self.status(repo).await?;
        let synced: HashMap<String, String> = statuses
            .into_iter()
            .map(|s| (s.name, s.sync_state.as_str().to_string()))
            .collect();
        let declares: std::collections::HashSet<i64> = stacks
            .iter()
            .filter(|s| !s.root)
            .map(|s| s.repo_id)
            .collect();
        Ok(stacks
            .into_iter()
            .filter(|s| !(s.root && declares.contains(&s.repo_id)))
            .map(|stack| {
                let state = states.get(&stack.id).cloned().unwrap_or_default();
                let project = state.project.clone().unwrap_or_else(|| {
                    if stack.root {
                        stack.repo.clone()
                    } else {
                        format!("{}-{}", stack.repo, stack.name)
                    }
                });
                let sync = match stack.orphaned_at {
                    Some(_) => "orphaned".to_string(),
                    None if stack.root => synced
                        .get(&stack.repo)
                        .cloned()
                        .unwrap_or_else(|| "unknown".into()),
                    None => "unknown".into(),
                };
                StackRow {
                    path: if stack.path.is_empty() {
                        ".".into()
                    } else {
                        stack.path.clone()
                    },
                    project,
                    mode: state.mode,
                    target: state.target,
                    state: sync,
                    repo: stack.repo,
                    stack: stack.name,
                }
            })
            .collect())
    }
}

/// What `stack remove` did.
#[derive(Debug, Clone, Serialize)]
pub struct StackRemoved {
    pub repo: String,
    pub stack: String,
    pub down: bool,
}

impl Ops {
    /// Ends a stack that left Git (`stack_orphaned`): forgets it, its
    /// history and its files; `down` takes its project down first (named
    /// volumes kept). A stack still in Git is refused: it would come back.
    pub async fn stack_remove(&self, address: &str, down: bool) -> Result<StackRemoved, OpsError> {
        let (repo, stack) = self.unit(address)?;
        if stack.root || stack.orphaned_at.is_none() {
            return Err(OpsError::StackInGit {
                address: address.to_string(),
            });
        }
        let shared = self.shared()?;
        if down {
            take_down(shared, &repo, &stack).await?;
        }
        let id = stack.id;
        shared.db.write(move |s| s.remove_stack(id)).await?;
        remove_files(&self.settings.data_dir, &repo.name, &stack.name, id).await;
        shared.emit(
            NewEvent::new(
                &repo.name,
                EventKind::StackRemoved,
                if down {
                    format!("stack {} removed; its project was taken down", stack.name)
                } else {
                    format!(
                        "stack {} removed; its containers were left running",
                        stack.name
                    )
                },
            )
            .stack(Some(&stack.name)),
        );
        Ok(StackRemoved {
            repo: repo.name,
            stack: stack.name,
            down,
        })
    }
}

/// A declared stack's project goes down (named volumes kept), under the
/// stack's lock.
pub(super) async fn take_down(
    shared: &crate::controller::Shared,
    repo: &Repo,
    stack: &Stack,
) -> Result<(), OpsError> {
    let lock = RepoLock::acquire_announced(&shared.settings.data_dir, &stack.file_name()).await?;
    let id = stack.id;
    let state = shared.db.read(|s| s.repo_state(id))?;
    let project = state
        .project
        .clone()
        .unwrap_or_else(|| format!("{}-{}", repo.name, stack.name));
    let target = crate::target::Target::of_state(&state);
    let way = shared.hosts.way(target.host()).await?;
    target.take_down(&way, &project, Some(lock.fd())).await?;
    tracing::info!(repo = %repo.name, stack = %stack.name, %project, "stack taken down");
    Ok(())
}

/// A declared stack's worktree, render worktree and files of Kedge's own.
pub(super) async fn remove_files(
    data_dir: &std::path::Path,
    repo: &str,
    stack: &str,
    stack_id: i64,
) {
    // Its decrypted secrets first: nothing of them outlives the stack.
    crate::desired::secrets::private::remove(data_dir, stack_id);
    let clone = crate::source::clone_dir(data_dir, repo);
    let dir = clone.with_file_name(format!("{repo}@{stack}"));
    let name = format!("{repo}@{stack}");
    let _ = tokio::fs::remove_dir_all(&dir).await;
    let _ = tokio::fs::remove_dir_all(dir.with_file_name(format!(".{name}.render"))).await;
    for file in [
        "kedge-override.json",
        "kedge-stack.json",
        "kedge-snapshot.json",
    ] {
        let _ = tokio::fs::remove_file(dir.with_file_name(format!(".{name}.{file}"))).await;
    }
    let _ = tokio::fs::remove_file(dir.with_file_name(format!(".{name}.gitconfig"))).await;
}
