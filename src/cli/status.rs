use std::process::ExitCode;

use super::Ctx;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only this repository
    #[arg(long)]
    pub repo: Option<String>,
}

pub fn run(_ctx: &Ctx, _args: Args) -> anyhow::Result<ExitCode> {
    super::not_implemented("status")
}
