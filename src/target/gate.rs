//! target: the health gate of a compose project after `up`. Watches the changed services'
//! containers through the engine's event stream (a start, a death, a
//! health verdict wakes it; the end of a `stable_for` or of the timeout is
//! a timer) and asks `plan::gate` for the verdict each time, until every
//! changed service is up, one has failed, or the timeout passes. Reads
//! only: what a failure leads to is `deploy`'s business.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use crate::desired::kedge_yaml::Gate;
use crate::desired::render::ServiceSpec;
use crate::error_chain;
use crate::observe::health::Inspected;
use crate::observe::{Engine, RunState};
use crate::plan::gate::{GatedService, Verdict, log_excerpt, verdict};

/// Lines of a failing container's log quoted in the failure.
const LOG_LINES: usize = 20;
/// At most this much of them, from the end.
const LOG_BYTES: usize = 600;

/// Why the gate did not pass.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.describe())]
pub struct GateFailure {
    pub cause: GateCause,
    /// Set when the timeout passed with the services not up.
    pub timed_out: Option<Duration>,
    /// How long the gate watched.
    pub after: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GateCause {
    /// Changed services did not come up.
    Services {
        /// (service, why), sorted by service.
        failed: Vec<(String, String)>,
        /// Those whose update Swarm's own `failure_action: rollback` put
        /// back to the previous version.
        rolled_back_by_target: Vec<String>,
    },
    /// The engine stopped answering while the gate watched (why): that
    /// says nothing about the commit.
    EngineLost(String),
}

impl GateFailure {
    /// Changed services that did not come up, (service, why) each.
    pub fn services(
        failed: Vec<(String, String)>,
        timed_out: Option<Duration>,
        after: Duration,
    ) -> Self {
        GateFailure {
            cause: GateCause::Services {
                failed,
                rolled_back_by_target: Vec::new(),
            },
            timed_out,
            after,
        }
    }

    /// The engine stopped answering: `why`.
    pub fn engine(why: String, after: Duration) -> Self {
        GateFailure {
            cause: GateCause::EngineLost(why),
            timed_out: None,
            after,
        }
    }

    /// The engine stopped answering while the gate watched: that says
    /// nothing about the commit.
    pub fn engine_lost(&self) -> bool {
        matches!(self.cause, GateCause::EngineLost(_))
    }

    /// The services whose failed update Swarm itself rolled back.
    pub fn rolled_back_by_target(&self) -> Vec<&str> {
        match &self.cause {
            GateCause::Services {
                rolled_back_by_target,
                ..
            } => rolled_back_by_target.iter().map(String::as_str).collect(),
            GateCause::EngineLost(_) => Vec::new(),
        }
    }

    fn describe(&self) -> String {
        let services = match &self.cause {
            GateCause::Services { failed, .. } => failed
                .iter()
                .map(|(s, why)| format!("{s}: {why}"))
                .collect::<Vec<_>>()
                .join("; "),
            // Said as it always was, in place of a service.
            GateCause::EngineLost(why) => format!("(engine): {why}"),
        };
        match self.timed_out {
            Some(timeout) => format!(
                "health gate failed: not up within the timeout of {}: {services}",
                seconds(timeout)
            ),
            None => format!(
                "health gate failed after {:.1} s: {services}",
                self.after.as_secs_f64()
            ),
        }
    }
}

fn seconds(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

/// Watches `services` (the changed ones) of `project` until they are up;
/// returns how long that took. Deaths before `applied_ms` (when the apply
/// began) are not this deployment's.
pub async fn watch(
    engine: &Engine,
    project: &str,
    services: &[&ServiceSpec],
    gate: &Gate,
    applied_ms: i64,
) -> Result<Duration, GateFailure> {
    use futures_util::StreamExt;
    let started = Instant::now();
    let deadline = tokio::time::Instant::from_std(started + gate.timeout);
    let failure =
        |services, timed_out| GateFailure::services(services, timed_out, started.elapsed());
    let lost = |why| GateFailure::engine(why, started.elapsed());
    if services.is_empty() {
        return Ok(started.elapsed());
    }
    let names: BTreeSet<&str> = services.iter().map(|s| s.name.as_str()).collect();
    // From the apply's start: what happened between `up` and now is
    // replayed (the engine counts in seconds; `note` drops what is older).
    let since = applied_ms / 1000;
    let mut events = match engine.container_events(project, since).await {
        Ok(events) => Box::pin(events),
        Err(e) => {
            return Err(lost(error_chain(&e)));
        }
    };
    let mut seen = Seen::default();
    let mut confirm_until: Option<tokio::time::Instant> = None;
    let mut looks = 0u32;
    loop {
        looks += 1;
        let now = crate::time::now_ms();
        let inspected = match look(engine, project, &names).await {
            Ok(i) => i,
            Err(e) => return Err(lost(e)),
        };
        // A container stopped through the engine (`docker stop`, `docker
        // kill`) during the gate is drift, not the commit's verdict: heals
        // wait while a deployment is gated, so the gate starts it again.
        let mut restarted = false;
        for (_, c) in &inspected {
            if !matches!(c.state, RunState::Exited | RunState::Dead) || !seen.stopped_by_hand(&c.id)
            {
                continue;
            }
            let starts = seen.restarts.entry(c.id.clone()).or_default();
            *starts += 1;
            if *starts > MAX_GATE_STARTS {
                return Err(failure(
                    vec![(
                        service_of(&inspected, &c.id),
                        format!(
                            "{} was stopped through the engine {MAX_GATE_STARTS} times during the health gate",
                            c.name
                        ),
                    )],
                    None,
                ));
            }
            tracing::info!(%project, container = %c.name, "stopped through the engine during the health gate: starting it again");
            if let Err(e) = crate::apply::engine::start(engine, &c.id).await {
                tracing::warn!(container = %c.name, "cannot start it: {}", error_chain(&e));
            }
            restarted = true;
        }
        if restarted {
            continue;
        }
        // An exit the event stream has not told of yet may follow a kill
        // through the engine whose events are still on their way (the
        // inspection can be ahead of the stream): judged once the stream
        // has caught up, or after a short wait.
        let unconfirmed = inspected.iter().any(|(_, c)| {
            matches!(c.state, RunState::Exited | RunState::Dead)
                && c.exit_code != Some(0)
                && !seen.died.contains_key(&c.id)
                && !seen.killed.contains(&c.id)
        });
        if !unconfirmed {
            confirm_until = None;
        } else {
            let until =
                *confirm_until.get_or_insert_with(|| tokio::time::Instant::now() + CONFIRM_WAIT);
            if tokio::time::Instant::now() < until {
                match tokio::time::timeout_at(until, events.next()).await {
                    Ok(Some(Ok(event))) => {
                        seen.note(event, applied_ms);
                        while let Some(Some(Ok(event))) =
                            futures_util::FutureExt::now_or_never(events.next())
                        {
                            seen.note(event, applied_ms);
                        }
                    }
                    Ok(Some(Err(e))) => return Err(lost(error_chain(&e))),
                    Ok(None) => return Err(lost("the engine's event stream ended".into())),
                    Err(_) => {}
                }
                continue;
            }
        }
        let died = &seen.died;
        let mut failed = Vec::new();
        let mut pending = Vec::new();
        let mut wake: Option<i64> = None;
        for spec in services {
            let mine: Vec<&Inspected> = inspected
                .iter()
                .filter(|(s, _)| s == &spec.name)
                .map(|(_, c)| c)
                .collect();
            let service = GatedService {
                name: &spec.name,
                replicas: spec.replicas,
                restarts_on_success: matches!(
                    spec.restart.as_deref(),
                    Some("always" | "unless-stopped")
                ),
                containers: mine.clone(),
            };
            match verdict(&service, died, now, gate.stable_for) {
                Verdict::Up => {}
                Verdict::Failed { why } => failed.push((spec.name.clone(), why, mine)),
                Verdict::Pending { until, why } => {
                    if let Some(until) = until {
                        wake = Some(wake.map_or(until, |w: i64| w.max(until)));
                    }
                    pending.push((spec.name.clone(), why, mine));
                }
            }
        }
        tracing::debug!(%project, looks, failed = failed.len(), pending = pending.len(), "health gate look");
        if !failed.is_empty() {
            return Err(failure(with_logs(engine, failed, died).await, None));
        }
        if pending.is_empty() {
            let took = started.elapsed();
            tracing::info!(%project, looks, "health gate passed in {:.2} s", took.as_secs_f64());
            return Ok(took);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(failure(
                with_logs(engine, pending, died).await,
                Some(gate.timeout),
            ));
        }
        // Next look: at the engine's next word, or when the last pending
        // `stable_for` ends, or at the timeout.
        let timer = match wake {
            Some(at) => {
                let ms = (at - crate::time::now_ms()).max(0) as u64;
                deadline.min(tokio::time::Instant::now() + Duration::from_millis(ms))
            }
            None => deadline,
        };
        tokio::select! {
            event = events.next() => match event {
                Some(Ok(event)) => {
                    seen.note(event, applied_ms);
                    // A burst (die, then restart): take what is there already.
                    while let Some(Some(Ok(event))) = futures_util::FutureExt::now_or_never(events.next()) {
                        seen.note(event, applied_ms);
                    }
                }
                Some(Err(e)) => return Err(lost(error_chain(&e))),
                None => return Err(lost("the engine's event stream ended".into())),
            },
            _ = tokio::time::sleep_until(timer) => {}
        }
    }
}

/// How long an exit the engine's event stream has not reported yet waits
/// for it before it is judged as it stands.
const CONFIRM_WAIT: Duration = Duration::from_secs(2);

/// How often the gate starts one container stopped by hand before it
/// gives up on it.
const MAX_GATE_STARTS: u32 = 3;

/// What the engine reported during the gate.
#[derive(Debug, Default)]
struct Seen {
    /// Non-zero exits of the process itself, by container id.
    died: BTreeMap<String, i64>,
    /// Containers sent a signal through the engine (`kill`, which `docker
    /// stop` sends too) and not started since: their exit is not theirs.
    killed: BTreeSet<String>,
    /// How often the gate started each of those again.
    restarts: BTreeMap<String, u32>,
}

impl Seen {
    /// Regression: a container the engine killed on its way down (137), then
    /// started again by the retried deployment's `up`, failed that
    /// deployment's gate: a death from before the apply began was counted.
    /// Regression: `docker stop` of a service during a first deployment's
    /// gate failed the deployment ("exited with code 143") and left the
    /// stack stopped: a death that follows a kill through the engine is
    /// not the process's own.
    fn note(&mut self, event: crate::observe::health::ContainerEvent, applied_ms: i64) {
        tracing::debug!(container = %event.id, action = %event.action, "gate: engine event");
        if event.at_ms.is_some_and(|at| at < applied_ms) {
            return;
        }
        match event.action.as_str() {
            "kill" | "stop" => {
                self.killed.insert(event.id);
            }
            "start" => {
                self.killed.remove(&event.id);
            }
            "die" if !self.killed.contains(&event.id) => {
                if let Some(code) = event.exit_code.filter(|c| *c != 0) {
                    self.died.insert(event.id, code);
                }
            }
            _ => {}
        }
    }

    fn stopped_by_hand(&self, id: &str) -> bool {
        self.killed.contains(id)
    }
}

/// The service a gated container belongs to.
fn service_of(inspected: &[(String, Inspected)], id: &str) -> String {
    inspected
        .iter()
        .find(|(_, c)| c.id == id)
        .map(|(s, _)| s.clone())
        .unwrap_or_default()
}

/// The gated services' containers, inspected: (service, container).
async fn look(
    engine: &Engine,
    project: &str,
    services: &BTreeSet<&str>,
) -> Result<Vec<(String, Inspected)>, String> {
    let containers = engine
        .project_containers(project)
        .await
        .map_err(|e| error_chain(&e))?;
    let gated: Vec<_> = containers
        .into_iter()
        .filter(|c| !c.oneoff && services.contains(c.service.as_str()))
        .collect();
    let inspected = futures_util::future::join_all(
        gated
            .iter()
            .map(|c| async move { (c.service.clone(), engine.inspect_container(&c.id).await) }),
    )
    .await;
    // A container removed between the list and its inspection is not there.
    Ok(inspected
        .into_iter()
        .filter_map(|(s, c)| c.ok().map(|c| (s, c)))
        .collect())
}

/// Each failing service's reason, with the last lines of its containers'
/// logs (those that died, were unhealthy or did not come up).
async fn with_logs(
    engine: &Engine,
    services: Vec<(String, String, Vec<&Inspected>)>,
    died: &BTreeMap<String, i64>,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (service, why, containers) in services {
        let mut text = why;
        for c in containers {
            let up = c.state == RunState::Running
                && c.health.as_deref() != Some("unhealthy")
                && !died.contains_key(&c.id);
            if up && containers_fine(&text, &c.name) {
                continue;
            }
            match engine.log_tail(&c.id, LOG_LINES).await {
                Ok(log) => {
                    let excerpt = log_excerpt(&log, LOG_BYTES);
                    if !excerpt.is_empty() {
                        text.push_str(&format!(" (last log lines of {}: {excerpt})", c.name));
                    }
                }
                Err(e) => {
                    tracing::debug!(container = %c.name, "cannot read logs: {}", error_chain(&e))
                }
            }
        }
        out.push((service, text));
    }
    out.sort();
    out
}

/// Whether the reason leaves `container` out (one replica of several failed).
fn containers_fine(why: &str, container: &str) -> bool {
    !why.contains(container)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::health::ContainerEvent;

    /// Regression: an engine restart during the gate failed the commit for
    /// good ("health gate failed: (engine): cannot list the containers"),
    /// so nothing was deployed once the engine was back.
    #[test]
    fn an_engine_outage_during_the_gate_is_not_the_commits_verdict() {
        let after = Duration::from_millis(100);
        let lost = GateFailure::engine("cannot list the containers".into(), after);
        assert!(lost.engine_lost());
        assert_eq!(
            lost.to_string(),
            "health gate failed after 0.1 s: (engine): cannot list the containers"
        );
        let failed = GateFailure::services(
            vec![("web".into(), "exited with code 1".into())],
            None,
            after,
        );
        assert!(!failed.engine_lost());
        assert_eq!(
            failed.to_string(),
            "health gate failed after 0.1 s: web: exited with code 1"
        );
        // A service that happens to be called like the engine is a service.
        let named = GateFailure::services(vec![("(engine)".into(), "x".into())], None, after);
        assert!(!named.engine_lost());
    }

    fn event(action: &str, at_ms: Option<i64>, exit_code: Option<i64>) -> ContainerEvent {
        ContainerEvent {
            id: "c1".into(),
            action: action.into(),
            exit_code,
            at_ms,
        }
    }

    #[test]
    fn deaths_before_the_apply_are_not_the_deployments() {
        let mut seen = Seen::default();
        seen.note(event("die", Some(999), Some(137)), 1_000);
        assert!(seen.died.is_empty());
        seen.note(event("die", Some(1_000), Some(137)), 1_000);
        assert_eq!(seen.died.get("c1"), Some(&137));
        let mut seen = Seen::default();
        seen.note(event("die", None, Some(137)), 1_000);
        assert_eq!(seen.died.len(), 1, "an event without a time counts");
    }

    #[test]
    fn a_stop_through_the_engine_is_not_the_process_dying() {
        let mut seen = Seen::default();
        seen.note(event("kill", Some(1_500), None), 1_000);
        seen.note(event("die", Some(1_600), Some(143)), 1_000);
        assert!(seen.died.is_empty(), "{seen:?}");
        assert!(seen.stopped_by_hand("c1"));
        // Started again: a later exit of its own counts.
        seen.note(event("start", Some(1_700), None), 1_000);
        assert!(!seen.stopped_by_hand("c1"));
        seen.note(event("die", Some(1_800), Some(1)), 1_000);
        assert_eq!(seen.died.get("c1"), Some(&1));
        // A kill from before the apply says nothing about this gate.
        let mut seen = Seen::default();
        seen.note(event("kill", Some(900), None), 1_000);
        seen.note(event("die", Some(1_100), Some(137)), 1_000);
        assert_eq!(seen.died.get("c1"), Some(&137));
    }
}
