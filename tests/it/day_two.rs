//! Day two on a real stack: what an operator reads when something fails,
//! and the noise that must not drown it.

use crate::support::docker::IMAGE_1;
use crate::support::*;

/// Regression: `history`, `status`, events and every notification of a
/// failed `up` showed compose's whole command line and its first progress
/// line; the reason (a port already taken) was buried on the last line.
#[test]
fn errors_bury_the_cause_no_more_a_failed_up_says_why_first() {
    require_docker();
    // The port the stack publishes is taken by this test.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let compose = format!(
        "services:\n  db:\n    image: {IMAGE_1}\n    command: [sleep, '3600']\n    stop_signal: SIGKILL\n  web:\n    image: {IMAGE_1}\n    command: [sleep, '3600']\n    stop_signal: SIGKILL\n    ports: ['127.0.0.1:{port}:80']\n"
    );
    let s = Stack::new("errfirst", &[("compose.yaml", &compose)]);
    let out = s.kedge.run(["sync", "--repo", &s.name]);
    assert_ne!(out.code, Some(0), "{out:?}");
    let says_why = |text: &str| {
        text.contains(&port.to_string())
            && (text.contains("address already in use") || text.contains("already allocated"))
    };
    let history = s.history();
    let error = history[0]["error"].as_str().unwrap_or_default().to_string();
    assert!(
        error.starts_with("docker compose up failed: ") && says_why(&error),
        "the reason first: {error}"
    );
    for shown in [&error, &out.stderr] {
        assert!(!shown.contains("--project-directory"), "{shown}");
        assert!(!shown.contains("Container "), "no progress line: {shown}");
    }
    let status = s.status();
    let last = status["last_error"].as_str().unwrap_or_default();
    assert!(says_why(last), "{status}");
    let events = s
        .kedge
        .run(["events", "--repo", &s.name, "-o", "json"])
        .json();
    let failed = events
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "deploy_failed")
        .expect("a deploy_failed event");
    let message = failed["message"].as_str().unwrap();
    assert!(
        message.starts_with("docker compose up failed: ") && says_why(message),
        "{message}"
    );

    // Regression (noise): the engine's endpoint id, new with every try,
    // made each failure's message differ, so the notifications' de-
    // duplication let every one through. Tried again, the same words.
    s.kedge.run(["sync", "--repo", &s.name]);
    let events = s
        .kedge
        .run(["events", "--repo", &s.name, "-o", "json"])
        .json();
    let messages: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "deploy_failed")
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    assert_eq!(messages.len(), 2, "{messages:?}");
    assert_eq!(messages[0], messages[1]);
    drop(taken);
}

/// Regression: a commit deployed twice (deployed, rolled back to) had a
/// "Roll back to" button on each of its rows of the dashboard's history.
#[test]
fn the_dashboard_offers_one_rollback_button_per_commit() {
    require_docker();
    let s = Stack::new(
        "onebutton",
        &[("compose.yaml", &sleepers(&[("web", IMAGE_1)]))],
    );
    let k = &s.kedge;
    let first = s.remote.remote_head();
    k.run(["sync", "--repo", &s.name]).success();
    s.remote.write(
        "compose.yaml",
        &sleepers(&[("web", crate::support::docker::IMAGE_2)]),
    );
    let second = s.remote.commit("two");
    k.run(["sync", "--repo", &s.name]).success();
    k.run(["rollback", "--repo", &s.name, &first[..12]])
        .success();
    // The pin released: the second commit is deployed again, the first has
    // two rows (deployed, rolled back to).
    k.run(["sync", "--repo", &s.name]).success();
    let status = s.status();
    assert_eq!(status["deployed_commit"], second.as_str(), "{status}");
    let write = k.token("operator", "write");
    let api = k.serve_api(&["--poll-interval", "1h", "--check-interval", "1h"], &[]);
    let agent = crate::sessions::client();
    let session = crate::sessions::sign_in(&agent, &api.addr, &write)
        .session
        .expect("a session");
    let page = agent
        .get(format!("http://{}/repos/{}", api.addr, s.name))
        .header("Cookie", &session)
        .call()
        .expect("the repository page")
        .body_mut()
        .read_to_string()
        .unwrap();
    let button = format!("Roll back to {}", &first[..7]);
    assert_eq!(page.matches(&button).count(), 1, "{page}");
    // The deployed commit is offered no rollback at all.
    assert_eq!(
        page.matches(&format!("Roll back to {}", &second[..7]))
            .count(),
        0
    );
}

/// Regression (contradictions): with a variable of the host changed, `kedge
/// diff` said "In sync" while `kedge sync --dry-run` would deploy; a sync
/// of the deployed commit that failed said "rolled back to X" of X itself,
/// and serve's next pass then cleared its error while the sync state
/// stayed `failed` (`Last error: -`).
#[test]
fn a_host_variable_change_is_pending_in_diff_and_its_failed_sync_keeps_its_error() {
    require_docker();
    let free = crate::support::net::free_port().to_string();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = taken.local_addr().unwrap().port().to_string();
    let compose = format!(
        "services:\n  web:\n    image: {IMAGE_1}\n    command: [sleep, '3600']\n    stop_signal: SIGKILL\n    ports: ['127.0.0.1:${{KT_PORT}}:80']\n"
    );
    let s = Stack::with_kedge(
        "hostvar",
        &[("compose.yaml", &compose)],
        Kedge::new().env("KT_PORT", &free),
    );
    let k = &s.kedge;
    let head = s.remote.remote_head();
    k.run(["sync", "--repo", &s.name]).success();
    k.run(["diff", "--repo", &s.name])
        .success()
        .stdout_has("In sync");

    // The host's variable changes: the deployed commit renders otherwise.
    let with_busy = |args: &[&str]| {
        let out = k.command(args).env("KT_PORT", &busy).output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (_, diff, _) = with_busy(&["diff", "--repo", &s.name]);
    assert!(
        diff.contains(&format!(
            "Deployed commit {} renders differently now",
            &head[..7]
        )) && diff.contains("Service: web"),
        "{diff}"
    );
    let (_, dry, _) = with_busy(&["sync", "--repo", &s.name, "--dry-run"]);
    assert!(dry.contains("web"), "{dry}");

    // The sync fails on the taken port (and so does the restore: it renders
    // with the same variable).
    let (code, _, stderr) = with_busy(&["sync", "--repo", &s.name]);
    assert_ne!(code, Some(0), "{stderr}");
    assert!(
        !stderr.contains(&format!("rolled back to {}", &head[..7])),
        "{stderr}"
    );
    let error_of = || s.status()["last_error"].as_str().map(String::from);
    let error = error_of().expect("the failure is the last error");
    assert!(error.contains(&busy), "{error}");
    // serve's pass finds nothing new on the branch: the error stays.
    let serve = k.serve_debug(&["serve", "--poll-interval", "1h", "--check-interval", "1h"]);
    let mark = 0;
    serve.wait_passes(&s.name, mark, 1, 60);
    assert_eq!(error_of().as_deref(), Some(error.as_str()));
    assert_eq!(s.status()["sync_state"], "failed");
    drop(taken);
}

/// A realistic stack's shapes: a one-shot `migrate` the app waits for
/// (`service_completed_successfully`), the app, and a proxy.
fn with_one_shot(proxy_image: &str) -> String {
    format!(
        "services:\n  migrate:\n    image: {IMAGE_1}\n    command: ['true']\n    restart: 'no'\n  app:\n    image: {IMAGE_1}\n    command: [sleep, '3600']\n    stop_signal: SIGKILL\n    depends_on:\n      migrate:\n        condition: service_completed_successfully\n  proxy:\n    image: {proxy_image}\n    command: [sleep, '3600']\n    stop_signal: SIGKILL\n"
    )
}

/// The containers of `project` the engine started since `since` (a Unix
/// time), by name, in order.
fn starts_since(project: &str, since: &str) -> Vec<String> {
    let until = now_s();
    crate::support::docker::docker_ok(&[
        "events",
        "--since",
        since,
        "--until",
        &until,
        "--filter",
        &format!("label=com.docker.compose.project={project}"),
        "--filter",
        "event=start",
        "--format",
        "{{.Actor.Attributes.name}}",
    ])
    .lines()
    .map(String::from)
    .collect()
}

/// Now, as the engine's `--since` takes it, to the nanosecond.
fn now_s() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    format!("{}.{:09}", now.as_secs(), now.subsec_nanos())
}

/// Regression: every deployment ran a full `up -d`, and compose starts a
/// one-shot that has exited: a migration ran again on a README-only commit
/// and on commits that changed other services.
#[test]
fn one_shots_stay_done_ten_readme_commits_run_nothing_and_a_change_touches_its_service_alone() {
    require_docker();
    let s = Stack::new("oneshot", &[("compose.yaml", &with_one_shot(IMAGE_1))]);
    let k = &s.kedge;
    k.run(["sync", "--repo", &s.name]).success();
    let migrate = format!("{}-migrate-1", s.name);
    let ids = |s: &Stack| -> Vec<(String, String)> {
        s.project
            .containers()
            .into_iter()
            .map(|c| (c.name, c.id))
            .collect::<std::collections::BTreeMap<_, _>>()
            .into_iter()
            .collect()
    };
    let before = ids(&s);
    assert_eq!(before.len(), 3, "{before:?}");
    let since = now_s();

    for round in 0..10 {
        s.remote.write("README.md", &format!("round {round}\n"));
        s.remote.commit(&format!("docs {round}"));
        k.run(["sync", "--repo", &s.name]).success();
    }
    assert_eq!(ids(&s), before, "no container recreated");
    assert_eq!(starts_since(&s.name, &since), Vec::<String>::new());
    let history = s.history();
    let docs: Vec<&serde_json::Value> = history
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["message"].as_str().unwrap_or("").starts_with("docs "))
        .collect();
    assert_eq!(docs.len(), 10);
    for d in docs {
        assert_eq!(d["status"], "success", "{d}");
        assert_eq!(d["services_changed"], serde_json::json!([]), "{d}");
    }

    // A commit that changes the proxy alone: the proxy is recreated, the
    // app is not, and the migration does not run again.
    let since = now_s();
    s.remote.write(
        "compose.yaml",
        &with_one_shot(crate::support::docker::IMAGE_2),
    );
    s.remote.commit("proxy 2");
    k.run(["sync", "--repo", &s.name])
        .success()
        .stdout_has("proxy");
    let after = ids(&s);
    let id_of = |all: &[(String, String)], name: &str| {
        all.iter()
            .find(|(n, _)| n == name)
            .map(|(_, id)| id.clone())
    };
    let app = format!("{}-app-1", s.name);
    let proxy = format!("{}-proxy-1", s.name);
    assert_eq!(id_of(&after, &app), id_of(&before, &app));
    assert_eq!(id_of(&after, &migrate), id_of(&before, &migrate));
    assert_ne!(id_of(&after, &proxy), id_of(&before, &proxy));
    assert_eq!(starts_since(&s.name, &since), vec![proxy]);

    // Done, not down: `status` and the dashboard say so.
    let status = s.status();
    let states: Vec<(&str, &str)> = status["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["service"].as_str().unwrap(), c["state"].as_str().unwrap()))
        .collect();
    assert!(states.contains(&("migrate", "completed")), "{states:?}");
    let read = k.token("viewer", "read");
    let api = k.serve_api(&["--poll-interval", "1h", "--check-interval", "1h"], &[]);
    let agent = crate::sessions::client();
    let session = crate::sessions::sign_in(&agent, &api.addr, &read)
        .session
        .expect("a session");
    let overview = wait_for(30, "serve's first look at the containers", || {
        let page = agent
            .get(format!("http://{}/", api.addr))
            .header("Cookie", &session)
            .call()
            .ok()?
            .body_mut()
            .read_to_string()
            .ok()?;
        (!page.contains(">unknown<")).then_some(page)
    });
    assert!(overview.contains("3/3"), "{overview}");
}

/// Regression: renaming `docker.project_name` orphaned the old project:
/// the new one failed on the old one's ports, `diff` said the commit
/// changed no service, and the healer kept recreating containers in the
/// old project. A rename moves the stack: `diff` says so, the old project
/// goes down (first, as here, when both publish the same port), and only
/// the new one is healed from then on.
#[test]
fn renaming_the_project_moves_the_stack_and_leaves_nothing_behind() {
    require_docker();
    let port = crate::support::net::free_port();
    let compose = format!(
        "services:\n  web:\n    image: {IMAGE_1}\n    command: [sleep, '3600']\n    stop_signal: SIGKILL\n    ports: ['127.0.0.1:{port}:80']\n  worker:\n    image: {IMAGE_1}\n    command: [sleep, '3600']\n    stop_signal: SIGKILL\n"
    );
    let s = Stack::new("rename", &[("compose.yaml", &compose)]);
    let k = &s.kedge;
    k.run(["sync", "--repo", &s.name]).success();
    assert_eq!(s.running().len(), 2);
    let moved = format!("{}-b", s.name);
    let new_project = ComposeProject::named(&moved);
    s.remote.write(
        "kedge.yaml",
        &format!("docker:\n  project_name: {moved}\ndeploy:\n  stable_for: 0s\n"),
    );
    s.remote.commit("rename the project");
    let diff = k.run(["diff", "--repo", &s.name]);
    assert!(
        diff.stdout
            .contains(&format!("moves the stack from compose project {}", s.name))
            && diff.stdout.contains("Service: web")
            && diff.stdout.contains("Service: worker"),
        "{}",
        diff.stdout
    );
    k.run(["sync", "--repo", &s.name]).success();
    assert!(s.project.containers().is_empty(), "the old project is gone");
    let running: Vec<String> = new_project.running().into_iter().map(|c| c.name).collect();
    assert_eq!(running.len(), 2, "{running:?}");
    assert_eq!(s.status()["project"], moved.as_str());

    // serve heals the new project, never the old one.
    let serve = k.serve_debug(&["serve", "--poll-interval", "1h", "--check-interval", "1s"]);
    let web = format!("{moved}-web-1");
    crate::support::docker::docker_ok(&["stop", "-t", "0", &web]);
    wait_for(30, "the moved web healed", || {
        new_project
            .running()
            .iter()
            .any(|c| c.name == web)
            .then_some(())
    });
    let mark = serve.mark();
    serve.wait_passes(&s.name, mark, 2, 60);
    assert!(
        s.project.containers().is_empty(),
        "nothing came back in the old project"
    );
}

/// `kedge repo rename`, with `serve` running: history and events follow
/// the new name, the task restarts under it, and the next deployment moves
/// the stack to the compose project of the new name.
#[test]
fn a_repository_renamed_keeps_its_history_and_its_next_deployment_moves_the_stack() {
    require_docker();
    let s = Stack::new(
        "renamed",
        &[("compose.yaml", &sleepers(&[("web", IMAGE_1)]))],
    );
    let k = &s.kedge;
    // Made before serve: dropped after it, so serve cannot heal it back.
    let to = format!("{}-new", s.name);
    let new_project = ComposeProject::named(&to);
    let serve = k.serve_debug(&["serve", "--poll-interval", "300ms"]);
    s.wait_deployed();
    k.run(["repo", "rename", &s.name, &to])
        .success()
        .stdout_has(&format!("Renamed repository {} to {to}", s.name))
        .stdout_has(&format!("moves it to project {to}"));
    let list = k.run(["repo", "list", "-o", "json"]).json();
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, [to.as_str()]);
    let history = k.run(["history", "--repo", &to, "-o", "json"]).json();
    assert_eq!(history.as_array().unwrap().len(), 1, "{history}");
    let events = k.run(["events", "--repo", &to, "-o", "json"]).json();
    let kinds: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"repo_added") && kinds.contains(&"repo_renamed"),
        "{kinds:?}"
    );
    let repos = k.data_dir().join("repos");
    assert!(repos.join(&to).join(".git").is_dir());
    assert!(!repos.join(&s.name).exists());

    // serve follows under the new name: a new commit is deployed, as the
    // project of the new name, and the old project is gone.
    s.remote.write(
        "compose.yaml",
        &sleepers(&[("web", crate::support::docker::IMAGE_2)]),
    );
    let commit = s.remote.commit("after the rename");
    wait_for(90, "the commit deployed in the new project", || {
        new_project
            .running()
            .iter()
            .any(|c| c.label("io.kedge.commit") == Some(commit.as_str()))
            .then_some(())
    });
    // Down once the new project has passed its gate.
    wait_for(60, "the old project taken down", || {
        s.project.containers().is_empty().then_some(())
    });
    let status = k.run(["status", "--repo", &to, "-o", "json"]).json();
    assert_eq!(status[0]["project"], to.as_str(), "{status}");
    drop(serve);
}
