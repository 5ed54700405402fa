//! Notifications end to end: `serve` with sinks of every type pointed at
//! receivers the tests start on loopback (recording HTTP servers, a real
//! SMTP server with STARTTLS and AUTH), the real engine, and the payloads
//! checked against each service's documented shape.

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use crate::support::docker::{IMAGE_1, IMAGE_2, docker_ok};
use crate::support::kedge::Serve;
use crate::support::plain_http::{get, listen_addr};
use crate::support::receiver::{Mode, Receiver, Request, SmtpServer};
use crate::support::*;

mod commands;
mod delivery;
mod security;

pub(crate) const SLACK_TOKEN: &str = "k14-slack-token-T0B0";
pub(crate) const DISCORD_TOKEN: &str = "k14-discord-token-77";
pub(crate) const GOTIFY_TOKEN: &str = "k14-gotify-token-A1";
const HMAC_SECRET: &str = "k14-hmac-secret";
const SMTP_PASSWORD: &str = "k14-smtp-pa55";
const SECRETS: [&str; 5] = [
    SLACK_TOKEN,
    DISCORD_TOKEN,
    GOTIFY_TOKEN,
    HMAC_SECRET,
    SMTP_PASSWORD,
];

/// The global config every command of `k` reads (`~/.config/kedge/config.yaml`).
pub(crate) fn write_config(k: &Kedge, text: &str) {
    let dir = k.cwd().join(".config/kedge");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("config.yaml"), text).unwrap();
}

/// A secret in a file of the Kedge's working directory; its path.
fn secret_file(k: &Kedge, name: &str, secret: &str) -> String {
    let path = k.cwd().join(name);
    std::fs::write(&path, format!("{secret}\n")).unwrap();
    path.display().to_string()
}

/// A Kedge whose environment holds the secrets `${VAR}` interpolation reads.
fn kedge_with_secrets(http: &Receiver) -> Kedge {
    Kedge::new()
        .env(
            "K14_SLACK_URL",
            &http.url(&format!("/slack/services/{SLACK_TOKEN}")),
        )
        .env("K14_GOTIFY_TOKEN", GOTIFY_TOKEN)
}

/// One sink of each type on `http` and `smtp`.
fn every_sink(k: &Kedge, http: &Receiver, smtp: &SmtpServer, events: &str) -> String {
    let hmac = secret_file(k, "hmac", HMAC_SECRET);
    let discord = secret_file(
        k,
        "discord-url",
        &http.url(&format!("/discord/api/webhooks/1/{DISCORD_TOKEN}")),
    );
    let password = secret_file(k, "smtp-password", SMTP_PASSWORD);
    format!(
        "http:
  public_url: https://kedge.example.com
notifications:
  - name: hook
    type: webhook
    url: {hook}
    secret_file: {hmac}{events}
  - name: slack
    type: slack
    url: ${{K14_SLACK_URL}}{events}
  - name: discord
    type: discord
    url_file: {discord}{events}
  - name: teams
    type: teams
    url: {teams}{events}
  - name: ntfy
    type: ntfy
    url: {ntfy}{events}
  - name: gotify
    type: gotify
    url: {gotify}
    token: ${{K14_GOTIFY_TOKEN}}{events}
  - name: mail
    type: email
    smtp: smtp://{user}@127.0.0.1:{port}
    password_file: {password}
    ca_file: {ca}
    from: Kedge <kedge@k14.test>
    to: [ops@k14.test]{events}
",
        hook = http.url("/hook"),
        teams = http.url("/teams/workflow"),
        ntfy = http.url("/ntfy/k14-alerts"),
        gotify = http.url("/gotify"),
        user = smtp.user,
        port = smtp.port,
        ca = smtp.ca.display(),
    )
}

fn hmac_hex(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// What a person reads in a request, whatever the service's format.
fn readable(r: &Request) -> String {
    let p = r.path.as_str();
    if p.starts_with("/ntfy/") {
        return r.text();
    }
    let v = r.json();
    if p == "/hook" {
        v["message"].as_str().unwrap_or_default().to_string()
    } else if p.starts_with("/slack/") {
        v["text"].as_str().unwrap_or_default().to_string()
    } else if p.starts_with("/discord/") {
        v["embeds"][0]["description"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    } else if p.starts_with("/teams/") {
        v["attachments"][0]["content"]["body"][1]["text"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    } else if p.starts_with("/gotify/") {
        v["message"].as_str().unwrap_or_default().to_string()
    } else {
        String::new()
    }
}

/// The event kind a request carries, in each format.
fn kind_of(r: &Request) -> String {
    let p = r.path.as_str();
    if p.starts_with("/ntfy/") {
        let tags = r.header("tags").unwrap_or_default();
        return tags.rsplit(',').next().unwrap_or_default().to_string();
    }
    let v = r.json();
    let title = if p == "/hook" {
        return v["kind"].as_str().unwrap_or_default().to_string();
    } else if p.starts_with("/slack/") {
        let section = v["blocks"][0]["text"]["text"].as_str().unwrap_or_default();
        section.lines().next().unwrap_or_default().to_string()
    } else if p.starts_with("/discord/") {
        v["embeds"][0]["title"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    } else if p.starts_with("/teams/") {
        v["attachments"][0]["content"]["body"][0]["text"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    } else {
        v["title"].as_str().unwrap_or_default().to_string()
    };
    // Titles read `repo: deploy failed`.
    let words = title.rsplit(": ").next().unwrap_or_default();
    words.trim_end_matches('*').replace(' ', "_")
}

/// The HTTP sinks' paths, one per sink.
const PATHS: [&str; 6] = [
    "/hook",
    "/slack/",
    "/discord/",
    "/teams/",
    "/ntfy/",
    "/gotify/",
];

/// Delivered requests of `kind`, per sink path prefix.
fn per_sink(http: &Receiver, kind: &str) -> Vec<(&'static str, Vec<Request>)> {
    let all = http.delivered();
    PATHS
        .iter()
        .map(|p| {
            let got: Vec<Request> = all
                .iter()
                .filter(|r| r.path.starts_with(p) && kind_of(r) == kind)
                .cloned()
                .collect();
            (*p, got)
        })
        .collect()
}

fn mails_of(smtp: &SmtpServer, kind_words: &str) -> Vec<Value> {
    smtp.messages()
        .into_iter()
        .filter(|m| {
            m["subject"]
                .as_str()
                .unwrap_or_default()
                .ends_with(kind_words)
        })
        .collect()
}

/// Waits until every HTTP sink has `n` deliveries of `kind` and the mail
/// sink `n` messages; returns the HTTP ones.
#[track_caller]
fn wait_all(
    http: &Receiver,
    smtp: &SmtpServer,
    kind: &str,
    n: usize,
) -> Vec<(&'static str, Vec<Request>)> {
    let words = kind.replace('_', " ");
    wait_for(60, &format!("{n} {kind} at every sink"), || {
        let got = per_sink(http, kind);
        (got.iter().all(|(_, r)| r.len() >= n) && mails_of(smtp, &words).len() >= n).then_some(got)
    })
}

/// The words of the `notify list` row that starts with `name`.
pub(crate) fn row<'a>(stdout: &'a str, name: &str) -> Vec<&'a str> {
    stdout
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|words| words.first() == Some(&name))
        .unwrap_or_else(|| panic!("no row {name} in:\n{stdout}"))
}

fn suppressed(serve: &Serve, sink: &str) -> u64 {
    let body = get(listen_addr(serve), "/metrics").body;
    let want = format!("kedge_notifications_total{{sink=\"{sink}\",result=\"suppressed\"}} ");
    body.lines()
        .find_map(|l| l.strip_prefix(want.as_str()))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn notify_every_sink_gets_one_message_per_failure_and_repeats_wait_for_a_success() {
    let http = Receiver::start(Mode::Status(200));
    let smtp = SmtpServer::start("k14user", SMTP_PASSWORD);
    let k = kedge_with_secrets(&http);
    let s = Stack::with_kedge(
        "notif",
        &[("compose.yaml", &sleepers(&[("web", IMAGE_1)]))],
        k,
    );
    write_config(&s.kedge, &every_sink(&s.kedge, &http, &smtp, ""));

    // `notify list` shows every sink, no secret.
    let list = s.kedge.run(["notify", "list"]);
    list.success();
    assert_eq!(
        row(&list.stdout, "NAME"),
        ["NAME", "TYPE", "TARGET", "EVENTS", "REPOS", "REPEAT"]
    );
    let hook_target = format!("http://127.0.0.1:{}/…", http.port);
    assert_eq!(
        row(&list.stdout, "hook"),
        [
            "hook",
            "webhook",
            &hook_target,
            "(signed)",
            "default",
            "*",
            "1h"
        ]
    );
    let smtp_target = format!("smtp://k14user@127.0.0.1:{}", smtp.port);
    assert_eq!(
        row(&list.stdout, "mail"),
        [
            "mail",
            "email",
            &smtp_target,
            "(STARTTLS)",
            "to",
            "ops@k14.test",
            "default",
            "*",
            "1h"
        ]
    );
    // `notify test` reports the receiver's answer.
    s.kedge
        .run(["notify", "test", "hook"])
        .success()
        .stdout_is("hook: 200 OK\n");
    let test = http.wait_delivered(10, "the test message", |r| r.path == "/hook");
    assert_eq!(test.json()["kind"], "test");
    assert_eq!(
        test.header("x-kedge-signature-256"),
        Some(hmac_hex(HMAC_SECRET, &test.body).as_str())
    );
    let mail_test = s.kedge.run(["notify", "test", "mail"]);
    mail_test
        .success()
        .stdout_has("mail: 250 2.0.0 message recorded");
    let first_mail = &smtp.messages()[0];
    assert_eq!(
        first_mail["tls"], true,
        "STARTTLS before anything: {first_mail}"
    );
    assert_eq!(first_mail["authenticated"], true, "{first_mail}");
    assert_eq!(first_mail["to"], serde_json::json!(["ops@k14.test"]));

    let serve = s.kedge.serve_debug(&[
        "serve",
        "--poll-interval",
        "300ms",
        "--check-interval",
        "1m",
    ]);
    let ok = wait_all(&http, &smtp, "deploy_succeeded", 1);
    for (path, got) in &ok {
        assert_eq!(got.len(), 1, "{path}: {got:#?}");
    }

    // A commit compose refuses: one deploy_failed at every sink, naming
    // the repository, the commit and compose's error.
    s.remote
        .write("compose.yaml", "services:\n  web: [unclosed\n");
    let bad = s.remote.commit("Break the compose file");
    let failed = wait_all(&http, &smtp, "deploy_failed", 1);
    let stored = s
        .kedge
        .run(["events", "--repo", &s.name, "-o", "json"])
        .json();
    let event = stored
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "deploy_failed")
        .unwrap()
        .clone();
    let error = event["message"].as_str().unwrap();
    assert!(error.contains("invalid compose project"), "{event}");
    let line = format!(
        "{}: deploy of {} 'Break the compose file' failed: ",
        s.name,
        &bad[..7]
    );
    for (path, got) in &failed {
        assert_eq!(got.len(), 1, "{path}: {got:#?}");
        let text = readable(&got[0]);
        if *path == "/hook" {
            // The webhook posts the event itself, signed.
            let v = got[0].json();
            assert_eq!(v, event, "{path}");
            assert_eq!(
                got[0].header("x-kedge-signature-256"),
                Some(hmac_hex(HMAC_SECRET, &got[0].body).as_str())
            );
        } else {
            assert!(text.starts_with(&line), "{path}: {text:?} lacks {line:?}");
            assert!(text.contains("invalid compose project"), "{path}: {text}");
        }
    }
    check_shapes(&failed);
    let mail = &mails_of(&smtp, "deploy failed")[0];
    assert_eq!(
        mail["subject"],
        format!("[kedge] {}: deploy failed", s.name)
    );
    let body = mail["body"].as_str().unwrap();
    assert!(body.starts_with(&line), "{body}");
    assert!(
        body.contains(&format!(
            "Dashboard: https://kedge.example.com/repos/{}",
            s.name
        )),
        "{body}"
    );

    // The same failure again (a retry by hand): not sent again.
    let mark = serve.mark();
    s.kedge.run(["sync", "--repo", &s.name]).code(1);
    wait_for(30, "the retry's failure suppressed at every sink", || {
        [
            "hook", "slack", "discord", "teams", "ntfy", "gotify", "mail",
        ]
        .iter()
        .all(|sink| suppressed(&serve, sink) == 1)
        .then_some(())
    });
    assert!(
        serve
            .find_since(mark, |r| r["message"] == "notification sent")
            .is_none(),
        "a repeat was sent"
    );

    // A different error is news at once.
    s.remote
        .write("compose.yaml", "services:\n  web:\n    image: [1, 2]\n");
    s.remote.commit("Another breakage");
    wait_all(&http, &smtp, "deploy_failed", 2);

    // A success is sent and clears the suppression: the first error is
    // sent again when it comes back.
    s.remote
        .write("compose.yaml", &sleepers(&[("web", IMAGE_2)]));
    s.remote.commit("Fix it");
    wait_all(&http, &smtp, "deploy_succeeded", 2);
    s.remote
        .write("compose.yaml", "services:\n  web: [unclosed\n");
    s.remote.commit("Break it again");
    let again = wait_all(&http, &smtp, "deploy_failed", 3);
    for (path, got) in &again {
        assert_eq!(got.len(), 3, "{path}: exactly three failures sent");
    }
    assert_eq!(mails_of(&smtp, "deploy failed").len(), 3);

    // No secret anywhere: logs, listings, test output, the database.
    let mut places = vec![
        ("serve log", serve.log()),
        ("notify list", list.stdout.clone()),
        (
            "notify list -o json",
            s.kedge.run(["notify", "list", "-o", "json"]).stdout,
        ),
        ("notify test", mail_test.stdout.clone() + &mail_test.stderr),
        ("events", s.kedge.run(["events", "-o", "json"]).stdout),
    ];
    for file in ["kedge.db", "kedge.db-wal"] {
        let path = s.kedge.data_dir().join(file);
        if let Ok(bytes) = std::fs::read(&path) {
            places.push((file, String::from_utf8_lossy(&bytes).into_owned()));
        }
    }
    for (place, text) in &places {
        for secret in SECRETS {
            assert!(!text.contains(secret), "{secret} in the {place}");
        }
    }
}

/// Each service's documented shape.
fn check_shapes(got: &[(&'static str, Vec<Request>)]) {
    for (path, requests) in got {
        let r = &requests[0];
        assert_eq!(r.method, "POST", "{path}");
        match *path {
            "/slack/" => {
                let v = r.json();
                assert!(v["text"].is_string(), "{v}");
                let types: Vec<&str> = v["blocks"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|b| b["type"].as_str().unwrap())
                    .collect();
                assert_eq!(types, ["section", "context", "actions"], "{v}");
                assert_eq!(v["blocks"][0]["text"]["type"], "mrkdwn");
            }
            "/discord/" => {
                let v = r.json();
                let embed = &v["embeds"][0];
                assert!(embed["title"].as_str().unwrap().chars().count() <= 256);
                assert!(
                    embed["color"].is_u64() && embed["timestamp"].is_string(),
                    "{v}"
                );
                assert_eq!(
                    embed["url"].as_str().unwrap().split("/repos/").next(),
                    Some("https://kedge.example.com")
                );
            }
            "/teams/" => {
                let v = r.json();
                assert_eq!(v["type"], "message");
                assert_eq!(
                    v["attachments"][0]["contentType"],
                    "application/vnd.microsoft.card.adaptive"
                );
                assert_eq!(v["attachments"][0]["content"]["type"], "AdaptiveCard");
            }
            "/ntfy/" => {
                assert_eq!(r.path, "/ntfy/k14-alerts");
                assert_eq!(r.header("priority"), Some("4"), "an error is high priority");
                assert!(r.header("tags").unwrap().starts_with("rotating_light,"));
                assert!(r.header("title").unwrap().ends_with(": deploy failed"));
                assert!(
                    r.header("click")
                        .unwrap()
                        .starts_with("https://kedge.example.com/repos/")
                );
            }
            "/gotify/" => {
                assert_eq!(r.path, "/gotify/message");
                assert_eq!(r.header("x-gotify-key"), Some(GOTIFY_TOKEN));
                let v = r.json();
                assert_eq!(v["priority"], 8);
                assert!(v["title"].is_string() && v["message"].is_string(), "{v}");
            }
            _ => {}
        }
    }
}

#[test]
fn notify_mode_notify_reports_a_waiting_commit_and_drift_and_changes_nothing() {
    let http = Receiver::start(Mode::Status(200));
    let compose = sleepers(&[("web", IMAGE_1)]);
    let s = Stack::new(
        "notifmode",
        &[
            ("compose.yaml", &compose),
            ("kedge.yaml", "reconciliation:\n  mode: notify\n"),
        ],
    );
    write_config(
        &s.kedge,
        &format!(
            "notifications:\n  - name: ntfy\n    type: ntfy\n    url: {}\n  - name: hook\n    type: webhook\n    url: {}\n",
            http.url("/ntfy/k14"),
            http.url("/hook"),
        ),
    );
    s.kedge.run(["sync", "--repo", &s.name]).success();
    let serve = s.kedge.serve_debug(&[
        "serve",
        "--poll-interval",
        "300ms",
        "--check-interval",
        "1m",
    ]);
    serve.wait_passes(&s.name, 0, 1, 60);
    let before = s.project.containers();

    s.remote
        .write("compose.yaml", &sleepers(&[("web", IMAGE_2)]));
    let c2 = s.remote.commit("Web on image 2");
    let waiting = http.wait_delivered(30, "commit_detected at ntfy", |r| {
        r.path == "/ntfy/k14"
            && r.header("tags")
                .is_some_and(|t| t.ends_with(",commit_detected"))
    });
    assert_eq!(
        waiting.text(),
        format!(
            "{}: new commit {} 'Web on image 2', waiting: mode notify (`kedge sync --repo {}` deploys it)",
            s.name,
            &c2[..7],
            s.name
        )
    );
    assert_eq!(
        waiting.header("priority"),
        Some("3"),
        "a waiting commit is a warning"
    );
    let hook = http.wait_delivered(10, "commit_detected at the webhook", |r| {
        r.path == "/hook" && r.json()["kind"] == "commit_detected"
    });
    assert_eq!(hook.json()["fields"]["mode"], "notify");
    assert_eq!(hook.json()["commit"], c2.as_str());

    let web = format!("{}-web-1", s.name);
    docker_ok(&["stop", "-t", "0", &web]);
    let drift = http.wait_delivered(30, "drift_detected at ntfy", |r| {
        r.path == "/ntfy/k14"
            && r.header("tags")
                .is_some_and(|t| t.ends_with(",drift_detected"))
    });
    let text = drift.text();
    assert!(
        text.starts_with(&format!(
            "{}: service web drifted: stopped: {web} is exited",
            s.name
        )),
        "{text}"
    );
    assert!(text.ends_with("(not healed)"), "{text}");
    http.wait_delivered(10, "drift_detected at the webhook", |r| {
        r.path == "/hook" && r.json()["kind"] == "drift_detected"
    });

    // Nothing changed on the engine: the pass after the reports is done.
    serve.wait_passes(&s.name, serve.mark(), 1, 30);
    let after = s.project.containers();
    assert_eq!(after.len(), before.len());
    assert_eq!(after[0].id, before[0].id, "not recreated");
    assert!(s.running().is_empty(), "web was left stopped");
    assert_ne!(s.history()[0]["commit"], c2.as_str(), "c2 not deployed");
}
