//! controller: image updates written back to Git (fleet.md §3, `apply:
//! commit`). A candidate becomes the smallest edit that names its tag,
//! committed and pushed; the ordinary flow then deploys the commit behind
//! the health gate. A write-back commit whose gate fails is reverted.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::Shared;
use super::task::ReconcileError;
use crate::desired::updates::Updates;
use crate::events::{EventKind, NewEvent};
use crate::model::updates::UpdateRow;
use crate::record::{RepoState, Stack};
use crate::short;
use crate::source::edit::{FileText, tag_edit};
use crate::source::write_back::{Author, Change};

/// Why a stack's candidates are reported but not applied now; `None`
/// when they may be.
pub(super) fn held(state: &RepoState) -> Option<String> {
    if let Some(pinned) = &state.pinned_commit {
        return Some(format!(
            "held: the stack is pinned to {} by a rollback (applied once the pin is released)",
            short(pinned)
        ));
    }
    match state.mode.unwrap_or_default() {
        crate::model::settings::Mode::Auto => super::windows::held_updates(state),
        mode => Some(format!("held: mode {mode} only reports updates")),
    }
}

/// Commits and pushes `change` to `repo`, one write-back of a repository
/// at a time across processes (a `kedge updates check` beside `serve`):
/// its own lock, not the repository's, which the deployment that reverts a
/// failed update holds already. The error as text.
async fn push(
    shared: &Shared,
    repo: &crate::record::Repo,
    author: &Author,
    message: &str,
    change: Change<'_>,
) -> Result<crate::source::write_back::Pushed, String> {
    let _held = super::lock::RepoLock::acquire(
        &shared.settings.data_dir,
        &format!("{}.write-back", repo.name),
        || tracing::debug!(repo = %repo.name, "waiting for another write-back"),
    )
    .await
    .map_err(|e| crate::error_chain(&e))?;
    let git = shared.repository(repo);
    let scratch = scratch_dir(&git.clone);
    git.write_back(&scratch, author, message, change)
        .await
        .map_err(|e| crate::error_chain(&e))
}

/// Applies the stack's available candidates as commits, one per service;
/// the rows say what came of each.
pub(super) async fn commit(
    shared: &Arc<Shared>,
    stack: &Stack,
    config: &Updates,
    rows: &mut [UpdateRow],
    reported: &std::collections::HashMap<String, String>,
) -> Result<(), ReconcileError> {
    let (id, repo_id) = (stack.id, stack.repo_id);
    let state = shared.db.read(move |s| s.repo_state(id))?;
    let Some(repo) = shared.db.read(|s| s.repo_by_id(repo_id))? else {
        return Ok(());
    };
    let services = shared.db.read(move |s| s.services(id))?;
    let mut pushed = false;
    for row in rows.iter_mut() {
        let Some(candidate) = row.candidate.clone() else {
            continue;
        };
        if row.state != "available" {
            continue;
        }
        if let Some(why) = held(&state) {
            row.detail = Some(why);
            continue;
        }
        if row.policy == "digest" {
            row.detail = Some(
                "a new digest of the same tag names nothing to commit: `apply: deploy` deploys it"
                    .to_string(),
            );
            continue;
        }
        let Some(deployed) = services
            .get(&row.service)
            .and_then(|r| r.spec.image.clone())
        else {
            continue;
        };
        // The deployed image as written, its tag replaced.
        let Some(to) = deployed
            .strip_suffix(row.current.as_str())
            .filter(|name| name.ends_with(':'))
            .map(|name| format!("{name}{candidate}"))
        else {
            continue;
        };
        let (sid, service) = (id, row.service.clone());
        let pending = shared
            .db
            .read(move |s| s.update_commits_of(sid, &service))?;
        if let Some((commit, _)) = pending.iter().find(|(_, image)| *image == to) {
            // Pushed already: its deployment is on its way.
            row.state = "applied".to_string();
            row.detail = Some(format!("commit {} pushed, not deployed yet", short(commit)));
            continue;
        }
        let author = config
            .git_author
            .as_deref()
            .and_then(Author::parse)
            .unwrap_or_else(Author::kedge);
        let message = format!(
            "kedge: update {} to {candidate}\n\n{}: {deployed} → {to}\n",
            row.service, stack.name
        );
        let inputs = Inputs::of(stack, &state);
        let limit = shared.settings.max_compose_size;
        let (service, from_image, to_tag) =
            (row.service.clone(), deployed.clone(), candidate.clone());
        let edit = move |dir: &Path| -> Result<Vec<(String, String)>, String> {
            let compose = inputs.read(dir, &inputs.compose, limit)?;
            let env = inputs.read(dir, &inputs.env, limit)?;
            let edit = tag_edit(&compose, &env, &service, &from_image, &to_tag)
                .map_err(|e| e.to_string())?;
            Ok(vec![(edit.path, edit.text)])
        };
        match push(shared, &repo, &author, &message, Change::Files(&edit)).await {
            Ok(done) => {
                let (commit, service, from, image) = (
                    done.commit.clone(),
                    row.service.clone(),
                    deployed.clone(),
                    to.clone(),
                );
                shared
                    .db
                    .write(move |s| s.record_update_commit(id, &commit, &service, &from, &image))
                    .await?;
                tracing::info!(repo = %repo.name, stack = %stack.name, service = %row.service, commit = short(&done.commit), "update written back: {deployed} → {to}");
                shared.emit(
                    NewEvent::new(
                        &stack.repo,
                        EventKind::UpdateApplied,
                        format!(
                            "update committed: {} {} → {candidate} ({})",
                            row.service,
                            row.current,
                            short(&done.commit)
                        ),
                    )
                    .stack((!stack.root).then_some(stack.name.as_str()))
                    .service(&row.service)
                    .commit(&done.commit)
                    .field("apply", "commit")
                    .field("from", deployed.clone())
                    .field("to", to.clone())
                    .field("retried", done.retried),
                );
                row.state = "applied".to_string();
                row.detail = Some(format!("commit {} pushed", short(&done.commit)));
                pushed = true;
            }
            Err(text) => {
                tracing::warn!(repo = %repo.name, stack = %stack.name, service = %row.service, "update not written back: {text}");
                row.state = "failed".to_string();
                row.detail = Some(text.clone());
                if reported.get(&row.service) != Some(&text) {
                    shared.emit(
                        NewEvent::new(
                            &stack.repo,
                            EventKind::UpdateFailed,
                            format!("update to {candidate} not committed: {text}"),
                        )
                        .stack((!stack.root).then_some(stack.name.as_str()))
                        .service(&row.service)
                        .field("apply", "commit")
                        .field("candidate", candidate.clone()),
                    );
                }
            }
        }
    }
    if pushed {
        // The repository's task fetches now rather than at its next poll.
        shared.wake(&repo.name, super::Reason::Webhook);
    }
    Ok(())
}

/// A write-back's scratch clone: beside the clone, one per process.
fn scratch_dir(clone: &Path) -> PathBuf {
    let name = clone.file_name().unwrap_or_default().to_string_lossy();
    clone.with_file_name(format!(".{name}.write-back-{}", std::process::id()))
}

/// The files a tag may be written in: the deployed compose files, and the
/// env files compose interpolates them with (the project directory's
/// `.env`, a stack's `env_file:`s), repository-relative.
struct Inputs {
    compose: Vec<String>,
    env: Vec<String>,
}

impl Inputs {
    fn of(stack: &Stack, state: &RepoState) -> Inputs {
        let compose = state.compose_files.clone().unwrap_or_default();
        let dir = if stack.path.is_empty() {
            compose
                .first()
                .and_then(|f| Path::new(f).parent())
                .map(Path::to_path_buf)
                .unwrap_or_default()
        } else {
            PathBuf::from(&stack.path)
        };
        let mut env = vec![dir.join(".env")];
        if !stack.path.is_empty() {
            env.extend(state.env_files.iter().flatten().map(|f| dir.join(f)));
        }
        Inputs {
            compose,
            env: env.into_iter().filter_map(|p| inside(&p)).collect(),
        }
    }

    /// The files of `paths` that exist under `dir`, each at most `limit`
    /// bytes (a larger one is refused, not cut).
    fn read(&self, dir: &Path, paths: &[String], limit: u64) -> Result<Vec<FileText>, String> {
        let mut out = Vec::new();
        for path in paths {
            let full = dir.join(path);
            let Ok(meta) = std::fs::symlink_metadata(&full) else {
                continue;
            };
            if !meta.is_file() {
                continue;
            }
            if meta.len() > limit {
                return Err(format!("{path} is over {limit} bytes: not edited"));
            }
            let bytes = std::fs::read(&full).map_err(|e| format!("cannot read {path}: {e}"))?;
            let encrypted = crate::desired::secrets::detect(path, &bytes).is_some();
            let Ok(text) = String::from_utf8(bytes) else {
                continue;
            };
            out.push(FileText {
                path: path.clone(),
                text,
                encrypted,
            });
        }
        Ok(out)
    }
}

/// `path` normalized, if it stays inside the repository.
fn inside(path: &Path) -> Option<String> {
    let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
    for c in path.components() {
        match c {
            std::path::Component::Normal(p) => parts.push(p),
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                parts.pop()?;
            }
            _ => return None,
        }
    }
    let joined: PathBuf = parts.iter().collect();
    Some(joined.to_string_lossy().into_owned())
}

/// After a failed gate of `commit`, restored: if Kedge wrote the commit
/// for an update, the update failed (the image is never proposed again:
/// see `deploy`) and the commit is reverted, so that Git says again what
/// runs.
pub(super) async fn after_failed_gate(
    shared: &Arc<Shared>,
    task: &super::task::RepoTask,
    commit: &str,
    author: Option<&str>,
) -> Result<(), ReconcileError> {
    let (id, c) = (task.id(), commit.to_string());
    let updates = shared.db.read(move |s| s.update_commit(id, &c))?;
    if updates.is_empty() {
        return Ok(());
    }
    let author = author.and_then(Author::parse).unwrap_or_else(Author::kedge);
    let reverted = push(shared, &task.repo, &author, "", Change::Revert(commit)).await;
    let outcome = match &reverted {
        Ok(done) => format!("reverted by {}", short(&done.commit)),
        Err(e) => format!("not reverted: {e}"),
    };
    for (service, from, to) in &updates {
        let event = NewEvent::new(
            &task.repo.name,
            EventKind::UpdateFailed,
            format!(
                "update of {service} to {to} failed its health gate: {from} is back; commit {} {outcome}",
                short(commit)
            ),
        )
        .stack(task.stack_name())
        .service(service)
        .commit(commit)
        .field("apply", "commit")
        .field("from", from.clone())
        .field("to", to.clone());
        let event = match &reverted {
            Ok(done) => event.field("revert", done.commit.clone()),
            Err(_) => event,
        };
        task.emit(shared, event);
    }
    if reverted.is_ok() {
        shared.wake(&task.repo.name, super::Reason::Webhook);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stack(path: &str) -> Stack {
        Stack {
            id: 1,
            repo_id: 1,
            repo: "shop".into(),
            name: if path.is_empty() {
                "shop".into()
            } else {
                "web".into()
            },
            path: path.into(),
            root: path.is_empty(),
            orphaned_at: None,
            after: Vec::new(),
            created_at: 0,
        }
    }

    #[test]
    fn the_files_a_tag_may_be_written_in_follow_the_stack() {
        let state = |files: &[&str], env: Option<&[&str]>| RepoState {
            compose_files: Some(files.iter().map(|s| s.to_string()).collect()),
            env_files: env.map(|e| e.iter().map(|s| s.to_string()).collect()),
            ..Default::default()
        };
        // The root stack: the project directory is the first file's.
        let i = Inputs::of(
            &stack(""),
            &state(&["deploy/compose.yaml", "deploy/prod.yaml"], None),
        );
        assert_eq!(i.compose, ["deploy/compose.yaml", "deploy/prod.yaml"]);
        assert_eq!(i.env, ["deploy/.env"]);
        let i = Inputs::of(&stack(""), &state(&["compose.yaml"], None));
        assert_eq!(i.env, [".env"]);
        // A declared stack: its directory, and its env files under it; one
        // that climbs out of the repository is never edited.
        let i = Inputs::of(
            &stack("apps/web"),
            &state(
                &["apps/web/compose.yaml"],
                Some(&["web.env", "../shared.env", "../../../x.env"]),
            ),
        );
        assert_eq!(
            i.env,
            ["apps/web/.env", "apps/web/web.env", "apps/shared.env"]
        );
    }

    #[test]
    fn edited_files_stay_inside_the_repository() {
        assert_eq!(inside(Path::new("app/.env")).as_deref(), Some("app/.env"));
        assert_eq!(inside(Path::new("app/../.env")).as_deref(), Some(".env"));
        assert_eq!(inside(Path::new("../shared.env")), None);
        assert_eq!(inside(Path::new("/etc/passwd")), None);
    }
}
