//! Drift: observe the deployed services through the engine, plan, and in
//! `auto` mode heal; every drift found and every heal is logged and recorded
//! as an event. A service that keeps needing heals is backed off.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Shared;
use super::task::{ReconcileError, RepoTask};
use crate::apply;
use crate::desired::kedge_yaml::{Mode, Unhealthy};
use crate::error_chain;
use crate::events::{EventKind, NewEvent};
use crate::observe::ContainerState;
use crate::plan::{Drift, Heal, Plan};
use crate::record::{RepoState, ServiceRecord};

/// Heals of one service within this window count towards a crash loop.
pub const CRASH_WINDOW: Duration = Duration::from_secs(300);
pub const CRASH_LIMIT: usize = 5;
const FIRST_BACKOFF: Duration = Duration::from_secs(30);
const MAX_BACKOFF: Duration = Duration::from_secs(600);

/// What a repository task remembers about drift between passes.
#[derive(Debug, Default)]
pub struct DriftState {
    /// Drift reported already: logged and recorded once, not at every pass.
    reported: BTreeSet<Drift>,
    pub crashes: CrashTracker,
    /// Crash loops the engine drives, and when each was last seen: a
    /// looping container shows `running` between restarts, so it is
    /// reported again only once it has not been seen looping for a while.
    engine_loops: BTreeMap<Drift, Instant>,
    /// Swarm nodes reported down (`docker.target: swarm`).
    pub nodes_down: BTreeSet<String>,
}

impl DriftState {
    /// After a deployment everything is new: report afresh.
    pub fn after_apply(&mut self) {
        self.reported.clear();
    }
}

/// Counts heals per service and backs off those that keep failing.
#[derive(Debug, Default)]
pub struct CrashTracker {
    heals: BTreeMap<String, VecDeque<Instant>>,
    /// Until when, and how many times in a row, a service is backed off.
    until: BTreeMap<String, (Instant, u32)>,
}

impl CrashTracker {
    pub fn backed_off(&self, now: Instant) -> BTreeSet<String> {
        self.until
            .iter()
            .filter(|(_, (until, _))| *until > now)
            .map(|(s, _)| s.clone())
            .collect()
    }

    /// Counts a heal; returns the back-off when this heal made it a crash loop.
    pub fn record(&mut self, service: &str, now: Instant) -> Option<Duration> {
        let log = self.heals.entry(service.to_string()).or_default();
        log.push_back(now);
        while log
            .front()
            .is_some_and(|t| now.duration_since(*t) > CRASH_WINDOW)
        {
            log.pop_front();
        }
        if log.len() < CRASH_LIMIT {
            return None;
        }
        log.clear();
        // Each loop in a row backs off longer; one that comes long after
        // the last back-off ended starts again from the first.
        let level = match self.until.get(service) {
            Some((until, l)) if now.saturating_duration_since(*until) <= CRASH_WINDOW => l + 1,
            _ => 0,
        };
        let wait = FIRST_BACKOFF
            .saturating_mul(1 << level.min(10))
            .min(MAX_BACKOFF);
        self.until.insert(service.to_string(), (now + wait, level));
        Some(wait)
    }
}

pub fn mode_of(state: &RepoState) -> Mode {
    state.mode.unwrap_or_default()
}

/// The `drift.unhealthy` policy of the last rendered kedge.yaml.
pub fn unhealthy_of(state: &RepoState) -> Unhealthy {
    state.unhealthy.unwrap_or_default()
}

pub use crate::target::ImageIds;

/// A deployed repository as one look at the engine found it.
#[derive(Debug, Clone)]
pub struct DriftView {
    pub plan: Plan,
    pub mode: Mode,
    pub state: RepoState,
    /// The project's containers, as listed for the plan.
    pub containers: Vec<ContainerState>,
}

/// The drift of a deployed repository now, planned in `mode` (the
/// repository's own unless overridden). `None`: nothing deployed, or the
/// engine cannot be asked.
pub async fn drift_plan(
    shared: &Shared,
    task: &RepoTask,
    mode: Option<Mode>,
) -> Result<Option<DriftView>, ReconcileError> {
    drift_plan_observed(shared, task, mode, None, &mut ImageIds::new()).await
}

/// [`drift_plan`] with the project's containers already listed (`status`
/// lists every project's at once) and a shared image cache.
pub async fn drift_plan_observed(
    shared: &Shared,
    task: &RepoTask,
    mode: Option<Mode>,
    containers: Option<Vec<ContainerState>>,
    images: &mut ImageIds,
) -> Result<Option<DriftView>, ReconcileError> {
    let id = task.id();
    let state = shared.db.read(|s| s.repo_state(id))?;
    if state.deployed_commit.is_none() {
        return Ok(None);
    }
    let records = shared.db.read(|s| s.services(id))?;
    drift_plan_of(shared, task, mode, state, &records, containers, images).await
}

/// [`drift_plan_observed`] with the stack's state and deployed services
/// already read (`status` reads them for its own columns).
pub async fn drift_plan_of(
    shared: &Shared,
    task: &RepoTask,
    mode: Option<Mode>,
    state: RepoState,
    records: &BTreeMap<String, ServiceRecord>,
    containers: Option<Vec<ContainerState>>,
    images: &mut ImageIds,
) -> Result<Option<DriftView>, ReconcileError> {
    if state.deployed_commit.is_none() || records.is_empty() {
        return Ok(None);
    }
    let engine = task.engine(shared).clone();
    let project = state
        .project
        .clone()
        .unwrap_or_else(|| task.repo.name.clone());
    let mode = mode.unwrap_or_else(|| super::windows::heal_mode(&state, mode_of(&state)));
    let backed_off = task.drift.crashes.backed_off(Instant::now());
    let target = crate::target::Target::of_state(&state);
    let observed = target
        .drift_plan(
            &engine,
            crate::target::Observe {
                project: &project,
                records,
                mode,
                prune: state.prune.unwrap_or(true),
                dormant: state.dormant.iter().flatten().cloned().collect(),
                backed_off: &backed_off,
                unhealthy: unhealthy_of(&state),
                containers,
            },
            images,
        )
        .await;
    match observed {
        Ok((plan, containers)) => Ok(Some(DriftView {
            plan,
            mode,
            state,
            containers,
        })),
        Err(e) => {
            tracing::warn!(repo = %task.repo.name, "cannot observe the stack: {}", error_chain(&e));
            Ok(None)
        }
    }
}

/// The check's plan from the containers' shared view (see `view`), when
/// there is one it may use and it shows the stack in sync; None otherwise.
async fn in_sync_in_view(
    shared: &Shared,
    task: &RepoTask,
) -> Result<Option<DriftView>, ReconcileError> {
    // The shared view lists this machine's engine only.
    if task.way.as_ref().is_some_and(|w| w.socket.is_some()) {
        return Ok(None);
    }
    let max_age = super::view::max_age(shared.settings.check_interval);
    let Some(view) = shared
        .views
        .usable(&shared.engine, task.touched, max_age)
        .await
    else {
        return Ok(None);
    };
    let id = task.id();
    let (state, records) = shared
        .db
        .read(|s| Ok((s.repo_state(id)?, s.services(id)?)))?;
    let project = state
        .project
        .clone()
        .unwrap_or_else(|| task.repo.name.clone());
    let mut images = view.images();
    let containers = Some(view.containers(&project));
    let seen = drift_plan_of(shared, task, None, state, &records, containers, &mut images).await?;
    view.keep_images(images);
    Ok(seen.filter(|v| v.plan.in_sync() && v.plan.heals.is_empty() && v.plan.held.is_empty()))
}

/// One drift pass for a repository: report, and heal what the plan says.
/// `mode`: `Some(Mode::Auto)` when the operator asked for a sync.
pub async fn check(
    shared: &Arc<Shared>,
    task: &mut RepoTask,
    mode: Option<Mode>,
) -> Result<Vec<String>, ReconcileError> {
    let seen = match mode {
        None => in_sync_in_view(shared, task).await?,
        // The operator's sync looks for itself.
        Some(_) => None,
    };
    let seen = match seen {
        Some(seen) => Some(seen),
        None => drift_plan(shared, task, mode).await?,
    };
    let Some(view) = seen else {
        task.observed = None;
        return Ok(Vec::new());
    };
    let (plan, mode, state) = (view.plan.clone(), view.mode, view.state.clone());
    task.observed = Some(view);
    report(shared, task, &plan, mode, unhealthy_of(&state));
    report_nodes(shared, task, &crate::target::Target::of_state(&state)).await;
    if plan.heals.is_empty() {
        return Ok(Vec::new());
    }
    // Healed: the next checks look for themselves, not at a shared view
    // that may predate the heal.
    task.touched = Some(Instant::now());
    let engine = task.engine(shared).clone();
    let name = task.repo.name.clone();
    let project = state.project.clone().unwrap_or_else(|| name.clone());
    let mut done = Vec::new();
    let mut events: Vec<NewEvent> = Vec::new();
    let files: Vec<PathBuf> = state
        .compose_files
        .unwrap_or_default()
        .into_iter()
        .map(PathBuf::from)
        .collect();
    // The project as it was applied: its overrides read after its files.
    let compose = crate::target::as_applied(
        task.compose(shared, &project, &task.git.clone, files)
            .with_profiles(&state.profiles.clone().unwrap_or_default())
            .with_env_files(&state.env_files.clone().unwrap_or_default()),
        &task.override_path(),
        &shared.secrets_dir(task.id()),
        !state.secrets.is_empty(),
    );
    for heal in &plan.heals {
        let started = Instant::now();
        let what = describe_heal(heal);
        let (services, result) = match heal {
            Heal::Start { service, id, .. } => (
                vec![service.clone()],
                apply::engine::start(&engine, id)
                    .await
                    .map_err(|e| error_chain(&e)),
            ),
            Heal::Remove { service, id, .. } => (
                vec![service.clone()],
                apply::engine::remove(&engine, id)
                    .await
                    .map_err(|e| error_chain(&e)),
            ),
            Heal::Restart { service, id, .. } => (
                vec![service.clone()],
                apply::engine::restart(&engine, id)
                    .await
                    .map_err(|e| error_chain(&e)),
            ),
            Heal::Recreate { services, force } => {
                // A build service comes back on its build's image.
                let records = shared.db.read(|s| s.services(task.id()))?;
                let specs: Vec<&crate::model::service::ServiceSpec> = services
                    .iter()
                    .filter_map(|s| records.get(s).map(|r| &r.spec))
                    .collect();
                apply::rollout::select_builds(&engine, &project, &specs).await;
                (
                    services.clone(),
                    apply::recreate(&compose, services, *force)
                        .await
                        .map_err(|e| error_chain(&e)),
                )
            }
            Heal::Redeploy { services } => (
                services.clone(),
                apply::stack::deploy(
                    &project,
                    &task.stack_path(),
                    state.prune.unwrap_or(true),
                    shared.registry_config(),
                    task.way.as_ref().and_then(|w| w.socket.as_deref()),
                )
                .await
                .map_err(|e| error_chain(&e)),
            ),
        };
        let took = started.elapsed();
        let detail = match &result {
            Ok(()) => format!("{what}: ok in {:.2} s", took.as_secs_f64()),
            Err(e) => format!("{what}: failed: {e}"),
        };
        match &result {
            Ok(()) => tracing::info!(repo = %name, "healed: {detail}"),
            Err(_) => tracing::error!(repo = %name, "heal failed: {detail}"),
        }
        let kind = match &result {
            Ok(()) => EventKind::DriftHealed,
            Err(_) => EventKind::HealFailed,
        };
        events.extend(services.iter().map(|s| {
            NewEvent::new(&name, kind, detail.clone())
                .service(s)
                .field("action", what.clone())
                .field("took_ms", took.as_millis() as u64)
        }));
        done.push(detail);
        if matches!(heal, Heal::Remove { .. }) {
            continue;
        }
        for service in services {
            if let Some(wait) = task.drift.crashes.record(&service, Instant::now()) {
                let text = format!(
                    "crash-looping: healed {CRASH_LIMIT} times within {} min; next heal in {} s",
                    CRASH_WINDOW.as_secs() / 60,
                    wait.as_secs()
                );
                tracing::warn!(repo = %name, %service, "{text}");
                events.push(
                    NewEvent::new(&name, EventKind::CrashLoop, text)
                        .service(&service)
                        .field("backoff_s", wait.as_secs()),
                );
            }
        }
    }
    // Healed first, recorded after: a store that cannot be written (a full
    // disk) never stops a heal.
    for event in events {
        task.emit(shared, event);
    }
    // Healed drift that comes back is news again.
    task.drift.reported.clear();
    Ok(done)
}

/// A node of the target's cluster that stopped being ready is news once:
/// the orchestrator reschedules its tasks on its own and Kedge leaves that
/// to it. A target without nodes has none to report.
async fn report_nodes(shared: &Shared, task: &mut RepoTask, target: &crate::target::Target) {
    let Some(nodes) = target.nodes(task.engine(shared)).await else {
        return;
    };
    let name = task.repo.name.clone();
    for node in &nodes {
        let down = node.state != "ready";
        let known = task.drift.nodes_down.contains(&node.hostname);
        if down && !known {
            let text = format!(
                "node {} is {}: Swarm reschedules its tasks; Kedge leaves them to it",
                node.hostname, node.state
            );
            tracing::warn!(repo = %name, "{text}");
            task.emit(
                shared,
                NewEvent::new(&name, EventKind::DriftDetected, text)
                    .field("type", "node_down")
                    .field("node", node.hostname.clone()),
            );
            task.drift.nodes_down.insert(node.hostname.clone());
        } else if !down && known {
            tracing::info!(repo = %name, node = %node.hostname, "node ready again");
            task.drift.nodes_down.remove(&node.hostname);
        }
    }
}

/// A heal as logs, events and `sync` show it.
pub fn describe_heal(heal: &Heal) -> String {
    match heal {
        Heal::Start { container, .. } => format!("start {container}"),
        Heal::Remove { container, .. } => format!("remove {container}"),
        Heal::Restart { container, .. } => format!("restart unhealthy {container}"),
        Heal::Redeploy { services } => format!("docker stack deploy ({})", services.join(", ")),
        Heal::Recreate {
            services,
            force: true,
        } => format!("force-recreate {}", services.join(", ")),
        Heal::Recreate {
            services,
            force: false,
        } => format!("create {}", services.join(", ")),
    }
}

/// Logs and records drift not reported yet.
fn report(shared: &Shared, task: &mut RepoTask, plan: &Plan, mode: Mode, unhealthy: Unhealthy) {
    let now = Instant::now();
    let current: BTreeSet<Drift> = plan.drifts.iter().cloned().collect();
    let mut events = Vec::new();
    let loops = &mut task.drift.engine_loops;
    loops.retain(|_, seen| now.duration_since(*seen) <= CRASH_WINDOW);
    for d in current
        .iter()
        .filter(|d| matches!(d, Drift::CrashLoop { .. }))
    {
        if loops.insert(d.clone(), now).is_none() {
            let text = d.describe();
            tracing::warn!(repo = %task.repo.name, service = d.service(), "drift: {text}");
            events.push(
                NewEvent::new(&task.repo.name, EventKind::CrashLoop, text)
                    .service(d.service())
                    .field("drift", d.kind())
                    .field("healed", false),
            );
        }
    }
    for d in current
        .difference(&task.drift.reported)
        .filter(|d| !matches!(d, Drift::CrashLoop { .. }))
    {
        let text = d.describe();
        if mode == Mode::Auto {
            tracing::info!(repo = %task.repo.name, service = d.service(), "drift: {text}");
        } else {
            tracing::warn!(repo = %task.repo.name, service = d.service(), %mode, "drift: {text} (not healed: mode {mode})");
        }
        // An unhealthy container is the `unhealthy` event (operations.md);
        // whether it is healed is the policy's word.
        let (kind, healed) = match d {
            Drift::Unhealthy { .. } => (
                EventKind::Unhealthy,
                mode == Mode::Auto && unhealthy == Unhealthy::Restart,
            ),
            _ => (EventKind::DriftDetected, mode == Mode::Auto),
        };
        events.push(
            NewEvent::new(&task.repo.name, kind, text)
                .service(d.service())
                .field("drift", d.kind())
                .field("healed", healed),
        );
    }
    for event in events {
        task.emit(shared, event);
    }
    task.drift.reported = current;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_heals_in_five_minutes_back_off_exponentially() {
        let mut t = CrashTracker::default();
        let start = Instant::now();
        for i in 0..4 {
            assert_eq!(t.record("web", start + Duration::from_secs(i)), None);
        }
        assert_eq!(
            t.record("web", start + Duration::from_secs(4)),
            Some(Duration::from_secs(30))
        );
        assert!(t.backed_off(start + Duration::from_secs(5)).contains("web"));
        assert!(t.backed_off(start + Duration::from_secs(40)).is_empty());
        // The next loop waits twice as long.
        for i in 0..4 {
            assert_eq!(t.record("web", start + Duration::from_secs(50 + i)), None);
        }
        assert_eq!(
            t.record("web", start + Duration::from_secs(54)),
            Some(Duration::from_secs(60))
        );
    }

    /// Regression: the level never went down, so a service that crash-
    /// looped again days later started from a long back-off.
    #[test]
    fn a_loop_long_after_the_last_back_off_starts_from_the_first() {
        let mut t = CrashTracker::default();
        let start = Instant::now();
        let loop_at = |t: &mut CrashTracker, from: u64| {
            for i in 0..4 {
                assert_eq!(t.record("web", start + Duration::from_secs(from + i)), None);
            }
            t.record("web", start + Duration::from_secs(from + 4))
        };
        assert_eq!(loop_at(&mut t, 0), Some(Duration::from_secs(30)));
        assert_eq!(loop_at(&mut t, 50), Some(Duration::from_secs(60)));
        // A day later: the first back-off again.
        assert_eq!(loop_at(&mut t, 86_400), Some(Duration::from_secs(30)));
    }

    #[test]
    fn heals_spread_over_more_than_the_window_are_not_a_loop() {
        let mut t = CrashTracker::default();
        let start = Instant::now();
        for i in 0..20 {
            assert_eq!(
                t.record("web", start + Duration::from_secs(i * 100)),
                None,
                "heal {i}"
            );
        }
        assert!(t.backed_off(start + Duration::from_secs(2000)).is_empty());
    }
}
