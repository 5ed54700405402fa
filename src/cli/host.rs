//! `kedge host list` (`NAME ENDPOINT STATE ENGINE STACKS`) and `kedge host
//! check NAME` (fleet.md §4).

use std::process::ExitCode;

use super::output::{Table, print_json, stdout};
use super::{Ctx, block_on};
use crate::ops::hosts::HostReport;

#[derive(Debug, clap::Subcommand)]
pub enum HostCommand {
    /// List the Docker hosts of the global config (`local` too), each asked now
    List,
    /// Reach one host's engine as deployments do, and say how it went
    Check {
        /// The host's name in `hosts:` (or `local`)
        name: String,
    },
}

pub fn run(ctx: &Ctx, command: HostCommand) -> anyhow::Result<ExitCode> {
    let (hosts, one) = match command {
        HostCommand::List => (block_on(ctx.ops.hosts())??, false),
        HostCommand::Check { name } => (vec![block_on(ctx.ops.host_check(&name))??], true),
    };
    let failed = hosts.iter().any(|h| h.error.is_some());
    if ctx.json() {
        if one {
            print_json(&hosts[0])?;
        } else {
            print_json(&hosts)?;
        }
    } else if one {
        let h = &hosts[0];
        match (&h.engine, &h.error) {
            (Some(engine), _) => writeln!(
                stdout(),
                "{}: up, engine {engine} at {}",
                h.name,
                h.endpoint
            )?,
            (None, Some(error)) => writeln!(
                stdout(),
                "{}: unreachable at {}: {error}",
                h.name,
                h.endpoint
            )?,
            (None, None) => {}
        }
    } else {
        print_table(&hosts)?;
    }
    // A check that failed says so in its exit status, for scripts.
    Ok(if one && failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn print_table(hosts: &[HostReport]) -> anyhow::Result<()> {
    let mut table = Table::new(["NAME", "ENDPOINT", "STATE", "ENGINE", "STACKS"]);
    for h in hosts {
        let state = match &h.error {
            Some(e) => format!("{} ({e})", h.state),
            None => h.state.clone(),
        };
        table.row([
            h.name.as_str(),
            &h.endpoint,
            &state,
            h.engine.as_deref().unwrap_or("-"),
            &h.stacks.to_string(),
        ]);
    }
    stdout().write_all(table.render().as_bytes())?;
    Ok(())
}
