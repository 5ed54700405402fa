//! Image updates written back to Git (`apply: commit`) against Debian's
//! `docker-registry` with basic auth: `serve` commits the candidate (the
//! image line, or the `.env` variable it interpolates), deploys it behind
//! the gate, and reverts a commit whose gate fails; pins and `notify`
//! only report.

use crate::support::docker::IMAGE_1;
use crate::support::git::git;
use crate::support::registry::{UpdateLab, broken_image, row};
use crate::support::stack::Stack;
use crate::support::{unique_name, wait_for};

/// `git show --numstat` of the remote's `rev`: (added, removed, path) per file.
fn numstat(s: &Stack, rev: &str) -> Vec<(String, String, String)> {
    let bare = s.remote.bare.to_str().unwrap().to_string();
    git(
        &s.remote.work,
        &["--git-dir", &bare, "show", "--numstat", "--format=", rev],
    )
    .lines()
    .map(|l| {
        let f: Vec<&str> = l.split('\t').collect();
        (f[0].to_string(), f[1].to_string(), f[2].to_string())
    })
    .collect()
}

/// A field of the remote's commit `rev` (`%s`, `%an <%ae>`, `%P`…).
fn show(s: &Stack, rev: &str, format: &str) -> String {
    let bare = s.remote.bare.to_str().unwrap().to_string();
    git(
        &s.remote.work,
        &[
            "--git-dir",
            &bare,
            "show",
            "-s",
            &format!("--format={format}"),
            rev,
        ],
    )
}

fn file_at(s: &Stack, rev: &str, path: &str) -> String {
    let bare = s.remote.bare.to_str().unwrap().to_string();
    git(
        &s.remote.work,
        &["--git-dir", &bare, "show", &format!("{rev}:{path}")],
    )
}

#[test]
fn commit_writes_the_tag_back_and_the_ordinary_flow_deploys_it() {
    let lab = UpdateLab::start("wb");
    let app = lab.push(IMAGE_1, "app:1.4.2");
    let compose = format!(
        "# the shop\nservices:\n  web:\n    image: {app}   # bumped by Kedge\n    command: [\"sleep\", \"3600\"]\n    stop_signal: SIGKILL\n"
    );
    let s = Stack::with_kedge(
        "wb",
        &[
            ("compose.yaml", &compose),
            (
                "kedge.yaml",
                "updates:\n  apply: commit\n  git_author: Release Bot <bot@example.org>\n  services:\n    web: {policy: patch}\n",
            ),
        ],
        lab.kedge(),
    );
    s.kedge.run(["sync", "--repo", &s.name]).success();
    let first = s.remote.remote_head();
    let newer = lab.push(IMAGE_1, "app:1.4.3");

    // serve checks shortly after it starts: it commits 1.4.3 and, woken by
    // its own push (the poll is an hour), deploys the commit.
    let _serve = s
        .kedge
        .serve_with(&["serve", "--poll-interval", "1h", "--check-interval", "1h"]);
    let pushed = wait_for(90, "the write-back commit", || {
        let head = s.remote.remote_head();
        (head != first).then_some(head)
    });
    assert_eq!(show(&s, &pushed, "%s"), "kedge: update web to 1.4.3");
    assert_eq!(
        show(&s, &pushed, "%an <%ae>"),
        "Release Bot <bot@example.org>"
    );
    assert_eq!(show(&s, &pushed, "%P"), first, "one commit on the branch");
    assert_eq!(
        numstat(&s, &pushed),
        [("1".to_string(), "1".to_string(), "compose.yaml".to_string())],
        "exactly the image line"
    );
    assert_eq!(
        file_at(&s, &pushed, "compose.yaml"),
        compose.replace("app:1.4.2", "app:1.4.3").trim_end(),
        "comments and spacing kept"
    );
    wait_for(90, "the commit deployed", || {
        let h = s.history();
        let newest = h.get(0)?;
        (newest["commit"] == pushed.as_str() && newest["status"] == "success").then_some(())
    });
    let h = s.history();
    assert_eq!(h[0]["trigger"], "new_commit", "{h}");
    assert!(
        h[0]["message"]
            .as_str()
            .unwrap()
            .starts_with("kedge: update web to 1.4.3"),
        "{h}"
    );
    assert_eq!(s.running()["web"].image, newer);
    let applied = s.events_of("update_applied");
    assert_eq!(applied.len(), 1, "{applied:?}");
    assert_eq!(applied[0]["service"], "web");
    assert_eq!(applied[0]["commit"], pushed.as_str());

    // Rolled back by hand: the stack is pinned, and 1.4.4 waits for the
    // pin's release instead of being committed over the operator's word.
    s.kedge
        .run(["rollback", "--repo", &s.name, &first])
        .success();
    lab.push(IMAGE_1, "app:1.4.4");
    let rows = s
        .kedge
        .run(["updates", "check", "--repo", &s.name, "-o", "json"])
        .json();
    let web = row(&rows, "web");
    assert_eq!(web["candidate"], "1.4.4", "from what runs now: {rows}");
    assert_eq!(web["state"], "available", "{rows}");
    assert!(web["detail"].as_str().unwrap().contains("pinned"), "{rows}");
    assert_eq!(s.remote.remote_head(), pushed, "nothing committed");

    // `kedge sync` releases the pin (the branch's head runs again); the
    // next check commits 1.4.4, and it is deployed.
    s.kedge.run(["sync", "--repo", &s.name]).success();
    let rows = s
        .kedge
        .run(["updates", "check", "--repo", &s.name, "-o", "json"])
        .json();
    assert_eq!(row(&rows, "web")["candidate"], "1.4.4", "{rows}");
    let released = s.remote.remote_head();
    assert_ne!(released, pushed, "committed once the pin is released");
    assert_eq!(show(&s, &released, "%s"), "kedge: update web to 1.4.4");
    s.kedge.run(["sync", "--repo", &s.name]).success();
    assert_eq!(s.history()[0]["commit"], released.as_str());
    assert!(s.running()["web"].image.ends_with("app:1.4.4"));
}

#[test]
fn an_interpolated_tag_that_fails_its_gate_is_reverted_and_not_proposed_again() {
    let lab = UpdateLab::start("wbf");
    let good = lab.push(IMAGE_1, "app:1.4.2");
    let broken_local = broken_image(&lab.ns);
    lab.untag_after(broken_local.clone());
    lab.push(&broken_local, "app:1.4.3");
    let name = good.strip_suffix(":1.4.2").unwrap();
    let env = "# pinned versions\nAPP_TAG=1.4.2\nOTHER=1.4.2\n";
    let s = Stack::with_kedge(
        "wbf",
        &[
            (
                "compose.yaml",
                &format!(
                    "services:\n  web:\n    image: {name}:${{APP_TAG}}\n    stop_signal: SIGKILL\n"
                ),
            ),
            (".env", env),
            (
                "kedge.yaml",
                "updates:\n  apply: commit\n  services:\n    web: {policy: patch}\ndeploy:\n  stable_for: 2s\n  timeout: 30s\n",
            ),
        ],
        lab.kedge(),
    );
    s.kedge.run(["sync", "--repo", &s.name]).success();
    let first = s.remote.remote_head();
    // A stack in `notify` mode beside it only reports the same candidate.
    let quiet = Stack::with_kedge(
        "wbn",
        &[
            (
                "compose.yaml",
                &format!("services:\n  web:\n    image: {good}\n    stop_signal: SIGKILL\n"),
            ),
            (
                "kedge.yaml",
                "reconciliation:\n  mode: notify\nupdates:\n  apply: commit\n  services:\n    web: {policy: patch}\n",
            ),
        ],
        lab.kedge(),
    );
    quiet.kedge.run(["sync", "--repo", &quiet.name]).success();
    let rows = quiet
        .kedge
        .run(["updates", "check", "--repo", &quiet.name, "-o", "json"])
        .json();
    assert_eq!(row(&rows, "web")["candidate"], "1.4.3", "{rows}");
    assert_eq!(
        row(&rows, "web")["detail"],
        "held: mode notify only reports updates",
        "{rows}"
    );
    let quiet_head = quiet.remote.remote_head();

    let _serve = s
        .kedge
        .serve_with(&["serve", "--poll-interval", "1h", "--check-interval", "1h"]);
    // The commit changes APP_TAG in .env, one line; its gate fails, 1.4.2
    // comes back, and a revert commit follows it.
    let revert = wait_for(150, "the revert of the failed update", || {
        let head = s.remote.remote_head();
        (head != first && show(&s, &head, "%s").starts_with("Revert")).then_some(head)
    });
    let update = show(&s, &revert, "%P");
    assert_eq!(show(&s, &update, "%s"), "kedge: update web to 1.4.3");
    assert_eq!(show(&s, &update, "%P"), first);
    assert_eq!(
        numstat(&s, &update),
        [("1".to_string(), "1".to_string(), ".env".to_string())]
    );
    assert_eq!(
        file_at(&s, &update, ".env"),
        env.replace("APP_TAG=1.4.2", "APP_TAG=1.4.3").trim_end()
    );
    assert_eq!(
        file_at(&s, &revert, ".env"),
        env.trim_end(),
        "Git says 1.4.2 again"
    );
    let failed = s.events_of("update_failed");
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(
        failed[0]["message"]
            .as_str()
            .unwrap()
            .contains("failed its health gate"),
        "{failed:?}"
    );
    // The revert deploys like any commit, and what runs is 1.4.2.
    wait_for(90, "the revert deployed", || {
        let h = s.history();
        let newest = h.get(0)?;
        (newest["commit"] == revert.as_str() && newest["status"] == "success").then_some(())
    });
    assert_eq!(s.running()["web"].image, good);
    let h = s.history();
    assert!(
        h.as_array()
            .unwrap()
            .iter()
            .any(|d| d["commit"] == update.as_str() && d["status"] == "failed"),
        "{h}"
    );
    // 1.4.3 is never proposed again: nothing more is committed.
    let rows = s
        .kedge
        .run(["updates", "check", "--repo", &s.name, "-o", "json"])
        .json();
    assert_eq!(row(&rows, "web")["state"], "current", "{rows}");
    assert_eq!(s.remote.remote_head(), revert);
    assert_eq!(
        quiet.remote.remote_head(),
        quiet_head,
        "notify committed nothing"
    );
}

/// Over smart HTTP with a token: the write-back pushes with the
/// repository's credentials, and a branch that moves between Kedge's fetch
/// and its push (another push lands first) is refetched and the update
/// made again on the new tip, once.
#[test]
fn a_write_back_pushes_with_the_token_and_retries_once_when_the_branch_moved() {
    use crate::support::docker::ComposeProject;
    use crate::support::git::GitRemote;
    use crate::support::http_git::HttpGit;
    use crate::support::stack::with_quick_gate;

    let lab = UpdateLab::start("wbh");
    let app = lab.push(IMAGE_1, "app:1.4.2");

    let name = unique_name("wbh");
    let remote = GitRemote::new(&name);
    remote.write(
        "compose.yaml",
        &format!("services:\n  web:\n    image: {app}\n    stop_signal: SIGKILL\n"),
    );
    remote.write(
        "kedge.yaml",
        &with_quick_gate("updates:\n  apply: commit\n  services:\n    web: {policy: patch}\n"),
    );
    let first = remote.commit("first");
    let token = format!("tok-{}", unique_name("wbh"));
    let server = HttpGit::start(remote.bare.parent().unwrap(), "bot", &token);
    let var = format!("KEDGE_TEST_GIT_TOKEN_{}", std::process::id());
    let kedge = lab.kedge().env(&var, &token);
    kedge
        .run([
            "repo",
            "add",
            &server.url(&name),
            "--token-env",
            &var,
            "--username",
            "bot",
        ])
        .success();
    let _project = ComposeProject::named(&name);
    kedge.run(["sync", "--repo", &name]).success();

    // The first push that reaches the remote finds the branch moved by
    // someone else's commit, made while the push was checked.
    let marks = tempfile::tempdir().unwrap();
    let hook = remote.bare.join("hooks/pre-receive");
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\nset -e\ncat >/dev/null\n[ -e '{mark}' ] && exit 0\ntouch '{mark}'\nunset GIT_QUARANTINE_PATH GIT_OBJECT_DIRECTORY GIT_ALTERNATE_OBJECT_DIRECTORIES\ntip=$(git rev-parse refs/heads/main)\nnew=$(echo 'someone else' | GIT_AUTHOR_NAME=dev GIT_AUTHOR_EMAIL=dev@example.org GIT_COMMITTER_NAME=dev GIT_COMMITTER_EMAIL=dev@example.org git commit-tree \"$tip^{{tree}}\" -p \"$tip\")\ngit update-ref refs/heads/main \"$new\" \"$tip\"\n",
            mark = marks.path().join("moved").display()
        ),
    )
    .unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    lab.push(IMAGE_1, "app:1.4.3");
    let rows = kedge
        .run(["updates", "check", "--repo", &name, "-o", "json"])
        .json();
    assert_eq!(row(&rows, "web")["state"], "applied", "{rows}");

    let bare = remote.bare.to_str().unwrap().to_string();
    let show = |rev: &str, format: &str| {
        git(
            &remote.work,
            &[
                "--git-dir",
                &bare,
                "show",
                "-s",
                &format!("--format={format}"),
                rev,
            ],
        )
    };
    let head = remote.remote_head();
    assert_eq!(show(&head, "%s"), "kedge: update web to 1.4.3");
    let moved = show(&head, "%P");
    assert_eq!(
        show(&moved, "%s"),
        "someone else",
        "made again on the new tip"
    );
    assert_eq!(show(&moved, "%P"), first);
    let events = kedge.run(["events", "-o", "json"]).json();
    let applied: Vec<&serde_json::Value> = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "update_applied")
        .collect();
    assert_eq!(applied.len(), 1, "{events}");
    assert_eq!(applied[0]["fields"]["retried"], true, "{events}");
    assert_eq!(applied[0]["commit"], head.as_str());
    // The token went to git through its environment: not in the clone's config.
    let clone_config = std::fs::read_to_string(
        kedge
            .data_dir()
            .join("repos")
            .join(&name)
            .join(".git/config"),
    )
    .unwrap();
    assert!(!clone_config.contains(&token));
}
