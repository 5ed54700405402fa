//! controller: a repository with several stacks (fleet.md §1). The
//! repository's own task fetches; at a new head it reads which stacks the
//! commit declares, registers the new ones, orphans or takes down those
//! that left Git, and wakes the stacks' tasks. A stack's task follows the
//! repository's head: no network, one worktree of the shared clone.

use std::collections::HashMap;
use std::sync::Arc;

use super::Shared;
use super::task::{ReconcileError, RepoTask};
use crate::desired::kedge_yaml::{FILE_NAME, MAX_SIZE};
use crate::desired::layout::{Removed, StackDecl};
use crate::desired::stack_of;
use crate::events::{EventKind, NewEvent};
use crate::{error_chain, short};

/// What the root `kedge.yaml` of a commit declares, cached by its object id.
#[derive(Debug, Clone)]
pub struct Layout {
    pub stacks: Vec<StackDecl>,
    pub removed: Removed,
}

/// The layout of `commit` (its tree: `object_ids`): `Ok(None)` for a
/// repository of one stack. An invalid layout is the commit's error.
pub async fn layout_at(
    task: &RepoTask,
    object_ids: &HashMap<String, String>,
) -> Result<Option<Layout>, String> {
    let Some(id) = object_ids.get(FILE_NAME) else {
        return Ok(None);
    };
    let cached = task
        .layout
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
        .filter(|(at, _)| at == id)
        .map(|(_, declared)| declared.clone());
    let declared = match cached {
        Some(declared) => declared,
        None => {
            // A file that cannot be read or parsed (a link out of the
            // repository, one over the size limit, invalid YAML) declares
            // no stacks here: rendering the repository's own stack refuses
            // it as the commit's failed deployment, naming why.
            let Ok(bytes) = task.git.read_blob(id, MAX_SIZE).await else {
                return Ok(None);
            };
            let Ok(text) = String::from_utf8(bytes) else {
                return Ok(None);
            };
            let Ok(Some(root)) = stack_of::root_file(Some(&text)) else {
                return Ok(None);
            };
            if !declares_stacks(&root) {
                return Ok(None);
            }
            let declared = stack_of::declared(Some(&root), &crate::process::repo_env)
                .map_err(|e| error_chain(&e))?;
            *task.layout.lock().unwrap_or_else(|p| p.into_inner()) =
                Some((id.clone(), declared.clone()));
            declared
        }
    };
    if declared.is_single() {
        return Ok(None);
    }
    let stacks = crate::desired::layout::expand(&declared, object_ids.keys().map(String::as_str))
        .map_err(|e| error_chain(&e))?;
    let hosts = hosts_of(task, id, &declared, &stacks, object_ids).await?;
    let stacks = crate::desired::layout::on_hosts(stacks, &hosts);
    Ok(Some(Layout {
        stacks,
        removed: declared.removed,
    }))
}

/// Each stack's `target.hosts` (its own `kedge.yaml` over `defaults:`), by
/// name: read once per version of the two files. A file that cannot be
/// read or parsed names none here: the stack's render refuses it, naming
/// why.
async fn hosts_of(
    task: &RepoTask,
    root_id: &str,
    declared: &crate::desired::layout::Declared,
    stacks: &[StackDecl],
    object_ids: &HashMap<String, String>,
) -> Result<std::collections::BTreeMap<String, Vec<String>>, String> {
    let mut out = std::collections::BTreeMap::new();
    for stack in stacks {
        let own_path = format!("{}/{FILE_NAME}", stack.path);
        let own_id = object_ids.get(&own_path).map(String::as_str).unwrap_or("-");
        let key = format!("{root_id}:{own_id}");
        let cached = task
            .hosts_of
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            .cloned();
        let hosts = match cached {
            Some(hosts) => hosts,
            None => {
                let text = match object_ids.get(&own_path) {
                    Some(id) => match task.git.read_blob(id, MAX_SIZE).await {
                        Ok(bytes) => String::from_utf8(bytes).ok(),
                        Err(_) => None,
                    },
                    None => None,
                };
                let hosts = stack_of::settings_of(
                    declared.defaults.as_ref(),
                    text.as_deref(),
                    &stack.path,
                    &crate::process::repo_env,
                )
                .map(|k| k.hosts)
                .unwrap_or_default();
                let mut cache = task.hosts_of.lock().unwrap_or_else(|p| p.into_inner());
                // Versions of files past: dropped before they add up.
                if cache.len() > 4 * stacks.len() + 64 {
                    cache.clear();
                }
                cache.insert(key, hosts.clone());
                hosts
            }
        };
        if !hosts.is_empty() {
            out.insert(stack.name.clone(), hosts);
        }
    }
    Ok(out)
}

/// Whether a root `kedge.yaml` names `stacks:` or `discover:`.
fn declares_stacks(root: &crate::config::yaml::Node) -> bool {
    match &root.value {
        crate::config::yaml::Value::Map(entries) => entries
            .iter()
            .any(|e| e.key == "stacks" || e.key == "discover"),
        _ => false,
    }
}

/// The repository's task found `commit` declaring `layout`: its stacks are
/// registered (and the others orphaned or taken down), the commit is the
/// repository's head for them, and their tasks are woken.
pub async fn apply(
    shared: &Arc<Shared>,
    task: &RepoTask,
    commit: &str,
    layout: Layout,
) -> Result<(), ReconcileError> {
    let repo_id = task.repo.id;
    let repo = task.repo.name.clone();
    if shared
        .db
        .read(|s| s.repo_state(repo_id))?
        .deployed_commit
        .is_some()
    {
        root_left(shared, task, commit, &layout).await?;
    }
    let known = shared.db.read(|s| s.stacks(Some(repo_id)))?;
    for decl in &layout.stacks {
        let before = known.iter().find(|s| !s.root && s.name == decl.name);
        let changed = before.is_none_or(|s| s.orphaned_at.is_some() || s.path != decl.path);
        // A stack as it was: nothing to write (a repository of hundreds of
        // stacks would otherwise queue hundreds of writes per commit).
        if !changed && before.is_some_and(|s| s.after == decl.after) {
            continue;
        }
        let (name, path, after) = (decl.name.clone(), decl.path.clone(), decl.after.clone());
        let added = shared
            .db
            .write(move |s| s.add_stack(repo_id, &name, &path, &after))
            .await?;
        if changed {
            tracing::info!(repo = %repo, stack = %added.name, path = %added.path, "stack added");
            shared.emit(
                NewEvent::new(
                    &repo,
                    EventKind::StackAdded,
                    format!("stack {} at {}", added.name, shown(&added.path)),
                )
                .stack(Some(&added.name))
                .commit(commit)
                .field("path", added.path.clone()),
            );
        }
    }
    for gone in known.iter().filter(|s| {
        !s.root && s.orphaned_at.is_none() && !layout.stacks.iter().any(|d| d.name == s.name)
    }) {
        match layout.removed {
            Removed::Keep => {
                let id = gone.id;
                shared.db.write(move |s| s.orphan_stack(id)).await?;
                tracing::warn!(repo = %repo, stack = %gone.name, "stack left Git: orphaned, its containers keep running");
                shared.emit(
                    NewEvent::new(
                        &repo,
                        EventKind::StackOrphaned,
                        format!(
                            "stack {} is no longer in {}: its containers keep running (`kedge stack remove {}` ends it)",
                            gone.name,
                            short(commit),
                            gone.address()
                        ),
                    )
                    .stack(Some(&gone.name))
                    .commit(commit),
                );
            }
            Removed::Down => take_down(shared, task, gone, commit).await?,
        }
    }
    let head = commit.to_string();
    let root = task.id();
    shared
        .db
        .write(move |s| {
            s.mark_settled(root, &head, None)?;
            s.clear_error(root)
        })
        .await?;
    shared.wake_stacks_of(repo_id);
    Ok(())
}

/// The repository deployed its own project until `commit` declared
/// stacks: that project becomes an orphaned stack named like the
/// repository, reported and left running (`keep`) or taken down (`down`),
/// instead of running on unseen while the root task healed it.
async fn root_left(
    shared: &Arc<Shared>,
    task: &RepoTask,
    commit: &str,
    layout: &Layout,
) -> Result<(), ReconcileError> {
    let repo_id = task.repo.id;
    let taken: Vec<String> = layout.stacks.iter().map(|d| d.name.clone()).collect();
    let left = shared
        .db
        .write(move |s| s.orphan_root_project(repo_id, &taken))
        .await?;
    let id = left.id;
    let project = shared
        .db
        .read(|s| s.repo_state(id))?
        .project
        .unwrap_or_else(|| task.repo.name.clone());
    match layout.removed {
        Removed::Keep => {
            tracing::warn!(repo = %task.repo.name, stack = %left.name, %project, "the repository's own project left Git: orphaned, its containers keep running");
            shared.emit(
                NewEvent::new(
                    &task.repo.name,
                    EventKind::StackOrphaned,
                    format!(
                        "{} declares stacks: the repository's own project {project} is no longer in Git; its containers keep running as stack {} (`kedge stack remove {} --down` ends it)",
                        short(commit),
                        left.name,
                        left.address()
                    ),
                )
                .stack(Some(&left.name))
                .commit(commit)
                .field("project", project),
            );
            Ok(())
        }
        Removed::Down => take_down(shared, task, &left, commit).await,
    }
}

/// `stacks_removed: down`: the stack's project goes down (named volumes
/// kept), the stack is forgotten.
async fn take_down(
    shared: &Arc<Shared>,
    task: &RepoTask,
    gone: &crate::record::Stack,
    commit: &str,
) -> Result<(), ReconcileError> {
    let id = gone.id;
    let state = shared.db.read(|s| s.repo_state(id))?;
    let project = state
        .project
        .clone()
        .unwrap_or_else(|| format!("{}-{}", gone.repo, gone.name));
    let lock =
        super::lock::RepoLock::acquire(&shared.settings.data_dir, &gone.file_name(), || {}).await?;
    let target = crate::target::Target::of_state(&state);
    let way = shared.hosts.way(target.host()).await?;
    if let Err(e) = target.take_down(&way, &project, Some(lock.fd())).await {
        // Kept: another pass tries again, and the operator sees why.
        tracing::warn!(repo = %task.repo.name, stack = %gone.name, "cannot take the stack down: {}", error_chain(&e));
        return Ok(());
    }
    shared.db.write(move |s| s.remove_stack(id)).await?;
    let dir = task.git.clone.with_file_name(gone.file_name());
    let _ = tokio::fs::remove_dir_all(&dir).await;
    let _ = tokio::fs::remove_dir_all(shared.secrets_dir(id)).await;
    shared.emit(
        NewEvent::new(
            &task.repo.name,
            EventKind::StackRemoved,
            format!(
                "stack {} is no longer in {}: project {project} taken down, named volumes kept",
                gone.name,
                short(commit)
            ),
        )
        .stack(Some(&gone.name))
        .commit(commit),
    );
    drop(lock);
    Ok(())
}

/// Whether the stacks `task` waits for (`after:`) have deployed `head`:
/// `Ok(None)` when they all run it, `Some(Err(stack))` when one of them
/// failed it, `Some(Ok(()))` while one is still on its way.
pub fn after_ready(
    shared: &Shared,
    task: &RepoTask,
    head: &str,
) -> Result<Option<Result<(), String>>, ReconcileError> {
    if task.stack.after.is_empty() {
        return Ok(None);
    }
    let siblings = shared.db.read(|s| s.stacks(Some(task.repo.id)))?;
    for name in &task.stack.after {
        let Some(dep) = siblings.iter().find(|s| &s.name == name && !s.root) else {
            continue;
        };
        let id = dep.id;
        let (state, newest) = shared
            .db
            .read(|s| Ok((s.repo_state(id)?, s.deployments(id, 1)?)))?;
        let failed = newest.first().is_some_and(|d| {
            d.commit == head && d.status == crate::record::DeploymentStatus::Failed
        });
        if failed || (state.target_commit.as_deref() == Some(head) && !state.runs(head)) {
            return Ok(Some(Err(name.clone())));
        }
        if !state.runs(head) {
            return Ok(Some(Ok(())));
        }
    }
    Ok(None)
}

fn shown(path: &str) -> String {
    if path.is_empty() {
        ".".into()
    } else {
        path.to_string()
    }
}
