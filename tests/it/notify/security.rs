//! What a sink's receiver may not make Kedge do: follow a redirect (the
//! message lost as an empty GET, the token carried elsewhere), or take an
//! SMTP password in clear because it offers no STARTTLS.

use serde_json::Value;

use super::{GOTIFY_TOKEN, SMTP_PASSWORD, secret_file, write_config};
use crate::support::docker::IMAGE_1;
use crate::support::receiver::{Mode, Receiver, SmtpServer};
use crate::support::*;

/// Every 3xx is a failure naming its `Location`, by `notify test` and by
/// `serve`'s delivery; nothing is sent where it points, least of all the
/// gotify token.
#[test]
fn a_sink_redirect_fails_naming_its_location_and_nothing_follows_it() {
    let elsewhere = Receiver::start(Mode::Status(200));
    let target = elsewhere.url("/collect");
    let redirector = Receiver::start(Mode::Redirect(302, target.clone()));
    let s = Stack::new(
        "i22nredir",
        &[("compose.yaml", &sleepers(&[("web", IMAGE_1)]))],
    );
    let k = &s.kedge;
    let token = secret_file(k, "gotify-token", GOTIFY_TOKEN);
    write_config(
        k,
        &format!(
            "notifications:\n  - name: gotify\n    type: gotify\n    url: {}\n    token_file: {token}\n    events: [deploy_succeeded]\n  - name: hook\n    type: webhook\n    url: {}\n    events: [deploy_succeeded]\n",
            redirector.url("/gotify"),
            redirector.url("/hook"),
        ),
    );

    let mut tests = 0;
    for status in [301, 302, 303, 307, 308] {
        redirector.set_mode(Mode::Redirect(status, target.clone()));
        for sink in ["gotify", "hook"] {
            let out = k.run(["notify", "test", sink]);
            out.code(1)
                .stderr_has(&format!(
                    "notification sink '{sink}': the receiver answered {status} "
                ))
                .stderr_has(&format!(
                    "redirects to {target}: redirects are not followed"
                ));
            assert!(!out.stdout.contains("200 OK"), "{out:?}");
            assert!(!out.stderr.contains(GOTIFY_TOKEN), "{out:?}");
            tests += 1;
        }
    }
    let got = redirector.requests();
    assert_eq!(got.len(), tests, "one POST per test: {got:#?}");
    assert!(got.iter().all(|r| r.method == "POST"), "{got:#?}");
    assert!(
        elsewhere.requests().is_empty(),
        "a redirect was followed: {:#?}",
        elsewhere.requests()
    );

    // `serve`: the deployment's notice fails at once (a 3xx is not retried),
    // is counted as failed and logged with the Location.
    redirector.set_mode(Mode::Redirect(302, target.clone()));
    let serve = k.serve_debug(&["serve", "--poll-interval", "1h", "--check-interval", "1m"]);
    for sink in ["gotify", "hook"] {
        let (_, record) = wait_for(90, &format!("{sink}'s redirect logged as failed"), || {
            serve.find_since(0, |r: &Value| {
                r["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("notification failed, given up"))
                    && r["sink"] == sink
            })
        });
        let message = record["message"].as_str().unwrap();
        assert!(
            message.contains(&format!("answered 302 Found and redirects to {target}")),
            "{record}"
        );
        assert_eq!(record["tries"], 1, "{record}");
        let metrics = crate::support::plain_http::get(
            crate::support::plain_http::listen_addr(&serve),
            "/metrics",
        )
        .body;
        let failed = format!("kedge_notifications_total{{sink=\"{sink}\",result=\"failure\"}} 1");
        assert!(
            metrics.lines().any(|l| l == failed),
            "{failed} in:\n{metrics}"
        );
    }
    assert!(elsewhere.requests().is_empty(), "a redirect was followed");
    assert!(!serve.log().contains(GOTIFY_TOKEN), "the token in the log");
}

/// `tls=opportunistic` with a password against a server that offers no
/// STARTTLS: no AUTH, no message, a clear error. Without a password it
/// still sends in clear; with STARTTLS offered it uses it and signs in.
#[test]
fn smtp_opportunistic_tls_never_sends_the_password_without_starttls() {
    let plain = SmtpServer::start_without_starttls("i22nuser", SMTP_PASSWORD);
    let tls = SmtpServer::start("i22nuser", SMTP_PASSWORD);
    let k = Kedge::new();
    let password = secret_file(&k, "smtp-password", SMTP_PASSWORD);
    let sink = |name: &str, url: String, extra: &str| {
        format!(
            "  - name: {name}\n    type: email\n    smtp: {url}\n{extra}    from: kedge@i22n.test\n    to: [ops@i22n.test]\n"
        )
    };
    let with_password = format!("    password_file: {password}\n");
    write_config(
        &k,
        &format!(
            "notifications:\n{}{}{}",
            sink(
                "clear",
                format!("smtp://i22nuser@127.0.0.1:{}?tls=opportunistic", plain.port),
                &with_password
            ),
            sink(
                "relay",
                format!("smtp://127.0.0.1:{}?tls=opportunistic", plain.port),
                ""
            ),
            sink(
                "upgraded",
                format!("smtp://i22nuser@127.0.0.1:{}?tls=opportunistic", tls.port),
                &format!("{with_password}    ca_file: {}\n", tls.ca.display())
            ),
        ),
    );

    let refused = k.run(["notify", "test", "clear"]);
    refused.code(1).stderr_has(
        "notification sink 'clear': cannot send the email: the mail server offers no STARTTLS, and a password is never sent without TLS",
    );
    assert!(!refused.stderr.contains(SMTP_PASSWORD), "{refused:?}");
    assert_eq!(plain.auth_attempts(), Vec::<Value>::new(), "AUTH in clear");
    assert_eq!(plain.messages(), Vec::<Value>::new(), "sent without TLS");

    // No password, nothing secret: a relay without STARTTLS still gets it.
    k.run(["notify", "test", "relay"])
        .success()
        .stdout_has("relay: 250 2.0.0 message recorded");
    let sent = plain.messages();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(
        (&sent[0]["tls"], &sent[0]["authenticated"]),
        (&Value::Bool(false), &Value::Bool(false))
    );
    assert!(plain.auth_attempts().is_empty());

    // STARTTLS offered: taken, then AUTH over it.
    k.run(["notify", "test", "upgraded"])
        .success()
        .stdout_has("upgraded: 250 2.0.0 message recorded");
    let sent = tls.messages();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(
        (&sent[0]["tls"], &sent[0]["authenticated"]),
        (&Value::Bool(true), &Value::Bool(true))
    );
}
