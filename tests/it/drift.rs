//! Drift detection and healing per mode, on the real engine. Every pass
//! (a poll or a full check) looks for drift: where `serve` runs with both
//! hourly, a heal within the waits proves it reacted to the engine's
//! events (how fast: the `heal` row of benches/compare.rs).

use crate::support::docker::{IMAGE_1, IMAGE_2, docker_ok};
use crate::support::*;

/// A ceiling for a heal, not a latency goal.
const HEAL_CEILING_SECS: u64 = 30;

fn compose() -> String {
    sleepers(&[("web", IMAGE_1), ("api", IMAGE_1)])
}

fn stack(prefix: &str, mode: &str, extra: &str) -> Stack {
    let compose = compose() + extra;
    let kedge_yaml = format!("reconciliation:\n  mode: {mode}\n");
    Stack::new(
        prefix,
        &[("compose.yaml", &compose), ("kedge.yaml", &kedge_yaml)],
    )
}

/// Waits until `check` holds.
#[track_caller]
fn healed_within(what: &str, mut check: impl FnMut() -> bool) {
    wait_for(HEAL_CEILING_SECS, what, || check().then_some(()));
}

fn container_name(s: &Stack, service: &str) -> String {
    format!("{}-{service}-1", s.name)
}

#[test]
fn auto_heals_every_drift_on_engine_events_and_leaves_the_healthy_sibling() {
    let s = stack("heal", "auto", "");
    let _serve = s
        .kedge
        .serve_with(&["serve", "--poll-interval", "1h", "--check-interval", "1h"]);
    let first = wait_for(60, "the stack deployed", || {
        let m = s.running();
        (m.len() == 2).then_some(m)
    });
    s.wait_deployed();
    let api_id = first["api"].id.clone();
    let web = container_name(&s, "web");

    // Stopped.
    docker_ok(&["stop", "-t", "0", &web]);
    healed_within("the stopped web to run again", || {
        s.running().contains_key("web")
    });

    // Missing.
    docker_ok(&["rm", "-f", &web]);
    healed_within("the deleted web to be recreated", || {
        s.running().contains_key("web")
    });

    // Extra: an orphan carrying the project's compose labels.
    let orphan = format!("{}-orphan-1", s.name);
    // Kedge may remove it on its create event before `docker run` starts it.
    let out = crate::support::docker::docker(&[
        "run",
        "-d",
        "--name",
        &orphan,
        "--label",
        &format!("com.docker.compose.project={}", s.name),
        "--label",
        "com.docker.compose.service=orphan",
        IMAGE_1,
        "sleep",
        "3600",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success()
            || err.contains("marked for removal")
            || err.contains("No such container"),
        "{err}"
    );
    healed_within("the orphan to be removed", || {
        !s.project.containers().iter().any(|c| c.name == orphan)
    });

    // Wrong image: replaced by hand with another image, compose labels copied.
    let original = s.running()["web"].clone();
    docker_ok(&["rm", "-f", &web]);
    // Stopped by SIGKILL like the services above (busybox ignores SIGTERM as PID 1).
    let mut args: Vec<String> = vec![
        "run".into(),
        "-d".into(),
        "--stop-signal".into(),
        "KILL".into(),
        "--name".into(),
        web.clone(),
    ];
    for (k, v) in &original.labels {
        args.push("--label".into());
        args.push(format!("{k}={v}"));
    }
    args.extend([IMAGE_2.into(), "sleep".into(), "3600".into()]);
    docker_ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let want = image_id(IMAGE_1);
    healed_within("the hand-replaced web to run its own image again", || {
        s.running().get("web").is_some_and(|c| c.image_id == want)
    });

    let now = s.running();
    assert_eq!(now["api"].id, api_id, "the healthy sibling was recreated");
    let status = s
        .kedge
        .run(["status", "--repo", &s.name, "-o", "json"])
        .json();
    let kinds: Vec<String> = status[0]["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_string())
        .collect();
    assert!(kinds.contains(&"drift_healed".to_string()), "{status}");
}

#[test]
fn a_completed_one_shot_stays_done_and_a_crash_loop_is_bounded() {
    let extra = "  migrate:
    image: kedge-test/busybox:1
    command: [sh, -c, 'exit 0']
  crasher:
    image: kedge-test/busybox:1
    command: [sh, -c, 'sleep 0.2; exit 3']
    restart: 'no'
";
    // The crasher dies 0.2 s after it starts: whether the health gate saw it
    // alive first is a race (under load it does not, and the first deploy
    // fails). This test is about heals, so its deploys are not gated.
    let compose = compose() + extra;
    let s = Stack::new(
        "oneshot",
        &[
            ("compose.yaml", &compose),
            (
                "kedge.yaml",
                "reconciliation:\n  mode: auto\ndeploy:\n  wait: false\n",
            ),
        ],
    );
    let serve = s
        .kedge
        .serve_debug(&["serve", "--poll-interval", "2s", "--check-interval", "1m"]);
    wait_for(60, "the stack deployed", || {
        (s.running().len() >= 2).then_some(())
    });
    let migrate = || {
        s.project
            .containers()
            .into_iter()
            .find(|c| c.service() == "migrate")
    };
    let done = wait_for(30, "the one-shot to complete", || {
        migrate().filter(|c| c.status == "exited")
    });

    // The crasher dies 0.2 s after every start: without a bound it would be
    // restarted for ever. Serve reports a crash loop...
    let message = |r: &serde_json::Value, prefix: &str| {
        r["service"] == "crasher" && r["message"].as_str().is_some_and(|m| m.starts_with(prefix))
    };
    let (looped, _) = wait_for(60, "the crash loop reported", || {
        serve.find_since(0, |r| message(r, "crash-looping"))
    });
    // ...then sees the crasher dead again and reports that drift...
    let (dead, _) = wait_for(30, "the crasher's next death reported", || {
        serve.find_since(looped, |r| message(r, "drift: stopped"))
    });
    // ...and passes later (one of them timed by the poll interval, not an
    // engine event) still has not started it.
    serve.wait_passes(&s.name, dead, 3, 30);
    let crasher = container_name(&s, "crasher");
    let restarts: Vec<_> = serve
        .records_since(looped)
        .into_iter()
        .filter(|(_, r)| {
            r["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("heal") && m.contains(&crasher))
        })
        .collect();
    assert!(restarts.is_empty(), "healed while backed off: {restarts:?}");
    let k = &s.kedge;
    let status = k.run(["status", "--repo", &s.name, "-o", "json"]).json();
    let events = status[0]["events"].clone();
    let after = migrate().expect("the one-shot container");
    assert_eq!(
        after.started_at, done.started_at,
        "the completed one-shot was restarted"
    );
    assert_eq!(after.status, "exited");

    let db = rusqlite::Connection::open(k.db_path()).unwrap();
    let count = |kind: &str, service: &str| -> i64 {
        db.query_row(
            "SELECT count(*) FROM events WHERE kind = ?1 AND service = ?2",
            [kind, service],
            |r| r.get(0),
        )
        .unwrap()
    };
    // A service healed 5 times within 5 minutes is crash-looping.
    let heals = count("drift_healed", "crasher");
    assert_eq!(heals, 5, "crasher healed {heals} times; events: {events}");
    assert_eq!(
        count("crash_loop", "crasher"),
        1,
        "the crash loop is reported once"
    );
    assert_eq!(count("drift_healed", "migrate"), 0);
    assert_eq!(count("drift_detected", "migrate"), 0);
}

#[test]
fn notify_and_manual_report_drift_and_new_commits_and_sync_heals_them() {
    for mode in ["notify", "manual"] {
        let s = stack(mode, mode, "");
        // A new repo in notify or manual is not deployed by serve: sync is the way in.
        s.kedge.run(["sync", "--repo", &s.name]).success();
        let first = s.running();
        assert_eq!(first.len(), 2, "{mode}: sync deploys");
        let serve = s.kedge.serve_debug(&[
            "serve",
            "--poll-interval",
            "300ms",
            "--check-interval",
            "1m",
        ]);
        // Serve has looked at the stack as sync left it: nothing to report.
        let mark = serve.wait_passes(&s.name, 0, 1, 30);
        let drift_events = || -> Vec<String> {
            let status = s.status();
            status["events"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|e| e["kind"] == "drift_detected")
                .map(|e| e["service"].as_str().unwrap().to_string())
                .collect()
        };
        let before = drift_events();
        assert!(
            before.is_empty(),
            "{mode}: drift reported already: {before:?}"
        );

        let web = container_name(&s, "web");
        docker_ok(&["stop", "-t", "0", &web]);
        let stopped = s.project.containers();
        docker_ok(&["rm", "-f", &container_name(&s, "api")]);
        s.remote
            .write("compose.yaml", &compose().replacen(IMAGE_1, IMAGE_2, 1));
        let c2 = s.remote.commit("web on image 2");
        // Serve looks: it records both drifts as events...
        wait_for(30, "the drift of web and api recorded", || {
            let services = drift_events();
            (services.iter().any(|x| x == "web") && services.iter().any(|x| x == "api"))
                .then_some(())
        });
        // ...and reports the new commit as left alone because of the mode...
        let deferred = format!("new commit not deployed: mode is {mode}");
        wait_for(30, "the new commit reported as not deployed", || {
            serve.find_since(mark, |r| {
                r["message"] == deferred.as_str() && r["commit"] == c2[..7]
            })
        });
        // ...and finishes the pass that did: a heal or a deployment would be done.
        serve.wait_passes(&s.name, serve.mark(), 1, 30);
        assert!(s.running().is_empty(), "{mode} must change nothing");
        let now = s.project.containers();
        assert_eq!(
            now.iter().map(|c| (&c.id, &c.status)).collect::<Vec<_>>(),
            stopped
                .iter()
                .filter(|c| c.service() == "web")
                .map(|c| (&c.id, &c.status))
                .collect::<Vec<_>>(),
            "{mode}: the stopped web is left as it was, api is not recreated"
        );
        assert_ne!(s.history()[0]["commit"], c2.as_str(), "{mode}: c2 deployed");

        let diff = s.kedge.run(["diff", "--repo", &s.name, "--exit-code"]);
        diff.code(1)
            .stdout_has("Service: web\n  Status: Not running\n  Expected: running\n  Actual: exited")
            .stdout_has("Service: api\n  Status: Missing\n  Expected: 1 container\n  Actual: 0 containers")
            .stdout_has(&format!("Pending commit {}", &c2[..7]))
            .stdout_has("Status: Will be updated\n  Expected: kedge-test/busybox:2\n  Actual: kedge-test/busybox:1");
        let json = s
            .kedge
            .run(["diff", "--repo", &s.name, "-o", "json"])
            .json();
        assert_eq!(json["in_sync"], false);
        let types: Vec<&str> = json["drifts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["type"].as_str().unwrap())
            .collect();
        assert_eq!(types, ["missing", "stopped"], "{mode}");
        let status = s
            .kedge
            .run(["status", "--repo", &s.name, "-o", "json"])
            .json();
        assert_eq!(status[0]["sync_state"], "drifted", "{mode}: {status}");

        s.kedge.run(["sync", "--repo", &s.name]).success();
        let healed = s.running();
        assert_eq!(healed.len(), 2, "{mode}: sync heals");
        assert_eq!(
            healed["web"].image_id,
            image_id(IMAGE_2),
            "{mode}: sync deploys the new commit"
        );
        s.kedge
            .run(["diff", "--repo", &s.name, "--exit-code"])
            .success()
            .stdout_has("In sync");
    }
}

#[test]
fn a_tag_moved_under_a_running_service_is_wrong_image_and_healed() {
    let tag = format!("kedge-test/moving:{}", unique_name("tag"));
    docker_ok(&["tag", IMAGE_1, &tag]);
    let s = Stack::new("tag", &[("compose.yaml", &sleepers(&[("web", &tag)]))]);
    // A retag is an image event, not a container one: the full check finds it.
    let _serve = s
        .kedge
        .serve_with(&["serve", "--poll-interval", "1m", "--check-interval", "1s"]);
    let first = wait_for(60, "deployed", || s.running().remove("web"));
    assert_eq!(first.image_id, image_id(IMAGE_1));

    // What a `docker pull` of a newer image under the same tag does.
    docker_ok(&["tag", IMAGE_2, &tag]);
    let want = image_id(IMAGE_2);
    let healed = wait_for(15, "web recreated on the moved tag", || {
        s.running().remove("web").filter(|c| c.image_id == want)
    });
    assert_ne!(healed.id, first.id);
    let _ = crate::support::docker::docker(&["image", "rm", &tag]);
}

#[test]
fn a_service_labelled_ignore_is_deployed_but_never_healed() {
    let compose = compose()
        + "  debug:\n    image: kedge-test/busybox:1\n    command: [sleep, '3600']\n    stop_signal: SIGKILL\n    labels:\n      io.kedge.ignore: \"true\"\n";
    let s = Stack::new("ignore", &[("compose.yaml", &compose)]);
    let serve = s
        .kedge
        .serve_debug(&["serve", "--poll-interval", "1m", "--check-interval", "1s"]);
    wait_for(60, "all three deployed", || {
        (s.running().len() == 3).then_some(())
    });
    s.wait_deployed();
    let debug = container_name(&s, "debug");
    docker_ok(&["stop", "-t", "0", &debug]);
    docker_ok(&["stop", "-t", "0", &container_name(&s, "web")]);
    // The pass that healed web saw debug stopped too (it was stopped first)...
    healed_within("web healed", || s.running().contains_key("web"));
    // ...and so did later ones, full checks timed by the check interval
    // among them.
    serve.wait_passes(&s.name, serve.mark(), 3, 30);
    assert!(
        !s.running().contains_key("debug"),
        "an ignored service was restarted"
    );
    let about_debug: Vec<_> = serve
        .records_since(0)
        .into_iter()
        .filter(|(_, r)| {
            r["service"] == "debug"
                || r["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("heal") && m.contains(&debug))
        })
        .collect();
    assert!(
        about_debug.is_empty(),
        "an ignored service's drift was reported or healed: {about_debug:?}"
    );
    let diff = s
        .kedge
        .run(["diff", "--repo", &s.name, "-o", "json"])
        .json();
    assert_eq!(diff["drifts"], serde_json::json!([]), "{diff}");
}

/// Regression: with the data dir on a full filesystem, a stopped container
/// was not restarted (the store write before the drift check failed), and
/// once space was freed recovery waited for the backoff's 5-minute cap.
#[test]
fn a_full_disk_neither_stops_healing_nor_delays_recovery() {
    use crate::support::smallfs::SmallFs;
    let fs = SmallFs::mount(16);
    let data_dir = fs.path().join("kedge");
    let name = unique_name("full");
    let remote = GitRemote::new(&name);
    remote.write("compose.yaml", &compose());
    remote.commit("first");
    let k = Kedge::new().env("KEDGE_DATA_DIR", data_dir.to_str().unwrap());
    k.run(["repo", "add", &remote.url()]).success();
    let s = Stack {
        name: name.clone(),
        remote,
        kedge: k,
        project: ComposeProject::named(&name),
    };
    let serve = s.kedge.serve_with(&[
        "serve",
        "--poll-interval",
        "300ms",
        "--check-interval",
        "2s",
    ]);
    // Deployed and recorded: the disk fills only after the deployment's
    // services are in the store (what the drift check works from).
    wait_for(60, "the stack deployed and recorded", || {
        let h = s.history();
        (s.running().len() == 2 && h[0]["status"] == "success").then_some(())
    });

    fs.fill();
    wait_for(30, "the store failing to write", || {
        serve.log().contains("disk is full").then_some(())
    });
    let web = container_name(&s, "web");
    docker_ok(&["stop", "-t", "0", &web]);
    wait_for(30, "the stopped web to run again on a full disk", || {
        s.running().contains_key("web").then_some(())
    });
    // Twelve failed writes in a row: the old backoff was past a minute by
    // then, beyond the wait for recovery below.
    wait_for(90, "repeated store failures", || {
        (serve.log().matches("disk is full").count() >= 12).then_some(())
    });

    fs.free();
    s.remote.write(
        "compose.yaml",
        &sleepers(&[("web", IMAGE_2), ("api", IMAGE_1)]),
    );
    let c2 = s.remote.commit("two");
    wait_for(40, "the new commit deployed once space is back", || {
        let m = s.running();
        (m.get("web")?.label("io.kedge.commit") == Some(c2.as_str())).then_some(())
    });
}

/// Regression: a container the engine keeps restarting (`restart: always`
/// and a process that exits at once) counted as alive: no drift, no
/// `crash_loop` event, `kedge_drift_services` 0. It is reported now, once,
/// and `kedge diff` shows it; Kedge does not fight the engine's restarts.
#[test]
fn a_crash_loop_under_restart_always_is_reported() {
    // Runs until told to crash; from then on every start exits 3 at once.
    let compose = format!(
        "services:\n  web:\n    image: {IMAGE_1}\n    restart: always\n    stop_signal: SIGKILL\n    \
         command: [sh, -c, 'while [ ! -e /tmp/crash ]; do sleep 0.2; done; exit 3']\n"
    );
    let s = Stack::new("loop", &[("compose.yaml", &compose)]);
    let _serve = s
        .kedge
        .serve_with(&["serve", "--poll-interval", "2s", "--check-interval", "1s"]);
    wait_for(60, "the stack deployed", || {
        s.running().contains_key("web").then_some(())
    });
    s.wait_deployed();
    docker_ok(&[
        "exec",
        &container_name(&s, "web"),
        "sh",
        "-c",
        ": > /tmp/crash",
    ]);

    let event = wait_for(60, "a crash_loop event", || {
        let events = s
            .kedge
            .run(["events", "--repo", &s.name, "-o", "json"])
            .json();
        events
            .as_array()?
            .iter()
            .find(|e| e["kind"] == "crash_loop")
            .cloned()
    });
    assert_eq!(event["service"], "web", "{event}");
    assert_eq!(event["fields"]["drift"], "crash_loop", "{event}");
    let message = event["message"].as_str().unwrap();
    assert!(message.contains("exit code 3"), "{message}");

    let diff = wait_for(30, "the diff to show the loop", || {
        let out = s.kedge.run(["diff", "--repo", &s.name]).stdout.clone();
        out.contains("Crash loop").then_some(out)
    });
    assert!(diff.contains("Service: web"), "{diff}");
    // Reported once, not at every pass while it keeps looping (it shows
    // `running` between restarts).
    wait_for(60, "a few more restarts", || {
        let n = docker_ok(&[
            "inspect",
            "-f",
            "{{.RestartCount}}",
            &container_name(&s, "web"),
        ]);
        (n.trim().parse::<u32>().ok()? >= 5).then_some(())
    });
    let events = s
        .kedge
        .run(["events", "--repo", &s.name, "-o", "json"])
        .json();
    let count = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "crash_loop")
        .count();
    assert_eq!(count, 1, "one crash_loop event while it loops");
}
