//! Sending one notification to one sink: an HTTP POST (ureq, on tokio's
//! blocking pool) or an email (lettre, SMTP with STARTTLS). Every attempt
//! ends within [`TIMEOUT`]; [`Sender::deliver`] tries [`TRIES`] times with
//! backoff. Whatever the sink or its receiver says is passed through
//! [`Redactor`] before it reaches an error or a log line.

use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::NotifyError;
use super::message::{Notice, one_line};
use super::payload;
use crate::config::Secret;
use crate::config::notifications::{Endpoint, SinkConfig, SinkKind, Smtp, SmtpTls};

/// One attempt, connection to answer.
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// Attempts per notification before it is given up (logged and counted).
pub const TRIES: u32 = 3;
/// The wait before the second attempt; doubled before each next one.
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);

/// What the receiver answered: `200 OK`, `250 2.0.0 Ok: queued`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer(pub String);

impl std::fmt::Display for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Replaces every secret of a sink (its URL, path, tokens, password) in a
/// text with `***`.
#[derive(Clone, Default)]
pub struct Redactor(Vec<String>);

impl Redactor {
    pub fn of(sink: &SinkConfig) -> Redactor {
        let mut secrets: Vec<String> = Vec::new();
        let mut add = |s: &Secret| {
            secrets.push(s.0.clone());
            if let Ok(u) = url::Url::parse(&s.0) {
                // A client may quote the URL normalised, or its path alone.
                secrets.push(u.as_str().to_string());
                if u.path().len() > 1 {
                    secrets.push(u.path().to_string());
                }
                if let Some(q) = u.query() {
                    secrets.push(q.to_string());
                }
                if let Some(p) = u.password() {
                    secrets.push(p.to_string());
                }
            }
        };
        match &sink.endpoint {
            Endpoint::Http { url, secret, token } => {
                add(url);
                secret.iter().chain(token).for_each(&mut add);
            }
            Endpoint::Email { smtp, .. } => {
                if let Some(p) = &smtp.password {
                    add(p);
                }
            }
        }
        // Longest first: a URL goes before its own path.
        secrets.retain(|s| s.len() >= 4);
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        Redactor(secrets)
    }

    /// A redactor of these secrets alone (a commit status API's token).
    pub fn secrets(secrets: &[&str]) -> Redactor {
        Redactor(
            secrets
                .iter()
                .filter(|s| s.len() >= 4)
                .map(|s| s.to_string())
                .collect(),
        )
    }

    pub fn clean(&self, text: &str) -> String {
        let mut out = text.to_string();
        for secret in &self.0 {
            out = out.replace(secret.as_str(), "***");
        }
        out
    }
}

/// Sends to one sink.
pub struct Sender {
    pub sink: SinkConfig,
    redactor: Redactor,
    agent: ureq::Agent,
    public_url: Option<String>,
}

impl Sender {
    pub fn new(sink: SinkConfig, public_url: Option<String>) -> Sender {
        // Redirects are never followed: a 301/302/303 would turn the POST
        // into an empty GET (the message lost, yet "200 OK"), and carry the
        // sink's token (`X-Gotify-Key`) to wherever `Location` points.
        let agent = crate::outbound::agent(TIMEOUT);
        Sender {
            redactor: Redactor::of(&sink),
            sink,
            agent,
            public_url,
        }
    }

    pub fn name(&self) -> &str {
        &self.sink.name
    }

    pub fn public_url(&self) -> Option<&str> {
        self.public_url.as_deref()
    }

    pub fn redactor(&self) -> &Redactor {
        &self.redactor
    }

    /// Up to [`TRIES`] attempts, waiting 1 s then 2 s between them; an
    /// answer that retrying cannot change (a 4xx other than 408 and 429, a
    /// refused address) ends it early. Returns the answer and the attempts made.
    pub async fn deliver(&self, notice: &Notice) -> Result<(Answer, u32), (NotifyError, u32)> {
        let mut wait = FIRST_BACKOFF;
        let mut tries = 0;
        loop {
            tries += 1;
            match self.send_once(notice).await {
                Ok(answer) => return Ok((answer, tries)),
                Err(e) if tries < TRIES && e.retryable() => {
                    tracing::info!(sink = %self.sink.name, attempt = tries, retry_in = ?wait, "notification not delivered yet: {e}");
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                }
                Err(e) => return Err((e, tries)),
            }
        }
    }

    /// One attempt, [`TIMEOUT`] at most.
    pub async fn send_once(&self, notice: &Notice) -> Result<Answer, NotifyError> {
        let attempt = async {
            match &self.sink.endpoint {
                Endpoint::Http { url, secret, token } => {
                    self.post(notice, url, secret.as_ref(), token.as_ref())
                        .await
                }
                Endpoint::Email { smtp, from, to } => self.mail(notice, smtp, from, to).await,
            }
        };
        match tokio::time::timeout(TIMEOUT + Duration::from_millis(500), attempt).await {
            Ok(result) => result,
            Err(_) => Err(NotifyError::Timeout(TIMEOUT)),
        }
    }

    async fn post(
        &self,
        notice: &Notice,
        url: &Secret,
        secret: Option<&Secret>,
        token: Option<&Secret>,
    ) -> Result<Answer, NotifyError> {
        let kind = self.sink.kind;
        let payload = payload::http(kind, notice, secret);
        let target = match kind {
            SinkKind::Gotify => payload::gotify_url(&url.0),
            _ => url.0.clone(),
        };
        let mut request = ureq::http::Request::builder()
            .method("POST")
            .uri(&target)
            .header("Content-Type", payload.content_type);
        for (name, value) in &payload.headers {
            request = request.header(*name, value);
        }
        match (kind, token) {
            (SinkKind::Gotify, Some(token)) => request = request.header("X-Gotify-Key", &token.0),
            (_, Some(token)) => {
                request = request.header("Authorization", format!("Bearer {}", token.0))
            }
            (_, None) => {}
        }
        let redactor = self.redactor.clone();
        let request = request
            .body(payload.body)
            .map_err(|e| NotifyError::Request(redactor.clean(&e.to_string())))?;
        let agent = self.agent.clone();
        let sent = tokio::task::spawn_blocking(move || {
            let mut response = agent
                .run(request)
                .map_err(|e| NotifyError::from_http(&e, &redactor))?;
            let status = response.status();
            let text = response
                .body_mut()
                .with_config()
                .limit(4096)
                .read_to_string()
                .unwrap_or_default();
            let reason = status.canonical_reason().unwrap_or("");
            if status.is_redirection() {
                let location = response
                    .headers()
                    .get("location")
                    .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                    .unwrap_or_default();
                Err(NotifyError::Redirected {
                    status: status.as_u16(),
                    location: redactor.clean(&one_line(&location, 200)),
                })
            } else if status.is_success() {
                Ok(Answer(
                    format!("{} {reason}", status.as_u16())
                        .trim_end()
                        .to_string(),
                ))
            } else {
                Err(NotifyError::Status {
                    status: status.as_u16(),
                    body: redactor.clean(&one_line(&text, 200)),
                })
            }
        })
        .await;
        sent.map_err(|e| NotifyError::Request(e.to_string()))?
    }

    async fn mail(
        &self,
        notice: &Notice,
        smtp: &Smtp,
        from: &str,
        to: &[String],
    ) -> Result<Answer, NotifyError> {
        let clean =
            |e: &(dyn std::error::Error + 'static)| self.redactor.clean(&crate::error_chain(e));
        let (subject, text) = payload::email(notice, &self.sink.name);
        let mut message = Message::builder()
            .from(
                from.parse()
                    .map_err(|e| NotifyError::Email(format!("from: {e}")))?,
            )
            .subject(subject)
            .header(ContentType::TEXT_PLAIN);
        for address in to {
            message = message.to(address
                .parse()
                .map_err(|e| NotifyError::Email(format!("to {address}: {e}")))?);
        }
        let message = message
            .body(text)
            .map_err(|e| NotifyError::Email(e.to_string()))?;
        let transport = self.transport(smtp)?;
        let response = transport.send(message).await.map_err(|e| {
            if e.is_timeout() {
                NotifyError::Timeout(TIMEOUT)
            } else if e.is_client() && starttls_required(smtp) && clean(&e).contains("STARTTLS")
            {
                // Nothing was sent: no AUTH, no message.
                NotifyError::Email(if smtp.tls == SmtpTls::Opportunistic {
                    "the mail server offers no STARTTLS, and a password is never sent without TLS (tls=opportunistic sends in clear only without a password)".into()
                } else {
                    "the mail server offers no STARTTLS, which tls=required (the default) needs".into()
                })
            } else if e.is_response() || e.is_transient() || e.is_permanent() {
                NotifyError::Smtp {
                    permanent: e.is_permanent(),
                    message: clean(&e),
                }
            } else {
                // No answer from a mail server: connection, TLS.
                NotifyError::Connect(clean(&e))
            }
        })?;
        let lines: Vec<&str> = response.message().collect();
        Ok(Answer(
            format!("{} {}", response.code(), lines.join(" "))
                .trim_end()
                .to_string(),
        ))
    }

    fn transport(&self, smtp: &Smtp) -> Result<AsyncSmtpTransport<Tokio1Executor>, NotifyError> {
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&smtp.host)
            .port(smtp.port)
            .timeout(Some(TIMEOUT));
        if smtp.tls != SmtpTls::None {
            let mut params = TlsParameters::builder(smtp.host.clone());
            if let Some(path) = &smtp.ca_file {
                let pem = std::fs::read(path).map_err(|e| {
                    NotifyError::Email(format!("cannot read ca_file {}: {e}", path.display()))
                })?;
                let cert = Certificate::from_pem(&pem)
                    .map_err(|e| NotifyError::Email(format!("ca_file {}: {e}", path.display())))?;
                params = params.add_root_certificate(cert);
            }
            let params = params
                .build_rustls()
                .map_err(|e| NotifyError::Email(e.to_string()))?;
            builder = builder.tls(match smtp.tls {
                SmtpTls::Wrapper => Tls::Wrapper(params),
                _ if starttls_required(smtp) => Tls::Required(params),
                _ => Tls::Opportunistic(params),
            });
        } else {
            builder = builder.tls(Tls::None);
        }
        if let (Some(user), Some(password)) = (&smtp.username, &smtp.password) {
            builder = builder.credentials(Credentials::new(user.clone(), password.0.clone()));
        }
        Ok(builder.build())
    }
}

/// Whether the connection must be upgraded with STARTTLS before anything
/// else: `tls=required`, and `tls=opportunistic` with a password. lettre's
/// opportunistic mode authenticates in clear when the server offers no
/// STARTTLS; a password is never sent so.
fn starttls_required(smtp: &Smtp) -> bool {
    match smtp.tls {
        SmtpTls::StartTls => true,
        // Credentials are used when both are set (see `transport`).
        SmtpTls::Opportunistic => smtp.username.is_some() && smtp.password.is_some(),
        SmtpTls::Wrapper | SmtpTls::None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::notifications::DEFAULT_REPEAT_INTERVAL;

    fn sink(endpoint: Endpoint) -> SinkConfig {
        SinkConfig {
            name: "ops".into(),
            kind: SinkKind::Slack,
            line: 1,
            endpoint,
            events: None,
            repos: vec!["*".into()],
            repeat_interval: DEFAULT_REPEAT_INTERVAL,
        }
    }

    #[test]
    fn the_redactor_hides_urls_paths_tokens_and_passwords() {
        let r = Redactor::of(&sink(Endpoint::Http {
            url: Secret("https://hooks.slack.com/services/T0/B0/XyZ?x=1".into()),
            secret: Some(Secret("hmac-key".into())),
            token: None,
        }));
        assert_eq!(
            r.clean("POST https://hooks.slack.com/services/T0/B0/XyZ?x=1 failed"),
            "POST *** failed"
        );
        assert_eq!(r.clean("404 for /services/T0/B0/XyZ"), "404 for ***");
        assert_eq!(r.clean("key hmac-key"), "key ***");
        let smtp = crate::config::notifications::parse_smtp("smtp://me:pa55word@mail.example.com")
            .unwrap();
        let r = Redactor::of(&sink(Endpoint::Email {
            smtp,
            from: "a@b.c".into(),
            to: vec!["d@e.f".into()],
        }));
        assert_eq!(r.clean("auth pa55word refused"), "auth *** refused");
    }
}
