//! `kedge notify list|test`: the notification sinks of the global config.

use std::process::ExitCode;

use super::output::{Table, note, print_json, stdout};
use super::{Ctx, block_on};

#[derive(Debug, clap::Subcommand)]
pub enum NotifyCommand {
    /// List the sinks of `notifications:` (secrets are never shown):
    /// NAME TYPE TARGET EVENTS REPOS REPEAT
    List,
    /// Send a test message to a sink and print the receiver's answer
    Test {
        /// The sink's `name` in the config
        name: String,
    },
}

pub fn run(ctx: &Ctx, command: NotifyCommand) -> anyhow::Result<ExitCode> {
    match command {
        NotifyCommand::List => {
            let rows = ctx.ops.notify_list();
            if ctx.json() {
                print_json(&rows)?;
                return Ok(ExitCode::SUCCESS);
            }
            if rows.is_empty() {
                note(format_args!(
                    "no notification sinks: add a `notifications:` list to the config"
                ));
                return Ok(ExitCode::SUCCESS);
            }
            let mut table = Table::new(["NAME", "TYPE", "TARGET", "EVENTS", "REPOS", "REPEAT"]);
            for row in &rows {
                let events = match &row.events {
                    Some(kinds) => kinds.join(","),
                    None => "default".to_string(),
                };
                let target = if row.signed {
                    format!("{} (signed)", row.target)
                } else {
                    row.target.clone()
                };
                table.row([
                    row.name.clone(),
                    row.kind.to_string(),
                    target,
                    events,
                    row.repos.join(","),
                    duration(row.repeat_interval_s),
                ]);
            }
            stdout().write_all(table.render().as_bytes())?;
        }
        NotifyCommand::Test { name } => {
            let report = block_on(ctx.ops.notify_test(&name))??;
            if ctx.json() {
                print_json(&report)?;
            } else {
                writeln!(stdout(), "{}: {}", report.sink, report.answer)?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `1h`, `10m`, `1h30m`, `45s`: the way the config writes durations.
fn duration(secs: u64) -> String {
    if secs == 0 {
        return "0s".into();
    }
    [
        (secs / 86_400, "d"),
        (secs % 86_400 / 3600, "h"),
        (secs % 3600 / 60, "m"),
        (secs % 60, "s"),
    ]
    .iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, unit)| format!("{n}{unit}"))
    .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn durations_read_as_in_the_config() {
        for (secs, text) in [
            (0, "0s"),
            (45, "45s"),
            (600, "10m"),
            (3600, "1h"),
            (5400, "1h30m"),
            (90_061, "1d1h1m1s"),
        ] {
            assert_eq!(super::duration(secs), text);
        }
    }
}
