//! `kedge notify list` and `kedge notify test` against receivers on
//! loopback, and config errors that name the sink, the key and the line.

use super::{DISCORD_TOKEN, GOTIFY_TOKEN, SLACK_TOKEN, row, write_config};
use crate::support::receiver::{Mode, Receiver};
use crate::support::*;

#[test]
fn notify_test_and_list_speak_plainly_and_config_errors_name_sink_key_and_line() {
    let good = Receiver::start(Mode::Status(204));
    let bad = Receiver::start(Mode::Status(500));
    let k = Kedge::new().env(
        "K14_SLACK_URL",
        &good.url(&format!("/services/{SLACK_TOKEN}")),
    );
    let closed = crate::support::plain_http::free_port();
    write_config(
        &k,
        &format!(
            "notifications:\n  - name: ok\n    type: slack\n    url: ${{K14_SLACK_URL}}\n  - name: broken\n    type: discord\n    url: {}\n    repeat_interval: 10m\n    repos: [shop-*]\n  - name: gone\n    type: teams\n    url: http://127.0.0.1:{closed}/{DISCORD_TOKEN}\n",
            bad.url(&format!("/api/webhooks/{DISCORD_TOKEN}")),
        ),
    );
    let list = k.run(["notify", "list"]);
    list.success();
    let good_target = format!("http://127.0.0.1:{}/…", good.port);
    assert_eq!(
        row(&list.stdout, "ok"),
        ["ok", "slack", &good_target, "default", "*", "1h"]
    );
    assert_eq!(row(&list.stdout, "broken")[4..], ["shop-*", "10m"]);
    let json = k.run(["notify", "list", "-o", "json"]).json();
    assert_eq!(json[1]["name"], "broken");
    assert_eq!(json[1]["type"], "discord");
    assert_eq!(json[1]["repeat_interval_s"], 600);

    k.run(["notify", "test", "ok"])
        .success()
        .stdout_is("ok: 204 No Content\n");
    let got = good.wait_delivered(5, "the test message", |_| true);
    assert!(
        got.json()["text"]
            .as_str()
            .unwrap()
            .contains("test notification for sink `ok`")
    );
    let refused = k.run(["notify", "test", "broken"]);
    refused.code(1).stderr_has(
        "notification sink 'broken': the receiver answered 500 Internal Server Error: recorded",
    );
    assert_eq!(bad.requests().len(), 1, "a test is one attempt");
    let unreachable = k.run(["notify", "test", "gone"]);
    unreachable
        .code(1)
        .stderr_has("notification sink 'gone': cannot reach the receiver");
    k.run(["notify", "test", "nope"])
        .code(1)
        .stderr_has("no notification sink named 'nope'");
    for out in [&list, &refused, &unreachable] {
        for secret in [SLACK_TOKEN, DISCORD_TOKEN] {
            assert!(
                !out.stdout.contains(secret) && !out.stderr.contains(secret),
                "{secret} shown: {out:?}"
            );
        }
    }

    // A config error names the sink, the key and the line, not the value.
    write_config(
        &k,
        &format!(
            "notifications:\n  - name: ok\n    type: slack\n    url: ${{K14_SLACK_URL}}\n  - name: ops\n    type: gotify\n    url: ftp://x/{GOTIFY_TOKEN}\n    token: t\n"
        ),
    );
    let err = k.run(["notify", "list"]);
    err.code(1)
        .stderr_has("line 7: notification `ops`, key `url`: expected an http:// or https:// URL");
    assert!(!err.stderr.contains(GOTIFY_TOKEN), "{}", err.stderr);
}
