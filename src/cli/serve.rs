//! `kedge serve`: runs the controller on a multi-threaded runtime until a signal.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;

use super::Ctx;
use crate::config::duration::parse_duration;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// How often to check each remote for new commits, e.g. 500ms, 2s, 1m
    /// [env: KEDGE_POLL_INTERVAL] [default: git.poll_interval from the config, else 60s]
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    pub poll_interval: Option<Duration>,
    /// How often to run a full drift check besides reacting to engine events
    /// [env: KEDGE_CHECK_INTERVAL] [default: drift.check_interval from the config, else 30s]
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    pub check_interval: Option<Duration>,
    /// Where to serve HTTP (health, metrics, API, webhooks, dashboard), e.g.
    /// 127.0.0.1:9470, 0.0.0.0:0 (a free port), or `none`
    /// [env: KEDGE_LISTEN] [default: http.listen from the config, else 127.0.0.1:9470]
    #[arg(long, value_name = "ADDR|none", value_parser = crate::config::Listen::parse)]
    pub listen: Option<crate::config::Listen>,
}

pub fn run(ctx: &Ctx, _args: Args) -> anyhow::Result<ExitCode> {
    // Before any thread or child: they all share the one limit.
    crate::http::raise_descriptor_limit();
    // The poll interval flag was folded into the settings already.
    // One worker per core (tokio's default): nothing here may block one.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let served = rt.block_on(ctx.ops.serve(crate::http::start));
    // A task that stopped while waiting for a lock held elsewhere leaves
    // that wait on a blocking thread: not worth waiting for.
    rt.shutdown_timeout(Duration::from_millis(100));
    served?;
    Ok(ExitCode::SUCCESS)
}
