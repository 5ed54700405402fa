//! `kedge history`: a repository's deployments, newest first.

use std::process::ExitCode;

use super::Ctx;
use super::output::{Table, local_time, print_json, stdout};
use crate::short;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The repository whose deployments to show
    #[arg(long)]
    pub repo: String,
    /// One stack of the repository (the same as `--repo REPO/STACK`)
    #[arg(long, requires = "repo")]
    pub stack: Option<String>,
    /// Show at most N deployments (at most 10000)
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub limit: usize,
}

pub fn run(ctx: &Ctx, args: Args) -> anyhow::Result<ExitCode> {
    let rows = ctx.ops.history(
        &crate::ops::stacks::address(&args.repo, args.stack.as_deref()),
        args.limit,
    )?;
    if ctx.json() {
        print_json(&rows)?;
        return Ok(ExitCode::SUCCESS);
    }
    // DEPLOYED AT is when the deployment finished; one still running shows
    // "-". A repository with several stacks gets a STACK column.
    let stacks = rows.iter().any(|d| d.stack.is_some());
    let mut headers = vec!["COMMIT", "STATUS", "DEPLOYED AT", "TRIGGER", "MESSAGE"];
    if stacks {
        headers.insert(0, "STACK");
    }
    let mut table = Table::new(headers);
    for d in &rows {
        let message = match &d.error {
            Some(error) => format!("{} [{}]", first_line(&d.message), first_line(error)),
            None => first_line(&d.message).to_string(),
        };
        let mut cells = vec![
            short(&d.commit).to_string(),
            d.status.as_str().to_string(),
            d.finished_ms.map(local_time).unwrap_or_else(|| "-".into()),
            d.trigger.as_str().to_string(),
            message,
        ];
        if stacks {
            cells.insert(0, d.stack.clone().unwrap_or_default());
        }
        table.row(cells);
    }
    stdout().write_all(table.render().as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

/// The subject line of a commit message or an error, for one table row.
fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or_default().trim()
}
