use std::collections::BTreeMap;
use std::process::ExitCode;

use serde::Serialize;

use super::output::{Table, local_time, print_json, rfc3339};
use super::{Ctx, block_on};
use crate::controller::Shared;
use crate::controller::heal;
use crate::controller::reconcile::{RepoTask, Trigger};
use crate::controller::remote::{PinView, RemoteHead, current_head};
use crate::desired::kedge_yaml::Mode;
use crate::observe::{ContainerState, Engine};
use crate::record::{DeploymentStatus, Repo, RepoState, Store};
use crate::{error_chain, short};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only this repository
    #[arg(long)]
    pub repo: Option<String>,
}

#[derive(Debug, Serialize)]
struct RepoStatus {
    name: String,
    branch: String,
    mode: Option<String>,
    project: String,
    remote_head: Option<String>,
    deployed_commit: Option<String>,
    pinned_commit: Option<String>,
    /// The rollback pin, and whether the branch moved past it.
    pin: Option<PinView>,
    sync_state: &'static str,
    last_error: Option<String>,
    checked_at: Option<String>,
    /// When the remote last answered a check.
    last_successful_check: Option<String>,
    /// The last check of the remote failed (`last_error` says why).
    remote_failing: bool,
    #[serde(skip)]
    remote_ok_at: Option<i64>,
    last_deployment: Option<LastDeployment>,
    services: Vec<ServiceStatus>,
    drifts: Vec<crate::plan::Drift>,
    events: Vec<EventStatus>,
}

#[derive(Debug, Serialize)]
struct EventStatus {
    at: String,
    kind: String,
    service: Option<String>,
    detail: String,
}

#[derive(Debug, Serialize)]
struct LastDeployment {
    commit: String,
    status: DeploymentStatus,
    deployed_at: String,
}

#[derive(Debug, Serialize)]
struct ServiceStatus {
    service: String,
    container: Option<String>,
    state: String,
    image: Option<String>,
    commit: Option<String>,
}

pub fn run(ctx: &Ctx, args: Args) -> anyhow::Result<ExitCode> {
    let store = ctx.open_store()?;
    let repos: Vec<Repo> = match &args.repo {
        Some(name) => match store.repo(name)? {
            Some(r) => vec![r],
            None => anyhow::bail!("no repository named '{name}'"),
        },
        None => store.repos()?,
    };
    let (statuses, engine_error) = block_on(collect(ctx, store, repos))??;
    if let Some(e) = &engine_error {
        tracing::warn!("container states unknown: {e}");
    }
    if ctx.json() {
        print_json(&statuses)?;
    } else {
        print_text(&statuses);
    }
    Ok(ExitCode::SUCCESS)
}

async fn collect(
    ctx: &Ctx,
    store: Store,
    repos: Vec<Repo>,
) -> anyhow::Result<(Vec<RepoStatus>, Option<String>)> {
    let engine = Engine::new();
    let shared = Shared::new(ctx.settings.clone(), store, engine.clone());
    // One list of every project's containers, one inspect per distinct image.
    let (mut all, engine_error) = match engine.containers_by_project().await {
        Ok(all) => (Some(all), None),
        Err(e) => (None, Some(error_chain(&e))),
    };
    let mut images = heal::ImageIds::new();
    let mut out = Vec::with_capacity(repos.len());
    // The branch heads, as `diff` reads them: with `serve` running, what it
    // checked; otherwise the remotes, asked side by side.
    let heads: Vec<RemoteHead> = {
        use futures_util::StreamExt;
        let asks: Vec<_> = repos
            .iter()
            .map(|repo| {
                let task = RepoTask::new(&shared, repo.clone());
                let state = shared.store().repo_state(repo.id);
                let shared = &shared;
                async move {
                    match state {
                        Ok(state) => current_head(shared, &task.git, task.repo.id, &state).await,
                        Err(e) => RemoteHead {
                            head: None,
                            error: Some(error_chain(&e)),
                            live: false,
                        },
                    }
                }
            })
            .collect();
        futures_util::stream::iter(asks).buffered(8).collect().await
    };
    for (repo, remote) in repos.into_iter().zip(heads) {
        let (mut state, last, recorded, events) = {
            let store = shared.store();
            (
                store.repo_state(repo.id)?,
                // A restore after a failed deployment does not hide the failure.
                store
                    .deployments(repo.id, 2)?
                    .into_iter()
                    .find(|d| d.trigger != Trigger::AutoRollback.as_str()),
                store.services(repo.id)?,
                store.events(repo.id, 5)?,
            )
        };
        if remote.live {
            let now = crate::record::now_ms();
            state.checked_at = Some(now);
            match remote.error {
                // Asked just now and no answer: that is the news.
                Some(error) => state.last_error = Some(error),
                None => {
                    state.remote_head = remote.head.clone();
                    state.remote_ok_at = Some(now);
                }
            }
        }
        let pin = PinView::new(&state, state.remote_head.as_deref());
        let project = state.project.clone().unwrap_or_else(|| repo.name.clone());
        let containers = all
            .as_mut()
            .map(|all| all.remove(&project).unwrap_or_default());
        let services = service_statuses(&recorded, containers.as_deref());
        let task = RepoTask::new(&shared, repo.clone());
        let observed = heal::drift_plan_observed(
            &shared,
            &task,
            Some(Mode::Auto),
            containers.clone(),
            &mut images,
        );
        let drifts = match observed.await? {
            Some((plan, _, _)) => plan.drifts,
            None => Vec::new(),
        };
        let sync_state = sync_state(
            &state,
            last.as_ref().map(|d| d.status),
            &drifts,
            containers.is_some(),
        );
        out.push(RepoStatus {
            name: repo.name,
            branch: repo.branch,
            mode: state.mode.clone(),
            project,
            remote_head: state.remote_head.clone(),
            deployed_commit: state.deployed_commit.clone(),
            pinned_commit: state.pinned_commit.clone(),
            pin,
            sync_state,
            last_error: state.last_error.clone(),
            checked_at: state.checked_at.map(rfc3339),
            last_successful_check: state.remote_ok_at.map(rfc3339),
            remote_failing: state.remote_failing(),
            remote_ok_at: state.remote_ok_at,
            last_deployment: last.map(|d| LastDeployment {
                commit: d.commit,
                status: d.status,
                deployed_at: rfc3339(d.started_at),
            }),
            services,
            drifts,
            events: events
                .into_iter()
                .map(|e| EventStatus {
                    at: rfc3339(e.at),
                    kind: e.kind,
                    service: e.service,
                    detail: e.detail,
                })
                .collect(),
        });
    }
    Ok((out, engine_error))
}

/// Every deployed service with its containers; services the engine has
/// but Kedge did not deploy are listed too.
fn service_statuses(
    recorded: &BTreeMap<String, crate::record::ServiceRecord>,
    containers: Option<&[ContainerState]>,
) -> Vec<ServiceStatus> {
    let mut out = Vec::new();
    let containers = containers.unwrap_or_default();
    for name in recorded.keys() {
        let mine: Vec<&ContainerState> = containers.iter().filter(|c| &c.service == name).collect();
        if mine.is_empty() {
            out.push(ServiceStatus {
                service: name.clone(),
                container: None,
                state: "missing".into(),
                image: None,
                commit: None,
            });
        }
        out.extend(mine.into_iter().map(service_of));
    }
    out.extend(
        containers
            .iter()
            .filter(|c| !recorded.contains_key(&c.service))
            .map(service_of),
    );
    out
}

fn service_of(c: &ContainerState) -> ServiceStatus {
    ServiceStatus {
        service: c.service.clone(),
        container: Some(c.name.clone()),
        state: c.state.clone(),
        image: Some(c.image.clone()),
        commit: c.commit.clone(),
    }
}

/// The worst of: a failed deployment of the head, drift, a rollback pin,
/// a head not deployed yet. Whether the last known head still is the
/// head is unknown while the remote does not answer.
fn sync_state(
    state: &RepoState,
    last: Option<DeploymentStatus>,
    drifts: &[crate::plan::Drift],
    observed: bool,
) -> &'static str {
    let pinned = state.pinned_commit.is_some();
    let head_deployed = state.remote_head.is_some() && state.deployed_commit == state.remote_head;
    if last == Some(DeploymentStatus::Failed) && !head_deployed && !pinned {
        return "failed";
    }
    if !drifts.is_empty() {
        return "drifted";
    }
    if pinned {
        return "pinned";
    }
    if state.remote_head.is_none() {
        return "unknown";
    }
    if !head_deployed {
        return "out_of_sync";
    }
    if !observed || state.remote_failing() {
        return "unknown";
    }
    "synced"
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

fn print_text(statuses: &[RepoStatus]) {
    let dash = |v: &Option<String>| v.as_deref().map(short).unwrap_or("-").to_string();
    for (i, s) in statuses.iter().enumerate() {
        if i > 0 {
            println!();
        }
        println!("Repository: {}", s.name);
        println!("  Branch:      {}", s.branch);
        println!("  Mode:        {}", s.mode.as_deref().unwrap_or("-"));
        println!("  Remote head: {}", dash(&s.remote_head));
        println!("  Deployed:    {}", dash(&s.deployed_commit));
        if let Some(p) = &s.pin {
            println!("  Pinned:      {}", p.describe());
        }
        println!("  Sync state:  {}", s.sync_state);
        if let Some(d) = &s.last_deployment {
            let at = chrono::DateTime::parse_from_rfc3339(&d.deployed_at)
                .map(|t| local_time(t.timestamp_millis()))
                .unwrap_or_default();
            println!(
                "  Last deploy: {} {} at {}",
                short(&d.commit),
                d.status.as_str(),
                at
            );
        }
        println!(
            "  Last error:  {}",
            last_error_text(s, crate::record::now_ms())
        );
        for d in &s.drifts {
            println!("  Drift:       {}: {}", d.service(), heal::describe(d));
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
                println!("  {line}");
            }
        }
        if !s.events.is_empty() {
            println!("  Recent events:");
            for e in &s.events {
                let at = chrono::DateTime::parse_from_rfc3339(&e.at)
                    .map(|t| local_time(t.timestamp_millis()))
                    .unwrap_or_default();
                println!(
                    "    {at}  {:<10} {:<10} {}",
                    e.kind,
                    e.service.as_deref().unwrap_or("-"),
                    e.detail
                );
            }
        }
    }
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

    /// Regression: `status` said `synced` while the remote did not answer.
    #[test]
    fn status_says_synced_while_the_remote_is_unreachable() {
        let synced = RepoState {
            remote_head: Some("c1".into()),
            deployed_commit: Some("c1".into()),
            checked_at: Some(1_000),
            remote_ok_at: Some(1_000),
            ..RepoState::default()
        };
        assert_eq!(sync_state(&synced, None, &[], true), "synced");
        let unreachable = RepoState {
            checked_at: Some(200_000),
            last_error: Some("cannot reach remote x".into()),
            ..synced.clone()
        };
        assert_eq!(sync_state(&unreachable, None, &[], true), "unknown");
        // A known newer head is still known.
        let behind = RepoState {
            remote_head: Some("c2".into()),
            ..unreachable.clone()
        };
        assert_eq!(sync_state(&behind, None, &[], true), "out_of_sync");
    }
}
