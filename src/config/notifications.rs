//! The `notifications:` list of the global config: one sink per entry,
//! checked key by key. Secrets (webhook URLs, tokens, HMAC secrets, the
//! SMTP password) come from `${VAR}` interpolation or a `*_file` key and
//! are kept as [`Secret`]s: no error, listing or log line shows them.

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use super::duration::parse_duration;
use super::interpolate::Env;
use super::schema::{SchemaError, Section};
use super::yaml::Node;
use super::{Secret, read_secret_file};
use crate::events::{EventKind, Severity};

pub const DEFAULT_REPEAT_INTERVAL: Duration = Duration::from_secs(3600);

/// Where a sink sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SinkKind {
    Webhook,
    Slack,
    Discord,
    Teams,
    Ntfy,
    Gotify,
    Email,
}

impl SinkKind {
    pub const ALL: [SinkKind; 7] = [
        SinkKind::Webhook,
        SinkKind::Slack,
        SinkKind::Discord,
        SinkKind::Teams,
        SinkKind::Ntfy,
        SinkKind::Gotify,
        SinkKind::Email,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SinkKind::Webhook => "webhook",
            SinkKind::Slack => "slack",
            SinkKind::Discord => "discord",
            SinkKind::Teams => "teams",
            SinkKind::Ntfy => "ntfy",
            SinkKind::Gotify => "gotify",
            SinkKind::Email => "email",
        }
    }

    fn parse(s: &str) -> Option<SinkKind> {
        SinkKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The keys a sink of this type may have besides the common ones.
    fn keys(self) -> &'static [&'static str] {
        match self {
            SinkKind::Webhook => &["url", "url_file", "secret", "secret_file"],
            SinkKind::Slack | SinkKind::Discord | SinkKind::Teams => &["url", "url_file"],
            SinkKind::Ntfy | SinkKind::Gotify => &["url", "url_file", "token", "token_file"],
            SinkKind::Email => &[
                "smtp",
                "smtp_file",
                "password_file",
                "from",
                "to",
                "ca_file",
            ],
        }
    }
}

const COMMON_KEYS: [&str; 5] = ["name", "type", "events", "repos", "repeat_interval"];

/// How an SMTP connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SmtpTls {
    /// `smtp://`: STARTTLS, required (the default).
    StartTls,
    /// `smtp://…?tls=opportunistic`: STARTTLS when the server offers it;
    /// with a password, STARTTLS is required all the same (a password is
    /// never sent without TLS), so only a relay without AUTH is reached in clear.
    Opportunistic,
    /// `smtps://`: TLS from the first byte.
    Wrapper,
    /// `smtp://…?tls=none`: plain text, for a relay on the same host; no password.
    None,
}

/// `smtp: smtp://user:pass@host:port`, taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Smtp {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// Extra PEM certificates to trust (a private relay's CA).
    pub ca_file: Option<PathBuf>,
}

/// What a sink sends to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Http {
        url: Secret,
        /// `webhook`: signs the body (`X-Kedge-Signature-256`).
        secret: Option<Secret>,
        /// `ntfy`: a bearer token; `gotify`: the application token.
        token: Option<Secret>,
    },
    Email {
        smtp: Smtp,
        from: String,
        to: Vec<String>,
    },
}

/// One entry of `notifications:`.
#[derive(Debug, Clone, PartialEq)]
pub struct SinkConfig {
    pub name: String,
    pub kind: SinkKind,
    /// The line of the entry in the config file.
    pub line: u32,
    pub endpoint: Endpoint,
    /// `None`: the default (every warning and error, plus `deploy_succeeded`).
    pub events: Option<Vec<EventKind>>,
    /// Repository name patterns (`*` matches any run of characters).
    pub repos: Vec<String>,
    pub repeat_interval: Duration,
}

impl SinkConfig {
    /// Whether this sink wants `kind` at `severity` for `repo`.
    pub fn wants(&self, repo: &str, kind: EventKind, severity: Severity) -> bool {
        let kind_ok = match &self.events {
            Some(kinds) => kinds.contains(&kind),
            None => severity >= Severity::Warning || kind == EventKind::DeploySucceeded,
        };
        kind_ok && self.repos.iter().any(|p| glob(p, repo))
    }

    /// Where it sends, without any secret: `https://hooks.slack.com/…`,
    /// `smtp://alerts@mail.example.com:587 (STARTTLS)`.
    pub fn target(&self) -> String {
        match &self.endpoint {
            Endpoint::Http { url, .. } => redact_url(&url.0),
            Endpoint::Email { smtp, to, .. } => {
                let user = smtp
                    .username
                    .as_deref()
                    .map(|u| format!("{u}@"))
                    .unwrap_or_default();
                let (scheme, tls) = match smtp.tls {
                    SmtpTls::StartTls => ("smtp", "STARTTLS"),
                    SmtpTls::Opportunistic => ("smtp", "STARTTLS if offered"),
                    SmtpTls::Wrapper => ("smtps", "TLS"),
                    SmtpTls::None => ("smtp", "no TLS"),
                };
                format!(
                    "{scheme}://{user}{}:{} ({tls}) to {}",
                    smtp.host,
                    smtp.port,
                    to.join(", ")
                )
            }
        }
    }
}

/// A URL shown without what may be a secret: scheme, host and port only.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => {
            let host = u.host_str().unwrap_or("");
            let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
            let rest = if u.path().len() > 1 || u.query().is_some() {
                "/…"
            } else {
                ""
            };
            format!("{}://{host}{port}{rest}", u.scheme())
        }
        Err(_) => "(invalid URL)".into(),
    }
}

/// `*` matches any run of characters; everything else itself.
pub fn glob(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

fn sink_error(line: u32, sink: &str, key: &str, reason: impl Into<String>) -> SchemaError {
    SchemaError::Sink {
        line,
        sink: sink.to_string(),
        key: key.to_string(),
        reason: reason.into(),
    }
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
        && name.len() <= 64
}

/// The `notifications:` node: a list of sinks with distinct names.
pub fn parse(node: &Node, env: Env) -> Result<Vec<SinkConfig>, SchemaError> {
    let items = super::schema::items(node, "notifications", "a list of sinks")?;
    let mut out: Vec<SinkConfig> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let sink = parse_sink(item, i, env)?;
        if let Some(first) = out.iter().find(|s| s.name == sink.name) {
            return Err(sink_error(
                sink.line,
                &sink.name,
                "name",
                format!(
                    "a sink with this name is already defined on line {}",
                    first.line
                ),
            ));
        }
        out.push(sink);
    }
    Ok(out)
}

fn all_keys() -> Vec<&'static str> {
    let mut keys: Vec<&str> = COMMON_KEYS.to_vec();
    for kind in SinkKind::ALL {
        for key in kind.keys() {
            if !keys.contains(key) {
                keys.push(key);
            }
        }
    }
    keys
}

fn parse_sink(item: &Node, index: usize, env: Env) -> Result<SinkConfig, SchemaError> {
    let line = item.line;
    let first = Section::new(item, &format!("notifications[{index}]"), &all_keys())?;
    let unnamed = format!("#{}", index + 1);
    let name = match first.string("name", env)? {
        Some((name, _)) if valid_name(&name) => name,
        Some((_, at)) => {
            return Err(sink_error(
                at,
                &unnamed,
                "name",
                "a name is lowercase letters, digits, `-` and `_`, starting with a letter or digit",
            ));
        }
        None => {
            return Err(sink_error(
                line,
                &unnamed,
                "name",
                "every sink needs a name",
            ));
        }
    };
    let expected = SinkKind::ALL.map(SinkKind::as_str).join(", ");
    let kind = match first.string("type", env)? {
        Some((text, at)) => SinkKind::parse(&text)
            .ok_or_else(|| sink_error(at, &name, "type", format!("expected one of: {expected}")))?,
        None => {
            return Err(sink_error(
                line,
                &name,
                "type",
                format!("every sink needs a type, one of: {expected}"),
            ));
        }
    };
    // Now that the type is known, only its keys are allowed.
    let mut allowed = COMMON_KEYS.to_vec();
    allowed.extend_from_slice(kind.keys());
    let s = Section::new(item, &format!("notifications.{name}"), &allowed)?;

    let events = match s.strings("events", env)? {
        Some((names, _)) if names.iter().any(|n| n == "*") => Some(EventKind::ALL.to_vec()),
        Some((names, at)) => {
            let mut kinds = Vec::with_capacity(names.len());
            for n in &names {
                let kind = EventKind::parse(n).ok_or_else(|| {
                    sink_error(
                        at,
                        &name,
                        "events",
                        format!(
                            "unknown event kind {n:?} (expected `*` or some of: {})",
                            EventKind::ALL.map(EventKind::as_str).join(", ")
                        ),
                    )
                })?;
                if !kinds.contains(&kind) {
                    kinds.push(kind);
                }
            }
            Some(kinds)
        }
        None => None,
    };
    let repos = s
        .strings("repos", env)?
        .map(|(r, _)| r)
        .unwrap_or_else(|| vec!["*".to_string()]);
    let repeat_interval = match s.string("repeat_interval", env)? {
        Some((text, at)) => parse_duration(&text)
            .map_err(|e| sink_error(at, &name, "repeat_interval", e.to_string()))?,
        None => DEFAULT_REPEAT_INTERVAL,
    };
    let endpoint = match kind {
        SinkKind::Email => email(&s, &name, line, env)?,
        _ => http(&s, kind, &name, line, env)?,
    };
    Ok(SinkConfig {
        name,
        kind,
        line,
        endpoint,
        events,
        repos,
        repeat_interval,
    })
}

/// A secret given inline (`key`, usually `${VAR}`) or in a file (`key_file`);
/// not both.
fn secret(
    s: &Section,
    sink: &str,
    key: &str,
    env: Env,
) -> Result<Option<(Secret, u32)>, SchemaError> {
    let file_key = format!("{key}_file");
    let inline = super::interpolate::hiding_secrets(env, |env| s.string(key, env))?;
    let file = s.string(&file_key, env)?;
    match (inline, file) {
        (Some(_), Some((_, at))) => Err(sink_error(
            at,
            sink,
            &file_key,
            format!("give `{key}` or `{file_key}`, not both"),
        )),
        (Some((value, at)), None) => {
            if value.trim().is_empty() {
                return Err(sink_error(at, sink, key, "is empty"));
            }
            Ok(Some((Secret(value), at)))
        }
        (None, Some((path, at))) => read_secret_file(std::path::Path::new(&path))
            .map(|secret| Some((secret, at)))
            .map_err(|e| sink_error(at, sink, &file_key, crate::error_chain(&e))),
        (None, None) => Ok(None),
    }
}

fn http(
    s: &Section,
    kind: SinkKind,
    sink: &str,
    line: u32,
    env: Env,
) -> Result<Endpoint, SchemaError> {
    let (url, at) = secret(s, sink, "url", env)?.ok_or_else(|| {
        sink_error(
            line,
            sink,
            "url",
            format!("a {} sink needs `url` (or `url_file`)", kind.as_str()),
        )
    })?;
    // The URL is a secret (Slack's and Discord's carry their token): say
    // what is wrong with it, never what it is.
    match url::Url::parse(url.0.trim()) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {}
        Ok(_) => {
            return Err(sink_error(
                at,
                sink,
                "url",
                "expected an http:// or https:// URL",
            ));
        }
        Err(e) => {
            return Err(sink_error(
                at,
                sink,
                "url",
                format!("not a URL ({e}); expected an http:// or https:// URL"),
            ));
        }
    }
    let secret_key = secret(s, sink, "secret", env)?.map(|(v, _)| v);
    let token = secret(s, sink, "token", env)?.map(|(v, _)| v);
    if kind == SinkKind::Gotify && token.is_none() {
        return Err(sink_error(
            line,
            sink,
            "token",
            "a gotify sink needs the application's `token` (or `token_file`)",
        ));
    }
    Ok(Endpoint::Http {
        url: Secret(url.0.trim().to_string()),
        secret: secret_key,
        token,
    })
}

fn email(s: &Section, sink: &str, line: u32, env: Env) -> Result<Endpoint, SchemaError> {
    let (text, at) = secret(s, sink, "smtp", env)?.ok_or_else(|| {
        sink_error(
            line,
            sink,
            "smtp",
            "an email sink needs `smtp: smtp://user:pass@host:port` (or `smtp_file`)",
        )
    })?;
    let mut smtp = parse_smtp(&text.0).map_err(|reason| sink_error(at, sink, "smtp", reason))?;
    if let Some((password, at)) = secret(s, sink, "password", env)? {
        if smtp.username.is_none() {
            return Err(sink_error(
                at,
                sink,
                "password_file",
                "a password needs a user name in the smtp URL (smtp://user@host:port)",
            ));
        }
        smtp.password = Some(password);
    }
    if smtp.tls == SmtpTls::None && smtp.password.is_some() {
        return Err(sink_error(
            at,
            sink,
            "smtp",
            "a password is never sent without TLS: drop `tls=none` or the password",
        ));
    }
    smtp.ca_file = s.string("ca_file", env)?.map(|(p, _)| PathBuf::from(p));
    let from = match s.string("from", env)? {
        Some((from, at)) => {
            check_address(&from).map_err(|reason| sink_error(at, sink, "from", reason))?;
            from
        }
        None => return Err(sink_error(line, sink, "from", "an email sink needs `from`")),
    };
    let to = match s.strings("to", env)? {
        Some((to, at)) if !to.is_empty() => {
            for address in &to {
                check_address(address).map_err(|reason| sink_error(at, sink, "to", reason))?;
            }
            to
        }
        _ => {
            return Err(sink_error(
                line,
                sink,
                "to",
                "an email sink needs `to` (an address or a list)",
            ));
        }
    };
    Ok(Endpoint::Email { smtp, from, to })
}

/// `user@host` or `Name <user@host>`, roughly: the mailer checks the rest.
fn check_address(text: &str) -> Result<(), String> {
    let address = match (text.find('<'), text.rfind('>')) {
        (Some(a), Some(b)) if a < b => &text[a + 1..b],
        _ => text,
    };
    match address.split_once('@') {
        Some((user, host)) if !user.is_empty() && !host.is_empty() && !host.contains('@') => Ok(()),
        _ => Err(format!("{text:?} is not an email address")),
    }
}

/// `smtp://[user[:pass]@]host[:port][?tls=required|opportunistic|none]` or
/// `smtps://…`. Errors never repeat the URL: it may hold the password.
pub fn parse_smtp(text: &str) -> Result<Smtp, String> {
    let u = url::Url::parse(text.trim())
        .map_err(|e| format!("not a URL ({e}); expected smtp://user:pass@host:port"))?;
    let host = u
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or("the URL has no host; expected smtp://user:pass@host:port")?
        .trim_matches(['[', ']'])
        .to_string();
    let tls_param = u
        .query_pairs()
        .find(|(k, _)| k == "tls")
        .map(|(_, v)| v.into_owned());
    let tls = match (u.scheme(), tls_param.as_deref()) {
        ("smtp", None | Some("required")) => SmtpTls::StartTls,
        ("smtp", Some("opportunistic")) => SmtpTls::Opportunistic,
        ("smtp", Some("none")) => SmtpTls::None,
        ("smtps", None) => SmtpTls::Wrapper,
        ("smtp" | "smtps", Some(other)) => {
            return Err(format!(
                "tls={other:?}: expected tls=required (the default), tls=opportunistic or tls=none"
            ));
        }
        (scheme, _) => return Err(format!("scheme {scheme:?}: expected smtp:// or smtps://")),
    };
    let port = u.port().unwrap_or(match tls {
        SmtpTls::Wrapper => 465,
        SmtpTls::None => 25,
        _ => 587,
    });
    let decode = |s: &str| {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    // Percent-decoding only: `+` stays a plus in a user or password.
    let decode = |s: &str| decode(&s.replace('+', "%2B"));
    let username = (!u.username().is_empty()).then(|| decode(u.username()));
    let password = u.password().map(|p| Secret(decode(p)));
    if password.is_some() && username.is_none() {
        return Err("a password needs a user name (smtp://user:pass@host:port)".into());
    }
    Ok(Smtp {
        host,
        port,
        tls,
        username,
        password,
        ca_file: None,
    })
}

#[cfg(test)]
#[path = "notifications_tests.rs"]
mod tests;
