//! `docker.target: swarm` on a real three-node Swarm (one manager, two
//! workers, each its own engine in its own network namespace).

use crate::support::docker::{IMAGE_1, IMAGE_2};
use crate::support::swarm_lab::SwarmLab;
use crate::support::*;

const KEDGE_YAML: &str = "docker:\n  target: swarm\ndeploy:\n  stable_for: 1s\n  timeout: 90s\n";

/// `web` (3 replicas, one task at a time) and `worker` (1 replica).
fn stack(web_image: &str, web_command: &str, failure_action: &str) -> String {
    format!(
        "services:
  web:
    image: {web_image}
    command: {web_command}
    deploy:
      replicas: 3
      update_config:
        parallelism: 1
        monitor: 2s
        failure_action: {failure_action}
  worker:
    image: {IMAGE_1}
    command: [sleep, '3600']
"
    )
}

const SLEEP: &str = "[sleep, '3600']";

fn status(k: &Kedge, name: &str) -> serde_json::Value {
    k.run(["status", "--repo", name, "-o", "json"]).json()[0].clone()
}

#[test]
fn a_stack_deploys_rolls_one_service_heals_and_rolls_back_on_a_three_node_swarm() {
    let lab = SwarmLab::start();
    let name = unique_name("k17");
    let (web, worker) = (format!("{name}_web"), format!("{name}_worker"));
    let remote = GitRemote::new(&name);
    remote.write("kedge.yaml", KEDGE_YAML);
    remote.write("compose.yaml", &stack(IMAGE_1, SLEEP, "pause"));
    let first = remote.commit("first");
    let k = Kedge::new().env("DOCKER_HOST", &lab.host);
    k.run(["repo", "add", &remote.url()]).success();

    // Deployed through the gate: every task running, spread over the nodes.
    k.run(["sync", "--repo", &name]).success();
    let nodes: std::collections::BTreeSet<String> = lab
        .docker(&[
            "service",
            "ps",
            "--filter",
            "desired-state=running",
            "--format",
            "{{.Node}}",
            &web,
        ])
        .lines()
        .map(String::from)
        .collect();
    assert!(nodes.len() >= 2, "web's tasks on {nodes:?}");
    let st = status(&k, &name);
    assert_eq!(st["deployed_commit"], first.as_str(), "{st:#}");
    let services = st["services"].as_array().unwrap();
    let row = |s: &str| services.iter().find(|r| r["service"] == s).unwrap().clone();
    assert_eq!(row("web")["state"], "running 3/3", "{st:#}");
    assert_eq!(row("worker")["state"], "running 1/1", "{st:#}");
    assert_eq!(st["sync_state"], "synced", "{st:#}");
    assert_eq!(
        lab.service(&web, "{{index .Spec.Labels \"io.kedge.commit\"}}"),
        first
    );

    // An image change rolls web only, one task at a time; worker's tasks stay.
    let worker_tasks = lab.running_tasks(&worker);
    remote.write("compose.yaml", &stack(IMAGE_2, SLEEP, "pause"));
    let second = remote.commit("web to image 2");
    k.run(["sync", "--repo", &name]).success();
    assert_eq!(
        lab.service(&web, "{{.Spec.TaskTemplate.ContainerSpec.Image}}")
            .split('@')
            .next(),
        Some(IMAGE_2)
    );
    assert_eq!(lab.service(&web, "{{.Spec.UpdateConfig.Parallelism}}"), "1");
    assert_eq!(lab.running_tasks(&worker), worker_tasks);
    assert_eq!(status(&k, &name)["deployed_commit"], second.as_str());

    // A second stack in `notify` mode: its drift is reported, never healed.
    let watched = unique_name("k17n");
    let notify_remote = GitRemote::new(&watched);
    notify_remote.write(
        "kedge.yaml",
        &format!("{KEDGE_YAML}reconciliation:\n  mode: notify\n"),
    );
    notify_remote.write(
        "compose.yaml",
        &format!("services:\n  app:\n    image: {IMAGE_1}\n    command: {SLEEP}\n    deploy:\n      replicas: 2\n"),
    );
    notify_remote.commit("notify stack");
    k.run(["repo", "add", &notify_remote.url()]).success();
    k.run(["sync", "--repo", &watched]).success();
    let app = format!("{watched}_app");

    // Drift at service level, healed by serve.
    let serve = k.serve_debug(&["serve", "--poll-interval", "1h", "--check-interval", "1s"]);
    lab.docker(&["service", "scale", "-d", &format!("{web}=1")]);
    wait_for(60, "web scaled back to 3", || {
        (lab.service(&web, "{{.Spec.Mode.Replicated.Replicas}}") == "3").then_some(())
    });
    lab.docker(&["service", "update", "-d", "--image", IMAGE_2, &worker]);
    wait_for(60, "worker's image put back", || {
        lab.service(&worker, "{{.Spec.TaskTemplate.ContainerSpec.Image}}")
            .starts_with(IMAGE_1)
            .then_some(())
    });
    lab.docker(&[
        "service",
        "create",
        "-d",
        "--name",
        &format!("{name}_extra"),
        "--label",
        &format!("com.docker.stack.namespace={name}"),
        IMAGE_1,
        "sleep",
        "3600",
    ]);
    wait_for(60, "the extra service pruned", || {
        (!lab
            .docker(&["service", "ls", "--format", "{{.Name}}"])
            .contains("_extra"))
        .then_some(())
    });
    let events = k.run(["events", "--repo", &name, "-o", "json"]).stdout;
    for needle in [
        "missing: 1 of 3",
        "wrong image",
        "extra:",
        "docker stack deploy",
    ] {
        assert!(
            events.contains(needle),
            "{needle} not in the events:\n{events}"
        );
    }
    // notify: reported, and left as it is over passes that could have healed.
    lab.docker(&["service", "scale", "-d", &format!("{app}=1")]);
    wait_for(60, "the notify stack's drift reported", || {
        let events = k.run(["events", "--repo", &watched, "-o", "json"]).stdout;
        events.contains("missing: 1 of 2").then_some(())
    });
    let mark = serve.mark();
    serve.wait_passes(&watched, mark, 3, 60);
    assert_eq!(lab.service(&app, "{{.Spec.Mode.Replicated.Replicas}}"), "1");
    assert_eq!(status(&k, &watched)["sync_state"], "drifted");

    // A worker node lost: reported, left to Swarm, nothing redeployed.
    let deployments = k.run(["history", "--repo", &name, "-o", "json"]).json();
    lab.stop_node(3);
    wait_for(90, "the node loss reported", || {
        let events = k.run(["events", "--repo", &name, "-o", "json"]).stdout;
        events.contains("node_down").then_some(())
    });
    // Swarm moves web's tasks to the nodes left, on its own.
    wait_for(90, "web's tasks rescheduled off the lost node", || {
        let tasks = lab.docker(&[
            "service",
            "ps",
            "--filter",
            "desired-state=running",
            "--format",
            "{{.Node}} {{.CurrentState}}",
            &web,
        ]);
        let running: Vec<&str> = tasks.lines().filter(|l| l.contains("Running")).collect();
        (running.len() == 3
            && !running
                .iter()
                .any(|l| l.ends_with("node3") || l.contains("node3 ")))
        .then_some(())
    });
    lab.start_node(3);
    drop(serve);
    assert_eq!(
        k.run(["history", "--repo", &name, "-o", "json"]).json(),
        deployments
    );

    // An update whose new tasks exit 1, with Swarm's own rollback: failed,
    // rolled back by Swarm, not applied a second time by Kedge.
    remote.write(
        "compose.yaml",
        &stack(IMAGE_1, "[sh, -c, 'exit 1']", "rollback"),
    );
    let third = remote.commit("web exits 1");
    let failed = k.run(["sync", "--repo", &name]);
    failed.code(1).stderr_has("Swarm rolled the update back");
    let history = k.run(["history", "--repo", &name, "-o", "json"]).json();
    let newest = &history.as_array().unwrap()[0];
    assert_eq!(newest["commit"], third.as_str(), "{history:#}");
    assert_eq!(newest["status"], "failed", "{history:#}");
    assert_eq!(
        lab.service(&web, "{{.Spec.TaskTemplate.ContainerSpec.Image}}")
            .split('@')
            .next(),
        Some(IMAGE_2),
        "Swarm's rollback put image 2 back"
    );
    let st = status(&k, &name);
    assert_eq!(st["deployed_commit"], second.as_str(), "{st:#}");

    // The same with `rollback_on_failure: false`: what runs is what Swarm
    // put back, not the failed commit (regression: it was taken as
    // deployed, and the heal deployed it again and again).
    remote.write(
        "kedge.yaml",
        &format!("{KEDGE_YAML}  rollback_on_failure: false\n"),
    );
    remote.write(
        "compose.yaml",
        &stack(IMAGE_1, "[sh, -c, 'exit 2']", "rollback"),
    );
    remote.commit("web exits 2, Kedge leaves failures as they are");
    let failed = k.run(["sync", "--repo", &name]);
    failed.code(1).stderr_has("Swarm rolled the update back");
    assert!(
        !failed.stderr.contains("left running as it is"),
        "{}",
        failed.stderr
    );
    let st = status(&k, &name);
    assert_eq!(st["deployed_commit"], second.as_str(), "{st:#}");
    assert_eq!(
        lab.service(&web, "{{.Spec.TaskTemplate.ContainerSpec.Image}}")
            .split('@')
            .next(),
        Some(IMAGE_2)
    );

    // `kedge rollback` and its pin, as on compose.
    k.run(["rollback", "--repo", &name, &first[..7]]).success();
    assert_eq!(
        lab.service(&web, "{{.Spec.TaskTemplate.ContainerSpec.Image}}")
            .split('@')
            .next(),
        Some(IMAGE_1)
    );
    let st = status(&k, &name);
    assert_eq!(st["pinned_commit"], first.as_str(), "{st:#}");

    // `repo remove --down` takes the stack down (regression: it ran
    // compose's `down`, which leaves a stack's services alone).
    k.run(["repo", "remove", &name, "--down"]).success();
    let label = format!("label=com.docker.stack.namespace={name}");
    wait_for(60, "the stack's services removed", || {
        lab.docker(&["service", "ls", "--filter", &label, "--format", "{{.Name}}"])
            .trim()
            .is_empty()
            .then_some(())
    });
}
