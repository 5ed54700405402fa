//! notify: consumes the event log (`record` → `events` → **notify**). Each
//! configured sink (webhook, slack, discord, teams, ntfy, gotify, email)
//! is a task of `serve` that follows the stored events with a cursor of its
//! own, filters them, suppresses repeated failures and delivers the rest
//! with retries. Nothing here is on a deploy's path: the controller only
//! stores events; a sink that is down delays no one but itself.

pub mod commit_status;
pub mod follow;
pub mod message;
pub mod payload;
pub mod send;

use std::sync::Arc;
use std::time::Duration;

use crate::config::Settings;
use crate::controller::hub::Hub;
use send::Sender;

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("no answer within {} s", .0.as_secs())]
    Timeout(Duration),
    #[error("cannot reach the receiver: {0}")]
    Connect(String),
    #[error("the receiver answered {}", status_text(*status, body))]
    Status { status: u16, body: String },
    /// A 3xx: not followed (the POST would become a GET, the token would
    /// travel to the new address); the sink's URL should be the final one.
    #[error(
        "the receiver answered {} and redirects to {}: redirects are not followed, set the sink's URL to where it should send",
        status_text(*status, ""),
        if location.is_empty() { "nowhere (no Location)" } else { location.as_str() }
    )]
    Redirected { status: u16, location: String },
    #[error("cannot make the request: {0}")]
    Request(String),
    #[error("cannot send the email: {0}")]
    Email(String),
    #[error("the mail server refused: {message}")]
    Smtp { permanent: bool, message: String },
    #[error("no notification sink named '{0}' in the config (`kedge notify list` shows them)")]
    UnknownSink(String),
}

fn status_text(status: u16, body: &str) -> String {
    let reason = axum::http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    let mut text = format!("{status} {reason}").trim_end().to_string();
    if !body.is_empty() {
        text.push_str(": ");
        text.push_str(body);
    }
    text
}

impl NotifyError {
    /// Whether another attempt may go better: no answer, a server error,
    /// 408 or 429, a temporary SMTP refusal. A 4xx (a wrong token, a
    /// deleted webhook) stays what it is.
    pub fn retryable(&self) -> bool {
        match self {
            NotifyError::Timeout(_) | NotifyError::Connect(_) => true,
            NotifyError::Status { status, .. } => *status >= 500 || matches!(status, 408 | 429),
            NotifyError::Smtp { permanent, .. } => !permanent,
            NotifyError::Redirected { .. }
            | NotifyError::Request(_)
            | NotifyError::Email(_)
            | NotifyError::UnknownSink(_) => false,
        }
    }

    /// A transport error of the HTTP client, with the sink's secrets taken out.
    pub fn from_http(e: &ureq::Error, redactor: &send::Redactor) -> NotifyError {
        match e {
            ureq::Error::Timeout(_) => NotifyError::Timeout(send::TIMEOUT),
            ureq::Error::StatusCode(status) => NotifyError::Status {
                status: *status,
                body: String::new(),
            },
            ureq::Error::BadUri(_) | ureq::Error::Http(_) => {
                NotifyError::Request(redactor.clean(&e.to_string()))
            }
            _ => NotifyError::Connect(redactor.clean(&crate::error_chain(e))),
        }
    }
}

/// Starts one task per configured sink; `serve` calls this once, with its
/// settings and the hub whose events the sinks follow and whose counters
/// they bump.
pub fn start(settings: &Settings, hub: &Arc<Hub>) {
    let sinks = &settings.notifications;
    if sinks.is_empty() {
        return;
    }
    let names: Vec<&str> = sinks.iter().map(|s| s.name.as_str()).collect();
    tracing::info!(sinks = %names.join(", "), "notifications on");
    for sink in sinks {
        for result in ["success", "failure", "suppressed"] {
            hub.count_notification(&sink.name, result, 0);
        }
        let data_dir = settings.data_dir.clone();
        let prepared = match follow::prepare(&data_dir, &sink.name) {
            Ok(ready) => Some(ready),
            Err(e) => {
                tracing::warn!(sink = %sink.name, "notifications wait for the store: {}", crate::error_chain(&e));
                None
            }
        };
        let sender = Sender::new(sink.clone(), settings.public_url.clone());
        tokio::spawn(follow::run(data_dir, hub.clone(), sender, prepared));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_retried() {
        let status = |status| NotifyError::Status {
            status,
            body: String::new(),
        };
        assert!(NotifyError::Timeout(send::TIMEOUT).retryable());
        assert!(NotifyError::Connect("refused".into()).retryable());
        assert!(status(500).retryable());
        assert!(status(503).retryable());
        assert!(status(429).retryable());
        assert!(!status(404).retryable());
        assert!(!status(401).retryable());
        assert_eq!(
            status(500).to_string(),
            "the receiver answered 500 Internal Server Error"
        );
        let with_body = NotifyError::Status {
            status: 404,
            body: "no_such_hook".into(),
        };
        assert_eq!(
            with_body.to_string(),
            "the receiver answered 404 Not Found: no_such_hook"
        );
        let redirect = NotifyError::Redirected {
            status: 302,
            location: "https://elsewhere.example/x".into(),
        };
        assert!(!redirect.retryable(), "a redirect stays one");
        assert_eq!(
            redirect.to_string(),
            "the receiver answered 302 Found and redirects to https://elsewhere.example/x: redirects are not followed, set the sink's URL to where it should send"
        );
    }
}
