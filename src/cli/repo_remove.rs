//! `kedge repo remove`: unregisters a repository, optionally taking its stack down.

use std::process::ExitCode;

use super::output::{print_json, stdout};
use super::{Ctx, block_on};

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
    let removed = block_on(ctx.ops.repo_remove(&args.name, args.down))??;
    if ctx.json() {
        print_json(&removed)?;
    } else {
        writeln!(stdout(), "Removed repository {}", removed.removed)?;
    }
    Ok(ExitCode::SUCCESS)
}
