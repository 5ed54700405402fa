//! controller: the configured Docker hosts' health (fleet.md §4) — `serve`
//! keeps the way to each host's engine open (an SSH connection, a TLS
//! forwarder) and looks at it every check interval: the `kedge_host_up`
//! gauge follows, and a host that stops answering is said once, as is its
//! return. Reconnects when the way itself ended.

use std::collections::HashMap;
use std::sync::Arc;

use super::Shared;
use crate::config::hosts::LOCAL;
use crate::target::host::{HostError, Reached, reach};

pub async fn watch(shared: Arc<Shared>) {
    let hosts: Vec<crate::config::hosts::Host> = shared
        .settings
        .hosts
        .iter()
        .filter(|h| h.name != LOCAL)
        .cloned()
        .collect();
    if hosts.is_empty() {
        return;
    }
    let mut open: HashMap<String, Reached> = HashMap::new();
    let mut interval = tokio::time::interval(shared.settings.check_interval);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        for host in &hosts {
            let looked = look(&shared, host, &mut open).await;
            let up = looked.is_ok();
            let before = shared.hub.set_host_up(&host.name, up);
            match (before, looked) {
                (Some(false), Ok(version)) => {
                    tracing::info!(host = %host.name, engine = %version, "host {} answers again", host.name)
                }
                (None, Ok(version)) => {
                    tracing::info!(host = %host.name, engine = %version, "host {} reached", host.name)
                }
                (Some(true) | None, Err(why)) => {
                    tracing::warn!(host = %host.name, "host {} is unreachable: {why}", host.name)
                }
                _ => {}
            }
        }
    }
}

/// The engine's version at `host`, reconnecting first when the way to it
/// ended (or was never made).
async fn look(
    shared: &Shared,
    host: &crate::config::hosts::Host,
    open: &mut HashMap<String, Reached>,
) -> Result<String, String> {
    let ended = match open.get_mut(&host.name) {
        Some(reached) => reached.ended().await.is_some(),
        None => true,
    };
    if ended {
        open.remove(&host.name);
        let reached = reach(host, &shared.settings.data_dir)
            .await
            .map_err(|e| crate::error_chain(&e))?;
        open.insert(host.name.clone(), reached);
    }
    match open[&host.name].version(&host.name).await {
        Ok(version) => Ok(version),
        Err(e) => {
            // A connection that hangs is made again at the next look.
            if matches!(e, HostError::Silent { .. }) {
                open.remove(&host.name);
            }
            Err(crate::error_chain(&e))
        }
    }
}
