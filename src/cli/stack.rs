//! `kedge stack list` (`REPO STACK PATH PROJECT MODE TARGET STATE`) and
//! `kedge stack remove`.

use std::process::ExitCode;

use clap::Subcommand;

use super::output::{Table, print_json, stdout};
use super::{Ctx, block_on};

#[derive(Debug, Subcommand)]
pub enum StackCommand {
    /// List the stacks of every repository, or of one
    List(ListArgs),
    /// End a stack that left Git (orphaned), keeping or taking down its containers
    Remove(RemoveArgs),
}

#[derive(Debug, clap::Args)]
pub struct RemoveArgs {
    /// The stack, as REPO/STACK
    pub stack: String,
    /// Take its containers down first (named volumes are kept)
    #[arg(long)]
    pub down: bool,
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Only this repository's stacks
    #[arg(long)]
    pub repo: Option<String>,
}

pub fn run(ctx: &Ctx, command: StackCommand) -> anyhow::Result<ExitCode> {
    match command {
        StackCommand::List(args) => list(ctx, args),
        StackCommand::Remove(args) => remove(ctx, args),
    }
}

fn remove(ctx: &Ctx, args: RemoveArgs) -> anyhow::Result<ExitCode> {
    let removed = block_on(ctx.ops.stack_remove(&args.stack, args.down))??;
    if ctx.json() {
        print_json(&removed)?;
    } else if removed.down {
        writeln!(
            stdout(),
            "Removed stack {}; its containers were taken down",
            args.stack
        )?;
    } else {
        writeln!(
            stdout(),
            "Removed stack {}; its containers were left running",
            args.stack
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

fn list(ctx: &Ctx, args: ListArgs) -> anyhow::Result<ExitCode> {
    let rows = block_on(ctx.ops.stack_list(args.repo.as_deref()))??;
    if ctx.json() {
        print_json(&rows)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut table = Table::new([
        "REPO", "STACK", "PATH", "PROJECT", "MODE", "TARGET", "STATE",
    ]);
    for r in &rows {
        table.row([
            r.repo.as_str(),
            &r.stack,
            &r.path,
            &r.project,
            r.mode.map_or("-", |m| m.as_str()),
            r.target.map_or("-", |t| t.as_str()),
            &r.state,
        ]);
    }
    stdout().write_all(table.render().as_bytes())?;
    Ok(ExitCode::SUCCESS)
}
