//! observe: what the health gate and the unhealthy-container heal read of
//! single containers — their state, restarts and healthcheck verdict, the
//! tail of their logs, and the engine's events of one project as they
//! happen (container starts, deaths and health changes).

use std::collections::HashMap;

use bollard::query_parameters::{EventsOptionsBuilder, LogsOptionsBuilder};

use super::{Engine, ObserveError, PROJECT_LABEL};

/// One container as the gate judges it, read by `inspect`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspected {
    pub id: String,
    pub name: String,
    pub state: super::RunState,
    pub exit_code: Option<i64>,
    /// When it last started, in milliseconds since the epoch.
    pub started_at_ms: Option<i64>,
    pub restart_count: i64,
    /// `None`: no healthcheck; else starting, healthy or unhealthy.
    pub health: Option<String>,
    /// The output of its newest healthcheck run, trimmed.
    pub health_output: Option<String>,
}

/// An engine event about one container of a project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerEvent {
    pub id: String,
    /// start, die, health_status: healthy, …
    pub action: String,
    /// On `die`: the exit code.
    pub exit_code: Option<i64>,
    /// When it happened, in ms since the epoch.
    pub at_ms: Option<i64>,
}

/// "2026-11-28T10:00:00.123456789Z" → milliseconds; the engine's zero time
/// ("0001-01-01T00:00:00Z", never started) is `None`.
pub fn engine_time_ms(text: &str) -> Option<i64> {
    let t = chrono::DateTime::parse_from_rfc3339(text).ok()?;
    let ms = t.timestamp_millis();
    (ms > 0).then_some(ms)
}

impl Engine {
    /// The container's state, restarts and healthcheck verdict.
    pub async fn inspect_container(&self, id: &str) -> Result<Inspected, ObserveError> {
        let docker = self.ready().await?;
        let c = docker
            .inspect_container(
                id,
                None::<bollard::query_parameters::InspectContainerOptions>,
            )
            .await
            .map_err(|source| ObserveError::Inspect {
                container: id.to_string(),
                source,
            })?;
        let state = c.state.unwrap_or_default();
        let health = state
            .health
            .as_ref()
            .and_then(|h| h.status)
            .map(|s| s.to_string())
            .filter(|s| !s.is_empty() && s != "none");
        let health_output = state
            .health
            .and_then(|h| h.log)
            .and_then(|log| log.into_iter().last())
            .and_then(|last| last.output)
            .map(|o| o.trim().to_string());
        Ok(Inspected {
            id: c.id.unwrap_or_else(|| id.to_string()),
            name: c
                .name
                .unwrap_or_default()
                .trim_start_matches('/')
                .to_string(),
            state: state.status.map(super::RunState::from).unwrap_or_default(),
            exit_code: state.exit_code,
            started_at_ms: state.started_at.as_deref().and_then(engine_time_ms),
            restart_count: c.restart_count.unwrap_or(0),
            health,
            health_output,
        })
    }

    /// The last `lines` lines the container wrote (stdout and stderr).
    pub async fn log_tail(&self, id: &str, lines: usize) -> Result<String, ObserveError> {
        use futures_util::StreamExt;
        let docker = self.ready().await?;
        let options = LogsOptionsBuilder::default()
            .stdout(true)
            .stderr(true)
            .tail(&lines.to_string())
            .build();
        let mut stream = docker.logs(id, Some(options));
        let mut out = String::new();
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(chunk) => out.push_str(&String::from_utf8_lossy(&chunk.into_bytes())),
                Err(source) => {
                    return Err(ObserveError::Inspect {
                        container: id.to_string(),
                        source,
                    });
                }
            }
        }
        Ok(out)
    }

    /// The container events of one compose project from `since_secs` (unix
    /// seconds: events from just before the call are replayed, so nothing
    /// that happened between a look and the subscription is missed).
    pub async fn container_events(
        &self,
        project: &str,
        since_secs: i64,
    ) -> Result<
        impl futures_util::Stream<Item = Result<ContainerEvent, ObserveError>> + use<>,
        ObserveError,
    > {
        use futures_util::StreamExt;
        let filters: HashMap<&str, Vec<String>> = HashMap::from([
            ("type", vec!["container".to_string()]),
            ("label", vec![format!("{PROJECT_LABEL}={project}")]),
        ]);
        let options = EventsOptionsBuilder::default()
            .since(&since_secs.to_string())
            .filters(&filters)
            .build();
        Ok(self
            .ready()
            .await?
            .events(Some(options))
            .filter_map(|event| async move {
                match event {
                    Err(e) => Some(Err(ObserveError::Events(e))),
                    Ok(msg) => {
                        let action = msg.action.unwrap_or_default();
                        if action.starts_with("exec_") {
                            return None;
                        }
                        let actor = msg.actor?;
                        let attrs = actor.attributes.unwrap_or_default();
                        Some(Ok(ContainerEvent {
                            id: actor.id?,
                            exit_code: attrs.get("exitCode").and_then(|c| c.parse().ok()),
                            at_ms: msg.time_nano.map(|ns| ns / 1_000_000),
                            action,
                        }))
                    }
                }
            }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_times() {
        assert_eq!(
            engine_time_ms("2026-11-28T10:00:00.123456789Z"),
            Some(1_795_860_000_123)
        );
        assert_eq!(engine_time_ms("0001-01-01T00:00:00Z"), None);
        assert_eq!(engine_time_ms(""), None);
    }
}
