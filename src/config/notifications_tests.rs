use super::*;
use crate::config::parse_file;

fn env(name: &str) -> Option<String> {
    match name {
        "SLACK_URL" => Some("https://hooks.slack.com/services/T0/B0/s3cr3tXYZ".into()),
        "HMAC" => Some("hmac-s3cr3t".into()),
        "SMTP_URL" => Some("smtp://alerts:p%40ss+w0rd@mail.example.com:2525".into()),
        _ => None,
    }
}

fn sinks(text: &str) -> Vec<SinkConfig> {
    parse_file(text, &env).unwrap().notifications
}

fn error(text: &str) -> String {
    parse_file(text, &env).unwrap_err().to_string()
}

#[test]
fn every_type_parses_with_its_keys_and_the_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("gotify-token");
    std::fs::write(&token, "AbCdEf\n").unwrap();
    let text = format!(
        "notifications:
  - name: ops
    type: slack
    url: ${{SLACK_URL}}
    events: [deploy_failed, drift_detected]
    repos: [\"shop-*\", billing]
    repeat_interval: 10m
  - name: hook
    type: webhook
    url: http://127.0.0.1:9000/kedge
    secret: ${{HMAC}}
  - name: push
    type: gotify
    url: https://gotify.example.com
    token_file: {}
  - name: mail
    type: email
    smtp: ${{SMTP_URL}}
    from: Kedge <kedge@example.com>
    to: [ops@example.com, dev@example.com]
",
        token.display()
    );
    let all = sinks(&text);
    assert_eq!(
        all.iter().map(|s| s.kind).collect::<Vec<_>>(),
        [
            SinkKind::Slack,
            SinkKind::Webhook,
            SinkKind::Gotify,
            SinkKind::Email
        ]
    );
    let ops = &all[0];
    assert_eq!(ops.line, 2);
    assert_eq!(
        ops.events,
        Some(vec![EventKind::DeployFailed, EventKind::DriftDetected])
    );
    assert_eq!(ops.repeat_interval, Duration::from_secs(600));
    assert!(ops.wants("shop-eu", EventKind::DeployFailed, Severity::Error));
    assert!(ops.wants("billing", EventKind::DriftDetected, Severity::Warning));
    assert!(!ops.wants("billing-2", EventKind::DeployFailed, Severity::Error));
    assert!(!ops.wants("shop-eu", EventKind::HealFailed, Severity::Error));
    assert_eq!(ops.target(), "https://hooks.slack.com/…");

    let hook = &all[1];
    assert_eq!(hook.repeat_interval, DEFAULT_REPEAT_INTERVAL);
    assert_eq!(hook.repos, ["*"]);
    match &hook.endpoint {
        Endpoint::Http { secret, .. } => assert_eq!(secret, &Some(Secret("hmac-s3cr3t".into()))),
        other => panic!("{other:?}"),
    }
    // The default filter: warnings and errors, and deploy_succeeded.
    assert!(hook.wants("any", EventKind::DeploySucceeded, Severity::Info));
    assert!(hook.wants("any", EventKind::CommitDetected, Severity::Warning));
    assert!(!hook.wants("any", EventKind::CommitDetected, Severity::Info));
    assert!(!hook.wants("any", EventKind::DeployStarted, Severity::Info));
    assert!(hook.wants("any", EventKind::CrashLoop, Severity::Error));

    match &all[2].endpoint {
        Endpoint::Http { token, .. } => assert_eq!(token, &Some(Secret("AbCdEf".into()))),
        other => panic!("{other:?}"),
    }

    let mail = &all[3];
    match &mail.endpoint {
        Endpoint::Email { smtp, from, to } => {
            assert_eq!(smtp.host, "mail.example.com");
            assert_eq!(smtp.port, 2525);
            assert_eq!(smtp.tls, SmtpTls::StartTls);
            assert_eq!(smtp.username.as_deref(), Some("alerts"));
            assert_eq!(smtp.password, Some(Secret("p@ss+w0rd".into())));
            assert_eq!(from, "Kedge <kedge@example.com>");
            assert_eq!(to, &["ops@example.com", "dev@example.com"]);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        mail.target(),
        "smtp://alerts@mail.example.com:2525 (STARTTLS) to ops@example.com, dev@example.com"
    );
    // Debug output (what a `{:?}` in a log would print) holds no secret.
    let shown = format!("{all:?}");
    for secret in ["s3cr3tXYZ", "hmac-s3cr3t", "p@ss", "AbCdEf"] {
        assert!(!shown.contains(secret), "{secret} in {shown}");
    }
}

#[test]
fn errors_name_the_sink_the_key_and_the_line_and_never_the_secret() {
    let table: &[(&str, &str)] = &[
        (
            "notifications:\n  - name: ops\n    type: slak\n    url: x\n",
            "line 3: notification `ops`, key `type`: expected one of: webhook, slack, discord, teams, ntfy, gotify, email",
        ),
        (
            "notifications:\n  - type: slack\n    url: ${SLACK_URL}\n",
            "line 2: notification `#1`, key `name`: every sink needs a name",
        ),
        (
            "notifications:\n  - name: ops\n    type: slack\n",
            "line 2: notification `ops`, key `url`: a slack sink needs `url` (or `url_file`)",
        ),
        (
            "notifications:\n  - name: ops\n    type: slack\n    url: ${SLACK_URL}\n    secret: x\n",
            "line 5: unknown key `notifications.ops.secret` (expected one of: name, type, events, repos, repeat_interval, url, url_file)",
        ),
        (
            "notifications:\n  - name: ops\n    type: discord\n    url: ftp://discord.example/s3cr3tXYZ\n",
            "line 4: notification `ops`, key `url`: expected an http:// or https:// URL",
        ),
        (
            "notifications:\n  - name: ops\n    type: slack\n    url: ${SLACK_URL}\n    events: [deploy_faild]\n",
            "line 5: notification `ops`, key `events`: unknown event kind \"deploy_faild\" (expected `*` or some of: repo_added, repo_removed, repo_renamed, commit_detected, deploy_started, deploy_succeeded, deploy_failed, rolled_back, pin_released, drift_detected, drift_healed, heal_failed, crash_loop, unhealthy, stack_unchanged, stack_added, stack_orphaned, stack_removed, update_available, update_applied, update_failed, host_unreachable, host_recovered, window_closed_wait, window_opened)",
        ),
        (
            "notifications:\n  - name: ops\n    type: slack\n    url: ${SLACK_URL}\n    repeat_interval: hourly\n",
            "line 5: notification `ops`, key `repeat_interval`: invalid duration \"hourly\": expected a number (examples: 500ms, 2s, 1m, 1m30s)",
        ),
        (
            "notifications:\n  - name: ops\n    type: slack\n    url: ${SLACK_URL}\n  - name: ops\n    type: teams\n    url: https://x.example/y\n",
            "line 5: notification `ops`, key `name`: a sink with this name is already defined on line 2",
        ),
        (
            "notifications:\n  - name: g\n    type: gotify\n    url: https://gotify.example.com\n",
            "line 2: notification `g`, key `token`: a gotify sink needs the application's `token` (or `token_file`)",
        ),
        (
            "notifications:\n  - name: m\n    type: email\n    smtp: smtp://u:s3cr3tXYZ@mail.example.com?tls=none\n    from: a@b.c\n    to: d@e.f\n",
            "line 4: notification `m`, key `smtp`: a password is never sent without TLS: drop `tls=none` or the password",
        ),
        (
            "notifications:\n  - name: m\n    type: email\n    smtp: smtp://u:s3cr3tXYZ@mail.example.com?tls=sometimes\n    from: a@b.c\n    to: d@e.f\n",
            "line 4: notification `m`, key `smtp`: tls=\"sometimes\": expected tls=required (the default), tls=opportunistic or tls=none",
        ),
        (
            "notifications:\n  - name: m\n    type: email\n    smtp: smtp://mail.example.com\n    from: nobody\n    to: d@e.f\n",
            "line 5: notification `m`, key `from`: \"nobody\" is not an email address",
        ),
        (
            "notifications:\n  - name: m\n    type: email\n    smtp: smtp://mail.example.com\n    from: a@b.c\n",
            "line 2: notification `m`, key `to`: an email sink needs `to` (an address or a list)",
        ),
        (
            "notifications:\n  - name: ops\n    type: slack\n    url: ${UNSET_URL}\n",
            "line 4: `notifications.ops.url`",
        ),
        (
            "notifications:\n  name: ops\n",
            "line 2: `notifications` must be a list of sinks, found a mapping",
        ),
    ];
    for (text, want) in table {
        let got = error(text);
        assert_eq!(&got, want, "{text}");
        assert!(!got.contains("s3cr3tXYZ"), "{got}");
    }
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let got = error(&format!(
        "notifications:\n  - name: ops\n    type: slack\n    url_file: {}\n",
        missing.display()
    ));
    assert!(
        got.starts_with("line 4: notification `ops`, key `url_file`: cannot read"),
        "{got}"
    );
}

#[test]
fn smtp_urls() {
    let s = parse_smtp("smtps://mail.example.com").unwrap();
    assert_eq!((s.tls, s.port, s.username), (SmtpTls::Wrapper, 465, None));
    let s = parse_smtp("smtp://relay.local?tls=none").unwrap();
    assert_eq!((s.tls, s.port), (SmtpTls::None, 25));
    let s = parse_smtp("smtp://me@mail.example.com?tls=opportunistic").unwrap();
    assert_eq!((s.tls, s.port), (SmtpTls::Opportunistic, 587));
    assert_eq!(s.username.as_deref(), Some("me"));
    assert!(parse_smtp("http://mail.example.com").is_err());
    assert!(parse_smtp("smtp://:pw@mail.example.com").is_err());
}

#[test]
fn repository_patterns() {
    for (pattern, name, want) in [
        ("*", "anything", true),
        ("shop", "shop", true),
        ("shop", "shop2", false),
        ("shop-*", "shop-eu", true),
        ("shop-*", "shop-", true),
        ("shop-*", "shoe-eu", false),
        ("*-prod", "api-prod", true),
        ("*-prod", "api-prod-2", false),
        ("a*b*c", "a-b-c", true),
        ("a*b*c", "a-c-b", false),
        ("ab*ba", "aba", false),
    ] {
        assert_eq!(glob(pattern, name), want, "{pattern} {name}");
    }
}

#[test]
fn urls_are_shown_without_their_path() {
    assert_eq!(
        redact_url("https://discord.com/api/webhooks/1/tok"),
        "https://discord.com/…"
    );
    assert_eq!(
        redact_url("http://user:pw@127.0.0.1:8080"),
        "http://127.0.0.1:8080"
    );
    assert_eq!(
        redact_url("https://ntfy.sh/topic?auth=x"),
        "https://ntfy.sh/…"
    );
}
