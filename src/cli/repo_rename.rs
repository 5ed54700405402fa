//! `kedge repo rename`: renames a repository, keeping its history.

use std::process::ExitCode;

use super::output::{print_json, stdout};
use super::{Ctx, block_on};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The repository's name now
    pub from: String,
    /// Its new name
    pub to: String,
}

pub fn run(ctx: &Ctx, args: Args) -> anyhow::Result<ExitCode> {
    let renamed = block_on(ctx.ops.repo_rename(&args.from, &args.to))??;
    if ctx.json() {
        print_json(&renamed)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = stdout();
    writeln!(out, "Renamed repository {} to {}", renamed.from, renamed.to)?;
    if let (Some(project), Some(to)) = (&renamed.project, &renamed.moves_to) {
        writeln!(
            out,
            "Its stack runs as compose project {project} until its next deployment, which moves it to project {to} (`kedge sync --repo {to}` to move it now; `kedge diff --repo {to}` shows what moves)"
        )?;
    }
    Ok(ExitCode::SUCCESS)
}
