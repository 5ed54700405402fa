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
    /// One stack of the repository (the same as `--repo REPO/STACK`)
    #[arg(long, requires = "repo")]
    pub stack: Option<String>,
    /// Print the plan only; change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Do not wait for the changed services to come up (skip the health gate)
    #[arg(long)]
    pub no_wait: bool,
    /// Deploy even while the stack's sync windows (reconciliation.windows) are closed
    #[arg(long)]
    pub force: bool,
}

/// A repository that declares several stacks: each of them, in `after:`
/// order, reporting each (a JSON list with `-o json`); the first failure
/// stops the others.
pub fn run(ctx: &Ctx, args: Args) -> anyhow::Result<ExitCode> {
    let address = crate::ops::stacks::address(&args.repo, args.stack.as_deref());
    let units = ctx.ops.units(&address)?;
    let several = units.len() > 1;
    let mut reports = Vec::new();
    for (repo, stack) in units {
        let address = match several {
            true => format!("{}/{}", repo.name, stack.name),
            false => address.clone(),
        };
        let how = crate::ops::command::SyncHow {
            dry_run: args.dry_run,
            no_wait: args.no_wait,
            force: args.force,
        };
        let report = block_on(ctx.ops.sync(&address, how))??;
        if !ctx.json() {
            print_report(&report, several.then_some(&address))?;
        }
        reports.push(report);
    }
    if ctx.json() {
        match several {
            true => print_json(&reports)?,
            false => print_json(&reports[0])?,
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_report(report: &crate::ops::SyncReport, stack: Option<&String>) -> anyhow::Result<()> {
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
        stack.unwrap_or(&report.repo)
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
    Ok(())
}
