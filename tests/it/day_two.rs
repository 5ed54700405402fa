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
