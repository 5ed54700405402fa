//! Rendering end to end: which files a commit may deploy and how relative
//! paths resolve, against real git remotes and the real engine.

use crate::support::docker::{IMAGE_1, IMAGE_2, docker_ok};
use crate::support::*;

/// The deployment of `commit`, once it is finished.
fn finished(s: &Stack, commit: &str) -> Option<serde_json::Value> {
    s.history()
        .as_array()?
        .iter()
        .find(|d| d["commit"] == commit && d["status"] != "in_progress")
        .cloned()
}

/// A symlink committed into the remote's work tree.
fn symlink(remote: &GitRemote, at: &str, target: &std::path::Path) {
    let path = remote.work.join(at);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    let _ = std::fs::remove_file(&path);
    std::os::unix::fs::symlink(target, path).unwrap();
}

#[test]
fn compose_file_symlinks_out_of_the_repository_are_refused() {
    let s = Stack::new(
        "escape",
        &[("compose.yaml", &sleepers(&[("web", IMAGE_1)]))],
    );
    // A compose file on the host, not in Git, that must never be deployed.
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(
        outside.path().join("compose.yaml"),
        sleepers(&[("web", IMAGE_2), ("intruder", IMAGE_2)]),
    )
    .unwrap();
    let _serve = s.kedge.serve("300ms");
    let running = wait_for(60, "the first deployment", || {
        let m = s.running();
        (m.len() == 1).then_some(m)
    });

    let target = outside.path().join("compose.yaml");
    let cases: [(&str, &str, Option<&str>); 3] = [
        // kedge.yaml names a link to a file outside.
        (
            "link.yaml",
            "link.yaml",
            Some("docker:\n  compose_file: link.yaml\n"),
        ),
        // compose.yaml itself is the link (compose's default discovery).
        ("compose.yaml", "compose.yaml", None),
        // A directory link: sub -> the outside directory.
        (
            "sub",
            "sub/compose.yaml",
            Some("docker:\n  compose_file: sub/compose.yaml\n"),
        ),
    ];
    for (link, named, kedge_yaml) in cases {
        s.remote
            .write("compose.yaml", &sleepers(&[("web", IMAGE_1)]));
        let _ = std::fs::remove_file(s.remote.work.join("kedge.yaml"));
        if let Some(text) = kedge_yaml {
            s.remote.write("kedge.yaml", text);
        }
        let to = if link == "sub" {
            outside.path()
        } else {
            &target
        };
        symlink(&s.remote, link, to);
        let commit = s.remote.commit(&format!("link {named}"));
        let d = wait_for(60, "the escaping commit to be recorded", || {
            finished(&s, &commit)
        });
        assert_eq!(d["status"], "failed", "{d}");
        let error = d["error"].as_str().unwrap_or_default();
        let want = format!("compose file {named} leads outside the repository");
        assert!(error.contains(&want), "error {error:?} lacks {want:?}");
        let now = s.running();
        assert_eq!(now.len(), 1, "{now:?}");
        assert_eq!(
            now["web"].id, running["web"].id,
            "web changed after {named}"
        );
        let _ = std::fs::remove_file(s.remote.work.join(link));
    }

    // A link that stays inside the repository is an ordinary compose file.
    let _ = std::fs::remove_file(s.remote.work.join("kedge.yaml"));
    let _ = std::fs::remove_file(s.remote.work.join("compose.yaml"));
    s.remote
        .write("deploy/real.yaml", &sleepers(&[("web", IMAGE_2)]));
    symlink(
        &s.remote,
        "compose.yaml",
        std::path::Path::new("deploy/real.yaml"),
    );
    let commit = s.remote.commit("compose.yaml links inside");
    let d = wait_for(60, "the inside link deployed", || finished(&s, &commit));
    assert_eq!(d["status"], "success", "{d}");
    let web = wait_for(30, "web on image 2", || {
        let m = s.running();
        m.get("web").filter(|c| c.image == IMAGE_2).cloned()
    });
    assert_ne!(web.id, running["web"].id);
}

#[test]
fn relative_paths_out_of_the_repository_resolve_as_from_the_clone() {
    let compose = format!(
        "services:
  web:
    image: {IMAGE_1}
    command: [sleep, '3600']
    stop_signal: SIGKILL
    env_file: ../shared.env
    volumes:
      - ./conf:/conf:ro
"
    );
    let s = Stack::new(
        "climb",
        &[("compose.yaml", &compose), ("conf/app.conf", "x\n")],
    );
    // Beside the clone (`repos/<name>/`), outside the repository, as an
    // operator would keep a file several stacks share.
    let repos = s.kedge.data_dir().join("repos");
    std::fs::create_dir_all(&repos).unwrap();
    std::fs::write(repos.join("shared.env"), "GREETING=from-beside-the-clone\n").unwrap();
    let _serve = s.kedge.serve("300ms");

    let commit = s.remote.remote_head();
    let d = wait_for(60, "the first deployment", || finished(&s, &commit));
    assert_eq!(d["status"], "success", "{d}");
    let web = wait_for(30, "web running", || s.running().remove("web"));
    let env = docker_ok(&["inspect", "--format", "{{json .Config.Env}}", &web.id]);
    assert!(env.contains("GREETING=from-beside-the-clone"), "{env}");
    // Paths inside the repository still point into the clone.
    let source = docker_ok(&[
        "inspect",
        "--format",
        "{{range .Mounts}}{{.Source}}{{end}}",
        &web.id,
    ]);
    let clone = repos.join(&s.name).join("conf");
    assert_eq!(
        std::fs::canonicalize(&source).unwrap(),
        std::fs::canonicalize(clone).unwrap()
    );
}

#[test]
fn repo_remove_deletes_the_render_worktree_beside_the_clone() {
    let s = Stack::new(
        "rmrender",
        &[("compose.yaml", &sleepers(&[("web", IMAGE_1)]))],
    );
    s.kedge.run(["sync", "--repo", &s.name]).success();
    let repos = s.kedge.data_dir().join("repos");
    let render = repos.join(format!(".{}.render", s.name));
    assert!(render.join("compose.yaml").is_file(), "{render:?}");
    s.kedge.run(["repo", "remove", &s.name]).success();
    assert!(!repos.join(&s.name).exists());
    assert!(!render.exists(), "{render:?} left behind");
}

#[test]
fn a_compose_file_over_the_configured_size_is_refused_before_rendering() {
    let s = Stack::new(
        "toolarge",
        &[("compose.yaml", &sleepers(&[("web", IMAGE_1)]))],
    );
    let config = s.kedge.cwd().join(".config/kedge");
    std::fs::create_dir_all(&config).unwrap();
    std::fs::write(
        config.join("config.yaml"),
        "render:\n  max_compose_size: 1KiB\n",
    )
    .unwrap();
    let _serve = s.kedge.serve("300ms");
    let first = wait_for(60, "the first deployment", || s.running().remove("web"));

    // The same stack padded past the limit with a comment.
    let padded = format!("{}#{}\n", sleepers(&[("web", IMAGE_2)]), "x".repeat(1024));
    s.remote.write("compose.yaml", &padded);
    let commit = s.remote.commit("padded");
    let d = wait_for(60, "the padded commit recorded", || finished(&s, &commit));
    assert_eq!(d["status"], "failed", "{d}");
    let error = d["error"].as_str().unwrap_or_default();
    assert!(
        error.contains(&format!(
            "compose file compose.yaml is {} bytes, over the limit of 1024 bytes",
            padded.len()
        )),
        "{error}"
    );
    assert_eq!(s.running()["web"].id, first.id);
}

/// The deployment of `commit` in `repo`'s history, once it is finished.
fn finished_in(k: &Kedge, repo: &str, commit: &str) -> Option<serde_json::Value> {
    k.run(["history", "--repo", repo, "-o", "json"])
        .json()
        .as_array()?
        .iter()
        .find(|d| d["commit"] == commit && d["status"] != "in_progress")
        .cloned()
}

/// Regression: `kedge.yaml` was read wherever a committed link led. Linked
/// to a FIFO it froze serve (`/healthz` silent, other repositories not
/// deployed), to `/dev/zero` it grew serve without end, to a host file it
/// put the file's content into the error stored in history and events,
/// and a large file was read whole before being refused.
#[test]
fn a_kedge_yaml_linked_to_a_fifo_freezes_serve_and_to_a_host_file_leaks_it() {
    let outside = tempfile::tempdir().unwrap();
    let fifo = outside.path().join("fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    // A file on the host whose content must reach no error, event or answer.
    let secret = unique_name("host-secret");
    let host_file = outside.path().join("host.yaml");
    std::fs::write(
        &host_file,
        format!("docker:\n  project_name: {secret}\n  {secret}: x\n"),
    )
    .unwrap();

    // One repository deploys as usual beside the one whose kedge.yaml is a
    // link to the FIFO from its first commit.
    let s = Stack::new("yfine", &[("compose.yaml", &sleepers(&[("web", IMAGE_1)]))]);
    let name = unique_name("yfifo");
    let _project = ComposeProject::named(&name);
    let remote = GitRemote::new(&name);
    remote.write("compose.yaml", &sleepers(&[("web", IMAGE_1)]));
    symlink(&remote, "kedge.yaml", &fifo);
    let first = remote.commit("kedge.yaml links to a FIFO");
    s.kedge.run(["repo", "add", &remote.url()]).success();

    let api = s.kedge.serve_api(&["--poll-interval", "300ms"], &[]);
    let d = wait_for(60, "the FIFO commit recorded", || {
        finished_in(&s.kedge, &name, &first)
    });
    assert_eq!(d["status"], "failed", "{d}");
    let error = d["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("kedge.yaml leads outside the repository"),
        "{error}"
    );
    wait_for(60, "the other repository deployed", || {
        (s.running().len() == 1).then_some(())
    });
    s.wait_deployed();
    let health = api.call("GET", "/healthz", None, None, &[]);
    assert_eq!(health.status, 200, "{health:?}");

    // A host file, a device, and a regular file over the limit.
    let cases: [(Option<&std::path::Path>, &str); 3] = [
        (Some(&host_file), "kedge.yaml leads outside the repository"),
        (
            Some(std::path::Path::new("/dev/zero")),
            "kedge.yaml leads outside the repository",
        ),
        (None, "kedge.yaml is over the limit of 1048576 bytes"),
    ];
    for (target, want) in cases {
        let _ = std::fs::remove_file(remote.work.join("kedge.yaml"));
        match target {
            Some(to) => symlink(&remote, "kedge.yaml", to),
            None => {
                remote.write("kedge.yaml", &"#".repeat(2 << 20));
            }
        }
        let commit = remote.commit(&format!("kedge.yaml: {want}"));
        let d = wait_for(60, "the commit recorded", || {
            finished_in(&s.kedge, &name, &commit)
        });
        assert_eq!(d["status"], "failed", "{d}");
        let error = d["error"].as_str().unwrap_or_default();
        assert!(error.contains(want), "error {error:?} lacks {want:?}");
    }
    let events = s.kedge.run(["events", "--repo", &name, "-o", "json"]);
    events.success();
    let history = s.kedge.run(["history", "--repo", &name, "-o", "json"]);
    let status = s.kedge.run(["status", "--repo", &name, "-o", "json"]);
    for out in [&events, &history, &status] {
        assert!(!out.stdout.contains(&secret), "{}", out.stdout);
    }
    let health = api.call("GET", "/healthz", None, None, &[]);
    assert_eq!(health.status, 200, "{health:?}");
    assert!(
        s.kedge
            .db_snapshot()
            .iter()
            .all(|row| !row.contains(&secret))
    );
}
