//! Sync windows (`reconciliation.windows`, fleet.md §5) against `serve`: a
//! deny window covering now holds a new commit back with the next opening
//! in `status`, drift is still healed, `kedge sync` is refused and
//! `kedge sync --force` deploys; a commit that waits deploys by itself
//! when the window ends.

use chrono::{Datelike, Timelike};

use crate::support::docker::{IMAGE_1, docker_ok};
use crate::support::stack::Stack;
use crate::support::wait_for;

fn compose(round: u32) -> String {
    format!(
        "services:\n  app:\n    image: {IMAGE_1}\n    command: [sleep, '3600']\n    stop_signal: SIGKILL\n    environment:\n      ROUND: '{round}'\n"
    )
}

/// A deny window in UTC from this minute to a minute boundary 70 to 130 s
/// away, and when it ends (milliseconds since the epoch).
fn deny_until_soon() -> (String, i64) {
    let now = chrono::Utc::now();
    let start = now.with_second(0).unwrap().with_nanosecond(0).unwrap();
    let left = 60 - i64::from(now.second());
    let minutes = if left >= 70 { 1 } else { 2 };
    let end = start + chrono::Duration::minutes(minutes);
    let day = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
        [start.weekday().num_days_from_monday() as usize];
    (
        format!(
            "{day} {}-{} UTC",
            start.format("%H:%M"),
            end.format("%H:%M")
        ),
        end.timestamp_millis(),
    )
}

#[test]
fn a_deny_window_holds_a_commit_heals_drift_gives_way_to_force_and_opens_at_its_end() {
    let s = Stack::new("window", &[("compose.yaml", &compose(0))]);
    s.kedge.run(["sync", "--repo", &s.name]).success();
    let first = s.remote.remote_head();
    let token = s.kedge.token("window-deployer", "deploy");
    let api = s.kedge.serve_api(&["--poll-interval", "1s"], &[]);

    let (deny, ends) = deny_until_soon();
    s.remote.write(
        "kedge.yaml",
        &format!("reconciliation:\n  windows:\n    - deny: \"{deny}\"\n"),
    );
    s.remote.write("compose.yaml", &compose(1));
    let held = s.remote.commit("held by the window");

    // Held back, and `status` says until when.
    let status = wait_for(30, "the commit waiting for its window", || {
        let st = s.status();
        (st["sync_state"] == "waiting_for_window").then_some(st)
    });
    assert_eq!(status["window"]["commit"], held.as_str(), "{status}");
    let opens =
        chrono::DateTime::parse_from_rfc3339(status["window"]["opens_at"].as_str().unwrap())
            .unwrap()
            .timestamp_millis();
    assert_eq!(opens, ends, "{status}");
    s.kedge
        .run(["status", "--repo", &s.name])
        .success()
        .stdout_has("Sync state:  waiting_for_window")
        .stdout_has(&format!(
            "Window:      {} waits for the sync window (opens ",
            &held[..7]
        ));
    assert_eq!(s.running_commit("app").as_deref(), Some(first.as_str()));
    let waits = s.events_of("window_closed_wait");
    assert_eq!(waits.len(), 1, "{waits:?}");
    assert_eq!(waits[0]["commit"], held.as_str());

    // Drift is still healed while the window is closed.
    let app = s.running()["app"].id.clone();
    docker_ok(&["stop", "-t", "0", &app]);
    wait_for(30, "the stopped container healed", || {
        s.running().contains_key("app").then_some(())
    });
    assert!(!s.events_of("drift_healed").is_empty());

    // `kedge sync` (and the API's) respects the window; `--force` deploys now.
    let refused = api.post(&format!("/api/v1/repos/{}/sync", s.name), &token, "");
    assert_eq!(refused.status, 409, "{}", refused.body);
    assert!(
        refused.json()["error"]
            .as_str()
            .unwrap()
            .contains("waits for its sync window"),
        "{}",
        refused.body
    );
    s.kedge
        .run(["sync", "--repo", &s.name])
        .code(1)
        .stderr_has("waits for its sync window")
        .stderr_has("`kedge sync --force` deploys it now");
    assert_eq!(s.running_commit("app").as_deref(), Some(first.as_str()));

    // The dashboard's Sync says what waits and offers to sync anyway; its
    // plain Sync is refused as `kedge sync` is.
    let page = format!("/repos/{}/sync", s.name);
    let session = api.dashboard_session(&token);
    let confirm = api.page(&page, &session);
    assert_eq!(confirm.status, 200, "{}", confirm.body);
    for shown in [
        &format!("{} waits for the sync window", &held[..7]),
        "Sync anyway",
        r#"name="force" value="true""#,
    ] {
        assert!(confirm.body.contains(shown), "{shown}: {}", confirm.body);
    }
    let csrf = confirm
        .body
        .split(r#"name="csrf" value=""#)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the form's CSRF token")
        .to_string();
    let plain = api.form(&page, &session, &format!("csrf={csrf}"));
    assert_eq!(plain.status, 409, "{}", plain.body);
    assert!(
        plain.body.contains("waits for its sync window"),
        "{}",
        plain.body
    );
    assert_eq!(s.running_commit("app").as_deref(), Some(first.as_str()));
    let anyway = api.form(&page, &session, &format!("csrf={csrf}&force=true"));
    assert_eq!(anyway.status, 303, "{}", anyway.body);
    wait_for(30, "the held commit deployed from the dashboard", || {
        let h = s.history();
        (h[0]["commit"] == held.as_str() && h[0]["status"] == "success").then_some(())
    });
    assert_eq!(s.running_commit("app").as_deref(), Some(held.as_str()));
    let opened = s.events_of("window_opened");
    assert_eq!(opened.len(), 1, "{opened:?}");
    assert_eq!(opened[0]["fields"]["waited"], held.as_str(), "{opened:?}");

    // `kedge sync --force` deploys the next one.
    s.remote.write("compose.yaml", &compose(3));
    let forced = s.remote.commit("forced by the CLI");
    wait_for(30, "the second commit waiting", || {
        (s.status()["window"]["commit"] == forced.as_str()).then_some(())
    });
    s.kedge
        .run(["sync", "--repo", &s.name, "--force"])
        .success();
    assert_eq!(s.running_commit("app").as_deref(), Some(forced.as_str()));
    assert_eq!(s.history()[0]["trigger"], "sync");
    let opened = s.events_of("window_opened");
    assert_eq!(opened.len(), 2, "{opened:?}");
    assert_eq!(opened[1]["fields"]["waited"], forced.as_str(), "{opened:?}");
    assert_ne!(s.status()["sync_state"], "waiting_for_window");

    // The next commit waits too, and deploys by itself once the window
    // ends.
    s.remote.write("compose.yaml", &compose(2));
    let next = s.remote.commit("deployed when the window ends");
    wait_for(30, "the next commit waiting", || {
        (s.status()["window"]["commit"] == next.as_str()).then_some(())
    });
    wait_for(150, "the next commit deployed at the window's end", || {
        let h = s.history();
        (h[0]["commit"] == next.as_str() && h[0]["status"] == "success").then_some(())
    });
    let opened = s.events_of("window_opened");
    assert_eq!(opened.len(), 3, "{opened:?}");
    assert_eq!(
        opened[2]["commit"],
        next.as_str(),
        "oldest first: {opened:?}"
    );
    assert!(
        opened[2]["message"]
            .as_str()
            .unwrap()
            .starts_with("the sync window is open"),
        "{opened:?}"
    );
    assert!(
        chrono::Utc::now().timestamp_millis() >= ends,
        "not before the window ended"
    );
    assert_eq!(s.running_commit("app").as_deref(), Some(next.as_str()));
}
