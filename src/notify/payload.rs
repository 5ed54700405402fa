//! Each service's documented message format, built from a [`Notice`]:
//! what goes in the request (headers and body) or the email. Pure: the
//! sending is `send`'s.

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use super::message::{Notice, cut};
use crate::config::Secret;
use crate::config::notifications::SinkKind;
use crate::events::Severity;

/// A POST to make: extra headers and the body (its content type included).
#[derive(Debug, Clone, PartialEq)]
pub struct HttpPayload {
    pub content_type: &'static str,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

/// The HMAC header of the `webhook` sink, as the git webhooks' generic
/// hook checks it: `sha256=<hex HMAC-SHA256 of the raw body>`.
pub const SIGNATURE_HEADER: &str = "X-Kedge-Signature-256";

pub fn signature(secret: &Secret, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.0.as_bytes()).expect("HMAC takes any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The body (and headers) of an HTTP sink. `secret` signs a `webhook`.
pub fn http(kind: SinkKind, n: &Notice, secret: Option<&Secret>) -> HttpPayload {
    let json_payload = |value: Value| HttpPayload {
        content_type: "application/json",
        headers: Vec::new(),
        body: serde_json::to_vec(&value).unwrap_or_default(),
    };
    match kind {
        SinkKind::Webhook => {
            let mut p = json_payload(n.json.clone());
            p.headers.push(("X-Kedge-Event", n.kind.clone()));
            if let Some(id) = n.json.get("id").and_then(Value::as_i64) {
                p.headers.push(("X-Kedge-Event-Id", id.to_string()));
            }
            if let Some(secret) = secret {
                p.headers
                    .push((SIGNATURE_HEADER, signature(secret, &p.body)));
            }
            p
        }
        SinkKind::Slack => json_payload(slack(n)),
        SinkKind::Discord => json_payload(discord(n)),
        SinkKind::Teams => json_payload(teams(n)),
        SinkKind::Gotify => json_payload(gotify(n)),
        SinkKind::Ntfy => ntfy(n),
        // Never sent over HTTP (see `email`): the line, should it be.
        SinkKind::Email => HttpPayload {
            content_type: "text/plain; charset=utf-8",
            headers: Vec::new(),
            body: n.line.as_bytes().to_vec(),
        },
    }
}

fn emoji(severity: Severity) -> &'static str {
    match severity {
        Severity::Error => ":rotating_light:",
        Severity::Warning => ":warning:",
        Severity::Info => ":white_check_mark:",
        Severity::Debug => ":information_source:",
    }
}

/// Slack's mrkdwn: `&`, `<` and `>` are escaped.
fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Slack incoming webhook: `text` (the fallback for notifications) and
/// `blocks` (a section, a context line and, with a link, a button). Both
/// are mrkdwn: a commit message's `<!channel>` or `<https://…|label>` must
/// reach Slack as text, not as a mention or a link, in either.
fn slack(n: &Notice) -> Value {
    let context = n
        .facts
        .iter()
        .map(|(label, value)| format!("*{label}:* {}", slack_escape(value)))
        .collect::<Vec<_>>()
        .join("  ·  ");
    let mut blocks = vec![
        json!({
            "type": "section",
            "text": {
                "type": "mrkdwn",
                "text": cut(&format!("{} *{}*\n{}", emoji(n.severity), slack_escape(&n.title), slack_escape(&n.line)), 3000),
            }
        }),
        json!({
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": cut(&context, 3000)}]
        }),
    ];
    if let Some(link) = &n.link {
        blocks.push(json!({
            "type": "actions",
            "elements": [{
                "type": "button",
                "text": {"type": "plain_text", "text": "Open in Kedge"},
                "url": link,
            }]
        }));
    }
    json!({ "text": slack_escape(&n.line), "blocks": blocks })
}

/// Red, amber, green.
fn color(severity: Severity) -> u32 {
    match severity {
        Severity::Error => 0xD9_2D_20,
        Severity::Warning => 0xE3_A0_08,
        Severity::Info => 0x2E_A0_43,
        Severity::Debug => 0x80_80_80,
    }
}

/// Discord webhook: one embed (title ≤ 256, description ≤ 4096, field
/// values ≤ 1024 characters).
fn discord(n: &Notice) -> Value {
    let fields: Vec<Value> = n
        .facts
        .iter()
        .filter(|(label, _)| *label != "Time")
        .map(|(label, value)| json!({"name": label, "value": cut(value, 1024), "inline": true}))
        .collect();
    let mut embed = json!({
        "title": cut(&n.title, 256),
        "description": cut(&n.line, 4096),
        "color": color(n.severity),
        "timestamp": n.time,
        "fields": fields,
        "footer": {"text": "Kedge"},
    });
    if let Some(link) = &n.link {
        embed["url"] = json!(link);
    }
    json!({ "username": "Kedge", "embeds": [embed] })
}

/// Teams (a Workflows "post to a channel when a webhook request is
/// received" flow, or an incoming webhook): a message with one Adaptive Card.
fn teams(n: &Notice) -> Value {
    let style = match n.severity {
        Severity::Error => "Attention",
        Severity::Warning => "Warning",
        Severity::Info => "Good",
        Severity::Debug => "Default",
    };
    let facts: Vec<Value> = n
        .facts
        .iter()
        .map(|(label, value)| json!({"title": label, "value": value}))
        .collect();
    let mut card = json!({
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": [
            {"type": "TextBlock", "text": n.title, "weight": "Bolder", "size": "Medium", "color": style, "wrap": true},
            {"type": "TextBlock", "text": n.line, "wrap": true},
            {"type": "FactSet", "facts": facts},
        ],
    });
    if let Some(link) = &n.link {
        card["actions"] =
            json!([{"type": "Action.OpenUrl", "title": "Open in Kedge", "url": link}]);
    }
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": card,
        }]
    })
}

/// ntfy's priority (1 min … 5 max) and tags (emoji short codes) by severity.
pub fn ntfy_priority(severity: Severity) -> (u8, &'static str) {
    match severity {
        Severity::Error => (4, "rotating_light"),
        Severity::Warning => (3, "warning"),
        Severity::Info => (2, "white_check_mark"),
        Severity::Debug => (1, "information_source"),
    }
}

/// ntfy: the line as the body, the rest in headers (`Title`, `Priority`,
/// `Tags`, `Click`). Header values stay ASCII: repository names are.
fn ntfy(n: &Notice) -> HttpPayload {
    let (priority, tag) = ntfy_priority(n.severity);
    let ascii = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii() && !c.is_ascii_control() {
                    c
                } else {
                    '?'
                }
            })
            .collect()
    };
    let mut headers = vec![
        ("Title", ascii(&n.title)),
        ("Priority", priority.to_string()),
        ("Tags", format!("{tag},kedge,{}", ascii(&n.kind))),
    ];
    if let Some(link) = &n.link {
        headers.push(("Click", ascii(link)));
    }
    HttpPayload {
        content_type: "text/plain; charset=utf-8",
        headers,
        body: n.line.as_bytes().to_vec(),
    }
}

/// Gotify's priority (0 … 10) by severity.
pub fn gotify_priority(severity: Severity) -> u8 {
    match severity {
        Severity::Error => 8,
        Severity::Warning => 5,
        Severity::Info => 2,
        Severity::Debug => 0,
    }
}

/// Gotify `POST /message`: title, message, priority, and the link as the
/// notification's click URL.
fn gotify(n: &Notice) -> Value {
    let mut body = json!({
        "title": n.title,
        "message": n.line,
        "priority": gotify_priority(n.severity),
        "extras": {"client::display": {"contentType": "text/plain"}},
    });
    if let Some(link) = &n.link {
        body["extras"]["client::notification"] = json!({"click": {"url": link}});
    }
    body
}

/// Gotify's message endpoint under the server's URL.
pub fn gotify_url(base: &str) -> String {
    let base = base.trim_end_matches('/');
    if base.ends_with("/message") {
        base.to_string()
    } else {
        format!("{base}/message")
    }
}

/// An email's subject and plain-text body.
pub fn email(n: &Notice, sink: &str) -> (String, String) {
    let subject = format!("[kedge] {}", super::message::one_line(&n.title, 150));
    let mut body = format!("{}\n\n", n.line);
    for (label, value) in &n.facts {
        body.push_str(&format!("{label}: {value}\n"));
    }
    if let Some(link) = &n.link {
        body.push_str(&format!("Dashboard: {link}\n"));
    }
    body.push_str(&format!(
        "\n-- \nSent by Kedge (notification sink `{sink}`)\n"
    ));
    (subject, body)
}

#[cfg(test)]
#[path = "payload_tests.rs"]
mod tests;
