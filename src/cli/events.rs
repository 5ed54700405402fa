//! `kedge events`: the event log, `TIME REPO KIND SERVICE MESSAGE`, oldest
//! first; `--follow` keeps printing what any process stores.

use std::process::ExitCode;

use super::output::{OutputError, Table, local_time, one_line, stdout};
use super::{Ctx, block_on};
use crate::events::Event;
use crate::ops::events::{EventsRequest, Since};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only this repository's events
    #[arg(long)]
    pub repo: Option<String>,
    /// One stack of the repository (the same as `--repo REPO/STACK`)
    #[arg(long, requires = "repo")]
    pub stack: Option<String>,
    /// Only events since then: a duration (10m, 2h, 30d) or an RFC 3339 time
    #[arg(long, value_name = "DUR|RFC3339", value_parser = Since::parse)]
    pub since: Option<Since>,
    /// At most the newest N events (at most 10000)
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub limit: usize,
    /// Keep printing new events as they are stored (Ctrl-C stops)
    #[arg(long, short)]
    pub follow: bool,
}

pub fn run(ctx: &Ctx, args: Args) -> anyhow::Result<ExitCode> {
    let req = EventsRequest {
        repo: args
            .repo
            .as_deref()
            .map(|r| crate::ops::stacks::address(r, args.stack.as_deref())),
        since: args.since,
        limit: args.limit,
    };
    // The id first: nothing stored between the page and the follow is lost.
    let last = ctx.ops.last_event_id()?;
    let page = ctx.ops.events(&req)?;
    let page: Vec<Event> = page.into_iter().filter(|e| e.id <= last).collect();
    if !args.follow {
        if ctx.json() {
            super::output::print_json(&page)?;
        } else {
            let mut table = Table::new(["TIME", "REPO", "KIND", "SERVICE", "MESSAGE"]);
            for e in &page {
                table.row(row(e));
            }
            stdout().write_all(table.render().as_bytes())?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    // Following: one line per event, flushed at once (a pipe reads as it goes).
    // A failed write stops the follow; the caller hears why (a closed pipe
    // is quiet, anything else an error).
    let json = ctx.json();
    let mut out = stdout();
    let mut failed: Option<OutputError> = None;
    let mut print = |e: &Event| -> bool {
        let line = if json {
            serde_json::to_string(e).unwrap_or_default()
        } else {
            row(e).join("  ")
        };
        match writeln!(out, "{line}").and_then(|()| out.flush()) {
            Ok(()) => true,
            Err(error) => {
                failed = Some(error);
                false
            }
        }
    };
    if page.iter().all(&mut print) {
        block_on(ctx.ops.follow_events(&req, last, &mut print))??;
    }
    match failed {
        Some(e) => Err(e.into()),
        None => Ok(ExitCode::SUCCESS),
    }
}

fn row(e: &Event) -> [String; 5] {
    [
        local_time(e.time),
        // A stack of a repository with several reads `repo/stack`.
        match &e.stack {
            Some(stack) => one_line(&format!("{}/{stack}", e.repo)).into_owned(),
            None => one_line(&e.repo).into_owned(),
        },
        e.kind.to_string(),
        one_line(e.service.as_deref().unwrap_or("-")).into_owned(),
        one_line(e.message.lines().next().unwrap_or_default()).into_owned(),
    ]
}
