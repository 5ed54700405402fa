use std::process::ExitCode;

use super::Ctx;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The repository whose deployments to show
    #[arg(long)]
    pub repo: String,
    /// Show at most N deployments
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
}

pub fn run(_ctx: &Ctx, _args: Args) -> anyhow::Result<ExitCode> {
    super::not_implemented("history")
}
