//! api: `GET /metrics`, Prometheus text format (0.0.4), unauthenticated.
//!
//! Counters follow the event log (a task reads the broadcast, and the log
//! by id when it falls behind), so they count what a `kedge sync` in
//! another shell did too; they start at zero when `serve` starts. Remote
//! checks are no events: the controller counts them in memory, and the
//! notification sinks count their deliveries the same way. Gauges are
//! computed at each scrape from the store and `serve`'s snapshots
//! (`Ops::metrics`), never from the engine or git. Observing never slows
//! or fails what it observes: the controller only stores events and bumps
//! a counter; everything else happens here, on the scrape or in the task.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::prometheus_text;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio::sync::broadcast;

use super::{ApiError, AppState};
use crate::events::{Event, EventKind, Live};
use crate::ops::metrics::MetricsReport;
use crate::ops::status::SYNC_STATES;
use crate::plan::Drift;

/// `kedge_deployments_total`'s statuses: the deployment statuses of
/// `kedge history` that end an apply.
pub const DEPLOY_STATUSES: [&str; 3] = ["success", "failed", "rolled_back"];
/// `result` of `kedge_heals_total` and `kedge_git_checks_total`.
pub const RESULTS: [&str; 2] = ["success", "failure"];
/// Upper bounds of `kedge_deployment_duration_seconds`' buckets.
const DURATION_BUCKETS: [f64; 10] = [0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0];

/// Label values of one series, in the order of the metric's label names.
type Values<const N: usize> = [String; N];

/// A labelled metric's series, kept in label order: a scrape lists them
/// sorted (by repository, then status), the same from one scrape to the next.
struct Series<const N: usize, M> {
    name: &'static str,
    help: &'static str,
    labels: [&'static str; N],
    new: fn() -> M,
    all: RwLock<BTreeMap<Values<N>, M>>,
}

impl<const N: usize, M: EncodeMetric> Series<N, M> {
    fn new(
        name: &'static str,
        help: &'static str,
        labels: [&'static str; N],
        new: fn() -> M,
    ) -> Self {
        Series {
            name,
            help,
            labels,
            new,
            all: RwLock::new(BTreeMap::new()),
        }
    }

    /// Runs `f` on the series with these label values, created if new.
    fn with(&self, values: [&str; N], f: impl FnOnce(&M)) {
        let read = self.all.read().unwrap_or_else(|p| p.into_inner());
        // Looked up by owned values: a few short strings per event.
        let key: Values<N> = values.map(str::to_string);
        if let Some(m) = read.get(&key) {
            return f(m);
        }
        drop(read);
        let mut write = self.all.write().unwrap_or_else(|p| p.into_inner());
        f(write.entry(key).or_insert_with(self.new));
    }

    fn retain(&self, keep: impl Fn(&Values<N>) -> bool) {
        self.all
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|k, _| keep(k));
    }

    fn encode(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let all = self.all.read().unwrap_or_else(|p| p.into_inner());
        let kind = all
            .values()
            .next()
            .map_or_else(|| (self.new)().metric_type(), M::metric_type);
        let mut m = encoder.encode_descriptor(self.name, self.help, None, kind)?;
        for (values, metric) in all.iter() {
            // A repository's own stack has no `stack` label: its series
            // read as they did before repositories had several stacks.
            let labels: Vec<(&str, &str)> = self
                .labels
                .iter()
                .zip(values.iter())
                .filter(|(name, value)| !(**name == "stack" && value.is_empty()))
                .map(|(name, value)| (*name, value.as_str()))
                .collect();
            metric.encode(m.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

/// A stack's labels: `repo`, `stack` for a declared stack, then `extra`.
fn labels_of<'a>(
    repo: &'a crate::ops::metrics::RepoMetrics,
    extra: (&'a str, &'a str),
) -> Vec<(&'a str, &'a str)> {
    let mut labels = vec![("repo", repo.name.as_str())];
    if let Some(stack) = &repo.stack {
        labels.push(("stack", stack.as_str()));
    }
    labels.push(extra);
    labels
}

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

/// The counters `serve` keeps while it runs, and the text of a scrape.
#[derive(Clone, Default)]
pub struct Metrics {
    counters: Arc<Counters>,
}

// Counters are named without `_total`: the encoder adds it.
struct Counters {
    deployments: Series<3, Counter>,
    durations: Series<2, Histogram>,
    heals: Series<3, Counter>,
    webhooks: Series<2, Counter>,
}

impl std::fmt::Debug for Counters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Counters")
    }
}

impl Collector for Counters {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        self.deployments.encode(&mut encoder)?;
        self.durations.encode(&mut encoder)?;
        self.heals.encode(&mut encoder)?;
        self.webhooks.encode(&mut encoder)
    }
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            deployments: Series::new(
                "kedge_deployments",
                "Deployments that ended, by status (success, failed, rolled_back).",
                ["repo", "stack", "status"],
                Counter::default,
            ),
            durations: Series::new(
                "kedge_deployment_duration_seconds",
                "How long applies took, from the start of the deployment to its end.",
                ["repo", "stack"],
                duration_histogram,
            ),
            heals: Series::new(
                "kedge_heals",
                "Heals of a drifted service, by result (success, failure).",
                ["repo", "stack", "result"],
                Counter::default,
            ),
            webhooks: Series::new(
                "kedge_webhook_requests",
                "Git webhook requests, by provider and result.",
                ["provider", "result"],
                Counter::default,
            ),
        }
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        Metrics::default()
    }

    /// Counts a webhook request: the hook handlers call this.
    pub fn webhook(&self, provider: &str, result: &str) {
        self.counters.webhooks.with([provider, result], |c| {
            c.inc();
        });
    }

    /// Counts what an event says happened.
    pub fn observe(&self, event: &Event) {
        let repo = event.repo.as_str();
        let stack = event.stack.as_deref().unwrap_or_default();
        let status = match event.kind {
            EventKind::DeploySucceeded => "success",
            EventKind::DeployFailed => "failed",
            EventKind::RolledBack => "rolled_back",
            EventKind::DriftHealed => {
                self.counters.heals.with([repo, stack, "success"], |c| {
                    c.inc();
                });
                return;
            }
            EventKind::HealFailed => {
                self.counters.heals.with([repo, stack, "failure"], |c| {
                    c.inc();
                });
                return;
            }
            EventKind::StackRemoved => {
                self.forget_stack(repo, stack);
                return;
            }
            EventKind::RepoRemoved => {
                self.forget(repo);
                return;
            }
            // The old name's series end; the new name's start at zero.
            EventKind::RepoRenamed => {
                if let Some(from) = event.fields.get("from").and_then(|v| v.as_str()) {
                    self.forget(from);
                }
                return;
            }
            _ => return,
        };
        self.counters.deployments.with([repo, stack, status], |c| {
            c.inc();
        });
        // A commit refused at render applied nothing: it has no duration.
        if let Some(ms) = event.fields.get("duration_ms").and_then(|v| v.as_f64()) {
            self.counters
                .durations
                .with([repo, stack], |h| h.observe(ms / 1000.0));
        }
    }

    /// A registered stack's counters exist from its first scrape, at
    /// zero: `increase()` then sees its first deployment or heal.
    fn zero(&self, repo: &str, stack: &str) {
        for status in DEPLOY_STATUSES {
            self.counters
                .deployments
                .with([repo, stack, status], |_| {});
        }
        for result in RESULTS {
            self.counters.heals.with([repo, stack, result], |_| {});
        }
    }

    /// A removed repository's series go with it.
    fn forget(&self, repo: &str) {
        self.counters.deployments.retain(|[r, _, _]| r != repo);
        self.counters.heals.retain(|[r, _, _]| r != repo);
        self.counters.durations.retain(|[r, _]| r != repo);
    }

    /// And a removed stack's.
    fn forget_stack(&self, repo: &str, stack: &str) {
        self.counters
            .deployments
            .retain(|[r, s, _]| !(r == repo && s == stack));
        self.counters
            .heals
            .retain(|[r, s, _]| !(r == repo && s == stack));
        self.counters
            .durations
            .retain(|[r, s]| !(r == repo && s == stack));
    }

    /// The text of a scrape: the state in `report`, then the counters.
    pub fn render(&self, report: MetricsReport) -> String {
        for repo in &report.repos {
            self.zero(&repo.name, repo.stack.as_deref().unwrap_or_default());
        }
        let mut out = String::with_capacity(1024 + report.repos.len() * 4096);
        let mut scrape = Registry::default();
        scrape.register_collector(Box::new(Scrape(report)));
        scrape.register_collector(Box::new(self.counters.clone()));
        // Writing to a String cannot fail.
        let _ = prometheus_text::encode(&mut out, &scrape);
        out
    }
}

/// The state of one scrape, encoded as gauges (and the remote checks, which
/// the controller counts, as a counter).
#[derive(Debug)]
struct Scrape(MetricsReport);

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let report = &self.0;
        let gauge = MetricType::Gauge;
        let mut m = encoder.encode_descriptor(
            "kedge_build_info",
            "Kedge's version; the value is 1.",
            None,
            gauge,
        )?;
        ConstGauge::new(1i64)
            .encode(m.encode_family(&[("version", env!("CARGO_PKG_VERSION"))])?)?;

        let m =
            encoder.encode_descriptor("kedge_repos", "Registered repositories.", None, gauge)?;
        ConstGauge::new(report.repos.len() as i64).encode(m)?;

        let mut m = encoder.encode_descriptor(
            "kedge_repo_sync_state",
            "Sync state of each repository, as kedge status shows it: 1 for the current state, 0 for the others.",
            None,
            gauge,
        )?;
        for repo in &report.repos {
            for state in SYNC_STATES {
                let labels = labels_of(repo, ("state", state.as_str()));
                ConstGauge::new(i64::from(repo.sync_state == state))
                    .encode(m.encode_family(&labels)?)?;
            }
        }

        let mut m = encoder.encode_descriptor(
            "kedge_repo_deployed_info",
            "The commit each repository has deployed; the value is 1.",
            None,
            gauge,
        )?;
        for repo in &report.repos {
            if let Some(commit) = &repo.deployed_commit {
                let labels = labels_of(repo, ("commit", commit.as_str()));
                ConstGauge::new(1i64).encode(m.encode_family(&labels)?)?;
            }
        }

        let mut m = encoder.encode_descriptor(
            "kedge_drift_services",
            "Services drifted at serve's last pass, by drift kind.",
            None,
            gauge,
        )?;
        for repo in &report.repos {
            for kind in Drift::KINDS {
                let labels = labels_of(repo, ("kind", kind));
                let n = repo.drift_services.get(kind).copied().unwrap_or(0);
                ConstGauge::new(n as i64).encode(m.encode_family(&labels)?)?;
            }
        }

        let mut m = encoder.encode_descriptor(
            "kedge_last_deploy_timestamp_seconds",
            "When the newest deployment that left the stack running (success or rolled_back) finished, in seconds since the epoch.",
            None,
            gauge,
        )?;
        for repo in &report.repos {
            if let Some(ms) = repo.last_deployed_at {
                let mut labels = labels_of(repo, ("", ""));
                labels.pop();
                ConstGauge::new(ms as f64 / 1000.0).encode(m.encode_family(&labels)?)?;
            }
        }

        let mut m = encoder.encode_descriptor(
            "kedge_git_checks",
            "Checks of the branch head (git ls-remote) by serve, by result (success, failure).",
            None,
            MetricType::Counter,
        )?;
        // Per repository: one fetch serves all its stacks.
        let names: std::collections::BTreeSet<&str> =
            report.repos.iter().map(|r| r.name.as_str()).collect();
        for name in names {
            let counts = report.git_checks.get(name).copied().unwrap_or_default();
            for (result, n) in RESULTS.into_iter().zip([counts.success, counts.failure]) {
                let labels = [("repo", name), ("result", result)];
                ConstCounter::new(n).encode(m.encode_family(&labels)?)?;
            }
        }

        let mut m = encoder.encode_descriptor(
            "kedge_updates_available",
            "Services whose last image update check found a newer image (a tag its policy allows, or a new digest of its tag); the value is 1.",
            None,
            gauge,
        )?;
        for (repo, stack, service) in &report.updates_available {
            let labels = [
                ("repo", repo.as_str()),
                ("stack", stack.as_str()),
                ("service", service.as_str()),
            ];
            ConstGauge::new(1i64).encode(m.encode_family(&labels)?)?;
        }

        let mut m = encoder.encode_descriptor(
            "kedge_host_up",
            "Whether a configured Docker host's engine answered serve's last look (every check interval): 1, or 0.",
            None,
            gauge,
        )?;
        for (host, up) in &report.hosts_up {
            ConstGauge::new(i64::from(*up)).encode(m.encode_family(&[("host", host.as_str())])?)?;
        }

        let mut m = encoder.encode_descriptor(
            "kedge_notifications",
            "Notifications by sink and result: success (delivered), failure (given up after its tries), suppressed (repeat_interval).",
            None,
            MetricType::Counter,
        )?;
        for ((sink, result), n) in &report.notifications {
            let labels = [("sink", sink.as_str()), ("result", *result)];
            ConstCounter::new(*n).encode(m.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

/// `GET /metrics`.
pub async fn scrape(State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
    let started = std::time::Instant::now();
    let report = state.ops.metrics()?;
    let read = started.elapsed();
    let repos = report.repos.len();
    let text = state.metrics.render(report);
    tracing::debug!(
        repos,
        bytes = text.len(),
        read_us = read.as_micros() as u64,
        total_us = started.elapsed().as_micros() as u64,
        "metrics scraped"
    );
    Ok(([(CONTENT_TYPE, prometheus_text::CONTENT_TYPE)], text).into_response())
}

/// Counts every event stored from now on, by any process, in id order.
/// When it falls behind the broadcast it reads the log from the last id it
/// counted, so nothing is counted twice or missed.
/// Announcements are left out: their rows come in order once stored.
pub async fn follow(state: Arc<AppState>, mut live: broadcast::Receiver<Live>) {
    let (ops, metrics) = (&state.ops, &state.metrics);
    // Counting starts with the events stored after this point.
    let mut seen = ops.last_event_id().ok();
    loop {
        match live.recv().await {
            Ok(Live::Announced(_)) => {}
            Ok(Live::Stored(event)) => {
                let after = seen.unwrap_or(event.id - 1);
                if event.id > after {
                    metrics.observe(&event);
                    seen = Some(event.id);
                }
            }
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                let Some(mut after) = seen else {
                    tracing::warn!(
                        missed,
                        "metrics missed events: the event log could not be read"
                    );
                    continue;
                };
                loop {
                    match ops.events_after(None, after, 1000) {
                        Ok(page) => {
                            let full = page.len() == 1000;
                            for event in page {
                                metrics.observe(&event);
                                after = event.id;
                            }
                            if !full {
                                break;
                            }
                        }
                        Err(e) => {
                            tracing::warn!(
                                "metrics cannot read the event log: {}",
                                crate::error_chain(&e)
                            );
                            break;
                        }
                    }
                }
                seen = Some(after);
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::metrics::RepoMetrics;
    use crate::ops::status::SyncState;

    fn event(id: i64, repo: &str, kind: EventKind, duration_ms: Option<u64>) -> Event {
        let mut fields = serde_json::Map::new();
        if let Some(ms) = duration_ms {
            fields.insert("duration_ms".into(), ms.into());
        }
        Event {
            id,
            time: 0,
            repo: repo.into(),
            kind,
            severity: kind.severity(),
            service: None,
            commit: None,
            message: String::new(),
            fields,
            origin: None,
            stack: None,
        }
    }

    fn report() -> MetricsReport {
        let mut drift = zeros();
        drift.insert("stopped", 1);
        MetricsReport {
            repos: vec![
                RepoMetrics {
                    stack: None,
                    name: "app".into(),
                    sync_state: SyncState::Drifted,
                    deployed_commit: Some("3f786850e387550fdab836ed7e6dc881de23001b".into()),
                    drift_services: drift,
                    last_deployed_at: Some(1_700_000_000_500),
                },
                RepoMetrics {
                    stack: None,
                    name: "new".into(),
                    sync_state: SyncState::Unknown,
                    deployed_commit: None,
                    drift_services: zeros(),
                    last_deployed_at: None,
                },
            ],
            git_checks: [(
                "app".to_string(),
                crate::ops::metrics::GitChecks {
                    success: 4,
                    failure: 1,
                },
            )]
            .into(),
            notifications: [
                (("ops".to_string(), "success"), 3),
                (("ops".to_string(), "failure"), 1),
                (("ops".to_string(), "suppressed"), 0),
            ]
            .into(),
            updates_available: vec![("app".into(), "app".into(), "web".into())],
            hosts_up: [("nas".to_string(), false)].into(),
        }
    }

    fn zeros() -> std::collections::BTreeMap<&'static str, usize> {
        Drift::KINDS.iter().map(|k| (*k, 0)).collect()
    }

    fn lines(text: &str) -> Vec<&str> {
        text.lines().collect()
    }

    #[test]
    fn the_text_is_prometheus_text_with_every_metric_of_the_spec() {
        let m = Metrics::new();
        m.observe(&event(1, "app", EventKind::DeployStarted, None));
        m.observe(&event(2, "app", EventKind::DeploySucceeded, Some(500)));
        m.observe(&event(3, "app", EventKind::DeployFailed, Some(2_000)));
        m.observe(&event(4, "app", EventKind::DeployFailed, None));
        m.observe(&event(5, "app", EventKind::RolledBack, Some(250)));
        m.observe(&event(6, "app", EventKind::DriftHealed, None));
        m.observe(&event(7, "app", EventKind::HealFailed, None));
        m.webhook("github", "triggered");
        let text = m.render(report());
        let l = lines(&text);
        for want in [
            "# TYPE kedge_build_info gauge",
            &format!(
                "kedge_build_info{{version=\"{}\"}} 1",
                env!("CARGO_PKG_VERSION")
            ),
            "# TYPE kedge_repos gauge",
            "kedge_repos 2",
            "# TYPE kedge_repo_sync_state gauge",
            "kedge_repo_sync_state{repo=\"app\",state=\"drifted\"} 1",
            "kedge_repo_sync_state{repo=\"app\",state=\"synced\"} 0",
            "kedge_repo_sync_state{repo=\"new\",state=\"unknown\"} 1",
            "kedge_repo_deployed_info{repo=\"app\",commit=\"3f786850e387550fdab836ed7e6dc881de23001b\"} 1",
            "kedge_drift_services{repo=\"app\",kind=\"stopped\"} 1",
            "kedge_drift_services{repo=\"app\",kind=\"missing\"} 0",
            "kedge_last_deploy_timestamp_seconds{repo=\"app\"} 1700000000.5",
            "# TYPE kedge_git_checks_total counter",
            "kedge_git_checks_total{repo=\"app\",result=\"success\"} 4",
            "kedge_git_checks_total{repo=\"app\",result=\"failure\"} 1",
            "kedge_git_checks_total{repo=\"new\",result=\"success\"} 0",
            "# TYPE kedge_deployments_total counter",
            "kedge_deployments_total{repo=\"app\",status=\"success\"} 1",
            "kedge_deployments_total{repo=\"app\",status=\"failed\"} 2",
            "kedge_deployments_total{repo=\"app\",status=\"rolled_back\"} 1",
            "kedge_deployments_total{repo=\"new\",status=\"failed\"} 0",
            "# TYPE kedge_deployment_duration_seconds histogram",
            "kedge_deployment_duration_seconds_bucket{repo=\"app\",le=\"0.25\"} 1",
            "kedge_deployment_duration_seconds_bucket{repo=\"app\",le=\"0.5\"} 2",
            "kedge_deployment_duration_seconds_bucket{repo=\"app\",le=\"1\"} 2",
            "kedge_deployment_duration_seconds_bucket{repo=\"app\",le=\"2.5\"} 3",
            "kedge_deployment_duration_seconds_bucket{repo=\"app\",le=\"+Inf\"} 3",
            "kedge_deployment_duration_seconds_sum{repo=\"app\"} 2.75",
            "kedge_deployment_duration_seconds_count{repo=\"app\"} 3",
            "# TYPE kedge_heals_total counter",
            "kedge_heals_total{repo=\"app\",result=\"success\"} 1",
            "kedge_heals_total{repo=\"app\",result=\"failure\"} 1",
            "kedge_heals_total{repo=\"new\",result=\"success\"} 0",
            "# TYPE kedge_webhook_requests_total counter",
            "kedge_webhook_requests_total{provider=\"github\",result=\"triggered\"} 1",
            "# TYPE kedge_notifications_total counter",
            "kedge_notifications_total{sink=\"ops\",result=\"success\"} 3",
            "kedge_notifications_total{sink=\"ops\",result=\"failure\"} 1",
            "kedge_notifications_total{sink=\"ops\",result=\"suppressed\"} 0",
            "# TYPE kedge_updates_available gauge",
            "kedge_updates_available{repo=\"app\",stack=\"app\",service=\"web\"} 1",
            "# TYPE kedge_host_up gauge",
            "kedge_host_up{host=\"nas\"} 0",
        ] {
            assert!(l.contains(&want), "no line {want:?} in:\n{text}");
        }
        assert!(
            !text.contains("kedge_repo_deployed_info{repo=\"new\""),
            "nothing deployed, no series"
        );
        assert!(!text.contains("# EOF"), "not OpenMetrics");
        // Series come sorted by their labels' values, the same at every scrape.
        let deployments: Vec<&str> = l
            .iter()
            .filter(|l| l.starts_with("kedge_deployments_total{"))
            .copied()
            .collect();
        let mut sorted = deployments.clone();
        sorted.sort();
        assert_eq!(deployments, sorted);

        let empty = m.render(MetricsReport::default());
        assert!(
            !empty.contains("kedge_notifications_total{"),
            "no sink, no series"
        );
    }

    #[test]
    fn a_removed_repository_takes_its_counters_along() {
        let m = Metrics::new();
        m.observe(&event(1, "gone", EventKind::DeploySucceeded, Some(100)));
        m.observe(&event(2, "gone", EventKind::RepoRemoved, None));
        let text = m.render(MetricsReport::default());
        assert!(!text.contains("gone"), "{text}");
        assert!(text.contains("kedge_repos 0"));
    }

    /// A declared stack's series carry `stack`; a repository's own stack's
    /// do not; the remote checks stay per repository; a removed stack's
    /// counters go.
    #[test]
    fn a_declared_stacks_series_carry_its_stack() {
        let m = Metrics::new();
        let of = |id, stack: Option<&str>, kind| Event {
            stack: stack.map(String::from),
            ..event(id, "home", kind, Some(500))
        };
        m.observe(&of(1, Some("db"), EventKind::DeploySucceeded));
        m.observe(&of(2, Some("web"), EventKind::DeployFailed));
        let stack = |name: &str| RepoMetrics {
            name: "home".into(),
            stack: Some(name.into()),
            sync_state: SyncState::Synced,
            deployed_commit: Some("c1".into()),
            drift_services: zeros(),
            last_deployed_at: Some(1_000),
        };
        let report = || MetricsReport {
            repos: vec![stack("db"), stack("web")],
            git_checks: [(
                "home".to_string(),
                crate::ops::metrics::GitChecks {
                    success: 3,
                    failure: 0,
                },
            )]
            .into(),
            ..Default::default()
        };
        let text = m.render(report());
        for line in [
            r#"kedge_repo_sync_state{repo="home",stack="db",state="synced"} 1"#,
            r#"kedge_repo_deployed_info{repo="home",stack="web",commit="c1"} 1"#,
            r#"kedge_deployments_total{repo="home",stack="db",status="success"} 1"#,
            r#"kedge_deployments_total{repo="home",stack="web",status="failed"} 1"#,
            r#"kedge_last_deploy_timestamp_seconds{repo="home",stack="db"} 1.0"#,
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
        let checks: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("kedge_git_checks_total{"))
            .collect();
        assert_eq!(checks.len(), 2, "one repository, two results: {checks:?}");
        m.observe(&Event {
            stack: Some("web".into()),
            ..event(3, "home", EventKind::StackRemoved, None)
        });
        let text = m.render(MetricsReport {
            repos: vec![stack("db")],
            ..Default::default()
        });
        assert!(!text.contains(r#"stack="web""#), "{text}");
    }
}
