use std::process::ExitCode;

use super::Ctx;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The repository to compare
    #[arg(long)]
    pub repo: String,
    /// Exit 1 when something differs
    #[arg(long)]
    pub exit_code: bool,
}

pub fn run(_ctx: &Ctx, _args: Args) -> anyhow::Result<ExitCode> {
    super::not_implemented("diff")
}
