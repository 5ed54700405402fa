//! controller: the configured Docker hosts' health (fleet.md §4) — `serve`
//! keeps the way to each host's engine open (an SSH connection, a TLS
//! forwarder) and looks at it every check interval: the `kedge_host_up`
//! gauge follows, each stack on a host that stops answering gets
//! `host_unreachable` (and its task changes nothing there meanwhile),
//! `host_recovered` when it answers again, with a full check. Each host's
//! engine events wake the stacks on it, as the local engine's do. And the
//! host a deployment goes to, reached (or refused) before anything is
//! recorded (`reach_for`).

use std::sync::Arc;

use super::Shared;
use super::task::{ReconcileError, RepoTask};
use crate::config::hosts::LOCAL;
use crate::desired::render::{Desired, RenderError};
use crate::events::{EventKind, NewEvent};
use crate::target::pool::{Health, PoolError};

pub async fn watch(shared: Arc<Shared>) {
    let hosts = shared.hosts.remote();
    if hosts.is_empty() {
        return;
    }
    for host in &hosts {
        tokio::spawn(follow_events(shared.clone(), host.clone()));
    }
    let mut interval = tokio::time::interval(shared.settings.check_interval);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        // Side by side: a host that hangs must not delay the others' looks.
        let looks = hosts.iter().map(|h| {
            let shared = shared.clone();
            async move {
                let (before, now) = shared.hosts.look(h).await;
                said(&shared, h, &before, &now);
            }
        });
        futures_util::future::join_all(looks).await;
    }
}

/// What a look found, said once per change: the log, the gauge, and an
/// event for each stack on the host.
fn said(shared: &Shared, host: &str, before: &Health, now: &Health) {
    shared
        .hub
        .set_host_up(host, matches!(now, Health::Up { .. }));
    match (before, now) {
        (Health::Down { .. }, Health::Up { version }) => {
            tracing::info!(host, engine = %version, "host {host} answers again: a full check of its stacks");
            tell_stacks(
                shared,
                host,
                EventKind::HostRecovered,
                &format!("host {host} answers again"),
            );
            shared.wake_host(host);
        }
        (Health::Unknown, Health::Up { version }) => {
            tracing::info!(host, engine = %version, "host {host} reached")
        }
        (Health::Up { .. } | Health::Unknown, Health::Down { why }) => {
            tracing::warn!(host, "host {host} is unreachable: {why}");
            tell_stacks(
                shared,
                host,
                EventKind::HostUnreachable,
                &format!("host {host} is unreachable: {why}"),
            );
            // Their status says `unknown` at once.
            shared.wake_host(host);
        }
        _ => {}
    }
}

/// An event for each stack on `host`: its own history says why it waited.
fn tell_stacks(shared: &Shared, host: &str, kind: EventKind, message: &str) {
    for (repo, stack) in shared.stacks_on(host) {
        shared.emit(
            NewEvent::new(&repo, kind, message)
                .stack(stack.as_deref())
                .field("host", host),
        );
    }
}

/// Follows `host`'s container events (this machine's engine's too) and
/// wakes the stacks they concern. When the stream breaks (an engine
/// restarted, a host away) it reconnects with backoff; once the engine
/// answers again, the stacks on it get a full check, since events may
/// have been missed meanwhile.
pub async fn follow_events(shared: Arc<Shared>, host: String) {
    use futures_util::StreamExt;
    // This machine's engine is said here; a remote host's outage is said
    // by the host watch, once.
    let local = host == LOCAL;
    let said = |what: String| {
        if local {
            tracing::warn!("{what}")
        } else {
            tracing::debug!(%host, "{what}")
        }
    };
    let mut failures = 0u32;
    loop {
        let engine = shared.hosts.way(&host).await.ok().map(|w| w.engine);
        if let Some(engine) = engine
            && engine.ping().await
        {
            if failures > 0 {
                if local {
                    tracing::info!("docker engine reachable again: checking every stack on it");
                    // A commit that failed on an engine away is retried.
                    shared
                        .engine_returns
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                shared.wake_host(&host);
                failures = 0;
            }
            match engine.project_events().await {
                Ok(events) => {
                    let mut events = std::pin::pin!(events);
                    while let Some(event) = events.next().await {
                        match event {
                            Ok(project) => {
                                tracing::debug!(%host, %project, "engine event");
                                shared.wake_project(&host, &project);
                            }
                            Err(e) => {
                                said(crate::error_chain(&e));
                                break;
                            }
                        }
                    }
                }
                Err(e) => said(crate::error_chain(&e)),
            }
        }
        failures += 1;
        let wait = std::time::Duration::from_millis(250 * (1 << failures.min(5)))
            .min(std::time::Duration::from_secs(5));
        tracing::debug!(%host, retry_in = ?wait, "reconnecting to the engine's event stream");
        tokio::time::sleep(wait).await;
    }
}

/// The host a rendered commit names, reached for its deployment before
/// anything is recorded (the task's way from then on). A host that does
/// not answer is an outage: retried, nothing recorded failed. What
/// refuses the commit instead: a host not configured, a move off the host
/// the stack runs on, `target.hosts` on a repository's own stack, and
/// files of this machine for a host nothing ships them to (`tcp://`).
pub async fn reach_for(
    shared: &Shared,
    task: &mut RepoTask,
    desired: &Desired,
) -> Result<Option<RenderError>, ReconcileError> {
    let id = task.id();
    let was = shared.db.read(|s| s.repo_state(id))?;
    let deployed_on = was.host.clone().unwrap_or_else(|| LOCAL.to_string());
    if !desired.kedge.hosts.is_empty() && task.stack.root {
        return Ok(Some(RenderError::HostsOfRoot));
    }
    if was.deployed_commit.is_some() && deployed_on != desired.kedge.host {
        return Ok(Some(RenderError::HostMoved {
            from: deployed_on,
            to: desired.kedge.host.clone(),
        }));
    }
    match shared.hosts.way(&desired.kedge.host).await {
        // The rendering reads paths as from the deployed checkout.
        Ok(way) if way.socket.is_some() && way.host != LOCAL && way.control.is_none() => {
            let mut files = crate::target::local_files(&desired.rendered, &task.git.clone);
            if desired.secrets.as_ref().is_some_and(|s| !s.is_empty()) {
                files.push("decrypted SOPS files".into());
            }
            task.way = Some(way);
            Ok((!files.is_empty()).then(|| RenderError::HostFiles {
                host: desired.kedge.host.clone(),
                files,
            }))
        }
        Ok(way) => {
            task.way = Some(way);
            Ok(None)
        }
        Err(e @ PoolError::Unknown { .. }) => Ok(Some(RenderError::Host(e))),
        Err(e) => {
            // A stack never deployed is known to be on that host from now
            // on: its status asks that host, and says why not.
            if was.deployed_commit.is_none() {
                let settings = desired.kedge.settings();
                shared
                    .db
                    .write(move |s| s.set_rendered(id, &settings))
                    .await?;
            }
            Err(ReconcileError::Host(e))
        }
    }
}
