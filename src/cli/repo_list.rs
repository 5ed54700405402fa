use std::process::ExitCode;

use serde::Serialize;

use super::Ctx;
use super::output::{Table, print_json, rfc3339};
use crate::source::url::redact;

#[derive(Debug, clap::Args)]
pub struct Args {}

#[derive(Serialize)]
struct Row {
    name: String,
    url: String,
    branch: String,
    mode: Option<String>,
    created_at: String,
}

pub fn run(ctx: &Ctx, _args: Args) -> anyhow::Result<ExitCode> {
    let store = ctx.open_store()?;
    let rows: Vec<Row> = store
        .repos()?
        .into_iter()
        .map(|r| Row {
            url: redact(&r.url),
            created_at: rfc3339(r.created_at),
            name: r.name,
            branch: r.branch,
            mode: r.mode,
        })
        .collect();
    if ctx.json() {
        print_json(&rows)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut table = Table::new(["NAME", "URL", "BRANCH", "MODE"]);
    for r in &rows {
        table.row([
            r.name.as_str(),
            &r.url,
            &r.branch,
            r.mode.as_deref().unwrap_or("-"),
        ]);
    }
    print!("{}", table.render());
    Ok(ExitCode::SUCCESS)
}
