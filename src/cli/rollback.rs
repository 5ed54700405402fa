//! `kedge rollback`: re-apply a deployed commit and pin the repository to it.

use std::process::ExitCode;

use super::output::{print_json, stdout};
use super::{Ctx, block_on};
use crate::short;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The repository to roll back
    #[arg(long)]
    pub repo: String,
    /// One stack of the repository (the same as `--repo REPO/STACK`)
    #[arg(long, requires = "repo")]
    pub stack: Option<String>,
    /// A deployed commit: full hash or a unique prefix of at least 4 characters
    pub commit: String,
}

pub fn run(ctx: &Ctx, args: Args) -> anyhow::Result<ExitCode> {
    let report = block_on(ctx.ops.rollback(
        &crate::ops::stacks::address(&args.repo, args.stack.as_deref()),
        &args.commit,
    ))??;
    if ctx.json() {
        print_json(&report)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = stdout();
    if report.from_snapshot {
        writeln!(
            out,
            "Commit {} is gone from the repository: restored the compose snapshot stored with its deployment \
             (files bind-mounted from the repository are those of the current checkout)",
            short(&report.commit)
        )?;
    }
    writeln!(
        out,
        "Rolled {} back to {}{}",
        report.repo,
        short(&report.commit),
        if report.changed.is_empty() {
            String::new()
        } else {
            format!(" ({})", report.changed.join(", "))
        }
    )?;
    writeln!(
        out,
        "Pinned: stays on {} until the branch moves or `kedge sync --repo {}`",
        short(&report.commit),
        report.repo
    )?;
    Ok(ExitCode::SUCCESS)
}
