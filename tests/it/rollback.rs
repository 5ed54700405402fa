//! History, `kedge sync` and `kedge rollback` end to end.

use crate::support::docker::{IMAGE_1, IMAGE_2, docker_ok};
use crate::support::git::git;
use crate::support::*;

fn web(image: &str) -> String {
    format!(
        "services:\n  web:\n    image: {image}\n    command: [sleep, '3600']\n    stop_signal: SIGKILL\n    env_file: app.env\n"
    )
}

/// `web` on image 1 with `GREETING=one` from its env_file, plus `extra` files.
fn web_stack(prefix: &str, extra: &[(&str, &str)]) -> (String, GitRemote, Kedge, ComposeProject) {
    let compose = web(IMAGE_1);
    let mut files = vec![
        ("compose.yaml", compose.as_str()),
        ("app.env", "GREETING=one\n"),
    ];
    files.extend_from_slice(extra);
    let Stack {
        name,
        remote,
        kedge,
        project,
    } = Stack::new(prefix, &files);
    (name, remote, kedge, project)
}

fn web_container(project: &ComposeProject) -> Option<crate::support::docker::Container> {
    project.running().into_iter().find(|c| c.service() == "web")
}

fn env_of(id: &str) -> String {
    docker_ok(&[
        "inspect",
        "--format",
        "{{range .Config.Env}}{{println .}}{{end}}",
        id,
    ])
}

#[test]
fn rollback_restores_the_old_tree_pins_it_and_a_new_commit_releases_it() {
    let (name, remote, k, project) = web_stack("rb", &[]);
    let c1 = remote.remote_head();
    let serve = k.serve_debug(&["serve", "--poll-interval", "300ms"]);
    wait_for(60, "c1 deployed", || web_container(&project));

    remote.write("compose.yaml", &web(IMAGE_2));
    remote.write("app.env", "GREETING=two\n");
    let c2 = remote.commit("two");
    let two = wait_for(30, "c2 deployed", || {
        web_container(&project).filter(|c| c.label("io.kedge.commit") == Some(c2.as_str()))
    });
    assert!(env_of(&two.id).contains("GREETING=two"));

    // Rollback to a 7-character prefix, while serve runs in auto mode.
    k.run(["rollback", "--repo", &name, &c1[..7]])
        .success()
        .stdout_has(&format!("back to {}", &c1[..7]));
    let back = web_container(&project).expect("web after rollback");
    assert_eq!(back.image_id, image_id(IMAGE_1));
    assert!(
        env_of(&back.id).contains("GREETING=one"),
        "the env_file's values come back too"
    );

    let history = k.run(["history", "--repo", &name]);
    history.success();
    let lines: Vec<&str> = history.stdout.lines().collect();
    // Regression: the text showed only the first three columns, and
    // DEPLOYED AT was the start time.
    assert!(
        lines[0].starts_with("COMMIT    STATUS        DEPLOYED AT           TRIGGER"),
        "{}",
        history.stdout
    );
    assert!(lines[0].trim_end().ends_with("MESSAGE"), "{}", lines[0]);
    assert!(
        lines[1].starts_with(&format!("{}   rolled_back   ", &c1[..7])),
        "{}",
        history.stdout
    );
    let json = k
        .run(["history", "--repo", &name, "-o", "json", "--limit", "1"])
        .json();
    assert_eq!(json.as_array().unwrap().len(), 1);
    assert_eq!(json[0]["commit"], c1.as_str());
    assert_eq!(json[0]["status"], "rolled_back");
    assert_eq!(json[0]["trigger"], "rollback");
    assert_eq!(json[0]["deployed_at"], json[0]["finished_at"]);
    let finished = chrono::DateTime::parse_from_rfc3339(json[0]["finished_at"].as_str().unwrap())
        .unwrap()
        .with_timezone(&chrono::Local)
        .format("%Y-%m-%d %H:%M:%S")
        .to_string();
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(row[2..4].join(" "), finished, "{}", lines[1]);
    assert_eq!(row[4], "rollback", "{}", lines[1]);
    assert_eq!(row[5], "first", "the commit message: {}", lines[1]);

    let status = k.run(["status", "--repo", &name, "-o", "json"]).json();
    assert_eq!(status[0]["sync_state"], "pinned");
    assert_eq!(status[0]["pinned_commit"], c1.as_str());

    // Several passes later (most of them timed by the poll interval, each
    // of those a check of the remote) auto mode has not undone it.
    serve.wait_passes(&name, serve.mark(), 4, 30);
    let still = web_container(&project).expect("web");
    assert_eq!(still.id, back.id);
    assert_eq!(still.label("io.kedge.commit"), Some(c1.as_str()));

    // A new commit on the branch releases the pin.
    remote.write("app.env", "GREETING=three\n");
    let c3 = remote.commit("three");
    let three = wait_for(30, "c3 deployed", || {
        web_container(&project).filter(|c| c.label("io.kedge.commit") == Some(c3.as_str()))
    });
    assert!(env_of(&three.id).contains("GREETING=three"));
    let status = k.run(["status", "--repo", &name, "-o", "json"]).json();
    assert_eq!(status[0]["pinned_commit"], serde_json::Value::Null);
    drop(serve);
}

#[test]
fn rollback_to_an_unknown_or_ambiguous_commit_changes_nothing() {
    let (name, remote, k, project) = web_stack("rbx", &[]);
    k.run(["sync", "--repo", &name]).success();
    // Two commits of the same tree whose hashes share a 4-character prefix,
    // found among sibling commits, then both deployed.
    let base = remote.remote_head();
    let tree = git(&remote.work, &["rev-parse", "HEAD^{tree}"]);
    let mut seen: std::collections::HashMap<String, String> = Default::default();
    let (a, b) = (0..5000)
        .find_map(|i| {
            let c = git(
                &remote.work,
                &[
                    "commit-tree",
                    &tree,
                    "-p",
                    &base,
                    "-m",
                    &format!("sibling {i}"),
                ],
            );
            seen.insert(c[..4].to_string(), c.clone())
                .map(|other| (other, c))
        })
        .expect("a shared prefix");
    for c in [&a, &b] {
        git(
            &remote.work,
            &[
                "push",
                "-q",
                "-f",
                "origin",
                &format!("{c}:refs/heads/main"),
            ],
        );
        k.run(["sync", "--repo", &name]).success();
    }
    let deployed = [base, a.clone(), b];
    let ambiguous = a[..4].to_string();
    let before_db = k.db_snapshot();
    let before = web_container(&project).unwrap();

    let unknown = k.run(["rollback", "--repo", &name, "0000000"]);
    unknown
        .code(1)
        .stderr_has("no deployed commit")
        .stderr_has(&deployed[0][..7]);
    let amb = k.run(["rollback", "--repo", &name, &ambiguous]);
    amb.code(1).stderr_has("matches several deployed commits");
    k.run(["rollback", "--repo", &name, "abc"])
        .code(1)
        .stderr_has("at least 4");

    assert_eq!(
        k.db_snapshot(),
        before_db,
        "a refused rollback changed the database"
    );
    assert_eq!(web_container(&project).unwrap().id, before.id);
}

#[test]
fn sync_waits_for_an_apply_of_serve_and_never_interleaves() {
    let (s, _serve, c2) = apply_in_flight("lock");
    let (name, k) = (s.name.clone(), &s.kedge);
    let sync = k.run(["sync", "--repo", &name]);
    sync.success().stderr_has("waiting for another apply");

    let h = k.run(["history", "--repo", &name, "-o", "json"]).json();
    let rows = h.as_array().unwrap();
    let by_serve = rows
        .iter()
        .find(|d| d["trigger"] != "sync" && d["commit"] == c2.as_str())
        .unwrap();
    let by_sync = rows.iter().find(|d| d["trigger"] == "sync").unwrap();
    assert_eq!(by_serve["status"], "success");
    assert_eq!(by_sync["status"], "success");
    let serve_finished = by_serve["finished_at"].as_str().unwrap();
    let sync_started = by_sync["started_at"].as_str().unwrap();
    assert!(
        sync_started >= serve_finished,
        "sync started {sync_started} before serve finished {serve_finished}"
    );
}

#[test]
fn sync_dry_run_changes_nothing_and_sync_deploys_in_manual_mode() {
    let (name, remote, k, project) = web_stack(
        "dry",
        &[("kedge.yaml", "reconciliation:\n  mode: manual\n")],
    );
    let c1 = remote.remote_head();

    k.run(["sync", "--repo", &name, "--dry-run"])
        .success()
        .stdout_has(&format!("Would deploy {}", &c1[..7]))
        .stdout_has("web");
    assert!(project.containers().is_empty(), "dry-run deployed");
    let h = k.run(["history", "--repo", &name, "-o", "json"]).json();
    assert_eq!(h, serde_json::json!([]));

    k.run(["sync", "--repo", &name])
        .success()
        .stdout_has(&format!("Deployed {}", &c1[..7]));
    assert_eq!(project.running().len(), 1);
    let h = k.run(["history", "--repo", &name, "-o", "json"]).json();
    assert_eq!(h[0]["trigger"], "sync");
    assert_eq!(h[0]["status"], "success");
    assert_eq!(h[0]["message"], "first");
    assert_eq!(h[0]["services_changed"], serde_json::json!(["web"]));
    assert!(h[0]["duration_ms"].as_i64().is_some());
}

#[test]
fn rollback_to_a_commit_gone_from_the_repository_uses_the_stored_snapshot() {
    let (name, remote, k, project) = web_stack("snap", &[]);
    let c1 = remote.remote_head();
    k.run(["sync", "--repo", &name]).success();

    // History is rewritten without c1, and the clone holding it is lost.
    remote.write("compose.yaml", &web(IMAGE_2));
    remote.write("app.env", "GREETING=two\n");
    let c2 = remote.amend_and_force_push("two, rewritten");
    k.run(["sync", "--repo", &name]).success();
    assert_eq!(
        web_container(&project).unwrap().label("io.kedge.commit"),
        Some(c2.as_str())
    );
    std::fs::remove_dir_all(k.data_dir().join("repos").join(&name)).unwrap();

    k.run(["rollback", "--repo", &name, &c1[..8]])
        .success()
        .stdout_has("gone from the repository")
        .stdout_has("snapshot");
    let back = web_container(&project).expect("web after rollback");
    assert_eq!(back.image_id, image_id(IMAGE_1));
    assert!(env_of(&back.id).contains("GREETING=one"));
    let h = k.run(["history", "--repo", &name, "-o", "json"]).json();
    assert_eq!(h[0]["status"], "rolled_back");
    assert!(
        h[0]["message"].as_str().unwrap().contains("snapshot"),
        "{h}"
    );
}

/// Regression: after a rollback, once the branch had moved, `diff` said "In
/// sync"; and without `serve`, `status` kept a stale remote head and said
/// `synced` while `diff` had just printed a pending commit. Both read the
/// branch head the same way and say the same about the pin.
#[test]
fn after_a_rollback_diff_and_status_agree_once_the_branch_moves() {
    let (name, remote, k, _project) = web_stack("pinmoved", &[]);
    let c1 = remote.remote_head();
    k.run(["sync", "--repo", &name]).success();
    remote.write("compose.yaml", &web(IMAGE_2));
    let c2 = remote.commit("two");
    k.run(["sync", "--repo", &name]).success();
    k.run(["rollback", "--repo", &name, &c1[..7]]).success();

    // The pin holds while the branch head is the one it was taken at.
    k.run(["diff", "--repo", &name, "--exit-code"])
        .success()
        .stdout_has(&format!("In sync: pinned to {} by a rollback", &c1[..7]));
    let status = k.run(["status", "--repo", &name, "-o", "json"]).json();
    assert_eq!(status[0]["sync_state"], "pinned", "{status}");
    assert_eq!(status[0]["remote_head"], c2.as_str(), "{status}");

    // The branch moves: the next pass would release the pin and deploy it.
    remote.write("app.env", "GREETING=three\n");
    let c3 = remote.commit("three");
    let said = format!(
        "pinned to {}; branch head {} is newer: the next pass releases the pin",
        &c1[..7],
        &c3[..7]
    );
    let diff = k.run(["diff", "--repo", &name, "--exit-code"]);
    diff.code(1)
        .stdout_has(&said)
        .stdout_has(&format!("Pending commit {}", &c3[..7]))
        .stdout_has("Service: web\n  Status: Will be updated");
    let status = k.run(["status", "--repo", &name, "-o", "json"]).json();
    assert_eq!(status[0]["remote_head"], c3.as_str(), "{status}");
    assert_ne!(status[0]["sync_state"], "synced", "{status}");
    k.run(["status", "--repo", &name])
        .success()
        .stdout_has(&said);
    let diff_json = k.run(["diff", "--repo", &name, "-o", "json"]).json();
    assert_eq!(diff_json["remote_head"], status[0]["remote_head"]);
    assert_eq!(diff_json["pin"], status[0]["pin"]);
}
