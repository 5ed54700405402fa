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
    /// One stack of the repository (the same as `--repo REPO/STACK`)
    #[arg(long, requires = "repo")]
    pub stack: Option<String>,
    /// Exit 1 when something differs
    #[arg(long)]
    pub exit_code: bool,
}

/// Each stack of a repository that declares several, one after another
/// (as a JSON list with `-o json`).
pub fn run(ctx: &Ctx, args: Args) -> anyhow::Result<ExitCode> {
    let address = crate::ops::stacks::address(&args.repo, args.stack.as_deref());
    let units = ctx.ops.units(&address)?;
    let several = units.len() > 1;
    let mut docs = Vec::new();
    let mut in_sync = true;
    for (repo, stack) in units {
        let address = match several {
            true => format!("{}/{}", repo.name, stack.name),
            false => address.clone(),
        };
        let report = block_on(ctx.ops.diff(&address, None))??;
        if let Some(e) = &report.remote_error {
            tracing::warn!("cannot check the remote for new commits: {e}");
        }
        in_sync &= report.in_sync();
        if ctx.json() {
            let mut doc = serde_json::to_value(&report)?;
            doc["in_sync"] = report.in_sync().into();
            if several {
                doc["stack"] = stack.name.into();
            }
            docs.push(doc);
        } else {
            if several {
                writeln!(stdout(), "Stack {address}:")?;
            }
            stdout().write_all(lines(&diff_text(&report)).as_bytes())?;
        }
    }
    if ctx.json() {
        match several {
            true => print_json(&docs)?,
            false => print_json(&docs[0])?,
        }
    }
    if args.exit_code && !in_sync {
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}
