//! Health-gated deploys end to end: a commit whose changed services do not
//! come up fails its gate and is rolled back (or, when told, left as is),
//! `kedge sync` waits for the gate, and unhealthy containers are reported
//! or restarted (`drift.unhealthy`).

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::docker::{IMAGE_1, IMAGE_2, docker_ok};
use crate::support::*;

/// A busybox sleeper `service` on `image` with `extra` lines of its own.
fn service(name: &str, image: &str, extra: &str) -> String {
    format!(
        "  {name}:\n    image: {image}\n    command: [sleep, '3600']\n    stop_signal: SIGKILL\n{extra}"
    )
}

/// A service whose command is `script` (sh -c).
fn scripted(name: &str, image: &str, script: &str, extra: &str) -> String {
    format!(
        "  {name}:\n    image: {image}\n    command: [sh, -c, '{script}']\n    stop_signal: SIGKILL\n{extra}"
    )
}

fn compose(services: &[String]) -> String {
    format!("services:\n{}", services.concat())
}

/// A healthcheck every second, unhealthy after two failures.
fn healthcheck(test: &str) -> String {
    format!(
        "    healthcheck:\n      test: {test}\n      interval: 1s\n      timeout: 1s\n      retries: 2\n"
    )
}

/// The same for a service slow to start: failures in its first 30 s do not count.
fn slow_healthcheck(test: &str) -> String {
    healthcheck(test) + "      start_period: 30s\n"
}

fn gate_yaml(extra: &str) -> String {
    format!("deploy:\n  stable_for: 1s\n  timeout: 60s\n{extra}")
}

fn deployments_of(s: &Stack, commit: &str) -> Vec<Value> {
    s.history()
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["commit"] == commit)
        .cloned()
        .collect()
}

fn inspect(container: &str, format: &str) -> String {
    docker_ok(&["inspect", "--format", format, container])
}

/// Events of the repository, oldest first, as JSON.
fn events(s: &Stack) -> Vec<Value> {
    s.kedge
        .run(["events", "--repo", &s.name, "-o", "json", "--limit", "200"])
        .json()
        .as_array()
        .unwrap()
        .clone()
}

fn position(events: &[Value], kind: &str, commit: &str) -> usize {
    events
        .iter()
        .position(|e| e["kind"] == kind && e["commit"] == commit)
        .unwrap_or_else(|| panic!("no {kind} event of {commit}: {events:#?}"))
}

#[test]
fn a_crashing_commit_is_rolled_back_its_sibling_untouched_and_not_retried() {
    let s = Stack::new(
        "k15crash",
        &[
            (
                "compose.yaml",
                &compose(&[service("web", IMAGE_1, ""), service("api", IMAGE_1, "")]),
            ),
            ("kedge.yaml", &gate_yaml("")),
        ],
    );
    let c1 = s.remote.remote_head();
    let serve = s.kedge.serve_debug(&["serve", "--poll-interval", "300ms"]);
    wait_for(60, "c1 deployed", || {
        (deployments_of(&s, &c1).first()?["status"] == "success").then_some(())
    });
    let api = s.running()["api"].id.clone();

    // The new image's web exits 1 at once (and is restarted by its policy).
    let crashing = scripted(
        "web",
        IMAGE_2,
        "echo starting; echo cannot open /etc/app.conf >&2; exit 1",
        "    restart: unless-stopped\n",
    );
    s.remote.write(
        "compose.yaml",
        &compose(&[crashing, service("api", IMAGE_1, "")]),
    );
    let c2 = s.remote.commit("web on image 2, broken");
    let history = wait_for(60, "c2 failed and rolled back", || {
        let h = s.history();
        (h[0]["trigger"] == "auto_rollback" && h[0]["status"] != "in_progress").then_some(h)
    });
    let (restore, failed) = (&history[0], &history[1]);
    assert_eq!(failed["commit"], c2.as_str(), "{history}");
    assert_eq!(failed["status"], "failed", "{history}");
    assert_eq!(failed["failed_step"], "health_gate", "{history}");
    let error = failed["error"].as_str().unwrap();
    for needle in ["web", "exited with code 1", "cannot open /etc/app.conf"] {
        assert!(error.contains(needle), "{needle:?} not in {error:?}");
    }
    assert_eq!(restore["status"], "rolled_back", "{history}");
    assert_eq!(restore["commit"], c1.as_str(), "{history}");
    assert_eq!(restore["rolled_back_from"], c2.as_str(), "{history}");

    // The previous image runs again; the sibling kept its container.
    let now = wait_for(30, "web back on c1", || {
        let m = s.running();
        (m.get("web")?.label("io.kedge.commit") == Some(c1.as_str())).then_some(m)
    });
    assert_eq!(now["web"].image_id, image_id(IMAGE_1));
    assert_eq!(now["api"].id, api, "the unchanged sibling was recreated");

    let ev = events(&s);
    let started = position(&ev, "deploy_started", &c2);
    let failed_at = position(&ev, "deploy_failed", &c2);
    let rolled = position(&ev, "rolled_back", &c1);
    assert!(started < failed_at && failed_at < rolled, "{ev:#?}");
    assert_eq!(ev[rolled]["fields"]["failed_commit"], c2.as_str());

    let said = format!(
        "{} failed health gate; running {} (auto rollback)",
        &c2[..7],
        &c1[..7]
    );
    s.kedge
        .run(["status", "--repo", &s.name])
        .success()
        .stdout_has(&said);
    let status = s.status();
    assert_eq!(status["sync_state"], "failed", "{status}");
    assert_eq!(status["auto_rollback"]["text"], said.as_str(), "{status}");

    // Several passes later (each a check of the remote) c2 was not tried again.
    serve.wait_passes(&s.name, serve.mark(), 3, 30);
    assert_eq!(deployments_of(&s, &c2).len(), 1, "{}", s.history());
    assert_eq!(
        s.running()["web"].label("io.kedge.commit"),
        Some(c1.as_str())
    );

    // A fixed commit deploys normally.
    s.remote.write(
        "compose.yaml",
        &compose(&[service("web", IMAGE_2, ""), service("api", IMAGE_1, "")]),
    );
    let c3 = s.remote.commit("web on image 2, fixed");
    wait_for(60, "c3 deployed", || {
        (deployments_of(&s, &c3).first()?["status"] == "success").then_some(())
    });
    let now = s.running();
    assert_eq!(now["web"].image_id, image_id(IMAGE_2));
    assert_eq!(now["api"].id, api);
    assert_eq!(s.status()["auto_rollback"], Value::Null);
}

#[test]
fn sync_fails_on_a_healthcheck_verdict_long_before_the_timeout_and_says_why() {
    let s = Stack::new(
        "k15hc",
        &[
            ("compose.yaml", &compose(&[service("web", IMAGE_1, "")])),
            // A timeout far beyond the wait for the verdict below.
            ("kedge.yaml", "deploy:\n  stable_for: 1s\n  timeout: 10m\n"),
        ],
    );
    let c1 = s.remote.remote_head();
    s.kedge
        .run(["sync", "--repo", &s.name])
        .success()
        .stdout_has("(health gate passed)");

    s.remote.write(
        "compose.yaml",
        &compose(&[service("web", IMAGE_2, &healthcheck(r#"["CMD", "false"]"#))]),
    );
    let c2 = s.remote.commit("a healthcheck that never passes");
    let start = Instant::now();
    let out = s.kedge.run(["sync", "--repo", &s.name]);
    let took = start.elapsed();
    out.code(1)
        .stderr_has(&format!("deployment of {} failed", &c2[..7]))
        .stderr_has(&format!("rolled back to {}", &c1[..7]))
        .stderr_has("web: ")
        .stderr_has("is unhealthy: healthcheck said");
    // A generous ceiling, yet far below the 10 min timeout: only the
    // healthcheck's verdict can explain it.
    assert!(
        took < Duration::from_secs(120),
        "the verdict came after {took:?}; the timeout is 10 min"
    );
    let h = s.history();
    assert_eq!(h[1]["commit"], c2.as_str(), "{h}");
    assert_eq!(h[1]["failed_step"], "health_gate", "{h}");
    assert_eq!(h[0]["status"], "rolled_back", "{h}");
    assert_eq!(h[0]["trigger"], "auto_rollback", "{h}");
    let web = s.running()["web"].clone();
    assert_eq!(web.image_id, image_id(IMAGE_1));

    // The healthcheck's own words reach the message.
    s.remote.write(
        "compose.yaml",
        &compose(&[service(
            "web",
            IMAGE_2,
            &healthcheck(r#"["CMD-SHELL", "echo no answer on port 8080; exit 1"]"#),
        )]),
    );
    s.remote.commit("a healthcheck that explains itself");
    s.kedge
        .run(["sync", "--repo", &s.name])
        .code(1)
        .stderr_has("no answer on port 8080")
        .stderr_has(&format!("rolled back to {}", &c1[..7]));
}

#[test]
fn a_slow_service_passes_once_healthy_and_is_in_progress_until_then() {
    let s = Stack::new(
        "k15slow",
        &[
            ("compose.yaml", &compose(&[service("web", IMAGE_1, "")])),
            ("kedge.yaml", "deploy:\n  timeout: 30s\n  stable_for: 1s\n"),
        ],
    );
    s.kedge.run(["sync", "--repo", &s.name]).success();
    let slow = scripted(
        "web",
        IMAGE_2,
        "sleep 8; echo ready > /tmp/ready; exec sleep 3600",
        &slow_healthcheck(r#"["CMD-SHELL", "[ -f /tmp/ready ]"]"#),
    );
    s.remote.write("compose.yaml", &compose(&[slow]));
    let c2 = s.remote.commit("a slow start");
    let mut sync = s.kedge.spawn_quiet(["sync", "--repo", &s.name]);

    // While the gate waits: in progress in history, status and events.
    let web = wait_for(30, "the new web starting", || {
        s.project
            .running()
            .into_iter()
            .find(|c| c.label("io.kedge.commit") == Some(c2.as_str()))
    });
    let h = s.history();
    assert_eq!(h[0]["commit"], c2.as_str(), "{h}");
    assert_eq!(h[0]["status"], "in_progress", "{h}");
    assert_eq!(inspect(&web.id, "{{.State.Health.Status}}"), "starting");
    let status = s.status();
    assert_eq!(
        status["last_deployment"]["status"], "in_progress",
        "{status}"
    );
    let ev = events(&s);
    position(&ev, "deploy_started", &c2);
    assert!(
        !ev.iter()
            .any(|e| e["kind"] == "deploy_succeeded" && e["commit"] == c2.as_str()),
        "{ev:#?}"
    );

    assert!(sync.wait_exit(60).success());
    let d = &deployments_of(&s, &c2)[0];
    assert_eq!(d["status"], "success", "{d}");
    let started =
        chrono::DateTime::parse_from_rfc3339(&inspect(&web.id, "{{.State.StartedAt}}")).unwrap();
    let ev = events(&s);
    let ok = &ev[position(&ev, "deploy_succeeded", &c2)];
    let at = chrono::DateTime::parse_from_rfc3339(ok["time"].as_str().unwrap()).unwrap();
    assert!(
        at - started >= chrono::TimeDelta::seconds(8),
        "deploy_succeeded at {at}, the container started at {started}: before it was healthy"
    );
    assert_eq!(inspect(&web.id, "{{.State.Health.Status}}"), "healthy");
}

#[test]
fn a_one_shot_that_exits_1_fails_the_gate_exit_0_passes_and_no_wait_skips_it() {
    let web = service("web", IMAGE_1, "");
    let migrate = |code: u8| {
        scripted(
            "migrate",
            IMAGE_1,
            &format!("echo migrating; echo relation users does not exist >&2; exit {code}"),
            "    restart: \"no\"\n",
        )
    };
    let s = Stack::new(
        "k15migrate",
        &[
            ("compose.yaml", &compose(std::slice::from_ref(&web))),
            ("kedge.yaml", &gate_yaml("")),
        ],
    );
    let c1 = s.remote.remote_head();
    s.kedge.run(["sync", "--repo", &s.name]).success();
    let web_id = s.running()["web"].id.clone();

    s.remote
        .write("compose.yaml", &compose(&[web.clone(), migrate(1)]));
    // The failed commit's settings do not govern the restore (regression:
    // its `prune: false` left its new service running after the rollback).
    s.remote.write(
        "kedge.yaml",
        &format!("{}reconciliation:\n  prune: false\n", gate_yaml("")),
    );
    let c2 = s.remote.commit("a migration that fails");
    s.kedge
        .run(["sync", "--repo", &s.name])
        .code(1)
        .stderr_has("migrate: ")
        .stderr_has("exited with code 1")
        .stderr_has("relation users does not exist")
        .stderr_has(&format!("rolled back to {}", &c1[..7]));
    assert_eq!(deployments_of(&s, &c2)[0]["status"], "failed");
    assert!(
        !s.project
            .containers()
            .iter()
            .any(|c| c.service() == "migrate"),
        "the rollback removes the service c1 does not have"
    );
    assert_eq!(s.running()["web"].id, web_id);

    s.remote
        .write("compose.yaml", &compose(&[web.clone(), migrate(0)]));
    s.remote.write("kedge.yaml", &gate_yaml(""));
    let c3 = s.remote.commit("a migration that works");
    s.kedge.run(["sync", "--repo", &s.name]).success();
    assert_eq!(deployments_of(&s, &c3)[0]["status"], "success");

    // --no-wait: the failing migration is not waited for.
    s.remote.write(
        "compose.yaml",
        &compose(&[web, migrate(1).replace("migrating", "migrating again")]),
    );
    let c4 = s.remote.commit("a failing migration, not waited for");
    s.kedge
        .run(["sync", "--repo", &s.name, "--no-wait"])
        .success()
        .stdout_has(&format!("Deployed {}", &c4[..7]));
    assert_eq!(deployments_of(&s, &c4)[0]["status"], "success");
    assert_eq!(s.running()["web"].id, web_id);
}

#[test]
fn without_rollback_on_failure_a_failed_gate_is_left_as_it_is() {
    let s = Stack::new(
        "k15keep",
        &[
            ("compose.yaml", &compose(&[service("web", IMAGE_1, "")])),
            ("kedge.yaml", &gate_yaml("  rollback_on_failure: false\n")),
        ],
    );
    s.kedge.run(["sync", "--repo", &s.name]).success();
    s.remote.write(
        "compose.yaml",
        &compose(&[scripted("web", IMAGE_2, "echo giving up; exit 3", "")]),
    );
    let c2 = s.remote.commit("web exits 3");
    s.kedge
        .run(["sync", "--repo", &s.name])
        .code(1)
        .stderr_has("exited with code 3")
        .stderr_has("left running as it is");
    let h = s.history();
    assert_eq!(h[0]["commit"], c2.as_str(), "{h}");
    assert_eq!(h[0]["status"], "failed", "{h}");
    assert!(
        !h.as_array()
            .unwrap()
            .iter()
            .any(|d| d["status"] == "rolled_back"),
        "{h}"
    );
    let web = s
        .project
        .containers()
        .into_iter()
        .find(|c| c.service() == "web")
        .unwrap();
    assert_eq!(web.label("io.kedge.commit"), Some(c2.as_str()));
    assert_eq!(web.image_id, image_id(IMAGE_2));
    let status = s.status();
    assert_eq!(status["sync_state"], "failed", "{status}");
    assert_eq!(status["auto_rollback"], Value::Null, "{status}");
    assert!(
        status["last_error"]
            .as_str()
            .unwrap()
            .contains("exited with code 3"),
        "{status}"
    );
}

/// A service healthy while /tmp/ok exists, which its command creates.
fn checked_web() -> String {
    scripted(
        "web",
        IMAGE_1,
        "echo ok > /tmp/ok; exec sleep 3600",
        &healthcheck(r#"["CMD-SHELL", "[ -f /tmp/ok ]"]"#),
    )
}

fn healthy_stack(
    prefix: &str,
    unhealthy: &str,
    [poll, check]: [&str; 2],
) -> (Stack, crate::support::kedge::Serve, String) {
    let s = Stack::new(
        prefix,
        &[
            ("compose.yaml", &compose(&[checked_web()])),
            (
                "kedge.yaml",
                &format!("{}drift:\n  unhealthy: {unhealthy}\n", gate_yaml("")),
            ),
        ],
    );
    // Every pass, a poll or a full check, looks for drift.
    let serve = s
        .kedge
        .serve_debug(&["serve", "--poll-interval", poll, "--check-interval", check]);
    let c1 = s.remote.remote_head();
    wait_for(60, "c1 deployed and healthy", || {
        (deployments_of(&s, &c1).first()?["status"] == "success").then_some(())
    });
    let id = s.running()["web"].id.clone();
    assert_eq!(inspect(&id, "{{.State.Health.Status}}"), "healthy");
    (s, serve, id)
}

#[test]
fn drift_unhealthy_restart_restarts_an_unhealthy_container_quickly() {
    // Polls and full checks hourly: a restart within the wait below is the
    // engine's event.
    let (s, _serve, id) = healthy_stack("k15restart", "restart", ["1h", "1h"]);
    let before = inspect(&id, "{{.State.StartedAt}}");
    docker_ok(&["exec", &id, "busybox", "rm", "/tmp/ok"]);
    wait_for(30, "the unhealthy web restarted", || {
        (inspect(&id, "{{.State.StartedAt}}") != before).then_some(())
    });
    wait_for(30, "healthy again", || {
        (inspect(&id, "{{.State.Health.Status}}") == "healthy").then_some(())
    });
    let ev = events(&s);
    let unhealthy = ev
        .iter()
        .position(|e| e["kind"] == "unhealthy" && e["service"] == "web")
        .unwrap_or_else(|| panic!("{ev:#?}"));
    assert_eq!(ev[unhealthy]["fields"]["healed"], true);
    assert!(
        ev[unhealthy..].iter().any(|e| e["kind"] == "drift_healed"
            && e["message"].as_str().unwrap().contains("restart unhealthy")),
        "{ev:#?}"
    );
}

#[test]
fn drift_unhealthy_report_only_reports_and_status_and_diff_show_it() {
    let (s, serve, id) = healthy_stack("k15report", "report", ["2s", "1m"]);
    docker_ok(&["exec", &id, "busybox", "rm", "/tmp/ok"]);
    let event = wait_for(30, "the unhealthy event", || {
        events(&s)
            .into_iter()
            .find(|e| e["kind"] == "unhealthy" && e["service"] == "web")
    });
    assert_eq!(event["severity"], "warning");
    assert_eq!(event["fields"]["healed"], false);
    let status = s.status();
    assert_eq!(status["drifts"][0]["type"], "unhealthy", "{status}");
    assert_eq!(status["sync_state"], "drifted", "{status}");
    s.kedge
        .run(["status", "--repo", &s.name])
        .success()
        .stdout_has("Drift:       web: unhealthy:");
    s.kedge
        .run(["diff", "--repo", &s.name, "--exit-code"])
        .code(1)
        .stdout_has("Service: web\n  Status: Unhealthy\n  Expected: healthy\n");

    // Several passes later it has not been touched.
    serve.wait_passes(&s.name, serve.mark(), 3, 30);
    assert_eq!(inspect(&id, "{{.RestartCount}}"), "0");
    assert_eq!(inspect(&id, "{{.State.Health.Status}}"), "unhealthy");
    assert!(
        !events(&s).iter().any(|e| e["kind"] == "drift_healed"),
        "a heal under `report`"
    );
}

#[test]
fn kill_9_of_serve_during_a_gate_then_restart_converges() {
    let s = Stack::new(
        "k15kill",
        &[
            ("compose.yaml", &compose(&[service("web", IMAGE_1, "")])),
            ("kedge.yaml", "deploy:\n  timeout: 60s\n  stable_for: 1s\n"),
        ],
    );
    let c1 = s.remote.remote_head();
    let mut serve = s.kedge.serve("300ms");
    wait_for(60, "c1 deployed", || {
        (deployments_of(&s, &c1).first()?["status"] == "success").then_some(())
    });
    let slow = scripted(
        "web",
        IMAGE_2,
        "sleep 6; echo ready > /tmp/ready; exec sleep 3600",
        &slow_healthcheck(r#"["CMD-SHELL", "[ -f /tmp/ready ]"]"#),
    );
    s.remote.write("compose.yaml", &compose(&[slow]));
    let c2 = s.remote.commit("a slow start");
    // In the gate: compose is done, the new container is starting.
    wait_for(30, "the gate under way", || {
        let gated = s.history()[0]["commit"] == c2.as_str()
            && s.history()[0]["status"] == "in_progress"
            && !crate::support::stack::compose_up_running(&s.name)
            && s.project.running().iter().any(|c| {
                c.label("io.kedge.commit") == Some(c2.as_str())
                    && inspect(&c.id, "{{.State.Health.Status}}") == "starting"
            });
        gated.then_some(())
    });
    serve.kill9();

    let _serve = s.kedge.serve("300ms");
    wait_for(60, "c2 deployed after the restart", || {
        let rows = deployments_of(&s, &c2);
        rows.iter().any(|d| d["status"] == "success").then_some(())
    });
    let rows = deployments_of(&s, &c2);
    let interrupted = rows.last().unwrap();
    assert_eq!(interrupted["status"], "failed", "{rows:?}");
    assert!(
        interrupted["error"]
            .as_str()
            .unwrap()
            .contains("interrupted"),
        "{rows:?}"
    );
    let status = s.status();
    assert_eq!(status["deployed_commit"], c2.as_str(), "{status}");
    assert_eq!(status["sync_state"], "synced", "{status}");
    let web = s.running()["web"].clone();
    assert_eq!(web.label("io.kedge.commit"), Some(c2.as_str()));
    assert_eq!(inspect(&web.id, "{{.State.Health.Status}}"), "healthy");
}

/// Regression: the automatic restore after a failed gate was itself
/// ungated, so a previous version that now crash-loops (its data changed
/// since) was recorded `rolled_back … is back`. The restore is gated now,
/// and one that does not come up is a failed deployment that says so.
#[test]
fn a_restore_that_fails_its_own_gate_is_recorded_failed_and_said_plainly() {
    let volume = "    volumes: [data:/data]\n    restart: unless-stopped\n";
    let v1 = scripted(
        "web",
        IMAGE_1,
        "test -e /data/broken && exit 3; sleep 3600",
        volume,
    );
    let s = Stack::new(
        "restoregate",
        &[
            ("compose.yaml", &(compose(&[v1]) + "volumes:\n  data: {}\n")),
            ("kedge.yaml", &gate_yaml("")),
        ],
    );
    let c1 = s.remote.remote_head();
    let _serve = s.kedge.serve_debug(&["serve", "--poll-interval", "300ms"]);
    wait_for(60, "c1 deployed", || {
        (deployments_of(&s, &c1).first()?["status"] == "success").then_some(())
    });
    // The data changes under the running version: it would not start again.
    let web = s.running()["web"].id.clone();
    docker_ok(&["exec", &web, "sh", "-c", ": > /data/broken"]);

    let v2 = scripted("web", IMAGE_2, "exit 1", volume);
    s.remote
        .write("compose.yaml", &(compose(&[v2]) + "volumes:\n  data: {}\n"));
    let c2 = s.remote.commit("web 2, broken");
    let history = wait_for(90, "c2 failed and its restore finished", || {
        let h = s.history();
        (h[0]["trigger"] == "auto_rollback" && h[0]["status"] != "in_progress").then_some(h)
    });
    let (restore, failed) = (&history[0], &history[1]);
    assert_eq!(failed["commit"], c2.as_str(), "{history}");
    assert_eq!(failed["status"], "failed", "{history}");
    assert_eq!(restore["commit"], c1.as_str(), "{history}");
    assert_eq!(restore["status"], "failed", "{history}");
    assert_eq!(restore["failed_step"], "health_gate", "{history}");
    let error = restore["error"].as_str().unwrap();
    for needle in [
        "did not come up either",
        "exited with code 3",
        "left as it is",
    ] {
        assert!(error.contains(needle), "{needle:?} not in {error:?}");
    }

    let ev = events(&s);
    assert!(
        !ev.iter().any(|e| e["kind"] == "rolled_back"),
        "no restore claimed success: {ev:#?}"
    );
    let restore_failed = position(&ev, "deploy_failed", &c1);
    assert_eq!(ev[restore_failed]["fields"]["trigger"], "auto_rollback");
    assert_eq!(ev[restore_failed]["fields"]["failed_commit"], c2.as_str());

    let status = s.status();
    assert_eq!(status["sync_state"], "failed", "{status}");
    let last_error = status["last_error"].as_str().unwrap_or_default();
    assert!(last_error.contains("did not come up either"), "{status}");
}

/// Regression: `docker stop` of a service within `stable_for` of a first
/// deployment failed it ("exited with code 143 … nothing to roll back to")
/// and the stack then stayed stopped: no heal, no retry. A stop through
/// the engine is drift: the gate starts the container again and the
/// deployment succeeds.
#[test]
fn docker_stop_during_a_first_deployments_gate_is_healed_and_the_deployment_succeeds() {
    let s = Stack::new(
        "gatestop",
        &[
            (
                "compose.yaml",
                &compose(&[service("web", IMAGE_1, ""), service("api", IMAGE_1, "")]),
            ),
            (
                "kedge.yaml",
                &gate_yaml("").replace("stable_for: 1s", "stable_for: 4s"),
            ),
        ],
    );
    let c1 = s.remote.remote_head();
    let _serve = s.kedge.serve_debug(&["serve", "--poll-interval", "300ms"]);
    let web = wait_for(60, "web running in the gate", || {
        let m = s.running();
        let in_gate = deployments_of(&s, &c1).first()?["status"] == "in_progress";
        (in_gate && m.len() == 2).then(|| m["web"].id.clone())
    });
    docker_ok(&["stop", "-t", "1", &web]);
    let deployment = wait_for(60, "the first deployment finished", || {
        let d = deployments_of(&s, &c1).first()?.clone();
        (d["status"] != "in_progress").then_some(d)
    });
    assert_eq!(deployment["status"], "success", "{deployment}");
    let now = s.running();
    assert_eq!(now["web"].id, web, "the same container runs again");
    assert_eq!(s.status()["sync_state"], "synced");
}

/// `deploy.ignore`: an init service whose exit the gate does not wait for.
/// The same stack without it fails its gate; a name the stack does not have
/// refuses the commit, naming it.
#[test]
fn deploy_ignore_leaves_an_init_service_out_of_the_gate() {
    let init = |script: &str| {
        compose(&[
            service("web", IMAGE_1, ""),
            scripted("init", IMAGE_1, script, "    restart: \"no\"\n"),
        ])
    };
    let s = Stack::new(
        "gateignore",
        &[
            ("compose.yaml", &init("echo migrated; exit 3")),
            ("kedge.yaml", &gate_yaml("  ignore: [init]\n")),
        ],
    );
    s.kedge.run(["sync", "--repo", &s.name]).success();
    assert_eq!(s.history()[0]["status"], "success", "{}", s.history());

    // Without the exclusion the exit fails the gate.
    s.remote.write("kedge.yaml", &gate_yaml(""));
    s.remote
        .write("compose.yaml", &init("    environment: [V=2]\n"));
    let gated = s.remote.commit("init gated");
    s.kedge
        .run(["sync", "--repo", &s.name])
        .code(1)
        .stderr_has("init");
    let failed = deployments_of(&s, &gated);
    assert_eq!(failed[0]["status"], "failed", "{failed:?}");

    // A name that is no service: refused before anything runs.
    s.remote
        .write("kedge.yaml", &gate_yaml("  ignore: [init, migrate]\n"));
    let typo = s.remote.commit("a typo");
    s.kedge
        .run(["sync", "--repo", &s.name])
        .code(1)
        .stderr_has("`deploy.ignore` names `migrate`, which is not a service of the stack (its services: init, web)");
    assert_eq!(deployments_of(&s, &typo)[0]["failed_step"], "render");
}
