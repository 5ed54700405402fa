//! `kedge diff`: what differs between Git and the containers, in the spec's format.

use std::process::ExitCode;

use super::output::{lines, print_json, stdout};
use super::{Ctx, block_on};
use crate::ops::diff_text::diff_text;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The repository to compare
    #[arg(long)]
    pub repo: String,
    /// Exit 1 when something differs
    #[arg(long)]
    pub exit_code: bool,
}

pub fn run(ctx: &Ctx, args: Args) -> anyhow::Result<ExitCode> {
    let report = block_on(ctx.ops.diff(&args.repo, None))??;
    if let Some(e) = &report.remote_error {
        tracing::warn!("cannot check the remote for new commits: {e}");
    }
    if ctx.json() {
        let mut doc = serde_json::to_value(&report)?;
        doc["in_sync"] = report.in_sync().into();
        print_json(&doc)?;
    } else {
        stdout().write_all(lines(&diff_text(&report)).as_bytes())?;
    }
    if args.exit_code && !report.in_sync() {
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}
