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
    /// Show at most N deployments (at most 10000)
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub limit: usize,
}

pub fn run(ctx: &Ctx, args: Args) -> anyhow::Result<ExitCode> {
    let rows = ctx.ops.history(&args.repo, args.limit)?;
    if ctx.json() {
        print_json(&rows)?;
        return Ok(ExitCode::SUCCESS);
    }
    // DEPLOYED AT is when the deployment finished; one still running shows "-".
    let mut table = Table::new(["COMMIT", "STATUS", "DEPLOYED AT", "TRIGGER", "MESSAGE"]);
    for d in &rows {
        let message = match &d.error {
            Some(error) => format!("{} [{}]", first_line(&d.message), first_line(error)),
            None => first_line(&d.message).to_string(),
        };
        table.row([
            short(&d.commit),
            d.status.as_str(),
            &d.finished_ms.map(local_time).unwrap_or_else(|| "-".into()),
            d.trigger.as_str(),
            &message,
        ]);
    }
    stdout().write_all(table.render().as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

/// The subject line of a commit message or an error, for one table row.
fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or_default().trim()
}
