//! `kedge repo list`: `NAME URL BRANCH MODE AUTH`.

use std::process::ExitCode;

use super::Ctx;
use super::output::{Table, print_json, stdout};
use crate::desired::kedge_yaml::Mode;

#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(ctx: &Ctx, _args: Args) -> anyhow::Result<ExitCode> {
    let rows = ctx.ops.repo_list()?;
    if ctx.json() {
        print_json(&rows)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut table = Table::new(["NAME", "URL", "BRANCH", "MODE", "AUTH"]);
    for r in &rows {
        table.row([
            r.name.as_str(),
            &r.url.to_string(),
            &r.branch,
            r.mode.map_or("-", Mode::as_str),
            &r.auth,
        ]);
    }
    stdout().write_all(table.render().as_bytes())?;
    Ok(ExitCode::SUCCESS)
}
