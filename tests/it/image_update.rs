//! Image updates deployed without a commit (`apply: deploy`) against
//! Debian's `docker-registry` with basic auth: a newer tag and a re-pushed
//! digest deployed as one `image_update` deployment, a candidate that fails
//! its gate rolled back and never proposed again, a rollback returning to
//! the previous digest, and a window that holds an update back.

use crate::support::docker::{IMAGE_1, IMAGE_2};
use crate::support::registry::{UpdateLab, broken_image, row};
use crate::support::stack::Stack;

fn check(s: &Stack) -> serde_json::Value {
    s.kedge
        .run(["updates", "check", "--repo", &s.name, "-o", "json"])
        .json()
}

/// A window on tomorrow's weekday: never now.
fn window_not_now() -> String {
    let days = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 86_400;
    // 1970-01-01 was a Thursday.
    let names = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    format!("{} 00:00-23:59 UTC", names[((days + 1) % 7) as usize])
}

#[test]
fn deploy_runs_the_candidate_without_a_commit_and_a_rollback_returns_to_the_old_digest() {
    let lab = UpdateLab::start("iu");
    let app = lab.push(IMAGE_1, "app:1.4.2");
    let cache = lab.push(IMAGE_1, "cache:7");
    let broken_local = broken_image(&lab.ns);
    lab.untag_after(broken_local.clone());
    let compose = format!(
        "services:\n  web:\n    image: {app}\n    stop_signal: SIGKILL\n  cache:\n    image: {cache}\n    command: [\"sleep\", \"3600\"]\n    stop_signal: SIGKILL\n"
    );
    let s = Stack::with_kedge(
        "iu",
        &[
            ("compose.yaml", &compose),
            (
                "kedge.yaml",
                "updates:\n  apply: deploy\n  services:\n    web: {policy: patch}\n    cache: {policy: digest}\ndeploy:\n  stable_for: 2s\n  timeout: 30s\n",
            ),
        ],
        lab.kedge(),
    );
    s.kedge.run(["sync", "--repo", &s.name]).success();
    let commit = s.remote.remote_head();
    let rows = check(&s);
    let old_digest = row(&rows, "cache")["current"].as_str().unwrap().to_string();
    assert!(old_digest.starts_with("sha256:"), "{rows}");

    // A window that is not now holds the same stack's candidates back.
    let held = Stack::with_kedge(
        "iuw",
        &[
            (
                "compose.yaml",
                &format!("services:\n  web:\n    image: {app}\n    stop_signal: SIGKILL\n"),
            ),
            (
                "kedge.yaml",
                &format!(
                    "updates:\n  apply: deploy\n  window: \"{}\"\n  services:\n    web: {{policy: patch}}\n",
                    window_not_now()
                ),
            ),
        ],
        lab.kedge(),
    );
    held.kedge.run(["sync", "--repo", &held.name]).success();

    let newer = lab.push(IMAGE_1, "app:1.4.3");
    lab.push(IMAGE_2, "cache:7");

    let rows = check(&held);
    assert_eq!(row(&rows, "web")["state"], "waiting", "{rows}");
    assert!(
        row(&rows, "web")["detail"]
            .as_str()
            .unwrap()
            .starts_with("outside the window"),
        "{rows}"
    );
    assert_eq!(held.running()["web"].image, app, "nothing deployed");

    // Both candidates in one deployment, trigger image_update, no commit.
    let rows = check(&s);
    assert_eq!(row(&rows, "web")["state"], "applied", "{rows}");
    assert_eq!(row(&rows, "cache")["state"], "applied", "{rows}");
    assert_eq!(s.remote.remote_head(), commit, "nothing committed");
    let h = s.history();
    assert_eq!(h[0]["trigger"], "image_update", "{h}");
    assert_eq!(h[0]["status"], "success", "{h}");
    assert_eq!(h[0]["commit"], commit.as_str(), "{h}");
    let message = h[0]["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("web {app} → {newer}")),
        "{message}"
    );
    assert!(
        message.contains(&format!("cache {cache}@{old_digest}")),
        "old → new digest: {message}"
    );
    let running = s.running();
    assert_eq!(running["web"].image, newer);
    let cache_now = running["cache"].image.clone();
    assert!(
        cache_now.starts_with(&format!("{cache}@sha256:")),
        "{cache_now}"
    );
    assert!(!cache_now.contains(&old_digest), "{cache_now}");
    s.kedge
        .run(["status", "--repo", &s.name])
        .success()
        .stdout_has(&format!("Ahead:       web runs {newer} (Git names {app})"));
    let applied = s.kedge.run(["events", "-o", "json"]).json();
    let applied: Vec<_> = applied
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "update_applied")
        .collect();
    assert_eq!(applied.len(), 2, "{applied:?}");
    // Nothing newer: the next check finds what runs current.
    let rows = check(&s);
    assert_eq!(row(&rows, "web")["state"], "current", "{rows}");
    assert_eq!(row(&rows, "cache")["state"], "current", "{rows}");

    // 1.4.4 crash-loops: its gate fails, 1.4.3 comes back, and 1.4.4 is
    // never proposed again.
    lab.push(&broken_local, "app:1.4.4");
    let rows = check(&s);
    assert_eq!(row(&rows, "web")["state"], "failed", "{rows}");
    assert_eq!(s.running()["web"].image, newer, "1.4.3 is back");
    let h = s.history();
    assert!(
        h.as_array()
            .unwrap()
            .iter()
            .any(|d| d["trigger"] == "image_update" && d["status"] == "failed"),
        "{h}"
    );
    assert_eq!(h[0]["trigger"], "auto_rollback", "{h}");
    let rows = check(&s);
    assert_eq!(
        row(&rows, "web")["state"],
        "current",
        "1.4.4 not again: {rows}"
    );
    let failed = s.kedge.run(["events", "-o", "json"]).json();
    assert!(
        failed
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "update_failed" && e["service"] == "web"),
        "{failed}"
    );

    // A rollback returns to what ran before the update: 1.4.2 and the
    // old digest of cache:7, and holds there.
    s.kedge
        .run(["rollback", "--repo", &s.name, &commit])
        .success();
    let running = s.running();
    assert_eq!(running["web"].image, app);
    assert!(
        running["cache"].image.contains(&old_digest),
        "the previous digest: {}",
        running["cache"].image
    );
    let rows = check(&s);
    assert!(
        row(&rows, "web")["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("pinned"),
        "{rows}"
    );
    assert_eq!(s.running()["web"].image, app, "held while pinned");
}
