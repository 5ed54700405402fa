use std::process::ExitCode;

use serde::Serialize;

use super::Ctx;
use super::output::{Table, local_time, print_json};
use crate::record::DeploymentStatus;
use crate::record::rfc3339_ms;
use crate::short;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The repository whose deployments to show
    #[arg(long)]
    pub repo: String,
    /// Show at most N deployments
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub limit: usize,
}

#[derive(Serialize)]
struct Row {
    commit: String,
    status: DeploymentStatus,
    /// When it finished (when it started, while it runs).
    deployed_at: String,
    started_at: String,
    finished_at: Option<String>,
    message: String,
    trigger: String,
    duration_ms: Option<i64>,
    services_changed: Option<Vec<String>>,
    error: Option<String>,
}

pub fn run(ctx: &Ctx, args: Args) -> anyhow::Result<ExitCode> {
    let store = ctx.open_store()?;
    let Some(repo) = store.repo(&args.repo)? else {
        anyhow::bail!("no repository named '{}'", args.repo);
    };
    let deployments = store.deployments(repo.id, args.limit)?;
    if ctx.json() {
        let rows: Vec<Row> = deployments
            .into_iter()
            .map(|d| Row {
                deployed_at: rfc3339_ms(d.finished_at.unwrap_or(d.started_at)),
                started_at: rfc3339_ms(d.started_at),
                finished_at: d.finished_at.map(rfc3339_ms),
                commit: d.commit,
                status: d.status,
                message: d.message,
                trigger: d.trigger,
                duration_ms: d.duration_ms,
                services_changed: d.services_changed,
                error: d.error,
            })
            .collect();
        print_json(&rows)?;
        return Ok(ExitCode::SUCCESS);
    }
    // DEPLOYED AT is when the deployment finished; one still running shows "-".
    let mut table = Table::new(["COMMIT", "STATUS", "DEPLOYED AT", "TRIGGER", "MESSAGE"]);
    for d in &deployments {
        let message = match &d.error {
            Some(error) => format!("{} [{}]", first_line(&d.message), first_line(error)),
            None => first_line(&d.message).to_string(),
        };
        table.row([
            short(&d.commit),
            d.status.as_str(),
            &d.finished_at.map(local_time).unwrap_or_else(|| "-".into()),
            &d.trigger,
            &message,
        ]);
    }
    print!("{}", table.render());
    Ok(ExitCode::SUCCESS)
}

/// The subject line of a commit message or an error, for one table row.
fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or_default().trim()
}
