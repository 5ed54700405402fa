//! ops: notification sinks — listed with their secrets left out, and
//! tried with a test message (`kedge notify list`, `kedge notify test`).

use serde::Serialize;

use super::{Ops, OpsError};
use crate::config::notifications::SinkConfig;
use crate::notify::NotifyError;
use crate::notify::message::Notice;
use crate::notify::send::Sender;
use crate::record::now_ms;

/// A sink as `kedge notify list` shows it: never a secret.
#[derive(Debug, Clone, Serialize)]
pub struct SinkRow {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Where it sends: scheme, host and port (`https://hooks.slack.com/…`),
    /// or the SMTP server and the recipients.
    pub target: String,
    /// The event kinds it sends; `None`: the default (warnings, errors,
    /// deploy_succeeded).
    pub events: Option<Vec<&'static str>>,
    pub repos: Vec<String>,
    /// Seconds.
    pub repeat_interval_s: u64,
    /// Whether the body is signed (`webhook` with a `secret`).
    pub signed: bool,
}

impl SinkRow {
    fn of(sink: &SinkConfig) -> SinkRow {
        use crate::config::notifications::Endpoint;
        SinkRow {
            name: sink.name.clone(),
            kind: sink.kind.as_str(),
            target: sink.target(),
            events: sink
                .events
                .as_ref()
                .map(|kinds| kinds.iter().map(|k| k.as_str()).collect()),
            repos: sink.repos.clone(),
            repeat_interval_s: sink.repeat_interval.as_secs(),
            signed: matches!(
                &sink.endpoint,
                Endpoint::Http {
                    secret: Some(_),
                    ..
                }
            ),
        }
    }
}

/// What `kedge notify test` got back.
#[derive(Debug, Clone, Serialize)]
pub struct TestReport {
    pub sink: String,
    /// The receiver's answer: `200 OK`, `250 2.0.0 Ok: queued`.
    pub answer: String,
}

impl Ops {
    /// The configured sinks, in config order.
    pub fn notify_list(&self) -> Vec<SinkRow> {
        self.settings
            .notifications
            .iter()
            .map(SinkRow::of)
            .collect()
    }

    /// Sends a test message to the sink `name`, once (no retries: the
    /// answer is what a person wants to see), and returns the answer.
    pub async fn notify_test(&self, name: &str) -> Result<TestReport, OpsError> {
        let sink = self
            .settings
            .notifications
            .iter()
            .find(|s| s.name == name)
            .ok_or_else(|| NotifyError::UnknownSink(name.to_string()))?;
        let sender = Sender::new(sink.clone(), self.settings.public_url.clone());
        let notice = Notice::test(name, self.settings.public_url.as_deref(), now_ms());
        let answer = sender
            .send_once(&notice)
            .await
            .map_err(|source| OpsError::NotifyTest {
                sink: name.to_string(),
                source,
            })?;
        Ok(TestReport {
            sink: name.to_string(),
            answer: answer.0,
        })
    }
}
