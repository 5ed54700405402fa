//! `kedge status`: each repository's sync state and services, as text or JSON.

use std::process::ExitCode;

use super::output::{OutputError, Table, local_time, one_line, print_json, stdout};
use super::{Ctx, block_on};
use crate::desired::kedge_yaml::Mode;
use crate::ops::status::RepoStatus;
use crate::short;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only this repository
    #[arg(long)]
    pub repo: Option<String>,
    /// One stack of the repository (the same as `--repo REPO/STACK`)
    #[arg(long, requires = "repo")]
    pub stack: Option<String>,
}

pub fn run(ctx: &Ctx, args: Args) -> anyhow::Result<ExitCode> {
    let address = args
        .repo
        .as_deref()
        .map(|r| crate::ops::stacks::address(r, args.stack.as_deref()));
    let (statuses, engine_error) = block_on(ctx.ops.status(address.as_deref()))??;
    if let Some(e) = &engine_error {
        tracing::warn!("container states unknown: {e}");
    }
    if ctx.json() {
        print_json(&statuses)?;
    } else {
        print_text(&statuses)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The last error, and for a remote that stopped answering, since when.
fn last_error_text(s: &RepoStatus, now_ms: i64) -> String {
    let Some(error) = &s.last_error else {
        return "-".into();
    };
    if !s.remote_failing {
        return error.clone();
    }
    match s.remote_ok_at {
        Some(at) => format!(
            "{error} (last successful check {} ago)",
            age(now_ms.saturating_sub(at))
        ),
        None => format!("{error} (no successful check yet)"),
    }
}

/// A duration in its largest whole unit: `42s`, `3m`, `5h`, `2d`.
fn age(ms: i64) -> String {
    let secs = ms.max(0) / 1000;
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 2 * 86400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

fn print_text(statuses: &[RepoStatus]) -> Result<(), OutputError> {
    let mut out = stdout();
    let dash = |v: &Option<String>| v.as_deref().map(short).unwrap_or("-").to_string();
    for (i, s) in statuses.iter().enumerate() {
        if i > 0 {
            writeln!(out)?;
        }
        writeln!(out, "Repository: {}", s.name)?;
        if let Some(stack) = &s.stack {
            writeln!(out, "  Stack:       {stack}")?;
        }
        writeln!(out, "  Branch:      {}", s.branch)?;
        // This machine's stacks say nothing of a host, as before hosts.
        if s.host != crate::config::hosts::LOCAL {
            match &s.host_error {
                Some(e) => writeln!(out, "  Host:        {} ({})", s.host, one_line(e))?,
                None => writeln!(out, "  Host:        {}", s.host)?,
            }
        }
        writeln!(out, "  Mode:        {}", s.mode.map_or("-", Mode::as_str))?;
        writeln!(out, "  Remote head: {}", dash(&s.remote_head))?;
        writeln!(out, "  Deployed:    {}", dash(&s.deployed_commit))?;
        if s.synced_commit.is_some() && s.synced_commit != s.deployed_commit {
            writeln!(
                out,
                "  In sync at:  {} (changes none of the stack's inputs)",
                dash(&s.synced_commit)
            )?;
        }
        if let Some(p) = &s.pin {
            writeln!(out, "  Pinned:      {}", p.describe())?;
        }
        writeln!(out, "  Sync state:  {}", s.sync_state)?;
        if let Some(w) = &s.window {
            writeln!(out, "  Window:      {}", one_line(&w.text))?;
        }
        if let Some(r) = &s.auto_rollback {
            writeln!(out, "  Rolled back: {}", one_line(&r.text))?;
        }
        if let Some(d) = &s.last_deployment {
            let at = chrono::DateTime::parse_from_rfc3339(&d.deployed_at)
                .map(|t| local_time(t.timestamp_millis()))
                .unwrap_or_default();
            writeln!(
                out,
                "  Last deploy: {} {} at {}",
                short(&d.commit),
                d.status.as_str(),
                at
            )?;
        }
        writeln!(
            out,
            "  Last error:  {}",
            one_line(&last_error_text(s, crate::time::now_ms()))
        )?;
        for d in &s.drifts {
            writeln!(
                out,
                "  Drift:       {}: {}",
                one_line(d.service()),
                one_line(&d.describe())
            )?;
        }
        for o in &s.ahead_of_git {
            writeln!(
                out,
                "  Ahead:       {} runs {} (Git names {})",
                one_line(&o.service),
                one_line(&o.image),
                one_line(&o.base)
            )?;
        }
        for u in &s.updates {
            writeln!(
                out,
                "  Update:      {} {} → {} ({}, {})",
                one_line(&u.service),
                one_line(&u.current),
                one_line(u.candidate.as_deref().unwrap_or("-")),
                u.policy,
                u.state
            )?;
        }
        if !s.services.is_empty() {
            let mut table = Table::new(["SERVICE", "STATE", "IMAGE", "COMMIT"]);
            for svc in &s.services {
                table.row([
                    svc.service.as_str(),
                    &svc.state,
                    svc.image.as_deref().unwrap_or("-"),
                    svc.commit.as_deref().map(short).unwrap_or("-"),
                ]);
            }
            for line in table.render().lines() {
                writeln!(out, "  {line}")?;
            }
        }
        if !s.events.is_empty() {
            writeln!(out, "  Recent events:")?;
            for e in &s.events {
                writeln!(
                    out,
                    "    {}  {:<16} {:<10} {}",
                    local_time(e.time),
                    e.kind,
                    one_line(e.service.as_deref().unwrap_or("-")),
                    one_line(&e.message)
                )?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages() {
        for (ms, want) in [
            (-5, "0s"),
            (999, "0s"),
            (59_999, "59s"),
            (60_000, "1m"),
            (3 * 60_000 + 59_000, "3m"),
            (3_600_000, "1h"),
            (47 * 3_600_000, "47h"),
            (3 * 86_400_000, "3d"),
        ] {
            assert_eq!(age(ms), want, "{ms}");
        }
    }
}
