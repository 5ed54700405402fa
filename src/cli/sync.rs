use std::process::ExitCode;

use super::Ctx;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The repository to sync
    #[arg(long)]
    pub repo: String,
    /// Print the plan only; change nothing
    #[arg(long)]
    pub dry_run: bool,
}

pub fn run(_ctx: &Ctx, _args: Args) -> anyhow::Result<ExitCode> {
    super::not_implemented("sync")
}
