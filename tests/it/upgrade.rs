//! Upgrade (fleet.md §1): a data dir made by the release before stacks is
//! opened by this one. Its repository becomes its root stack: history, pin,
//! events and tokens kept, containers not recreated.

use std::path::PathBuf;

use crate::support::docker::IMAGE_1;
use crate::support::*;

/// The previous release's binary, which `scripts/previous-release.sh`
/// (called by `scripts/provision.sh`) builds.
fn previous_release() -> PathBuf {
    let path = std::env::var_os("KEDGE_TEST_PREVIOUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/kedge-test/previous/kedge"));
    assert!(
        path.exists(),
        "no previous release at {}: run scripts/provision.sh",
        path.display()
    );
    path
}

fn web(greeting: &str) -> String {
    format!(
        "services:\n  web:\n    image: {IMAGE_1}\n    command: [sleep, '3600']\n    stop_signal: SIGKILL\n    network_mode: none\n    environment: [GREETING={greeting}]\n"
    )
}

/// The running web container's id and the commit it runs.
fn running_web(project: &ComposeProject) -> Option<(String, String)> {
    let web = project
        .running()
        .into_iter()
        .find(|c| c.service() == "web")?;
    let commit = web.label("io.kedge.commit").unwrap_or_default().to_string();
    Some((web.id, commit))
}

#[track_caller]
fn web_of(project: &ComposeProject) -> (String, String) {
    running_web(project).expect("web runs")
}

#[test]
fn a_data_dir_of_the_previous_release_keeps_history_pin_tokens_and_containers() {
    let old = Kedge::new().binary(Some(previous_release()));
    let version = old.run(["--version"]);
    version.success();
    assert!(version.stdout.contains("2d6fd08"), "{version:?}");
    let Stack {
        name,
        remote,
        kedge: old,
        project,
    } = Stack::with_kedge("upg", &[("compose.yaml", &web("one"))], old);

    // The previous release deploys two commits, rolls back to the first
    // (a pin) and makes a token.
    let c1 = remote.remote_head();
    old.run(["sync", "--repo", &name]).success();
    remote.write("compose.yaml", &web("two"));
    let c2 = remote.commit("two");
    old.run(["sync", "--repo", &name]).success();
    old.run(["rollback", "--repo", &name, &c1[..7]]).success();
    let token = old.token("upgrade-reader", "read");
    let (id_before, running) = web_of(&project);
    assert_eq!(running, c1);
    let history_before = old.run(["history", "--repo", &name, "-o", "json"]).json();
    assert_eq!(history_before.as_array().map(Vec::len), Some(3));
    let events_before = old.run(["events", "--repo", &name, "-o", "json"]).json();
    let events_before = events_before.as_array().unwrap().len();
    assert!(events_before > 0);

    // This release opens the same data dir.
    let new = old.binary(None);
    let status = new.run(["status", "--repo", &name, "-o", "json"]).json();
    assert_eq!(status[0]["sync_state"], "pinned", "{status}");
    assert_eq!(status[0]["pinned_commit"], c1.as_str(), "{status}");
    let history_after = new.run(["history", "--repo", &name, "-o", "json"]).json();
    for (before, after) in history_before
        .as_array()
        .unwrap()
        .iter()
        .zip(history_after.as_array().unwrap())
    {
        for key in ["id", "commit", "status", "trigger", "finished_at"] {
            assert_eq!(before[key], after[key], "{key}: {history_after}");
        }
    }
    assert_eq!(history_after.as_array().map(Vec::len), Some(3));
    assert_eq!(history_after[1]["commit"], c2.as_str());
    let events_after = new.run(["events", "--repo", &name, "-o", "json"]).json();
    assert!(
        events_after.as_array().unwrap().len() >= events_before,
        "{events_after}"
    );
    // The repository is its root stack, addressed by its own name.
    new.run(["stack", "list", "--repo", &name])
        .success()
        .stdout_has(&name);
    new.run(["status", "--repo", &format!("{name}/{name}")])
        .success();

    // serve looks several times: nothing is redeployed and the pin holds
    // (the branch has not moved); the token made before opens the API.
    let api = new.serve_api(&["--poll-interval", "300ms"], &[]);
    let mut checked = status[0]["checked_at"].clone();
    for look in 0..3 {
        checked = wait_for(60, &format!("serve's check {look}"), || {
            let now = new.run(["status", "--repo", &name, "-o", "json"]).json();
            (now[0]["checked_at"] != checked).then(|| now[0]["checked_at"].clone())
        });
    }
    let answer = api.get(&format!("/api/v1/repos/{name}"), &token);
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.json()["pinned_commit"], c1.as_str(), "{answer:?}");
    drop(api);
    let (id_after, running) = web_of(&project);
    assert_eq!(id_after, id_before, "the container was recreated");
    assert_eq!(running, c1);
    let history = new.run(["history", "--repo", &name, "-o", "json"]).json();
    assert_eq!(history.as_array().map(Vec::len), Some(3), "{history}");
    // The branch moves: the pin is released as before, and this release
    // deploys the new head over the old containers.
    remote.write("compose.yaml", &web("three"));
    let c3 = remote.commit("three");
    let _serve = new.serve("300ms");
    // Regression: asked while `up` recreated it, web was briefly not
    // running, and the wait gave up instead of looking again.
    wait_for(60, "the new head deployed", || {
        running_web(&project).filter(|(_, running)| *running == c3)
    });
    // Running comes before the gate's verdict is recorded.
    wait_for(60, "the new head synced", || {
        let status = new.run(["status", "--repo", &name, "-o", "json"]).json();
        (status[0]["sync_state"] == "synced").then_some(())
    });
}
