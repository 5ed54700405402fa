//! target: a Swarm stack (`docker.target: swarm`). The rendered commit
//! becomes a stack file that `docker stack deploy` applies; the gate
//! watches the changed services' update and tasks; heals and restores
//! deploy the last successful stack file again.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::{Site, TargetError};
use crate::apply;
use crate::desired::kedge_yaml::Gate;
use crate::desired::render::{Desired, ServiceSpec};
use crate::error_chain;
use crate::observe::Engine;
use crate::observe::swarm::SwarmService;
use crate::record::ServiceRecord;
use crate::target::gate::{GateCause, GateFailure};

/// How often the gate looks at the services: Swarm reports task progress
/// only through them (its events say "updated", not how far).
const GATE_LOOK: Duration = Duration::from_millis(250);

/// The stack file of a deployment being applied; it becomes the deployed
/// one (`RepoTask::stack_path`) when the deployment succeeds.
pub fn next_stack_path(site: &Site<'_>) -> PathBuf {
    site.stack_path.with_extension("next.json")
}

/// Applies a rendered commit: the deployed checkout first (bind mounts
/// read from it), then the stack file, then `docker stack deploy`.
pub async fn apply(
    site: &Site<'_>,
    desired: &Desired,
    checkout: bool,
    records: &BTreeMap<String, ServiceRecord>,
) -> Result<(), TargetError> {
    let commits: BTreeMap<String, String> = records
        .iter()
        .map(|(s, r)| (s.clone(), r.commit.clone()))
        .collect();
    let content = apply::stack::stack_file(&desired.rendered, &desired.project, &commits)
        .map_err(apply::ApplyError::from)?;
    if checkout {
        site.git.checkout_deployed(&desired.commit).await?;
    }
    let path = next_stack_path(site);
    apply::stack::write(&path, &content).await?;
    apply::stack::deploy(
        &desired.project,
        &path,
        desired.kedge.prune,
        site.registry_config.clone(),
        site.docker_host.as_deref(),
    )
    .await?;
    tracing::debug!(commit = %&desired.commit[..7.min(desired.commit.len())], "docker stack deploy done");
    Ok(())
}

/// After a successful deployment: its stack file is the deployed one, and
/// each service's spec digest is recorded (a later hand edit shows as drift).
pub async fn settle(site: &Site<'_>, project: &str, records: &mut BTreeMap<String, ServiceRecord>) {
    if let Err(e) = std::fs::rename(next_stack_path(site), &site.stack_path) {
        tracing::warn!(%project, "cannot keep the deployed stack file: {e}");
    }
    match site.engine.stack_services(project).await {
        Ok(services) => {
            for (name, record) in records.iter_mut() {
                record.config_hash = services
                    .iter()
                    .find(|s| &s.service == name)
                    .map(|s| s.fingerprint.clone());
            }
        }
        Err(e) => tracing::warn!(%project, "cannot read back the services: {}", error_chain(&e)),
    }
}

/// Deploys the last successful stack file again (a restore after a failed
/// deployment). False when there is none.
pub async fn redeploy_deployed(
    site: &Site<'_>,
    project: &str,
    prune: bool,
) -> Result<bool, apply::ApplyError> {
    let path = &site.stack_path;
    if !path.exists() {
        return Ok(false);
    }
    apply::stack::deploy(
        project,
        path,
        prune,
        site.registry_config.clone(),
        site.docker_host.as_deref(),
    )
    .await?;
    Ok(true)
}

/// The stack's services as `status` shows them; `None`: the engine did not answer.
pub async fn services(engine: &Engine, project: &str) -> Option<Vec<SwarmService>> {
    engine.stack_services(project).await.ok()
}

/// The stack's drift plan: its services against the deployed ones.
pub async fn drift_plan(
    engine: &Engine,
    o: super::Observe<'_>,
) -> Result<(crate::plan::Plan, Vec<crate::observe::ContainerState>), crate::observe::ObserveError>
{
    let services = engine.stack_services(o.project).await?;
    let want: BTreeMap<String, crate::plan::Want> = o
        .records
        .iter()
        .map(|(name, r)| {
            let want = crate::plan::Want {
                image: r.spec.image_ref(o.project),
                image_id: None,
                spec: r.spec.clone(),
                config_hash: r.config_hash.clone(),
            };
            (name.clone(), want)
        })
        .collect();
    let plan = crate::plan::swarm::plan(&want, &services, o.mode, o.prune, o.backed_off);
    Ok((plan, Vec::new()))
}

/// Why a changed service failed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Broken {
    why: String,
    /// Swarm's own `failure_action: rollback` put its previous version back.
    rolled_back: bool,
}

impl Broken {
    fn new(why: String) -> Broken {
        Broken {
            why,
            rolled_back: false,
        }
    }
}

/// Why a changed service is not up yet, or failed; `None`: up. `current`:
/// its running tasks on the current task template. Swarm clears a
/// service's update state when it is asked to update and sets `updating`
/// only once its orchestrator starts, so the service's own running count
/// (old tasks included) would pass a gate that looked in between.
fn verdict(s: &SwarmService, current: u64, failed: Option<&str>) -> Result<Option<String>, Broken> {
    match s.update_state.as_deref() {
        Some("rollback_started" | "rollback_paused" | "rollback_completed") => {
            return Err(Broken {
                why: format!(
                    "Swarm rolled the update back ({}){}",
                    s.update_state.as_deref().unwrap_or_default(),
                    s.update_message
                        .as_deref()
                        .map(|m| format!(": {m}"))
                        .unwrap_or_default()
                ),
                rolled_back: true,
            });
        }
        Some("paused") => {
            return Err(Broken::new(format!(
                "Swarm paused the update{}",
                s.update_message
                    .as_deref()
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default()
            )));
        }
        _ => {}
    }
    // While Swarm updates a service, its own `update_config` judges failed
    // tasks (pause or roll back): Kedge waits for that verdict.
    let updating = matches!(s.update_state.as_deref(), Some("updating"));
    if !updating && let Some(why) = failed {
        return Err(Broken::new(why.to_string()));
    }
    if updating || current < s.desired {
        return Ok(Some(format!(
            "{current} of {} tasks running the new version{}",
            s.desired,
            if updating { ", updating" } else { "" }
        )));
    }
    Ok(None)
}

/// The gate's failure for broken services, with those Swarm rolled back
/// named: Kedge does not apply their previous version a second time.
fn broken_failure(broken: Vec<(String, Broken)>, after: Duration) -> GateFailure {
    let rolled_back_by_target = broken
        .iter()
        .filter(|(_, b)| b.rolled_back)
        .map(|(service, _)| service.clone())
        .collect();
    GateFailure {
        cause: GateCause::Services {
            failed: broken.into_iter().map(|(s, b)| (s, b.why)).collect(),
            rolled_back_by_target,
        },
        timed_out: None,
        after,
    }
}

/// The health gate for a stack: each changed service must finish its update
/// with all its tasks running for `stable_for`; a failed task of this
/// deployment, or an update Swarm paused or rolled back, fails it.
pub async fn watch(
    engine: &Engine,
    project: &str,
    services: &[&ServiceSpec],
    gate: &Gate,
    applied_ms: i64,
) -> Result<Duration, GateFailure> {
    let started = Instant::now();
    let failure =
        |services, timed_out| GateFailure::services(services, timed_out, started.elapsed());
    let mut up_since: Option<Instant> = None;
    loop {
        let (stack, tasks) = match (
            engine.stack_services(project).await,
            engine.stack_tasks(project).await,
        ) {
            (Ok(s), Ok(t)) => (s, t),
            (Err(e), _) | (_, Err(e)) => {
                return Err(GateFailure::engine(error_chain(&e), started.elapsed()));
            }
        };
        let mut pending = Vec::new();
        let mut broken: Vec<(String, Broken)> = Vec::new();
        for spec in services {
            let Some(s) = stack.iter().find(|s| s.service == spec.name) else {
                pending.push((spec.name.clone(), "not created yet".to_string()));
                continue;
            };
            // A task of this deployment that failed: its exit code and error.
            let task_failure = tasks
                .failed
                .iter()
                .filter(|t| t.service_id == s.id)
                .filter(|t| {
                    crate::observe::health::engine_time_ms(&t.created_at)
                        .is_none_or(|at| at >= applied_ms)
                })
                .map(|t| match t.exit_code {
                    Some(code) => format!("a task {} with exit code {code}: {}", t.state, t.error),
                    None => format!("a task was {}: {}", t.state, t.error),
                })
                .next();
            match verdict(s, tasks.current(s), task_failure.as_deref()) {
                Ok(None) => {}
                Ok(Some(why)) => pending.push((spec.name.clone(), why)),
                Err(why) => broken.push((spec.name.clone(), why)),
            }
        }
        if !broken.is_empty() {
            return Err(broken_failure(broken, started.elapsed()));
        }
        if pending.is_empty() {
            let since = *up_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= gate.stable_for {
                let took = started.elapsed();
                tracing::info!(%project, "health gate passed in {:.2} s", took.as_secs_f64());
                return Ok(took);
            }
        } else {
            up_since = None;
        }
        if started.elapsed() >= gate.timeout {
            return Err(failure(pending, Some(gate.timeout)));
        }
        tokio::time::sleep(GATE_LOOK).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(update: Option<&str>, running: u64, desired: u64) -> SwarmService {
        SwarmService {
            id: "s1".into(),
            name: "app_web".into(),
            service: "web".into(),
            image: "web:2".into(),
            replicas: Some(desired),
            running,
            desired,
            update_state: update.map(String::from),
            update_message: Some(
                "update paused due to failure or early termination of task x".into(),
            ),
            commit: None,
            fingerprint: String::new(),
            template: String::new(),
        }
    }

    #[test]
    fn swarm_gate_verdicts() {
        assert_eq!(
            verdict(&service(Some("completed"), 3, 3), 3, None),
            Ok(None)
        );
        assert_eq!(verdict(&service(None, 1, 1), 1, None), Ok(None));
        // Asked to update, not started yet: the old tasks run, none of the
        // new version (regression: the gate passed here).
        assert_eq!(
            verdict(&service(None, 3, 3), 0, None),
            Ok(Some("0 of 3 tasks running the new version".into()))
        );
        assert_eq!(
            verdict(&service(Some("updating"), 3, 3), 1, None),
            Ok(Some(
                "1 of 3 tasks running the new version, updating".into()
            ))
        );
        assert_eq!(
            verdict(&service(None, 1, 3), 1, None),
            Ok(Some("1 of 3 tasks running the new version".into()))
        );
        let rolled = verdict(&service(Some("rollback_completed"), 3, 3), 0, None).unwrap_err();
        assert!(rolled.rolled_back);
        assert!(
            rolled
                .why
                .starts_with("Swarm rolled the update back (rollback_completed): update paused"),
            "{rolled:?}"
        );
        let paused = verdict(&service(Some("paused"), 2, 3), 1, None).unwrap_err();
        assert!(!paused.rolled_back);
        assert!(paused.why.starts_with("Swarm paused the update"));
        let failure = broken_failure(
            vec![("web".into(), rolled), ("worker".into(), paused)],
            Duration::from_millis(1500),
        );
        assert_eq!(failure.rolled_back_by_target(), ["web"]);
        assert!(
            failure.to_string().starts_with(
                "health gate failed after 1.5 s: web: Swarm rolled the update back (rollback_completed): update paused"
            ),
            "{failure}"
        );
        assert_eq!(
            verdict(
                &service(None, 0, 1),
                0,
                Some("a task failed with exit code 1: task: non-zero exit (1)")
            ),
            Err(Broken::new(
                "a task failed with exit code 1: task: non-zero exit (1)".into()
            ))
        );
    }
}
