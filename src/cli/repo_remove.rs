use std::process::ExitCode;

use anyhow::Context as _;

use super::output::print_json;
use super::{Ctx, block_on};
use crate::controller::lock::RepoLock;
use crate::desired::kedge_yaml;
use crate::source::clone_dir;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The repository to remove
    pub name: String,
    /// Also take its stack down (containers, networks and anonymous volumes;
    /// named volumes are kept)
    #[arg(long)]
    pub down: bool,
}

pub fn run(ctx: &Ctx, args: Args) -> anyhow::Result<ExitCode> {
    let store = ctx.open_store()?;
    let Some(repo) = store.repo(&args.name)? else {
        anyhow::bail!("no repository named '{}'", args.name);
    };
    let clone = clone_dir(&ctx.settings.data_dir, &repo.name);
    // An apply in flight (by `serve` or another command) finishes first.
    let lock = block_on(RepoLock::acquire_announced(
        &ctx.settings.data_dir,
        &repo.name,
    ))??;

    if args.down {
        // The project name comes from the checkout's kedge.yaml; without a
        // checkout nothing was deployed under another name.
        let project = kedge_yaml::load(&clone, &super::process_env)
            .with_context(|| format!("cannot tell which compose project '{}' deployed", repo.name))?
            .project_name(&repo.name)
            .to_string();
        // Compose holds the lock too, even past this command killed meanwhile.
        block_on(crate::apply::down_stack(&project, Some(lock.fd())))??;
        tracing::info!(repo = %repo.name, %project, "stack taken down");
    }

    store.remove_repo(&repo.name)?;
    if clone.exists() {
        std::fs::remove_dir_all(&clone).with_context(|| {
            format!(
                "repository '{}' was unregistered but its clone {} could not be deleted",
                repo.name,
                clone.display()
            )
        })?;
    }
    // The render worktree beside the clone goes with it.
    let _ = std::fs::remove_dir_all(
        crate::source::git::Repository::new(&repo.url, &repo.branch, clone).render_dir(),
    );
    if ctx.json() {
        print_json(&serde_json::json!({ "removed": repo.name, "down": args.down }))?;
    } else {
        println!("Removed repository {}", repo.name);
    }
    Ok(ExitCode::SUCCESS)
}
