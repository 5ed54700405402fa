//! Restarting the Docker daemon under a running `kedge serve`. This is its
//! own test binary on purpose: cargo runs test binaries one after another,
//! so no other real-Docker test sees the engine go away.

#[path = "it/support/mod.rs"]
mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use support::docker::{IMAGE_1, docker_ok};
use support::*;

fn engine_up() -> bool {
    Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn restart_engine() {
    // The host's engine only: other engines (a Swarm test lab) may run
    // beside it.
    let pid = std::fs::read_to_string("/var/run/docker.pid")
        .expect("the host engine's pid file")
        .trim()
        .to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::path::Path::new(&format!("/proc/{pid}")).exists() {
        assert!(Instant::now() < deadline, "dockerd did not stop");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The project's own provisioning starts it again, as on a new machine.
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/provision.sh");
    let status = Command::new("bash").arg(script).status().unwrap();
    assert!(status.success(), "provision.sh could not restart dockerd");
    assert!(engine_up());
}

#[test]
fn serve_survives_an_engine_restart_reconnects_and_heals() {
    require_docker();
    let name = unique_name("restart");
    let remote = GitRemote::new(&name);
    remote.write(
        "compose.yaml",
        &format!(
            "services:\n  web:\n    image: {IMAGE_1}\n    command: [sleep, '3600']\n    stop_signal: SIGKILL\n"
        ),
    );
    remote.commit("stack");
    let k = Kedge::new();
    k.run(["repo", "add", &remote.url()]).success();
    let project = ComposeProject::named(&name);
    let mut serve = k.serve_with(&["serve", "--poll-interval", "1s", "--check-interval", "1m"]);
    wait_for(60, "the stack deployed", || {
        (project.running().len() == 1).then_some(())
    });

    // Likely during the deployment's health gate (5 s by default): an
    // outage, not the commit's verdict.
    restart_engine();
    // The daemon stopped the container on its way down; Kedge, reconnected,
    // deploys the commit again (or heals, if the gate had passed).
    wait_for(30, "the stack running again after the restart", || {
        (project.running().len() == 1).then_some(())
    });
    let head = remote.remote_head();
    wait_for(30, "the deployment finished", || {
        let status = k.run(["status", "--repo", &name, "-o", "json"]).json();
        (status[0]["deployed_commit"] == head.as_str()).then_some(())
    });
    assert!(
        serve.child.try_wait().unwrap().is_none(),
        "serve died with the engine"
    );

    // The event stream is back (its reconnect backs off up to 5 s while the
    // engine is down, so this may come after the first heal by a pass).
    wait_for(30, "the event stream reconnected", || {
        serve
            .log()
            .contains("docker engine reachable again")
            .then_some(())
    });

    // Drift made after the restart is seen through the new event stream.
    let web = format!("{name}-web-1");
    docker_ok(&["stop", "-t", "0", &web]);
    wait_for(30, "web healed after the restart", || {
        (project.running().len() == 1).then_some(())
    });
    assert_eq!(serve.terminate(), Some(0));
}
