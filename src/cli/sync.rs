//! `kedge sync`: deploy the branch head now and heal all drift, whatever the mode.

use std::process::ExitCode;

use super::output::{one_line, print_json, stdout};
use super::{Ctx, block_on};
use crate::short;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The repository to sync
    #[arg(long)]
    pub repo: String,
    /// Print the plan only; change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Do not wait for the changed services to come up (skip the health gate)
    #[arg(long)]
    pub no_wait: bool,
}

pub fn run(ctx: &Ctx, args: Args) -> anyhow::Result<ExitCode> {
    let report = block_on(ctx.ops.sync(&args.repo, args.dry_run, args.no_wait))??;
    if ctx.json() {
        print_json(&report)?;
        return Ok(ExitCode::SUCCESS);
    }
    let verb = if report.dry_run {
        "Would deploy"
    } else {
        "Deployed"
    };
    let changed = if report.changed.is_empty() {
        "no service changes".to_string()
    } else {
        format!("changes {}", report.changed.join(", "))
    };
    let gate = if report.gated {
        " (health gate passed)"
    } else {
        ""
    };
    let mut out = stdout();
    writeln!(
        out,
        "{verb} {} to {}: {changed}{gate}",
        short(&report.commit),
        report.repo
    )?;
    if let Some(pin) = &report.released_pin {
        let verb = if report.dry_run {
            "Would release"
        } else {
            "Released"
        };
        writeln!(out, "{verb} the rollback pin on {}", short(pin))?;
    }
    for heal in &report.heals {
        let verb = if report.dry_run {
            "Would heal"
        } else {
            "Healed"
        };
        writeln!(out, "{verb}: {}", one_line(heal))?;
    }
    Ok(ExitCode::SUCCESS)
}
