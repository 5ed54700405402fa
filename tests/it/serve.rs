//! `kedge serve` end to end: real git remotes, the real engine.

use crate::support::docker::{IMAGE_1, IMAGE_2, docker_ok};
use crate::support::*;

/// Two services; busybox ignores SIGTERM as PID 1, so they stop by SIGKILL.
fn two_services(web_image: &str, api_image: &str) -> String {
    format!(
        "services:
  web:
    image: {web_image}
    command: [sleep, '3600']
    stop_signal: SIGKILL
    volumes:
      - ./conf/web.conf:/etc/web.conf:ro
  api:
    image: {api_image}
    command: [sleep, '3600']
    stop_signal: SIGKILL
"
    )
}

fn stack(prefix: &str) -> Stack {
    let compose = two_services(IMAGE_1, IMAGE_1);
    Stack::new(
        prefix,
        &[("compose.yaml", &compose), ("conf/web.conf", "v1\n")],
    )
}

fn by_service(
    project: &ComposeProject,
) -> std::collections::BTreeMap<String, crate::support::docker::Container> {
    project
        .running()
        .into_iter()
        .map(|c| (c.service().to_string(), c))
        .collect()
}

/// The deployment of `commit`, once it is finished.
fn finished(k: &Kedge, repo: &str, commit: &str) -> Option<serde_json::Value> {
    let history = k.run(["history", "--repo", repo, "-o", "json"]).json();
    history
        .as_array()?
        .iter()
        .find(|d| d["commit"] == commit && d["status"] != "in_progress")
        .cloned()
}

#[test]
fn serve_deploys_labels_and_updates_only_what_changed() {
    let s = stack("serve");
    let mut serve = s.kedge.serve("300ms");
    let c1 = s.remote.remote_head();

    let first = wait_for(60, "both services running", || {
        let m = by_service(&s.project);
        (m.len() == 2).then_some(m)
    });
    for c in first.values() {
        assert_eq!(c.label("io.kedge.managed"), Some("true"));
        assert_eq!(c.label("io.kedge.project"), Some(s.name.as_str()));
        assert_eq!(c.label("io.kedge.service"), Some(c.service()));
        assert_eq!(c.label("io.kedge.commit"), Some(c1.as_str()));
    }
    let ps = docker_ok(&["compose", "-p", &s.name, "ps", "--format", "{{.Name}}"]);
    assert!(ps.contains(&format!("{}-web-1", s.name)), "{ps}");
    assert!(ps.contains(&format!("{}-api-1", s.name)), "{ps}");

    // Change one service's image: only that one is recreated.
    s.remote
        .write("compose.yaml", &two_services(IMAGE_1, IMAGE_2));
    let c2 = s.remote.commit("api on image 2");
    let second = wait_for(30, "api on image 2", || {
        let m = by_service(&s.project);
        (m.get("api")?.image_id == image_id(IMAGE_2) && m.len() == 2).then_some(m)
    });
    assert_eq!(second["web"].id, first["web"].id);
    assert_eq!(second["web"].started_at, first["web"].started_at);
    assert_eq!(second["api"].label("io.kedge.commit"), Some(c2.as_str()));
    assert_eq!(second["web"].label("io.kedge.commit"), Some(c1.as_str()));

    // A README-only commit changes none of the stack's inputs: it is in
    // sync without a deployment, and restarts nothing.
    s.remote.write("README.md", "docs\n");
    let c3 = s.remote.commit("docs only");
    wait_for(30, "the README commit to be handled", || {
        let st = s
            .kedge
            .run(["status", "--repo", &s.name, "-o", "json"])
            .json();
        (st[0]["synced_commit"] == c3.as_str()).then_some(())
    });
    assert_eq!(
        finished(&s.kedge, &s.name, &c3),
        None,
        "no deployment of {c3}"
    );
    let third = by_service(&s.project);
    for svc in ["web", "api"] {
        assert_eq!(third[svc].id, second[svc].id, "{svc} was recreated");
        assert_eq!(
            third[svc].started_at, second[svc].started_at,
            "{svc} was restarted"
        );
    }

    // A bind-mounted config file edit recreates exactly the service mounting it.
    s.remote.write("conf/web.conf", "v2\n");
    let c4 = s.remote.commit("web config v2");
    let fourth = wait_for(30, "web recreated with the new config", || {
        let m = by_service(&s.project);
        (m.get("web")?.label("io.kedge.commit") == Some(c4.as_str())).then_some(m)
    });
    assert_ne!(fourth["web"].id, third["web"].id);
    assert_eq!(fourth["api"].id, third["api"].id);
    let seen = docker_ok(&["exec", &fourth["web"].id, "cat", "/etc/web.conf"]);
    assert_eq!(seen, "v2");

    let status = s
        .kedge
        .run(["status", "--repo", &s.name, "-o", "json"])
        .json();
    assert_eq!(status[0]["sync_state"], "synced", "{status}");
    assert_eq!(status[0]["deployed_commit"], c4.as_str());

    assert_eq!(serve.terminate(), Some(0), "SIGTERM is a graceful stop");
    assert_eq!(
        by_service(&s.project).len(),
        2,
        "stopping serve leaves the stack running"
    );
}

/// The repository `name` added (`repo add`) while a `serve` polling every
/// `poll` runs; returns once `project`'s two services run.
fn added_while_serving(
    name: &str,
    project: &ComposeProject,
    poll: &str,
) -> (Kedge, GitRemote, kedge::Serve) {
    let remote = GitRemote::new(name);
    remote.write("compose.yaml", &two_services(IMAGE_1, IMAGE_1));
    remote.write("conf/web.conf", "v1\n");
    remote.write("kedge.yaml", QUICK_GATE);
    remote.commit("first");
    let k = Kedge::new();
    let serve = k.serve(poll);
    // serve must be running before the repository exists.
    wait_for(30, "serve started", || {
        serve.log().contains("kedge serve started").then_some(())
    });
    k.run(["repo", "add", &remote.url()]).success();
    wait_for(30, "the added repository deployed", || {
        (by_service(project).len() == 2).then_some(())
    });
    (k, remote, serve)
}

#[test]
fn a_repo_added_while_serving_is_picked_up() {
    let name = unique_name("late");
    let project = ComposeProject::named(&name);
    let (k, _remote, _serve) = added_while_serving(&name, &project, "300ms");
    // Regression: its first deployment was recorded as `startup`.
    let history = k.run(["history", "--repo", &name, "-o", "json"]).json();
    assert_eq!(history[0]["trigger"], "added", "{history}");
}

/// Regression: the supervisor looked for new repositories only at each
/// poll, so with a long poll interval a repository added over the CLI (or
/// the API) waited that long. The added event wakes it now: with a poll
/// far beyond the wait, only the wake-up can explain the deploy.
#[test]
fn a_repo_added_while_serving_is_picked_up_before_the_next_poll() {
    let name = unique_name("wake");
    let project = ComposeProject::named(&name);
    let (k, _remote, serve) = added_while_serving(&name, &project, "10m");
    k.run(["repo", "remove", &name, "--down"]).success();
    wait_for(30, "its task stopped", || {
        serve.log().contains("no longer registered").then_some(())
    });
}

#[test]
fn a_changed_build_context_is_rebuilt_and_redeployed() {
    let name = unique_name("build");
    let remote = GitRemote::new(&name);
    remote.write("kedge.yaml", QUICK_GATE);
    remote.write(
        "compose.yaml",
        "services:
  app:
    build: ./app
    command: [sleep, '3600']
    stop_signal: SIGKILL
  other:
    image: kedge-test/busybox:1
    command: [sleep, '3600']
    stop_signal: SIGKILL
",
    );
    remote.write(
        "app/Dockerfile",
        &format!("FROM {IMAGE_1}\nCOPY version /version\n"),
    );
    remote.write("app/version", "one\n");
    remote.commit("app one");
    let k = Kedge::new();
    k.run(["repo", "add", &remote.url()]).success();
    let project = ComposeProject::named(&name);
    let _serve = k.serve("300ms");

    let first = wait_for(90, "the built service", || {
        let m = by_service(&project);
        (m.len() == 2).then_some(m)
    });
    assert_eq!(
        docker_ok(&["exec", &first["app"].id, "cat", "/version"]),
        "one"
    );

    remote.write("app/version", "two\n");
    let c2 = remote.commit("app two");
    let second = wait_for(90, "the rebuilt service", || {
        let m = by_service(&project);
        (m.get("app")?.label("io.kedge.commit") == Some(c2.as_str())).then_some(m)
    });
    assert_eq!(
        docker_ok(&["exec", &second["app"].id, "cat", "/version"]),
        "two"
    );
    assert_eq!(second["other"].id, first["other"].id);
    crate::support::docker::remove_built_image(&format!("{name}-app"));
}

#[test]
fn bad_commits_are_failed_deployments_and_the_stack_keeps_running() {
    let s = stack("bad");
    let _serve = s.kedge.serve("300ms");
    let running = wait_for(60, "the first deployment", || {
        let m = by_service(&s.project);
        (m.len() == 2).then_some(m)
    });

    let cases: [(&str, &str, &str); 3] = [
        (
            "compose.yaml",
            "services:\n  web: [unclosed\n",
            "invalid compose project",
        ),
        (
            "compose.yaml",
            &two_services(IMAGE_1, "kedge-test/does-not-exist:1"),
            "does-not-exist",
        ),
        (
            "kedge.yaml",
            "reconciliation:\n  mode: sometimes\n",
            "`reconciliation.mode`",
        ),
    ];
    for (file, content, message) in cases {
        // Each bad commit starts from the good tree.
        s.remote
            .write("compose.yaml", &two_services(IMAGE_1, IMAGE_1));
        let _ = std::fs::remove_file(s.remote.work.join("kedge.yaml"));
        s.remote.write(file, content);
        let commit = s.remote.commit(&format!("bad {file}"));
        let d = wait_for(60, "the bad commit to be recorded", || {
            finished(&s.kedge, &s.name, &commit)
        });
        assert_eq!(d["status"], "failed", "{d}");
        let error = d["error"].as_str().unwrap_or_default();
        assert!(error.contains(message), "error {error:?} lacks {message:?}");
        let now = by_service(&s.project);
        for svc in ["web", "api"] {
            assert_eq!(now[svc].id, running[svc].id, "{svc} changed after {file}");
            assert_eq!(now[svc].status, "running");
        }
        let status = s
            .kedge
            .run(["status", "--repo", &s.name, "-o", "json"])
            .json();
        assert_eq!(status[0]["sync_state"], "failed", "{status}");
        assert!(
            status[0]["last_error"]
                .as_str()
                .unwrap_or_default()
                .contains(message)
        );
    }
}

#[test]
fn a_deleted_remote_does_not_stop_the_healthy_repo() {
    let healthy = stack("healthy");
    let broken_name = unique_name("broken");
    let broken = GitRemote::new(&broken_name);
    broken.write("compose.yaml", &two_services(IMAGE_1, IMAGE_1));
    broken.write("conf/web.conf", "x\n");
    broken.commit("first");
    let _broken_project = ComposeProject::named(&broken_name);
    healthy.kedge.run(["repo", "add", &broken.url()]).success();
    std::fs::remove_dir_all(&broken.bare).unwrap();

    let _serve = healthy.kedge.serve("300ms");
    wait_for(60, "the healthy repo deployed", || {
        (by_service(&healthy.project).len() == 2).then_some(())
    });
    healthy
        .remote
        .write("compose.yaml", &two_services(IMAGE_2, IMAGE_1));
    healthy.remote.commit("web on image 2");
    wait_for(30, "the healthy repo updated", || {
        (by_service(&healthy.project).get("web")?.image_id == image_id(IMAGE_2)).then_some(())
    });
    let status = healthy
        .kedge
        .run(["status", "--repo", &broken_name, "-o", "json"])
        .json();
    let error = status[0]["last_error"].as_str().unwrap_or_default();
    assert!(error.contains("cannot reach remote"), "{status}");
}

/// The killed `serve`'s compose goes on stopping the old container (6 s):
/// it holds the repository's lock until it exits, so the restarted `serve`
/// waits for it instead of applying beside it. Regression: the two applied
/// at once and the second failed on compose's name conflict.
#[test]
fn kill_9_mid_apply_then_restart_converges_with_consistent_history() {
    let (s, mut serve, c2) = apply_in_flight("kill");
    let (name, k, project) = (s.name.clone(), &s.kedge, &s.project);
    serve.kill9();

    let restarted = k.serve("300ms");
    wait_for(60, "convergence on commit two", || {
        let c = project.running().into_iter().next()?;
        (c.image_id == image_id(IMAGE_2) && c.label("io.kedge.commit") == Some(c2.as_str()))
            .then_some(())
    });
    let done = wait_for(30, "a successful deployment of two", || {
        let h = k.run(["history", "--repo", &name, "-o", "json"]).json();
        h.as_array()?
            .iter()
            .any(|d| d["commit"] == c2.as_str() && d["status"] == "success")
            .then_some(h)
    });
    let rows = done.as_array().unwrap();
    assert!(rows.iter().all(|d| d["status"] != "in_progress"), "{done}");
    // Exactly one failure: the killed apply, marked "interrupted".
    let failed: Vec<_> = rows.iter().filter(|d| d["status"] == "failed").collect();
    assert_eq!(failed.len(), 1, "{done}");
    assert_eq!(failed[0]["commit"], c2.as_str());
    assert!(
        failed[0]["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("interrupted")),
        "{done}"
    );
    assert!(
        restarted
            .log()
            .contains("waiting for another apply on this repository to finish"),
        "{}",
        restarted.log()
    );
}

/// Regression: a `serve` started before the engine answered (its socket not
/// there yet, as at boot) never made an engine client, so every image looked
/// missing and no container was ever listed: the stack was never deployed,
/// drift never healed. And an engine outage used up a commit's three apply
/// attempts, after which Kedge waited for the next push.
#[test]
fn serve_started_before_the_engine_answers_deploys_and_heals_once_it_does() {
    let Stack {
        name,
        remote,
        kedge,
        project,
    } = stack("late");
    let mut engine = crate::support::docker::EngineProxy::closed();
    let k = kedge.env("DOCKER_HOST", &engine.docker_host());
    let _serve = k.serve_with(&["serve", "--poll-interval", "1s", "--check-interval", "1m"]);
    let head = remote.remote_head();
    // Retried after 2, 4, 8 and 16 s: a fourth failure is past the three
    // attempts a broken commit gets, and after the fifth the next retry is
    // 32 s away, beyond the wait below.
    let failed = wait_for(90, "five deployments failed without the engine", || {
        let h = k.run(["history", "--repo", &name, "-o", "json"]).json();
        let failed: Vec<serde_json::Value> = h
            .as_array()?
            .iter()
            .filter(|d| d["commit"] == head.as_str() && d["status"] == "failed")
            .cloned()
            .collect();
        (failed.len() >= 5).then_some(failed)
    });
    assert!(
        failed[0]["error"]
            .as_str()
            .unwrap_or_default()
            .contains("Cannot connect to the Docker daemon"),
        "{failed:?}"
    );

    // The next retry is 32 s away: only the engine's return explains a
    // deployment within this (generous for a local deploy) ceiling.
    engine.open();
    let running = wait_for(25, "the stack deployed through the engine", || {
        let m = by_service(&project);
        (m.len() == 2).then_some(m)
    });
    assert_eq!(running["api"].label("io.kedge.commit"), Some(head.as_str()));
    wait_deployed(&k, &name);
    let web = running["web"].name.clone();
    docker_ok(&["stop", "-t", "0", &web]);
    wait_for(30, "the stopped web healed", || {
        by_service(&project).contains_key("web").then_some(())
    });
}

/// Regression: a second `serve` on the same data directory ran beside the
/// first and marked its live deployment `failed` ("interrupted").
#[test]
fn a_second_serve_on_the_same_data_dir_refuses_and_leaves_the_first_alone() {
    let (s, serve, c2) = apply_in_flight("twoserve");
    let (name, k) = (s.name.clone(), &s.kedge);
    let err = k.cwd().join("second-serve.err");
    let second = k
        .command(["serve", "--poll-interval", "300ms"])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let status = crate::support::ChildGuard(second).wait_exit(10);
    let stderr = std::fs::read_to_string(&err).unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("another kedge serve (pid {})", serve.child.id())),
        "{stderr}"
    );
    let done = wait_for(30, "the first serve's deployment finished", || {
        let h = s.history();
        (h[0]["commit"] == c2.as_str() && h[0]["status"] != "in_progress").then_some(h)
    });
    assert_eq!(done[0]["status"], "success", "{done}");
    let failed: Vec<_> = done
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["status"] == "failed")
        .collect();
    assert!(failed.is_empty(), "{done}");
    // The second one left no trace in the log of the first.
    assert!(!serve.log().contains("interrupted"), "{}", serve.log());
    assert!(k.run(["status", "--repo", &name]).code == Some(0));
}

/// "interrupted" is written only for deployments whose owner is gone: a
/// `serve` started while a `kedge sync` applies waits for it, and the
/// sync's deployment stays its own.
#[test]
fn serve_started_during_a_sync_leaves_the_sync_deployment_alone() {
    use crate::support::stack::compose_up_running;
    let s = Stack::new(
        "syncserve",
        &[(
            "compose.yaml",
            &crate::support::stack::slow_to_stop(IMAGE_1),
        )],
    );
    s.kedge.run(["sync", "--repo", &s.name]).success();
    s.remote.write(
        "compose.yaml",
        &crate::support::stack::slow_to_stop(IMAGE_2),
    );
    let c2 = s.remote.commit("two");
    let sync = s
        .kedge
        .command(["sync", "--repo", &s.name])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut sync = crate::support::ChildGuard(sync);
    wait_for(30, "the sync's compose up running", || {
        compose_up_running(&s.name).then_some(())
    });
    let serve = s.kedge.serve("300ms");
    assert!(sync.wait_exit(60).success(), "the sync succeeds");
    let h = s.history();
    let by_sync = h
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["commit"] == c2.as_str() && d["trigger"] == "sync")
        .unwrap_or_else(|| panic!("{h}"));
    assert_eq!(by_sync["status"], "success", "{h}");
    assert!(!serve.log().contains("interrupted"), "{}", serve.log());
}

/// Regression: an `up` the engine refused midway (a capability it does not
/// know) left the stack half changed: one service removed, another
/// recreated and not started. The README promises the running stack is
/// untouched by a failed commit: a failed `up` is followed by re-applying
/// the last successful deployment, recorded as such, and the commit is not
/// retried until the branch moves.
#[test]
fn a_failed_up_midway_restores_the_last_successful_deployment() {
    let s = stack("undo");
    let serve = s.kedge.serve("300ms");
    let c1 = s.remote.remote_head();
    let first = wait_for(60, "both services running", || {
        let m = by_service(&s.project);
        (m.len() == 2).then_some(m)
    });

    // web moves to image 2 (fine); api gets a capability the engine refuses.
    let broken = two_services(IMAGE_2, IMAGE_1)
        .replace("  api:\n", "  api:\n    cap_add: [KEDGE_NO_SUCH_CAP]\n");
    s.remote.write("compose.yaml", &broken);
    let c2 = s.remote.commit("web on 2, api with a bad capability");
    let restored = wait_for(60, "the restore recorded", || {
        let h = s.history();
        (h[0]["trigger"] == "auto_rollback" && h[0]["status"] != "in_progress").then_some(h)
    });
    assert_eq!(restored[0]["status"], "rolled_back", "{restored}");
    assert_eq!(restored[0]["commit"], c1.as_str(), "{restored}");
    assert!(
        restored[0]["message"]
            .as_str()
            .unwrap()
            .starts_with(&format!(
                "restored after the failed deployment of {}",
                &c2[..7]
            )),
        "{restored}"
    );
    assert_eq!(restored[1]["commit"], c2.as_str(), "{restored}");
    assert_eq!(restored[1]["status"], "failed", "{restored}");
    assert!(
        restored[1]["error"]
            .as_str()
            .unwrap()
            .contains("unknown capability"),
        "{restored}"
    );

    // Both services run the last successful deployment again.
    let now = wait_for(30, "both services back on commit one", || {
        let m = by_service(&s.project);
        (m.len() == 2
            && m.values()
                .all(|c| c.label("io.kedge.commit") == Some(c1.as_str())))
        .then_some(m)
    });
    assert_eq!(now["web"].image_id, image_id(IMAGE_1));
    assert_eq!(now["api"].image_id, image_id(IMAGE_1));
    assert_eq!(
        s.project.containers().len(),
        2,
        "no container of the failed apply is left"
    );
    let _ = first;

    // Not retried: it gives up on the commit at once, and says why in status.
    wait_for(30, "serve giving up on the commit", || {
        serve
            .log()
            .contains("giving up on this commit until the branch moves")
            .then_some(())
    });
    let status = s.status();
    assert_eq!(status["sync_state"], "failed", "{status}");
    assert!(
        status["last_error"]
            .as_str()
            .unwrap()
            .contains("unknown capability"),
        "{status}"
    );
    let failed = s
        .history()
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["status"] == "failed")
        .count();
    assert_eq!(failed, 1, "the commit was tried once");
}

/// Regression: a `kedge sync` whose `up` failed and was undone left the
/// commit unsettled, so serve deployed it again at its next pass and broke
/// and restored the stack once more.
#[test]
fn a_commit_a_sync_undid_is_not_deployed_again_by_serve() {
    let s = stack("syncundo");
    let c1 = s.remote.remote_head();
    s.kedge.run(["sync", "--repo", &s.name]).success();
    let broken = two_services(IMAGE_2, IMAGE_1)
        .replace("  api:\n", "  api:\n    cap_add: [KEDGE_NO_SUCH_CAP]\n");
    s.remote.write("compose.yaml", &broken);
    let c2 = s.remote.commit("api with a capability the engine refuses");
    s.kedge
        .run(["sync", "--repo", &s.name])
        .code(1)
        .stderr_has("unknown capability");
    let before = s.history();
    assert_eq!(before[0]["trigger"], "auto_rollback", "{before}");
    assert_eq!(before[0]["commit"], c1.as_str(), "{before}");
    assert_eq!(before[1]["commit"], c2.as_str(), "{before}");
    let serve = s.kedge.serve_debug(&["serve", "--poll-interval", "300ms"]);
    serve.wait_passes(&s.name, 0, 3, 60);
    assert_eq!(
        s.history(),
        before,
        "serve deployed the undone commit again"
    );
    assert_eq!(s.status()["deployed_commit"], c1.as_str());
}

/// Regression: two repositories could deploy one compose project; each
/// took the other's containers for Extra ones and removed them, pass after
/// pass. The second is refused, naming the first, which is left alone.
#[test]
fn a_second_repository_on_the_same_project_is_refused() {
    let s = stack("owner");
    s.kedge.run(["sync", "--repo", &s.name]).success();
    let before = by_service(&s.project);
    let other = unique_name("squatter");
    let remote = GitRemote::new(&other);
    remote.write("compose.yaml", &sleepers(&[("web", IMAGE_2)]));
    remote.write(
        "kedge.yaml",
        &format!("docker:\n  project_name: {}\n", s.name),
    );
    remote.commit("the same project");
    s.kedge.run(["repo", "add", &remote.url()]).success();
    s.kedge
        .run(["sync", "--repo", &other])
        .code(1)
        .stderr_has(&format!(
            "project {} is already the stack of repository {}",
            s.name, s.name
        ));
    let after = by_service(&s.project);
    assert_eq!(
        after.values().map(|c| &c.id).collect::<Vec<_>>(),
        before.values().map(|c| &c.id).collect::<Vec<_>>()
    );
    let h = s
        .kedge
        .run(["history", "--repo", &other, "-o", "json"])
        .json();
    assert_eq!(h[0]["status"], "failed", "{h}");
}

/// Regression: a `kedge sync` killed while serve ran left its deployment
/// `in_progress` until serve restarted (serve closed interrupted rows only
/// at its first pass), and closing one wrote no event, so no notification.
#[test]
fn a_sync_killed_while_serve_runs_is_closed_by_serve_with_an_event() {
    use crate::support::stack::{compose_up_running, slow_to_stop};
    let s = Stack::new(
        "killsync",
        &[
            ("compose.yaml", &slow_to_stop(IMAGE_1)),
            ("kedge.yaml", "reconciliation:\n  mode: manual\n"),
        ],
    );
    s.kedge.run(["sync", "--repo", &s.name]).success();
    let _serve = s.kedge.serve("300ms");
    s.remote.write("compose.yaml", &slow_to_stop(IMAGE_2));
    let c2 = s.remote.commit("the old container takes 6 s to stop");
    let mut sync = s.kedge.spawn_quiet(["sync", "--repo", &s.name]);
    wait_for(30, "the sync's compose up running", || {
        compose_up_running(&s.name).then_some(())
    });
    // Only Kedge: compose, in its own process group, goes on and holds the lock.
    sync.0.kill().unwrap();
    let _ = sync.0.wait();
    let closed = wait_for(60, "serve closing the interrupted deployment", || {
        let h = s.history();
        (h[0]["commit"] == c2.as_str() && h[0]["status"] == "failed").then_some(h)
    });
    assert!(
        closed[0]["error"]
            .as_str()
            .unwrap()
            .starts_with("interrupted"),
        "{closed}"
    );
    let events = s
        .kedge
        .run(["events", "--repo", &s.name, "-o", "json"])
        .json();
    assert!(
        events
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "deploy_failed"
                && e["commit"] == c2.as_str()
                && e["fields"]["step"] == "interrupted"),
        "{events:#}"
    );
}
