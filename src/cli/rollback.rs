use std::process::ExitCode;

use super::Ctx;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The repository to roll back
    #[arg(long)]
    pub repo: String,
    /// A deployed commit: full hash or a unique prefix of at least 4 characters
    pub commit: String,
}

pub fn run(_ctx: &Ctx, _args: Args) -> anyhow::Result<ExitCode> {
    super::not_implemented("rollback")
}
