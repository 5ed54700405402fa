//! `kedge updates [--repo R]` (`REPO STACK SERVICE CURRENT CANDIDATE POLICY
//! STATE`) and `kedge updates check`.

use std::process::ExitCode;

use super::output::{Table, print_json, stdout};
use super::{Ctx, block_on};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub action: Option<Action>,
    /// Only this repository's stacks
    #[arg(long, global = true)]
    pub repo: Option<String>,
}

#[derive(Debug, clap::Subcommand)]
pub enum Action {
    /// Ask the registries now instead of showing the last check
    Check,
}

pub fn run(ctx: &Ctx, args: Args) -> anyhow::Result<ExitCode> {
    let repo = args.repo.as_deref();
    let rows = match args.action {
        Some(Action::Check) => block_on(ctx.ops.updates_check(repo))??,
        None => block_on(ctx.ops.updates(repo))??,
    };
    if ctx.json() {
        print_json(&rows)?;
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        writeln!(
            stdout(),
            "No service is checked for updates (give it a policy under `updates.services` in kedge.yaml)"
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut table = Table::new([
        "REPO",
        "STACK",
        "SERVICE",
        "CURRENT",
        "CANDIDATE",
        "POLICY",
        "STATE",
    ]);
    for r in &rows {
        let state = match &r.detail {
            Some(d) => format!("{} ({d})", r.state),
            None => r.state.clone(),
        };
        table.row([
            r.repo.as_str(),
            &r.stack,
            &r.service,
            &r.current,
            r.candidate.as_deref().unwrap_or("-"),
            &r.policy,
            &state,
        ]);
    }
    stdout().write_all(table.render().as_bytes())?;
    Ok(ExitCode::SUCCESS)
}
