//! Stacks deployed to Docker hosts (fleet.md §4), end to end on the hosts
//! lab: one repository whose stacks run on this machine, on a host reached
//! over SSH and on one reached over TCP with TLS; drift healed on a remote
//! engine from its own event stream; a host whose engine stops leaves its
//! stacks `unknown` with nothing recorded failed, and its return is one
//! full check with nothing redeployed.

use crate::hosts::kedge_for;
use crate::support::docker::IMAGE_1;
use crate::support::hosts_lab::HostsLab;
use crate::support::*;

/// Host `edge`: the lab's second engine, over TCP with TLS.
fn edge(lab: &HostsLab) -> String {
    format!(
        "  edge:\n    docker_host: tcp://{}:2376\n    tls: {{ca: {}, cert: {}, key: {}}}\n",
        lab.addrs[1],
        lab.tls.join("ca.pem").display(),
        lab.tls.join("cert.pem").display(),
        lab.tls.join("key.pem").display()
    )
}

fn sleeper() -> String {
    format!("    image: {IMAGE_1}\n    command: [sleep, '3600']\n    stop_signal: SIGKILL\n")
}

/// `kedge events -o json` of one stack (`REPO/STACK`).
fn events(k: &Kedge, address: &str) -> Vec<serde_json::Value> {
    k.run(["events", "--repo", address, "-o", "json"])
        .json()
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn has(events: &[serde_json::Value], kind: &str) -> bool {
    events.iter().any(|e| e["kind"] == kind)
}

/// The containers of `project` on lab host `n`: (id, io.kedge.host label).
fn on_host(lab: &HostsLab, n: usize, project: &str) -> Vec<(String, String)> {
    lab.docker(
        n,
        &[
            "ps",
            "--filter",
            &format!("label=com.docker.compose.project={project}"),
            "--format",
            "{{.ID}} {{.Label \"io.kedge.host\"}}",
        ],
    )
    .lines()
    .filter_map(|l| {
        let (id, host) = l.split_once(' ')?;
        Some((id.to_string(), host.to_string()))
    })
    .collect()
}

fn stack_status<'a>(all: &'a serde_json::Value, stack: &str) -> &'a serde_json::Value {
    all.as_array()
        .unwrap()
        .iter()
        .find(|s| s["stack"] == stack)
        .unwrap_or_else(|| panic!("no stack {stack} in {all}"))
}

#[test]
fn stacks_deploy_to_their_hosts_heal_there_and_wait_out_a_host_that_is_away() {
    require_docker();
    let lab = HostsLab::start();
    lab.load(&[IMAGE_1]);
    let (k, _config) = kedge_for(&lab, &edge(&lab));
    let sampler = crate::support::argv::ArgvSampler::start(&["ssh", "docker", "kedge"]);
    let name = unique_name("hosts");
    let remote = GitRemote::new(&name);
    remote.write(
        "kedge.yaml",
        "discover:\n  - path: \"stacks/*\"\ndefaults:\n  deploy:\n    stable_for: 0s\n",
    );
    for (stack, host) in [("home", None), ("nas", Some("a")), ("edge", Some("edge"))] {
        remote.write(
            &format!("stacks/{stack}/compose.yaml"),
            &format!("services:\n  app:\n{}", sleeper()),
        );
        if let Some(host) = host {
            remote.write(
                &format!("stacks/{stack}/kedge.yaml"),
                &format!("target:\n  host: {host}\n"),
            );
        }
    }
    remote.commit("three stacks, three hosts");
    k.run(["repo", "add", &remote.url()]).success();
    let home = ComposeProject::named(&format!("{name}-home"));
    let serve = k.serve_api(&["--poll-interval", "1s", "--check-interval", "1s"], &[]);
    for stack in ["home", "nas", "edge"] {
        let address = format!("{name}/{stack}");
        wait_for(60, "the stack registered", || {
            (k.run(["history", "--repo", &address]).code == Some(0)).then_some(())
        });
        wait_deployed(&k, &address);
    }

    // Each stack runs on its host, and only there.
    assert_eq!(home.running().len(), 1);
    let nas = on_host(&lab, 1, &format!("{name}-nas"));
    let edge = on_host(&lab, 2, &format!("{name}-edge"));
    assert_eq!(nas.len(), 1, "{nas:?}");
    assert_eq!(nas[0].1, "a", "the container says its host");
    assert_eq!(edge.len(), 1, "{edge:?}");
    assert_eq!(edge[0].1, "edge");
    assert!(on_host(&lab, 2, &format!("{name}-nas")).is_empty());
    assert!(
        ComposeProject::named(&format!("{name}-nas"))
            .running()
            .is_empty()
    );
    assert!(on_host(&lab, 1, &format!("{name}-home")).is_empty());

    let status = k.run(["status", "--repo", &name, "-o", "json"]).json();
    for (stack, host) in [("home", "local"), ("nas", "a"), ("edge", "edge")] {
        let s = stack_status(&status, stack);
        assert_eq!(s["host"], host, "{s}");
        assert_eq!(s["sync_state"], "synced", "{s}");
    }
    k.run(["status", "--repo", &format!("{name}/nas")])
        .success()
        .stdout_has("Host:        a");
    let hosts = k.run(["host", "list", "-o", "json"]).json();
    for h in hosts.as_array().unwrap() {
        if ["a", "edge"].contains(&h["name"].as_str().unwrap()) {
            assert_eq!(h["stacks"], 1, "{hosts}");
        }
    }

    // Drift on a remote engine: healed from that engine's own events.
    lab.docker(1, &["rm", "-f", &nas[0].0]);
    wait_for(30, "the nas stack healed on host a", || {
        let now = on_host(&lab, 1, &format!("{name}-nas"));
        (now.len() == 1 && now[0].0 != nas[0].0).then_some(())
    });
    wait_for(30, "drift_healed of nas", || {
        has(&events(&k, &format!("{name}/nas")), "drift_healed").then_some(())
    });

    // Host a's engine stops: its stack is unknown, nothing is recorded
    // failed, the others go on.
    let deployments = |stack: &str| {
        k.run([
            "history",
            "--repo",
            &format!("{name}/{stack}"),
            "-o",
            "json",
        ])
        .json()
        .as_array()
        .map_or(0, Vec::len)
    };
    let before = deployments("nas");
    lab.stop_engine(1);
    wait_for(60, "host_unreachable for nas", || {
        has(&events(&k, &format!("{name}/nas")), "host_unreachable").then_some(())
    });
    wait_for(30, "nas unknown", || {
        let status = k.run(["status", "--repo", &name, "-o", "json"]).json();
        let s = stack_status(&status, "nas").clone();
        (s["sync_state"] == "unknown").then_some(s)
    });
    let status = k.run(["status", "--repo", &name, "-o", "json"]).json();
    assert_eq!(stack_status(&status, "home")["sync_state"], "synced");
    assert_eq!(stack_status(&status, "edge")["sync_state"], "synced");
    assert!(!has(
        &events(&k, &format!("{name}/home")),
        "host_unreachable"
    ));
    // A sync asked meanwhile is refused with the reason.
    k.run(["sync", "--repo", &format!("{name}/nas")])
        .code(1)
        .stderr_has("host `a` is unreachable");

    lab.start_engine(1);
    wait_for(60, "host_recovered for nas", || {
        has(&events(&k, &format!("{name}/nas")), "host_recovered").then_some(())
    });
    // The full check on its return starts what the engine's stop ended
    // (a heal), and deploys nothing.
    wait_for(60, "nas in sync again", || {
        let status = k.run(["status", "--repo", &name, "-o", "json"]).json();
        (stack_status(&status, "nas")["sync_state"] == "synced").then_some(())
    });
    assert_eq!(deployments("nas"), before, "nothing redeployed");
    // Nothing recorded failed while it was away (an engine just back may
    // refuse a first start; that heal is retried and said).
    let nas_events = events(&k, &format!("{name}/nas"));
    assert!(!has(&nas_events, "deploy_failed"), "{nas_events:#?}");
    let id_of = |kind: &str| {
        nas_events
            .iter()
            .filter(|e| e["kind"] == kind)
            .filter_map(|e| e["id"].as_i64())
            .collect::<Vec<_>>()
    };
    let back = id_of("host_recovered")[0];
    assert!(
        id_of("heal_failed").iter().all(|id| *id > back),
        "{nas_events:#?}"
    );

    // The SSH and TLS keys travel as paths, never as their content: not in
    // any argv, nor serve's log, the events, status or the host list.
    let secret_line = |path: &std::path::Path| -> String {
        let text = std::fs::read_to_string(path).unwrap();
        let line = text.lines().nth(1).unwrap().to_string();
        assert!(line.len() >= 40, "a line of key material: {line}");
        line
    };
    let secrets = [secret_line(&lab.key), secret_line(&lab.tls.join("key.pem"))];
    let mut said: Vec<(String, String)> = sampler
        .finish()
        .into_iter()
        .map(|a| ("an argv".to_string(), a))
        .collect();
    said.push(("serve's log".into(), serve.serve.log()));
    for args in [
        vec!["events", "-o", "json"],
        vec!["status", "-o", "json"],
        vec!["host", "list", "-o", "json"],
    ] {
        said.push((args.join(" "), k.run(args).stdout));
    }
    assert!(
        said.iter()
            .any(|(w, a)| w == "an argv" && a.contains("ssh"))
    );
    for (what, text) in &said {
        for s in &secrets {
            assert!(!text.contains(s.as_str()), "key material in {what}: {text}");
        }
    }
}

/// What a remote host cannot see is refused before anything changes there:
/// a `configs:` file and a bind mount of the repository for a host reached
/// over TCP (no SSH to ship them over), a host no config names, and a host
/// whose SSH key changed.
#[test]
fn a_remote_stack_with_local_files_or_an_unknown_host_is_refused_with_the_reason() {
    require_docker();
    let lab = HostsLab::start();
    let (k, _config) = kedge_for(&lab, &edge(&lab));
    let name = unique_name("hostfiles");
    let remote = GitRemote::new(&name);
    remote.write(
        "kedge.yaml",
        "stacks:\n  - path: conf\n  - path: bind\n  - path: lost\n  - path: keyed\n",
    );
    remote.write(
        "conf/compose.yaml",
        &format!(
            "services:\n  app:\n{}    configs: [app]\nconfigs:\n  app:\n    file: ./app.conf\n",
            sleeper()
        ),
    );
    remote.write("conf/app.conf", "v1\n");
    remote.write("conf/kedge.yaml", "target:\n  host: edge\n");
    remote.write(
        "bind/compose.yaml",
        &format!(
            "services:\n  app:\n{}    volumes: ['./app.conf:/etc/app.conf:ro']\n",
            sleeper()
        ),
    );
    remote.write("bind/app.conf", "v1\n");
    remote.write("bind/kedge.yaml", "target:\n  host: edge\n");
    remote.write(
        "lost/compose.yaml",
        &format!("services:\n  app:\n{}", sleeper()),
    );
    remote.write("lost/kedge.yaml", "target:\n  host: nowhere\n");
    remote.write(
        "keyed/compose.yaml",
        &format!("services:\n  app:\n{}", sleeper()),
    );
    remote.write("keyed/kedge.yaml", "target:\n  host: b\n");
    remote.commit("files a remote host cannot see");
    // Host b's key is pinned, then changes: b is refused, not trusted.
    k.run(["host", "check", "b"]).success();
    lab.rekey(2);
    k.run(["repo", "add", &remote.url()]).success();
    let _serve = k.serve_api(&["--poll-interval", "1s", "--check-interval", "1s"], &[]);
    let failed = |stack: &str| {
        let address = format!("{name}/{stack}");
        wait_for(60, "the refused deployment recorded", || {
            let out = k.run(["history", "--repo", &address, "-o", "json"]);
            if out.code != Some(0) {
                return None;
            }
            let newest = out.json().get(0)?.clone();
            (newest["status"] == "failed").then_some(newest)
        })
    };
    let conf = failed("conf");
    let error = conf["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("(configs app: file conf/app.conf)")
            && error.contains("host edge cannot see"),
        "{conf}"
    );
    let bind = failed("bind");
    let error = bind["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("(service app: bind mount of bind/app.conf)")
            && error.contains("not to a tcp:// host"),
        "{bind}"
    );
    let lost = failed("lost");
    assert!(
        lost["error"].as_str().unwrap_or_default().contains(
            "host `nowhere` is not configured (the global config's `hosts:` has: a, b, edge, local)"
        ),
        "{lost}"
    );
    // The stack on the host whose key changed: unknown, the reason named,
    // nothing deployed there nor recorded failed.
    let keyed = wait_for(60, "keyed unknown, naming the changed key", || {
        let status = k.run(["status", "--repo", &name, "-o", "json"]).json();
        let s = stack_status(&status, "keyed").clone();
        let named = s["host_error"]
            .as_str()
            .is_some_and(|e| e.contains("has changed"));
        (s["host"] == "b" && s["sync_state"] == "unknown" && named).then_some(s)
    });
    let history = k
        .run(["history", "--repo", &format!("{name}/keyed"), "-o", "json"])
        .json();
    assert_eq!(history, serde_json::json!([]), "{keyed}");
    assert!(on_host(&lab, 2, &format!("{name}-keyed")).is_empty());
    assert!(on_host(&lab, 1, &format!("{name}-conf")).is_empty());
    assert!(
        ComposeProject::named(&format!("{name}-conf"))
            .running()
            .is_empty()
    );
}

/// A bind-mounted file of the repository on a host reached over SSH: it is
/// shipped there, a change to it recreates only the service that mounts
/// it, a rollback brings the old file back, and copies older than the
/// previous deployment's are pruned. Nothing of it is written on this
/// machine's `/var/lib/kedge-remote`.
#[test]
fn a_bind_mounted_file_reaches_the_host_and_a_rollback_brings_the_old_one_back() {
    require_docker();
    let lab = HostsLab::start();
    lab.load(&[IMAGE_1]);
    let (k, _config) = kedge_for(&lab, "");
    let name = unique_name("hostship");
    let remote = GitRemote::new(&name);
    remote.write(
        "kedge.yaml",
        "target:\n  host: a\ndeploy:\n  stable_for: 0s\n",
    );
    remote.write(
        "compose.yaml",
        &format!(
            "services:\n  web:\n{}    volumes: ['./site.conf:/etc/site.conf:ro', './static:/static:ro']\n  side:\n{}",
            sleeper(),
            sleeper()
        ),
    );
    remote.write("site.conf", "v1\n");
    remote.write("static/index.html", "hello\n");
    let c1 = remote.commit("v1");
    k.run(["repo", "add", &remote.url()]).success();
    k.run(["sync", "--repo", &name]).success();

    let ids = || -> std::collections::BTreeMap<String, String> {
        lab.docker(
            1,
            &[
                "ps",
                "--filter",
                &format!("label=com.docker.compose.project={name}"),
                "--format",
                "{{.Label \"com.docker.compose.service\"}} {{.ID}}",
            ],
        )
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(s, id)| (s.to_string(), id.to_string()))
        .collect()
    };
    let read = |path: &str| {
        let web = ids()["web"].clone();
        lab.docker(1, &["exec", &web, "cat", path])
    };
    assert_eq!(read("/etc/site.conf"), "v1\n");
    assert_eq!(read("/static/index.html"), "hello\n");
    let first = ids();

    remote.write("site.conf", "v2\n");
    remote.commit("v2");
    k.run(["sync", "--repo", &name]).success();
    assert_eq!(read("/etc/site.conf"), "v2\n");
    let second = ids();
    assert_ne!(
        second["web"], first["web"],
        "web mounts the file: recreated"
    );
    assert_eq!(second["side"], first["side"], "side does not: left alone");

    k.run(["rollback", "--repo", &name, &c1[..7]]).success();
    assert_eq!(read("/etc/site.conf"), "v1\n");
    assert_eq!(read("/static/index.html"), "hello\n");

    // A third version: the copies of the one before the previous go.
    remote.write("site.conf", "v3\n");
    remote.commit("v3");
    k.run(["sync", "--repo", &name]).success();
    assert_eq!(read("/etc/site.conf"), "v3\n");
    let listed = lab.in_remote_dir(1, &format!("cat /remote/{name}/*/site.conf | sort"));
    assert_eq!(listed, "v1\nv3\n", "v3 and the previous deployment's v1");
    assert!(
        !std::path::Path::new("/var/lib/kedge-remote")
            .join(&name)
            .exists(),
        "nothing on this machine"
    );
}

/// `target: {hosts: [a, b]}`: one stack, a deployment on each host
/// (`REPO/STACK@HOST`); a commit rolls both, and one whose gate fails on
/// `b` alone is rolled back on `b` alone, said there.
#[test]
fn a_stack_on_two_hosts_deploys_to_both_and_a_gate_failing_on_one_rolls_back_that_one() {
    require_docker();
    let lab = HostsLab::start();
    lab.load(&[IMAGE_1]);
    let (k, _config) = kedge_for(&lab, "");
    let name = unique_name("twohosts");
    // A file only host a has: the next version needs it to keep running.
    let flag = format!("/var/lib/kedge-remote/flag-{name}");
    lab.docker(
        1,
        &[
            "run",
            "--rm",
            "-v",
            "/var/lib/kedge-remote:/r",
            IMAGE_1,
            "sh",
            "-c",
            &format!("mkdir -p /r/flag-{name} && touch /r/flag-{name}/ok"),
        ],
    );
    let remote = GitRemote::new(&name);
    remote.write(
        "kedge.yaml",
        "stacks:\n  - path: web\ndefaults:\n  deploy:\n    stable_for: 2s\n    timeout: 30s\n",
    );
    remote.write("web/kedge.yaml", "target:\n  hosts: [a, b]\n");
    remote.write(
        "web/compose.yaml",
        &format!("services:\n  app:\n{}", sleeper()),
    );
    let c1 = remote.commit("one stack, two hosts");
    k.run(["repo", "add", &remote.url()]).success();
    let _serve = k.serve_api(&["--poll-interval", "1s", "--check-interval", "2s"], &[]);
    let newest = |address: &str| -> Option<serde_json::Value> {
        let out = k.run(["history", "--repo", address, "-o", "json"]);
        if out.code != Some(0) {
            return None;
        }
        out.json().get(0).cloned()
    };
    let deployed = |address: &str, commit: &str| {
        wait_for(90, "the deployment of the commit", || {
            let n = newest(address)?;
            (n["commit"] == commit && n["status"] == "success").then_some(())
        })
    };
    deployed(&format!("{name}/web@a"), &c1);
    deployed(&format!("{name}/web@b"), &c1);
    let project = format!("{name}-web");
    for (n, host) in [(1, "a"), (2, "b")] {
        let on = on_host(&lab, n, &project);
        assert_eq!(on.len(), 1, "{on:?}");
        assert_eq!(on[0].1, host);
    }
    let status = k.run(["status", "--repo", &name, "-o", "json"]).json();
    assert_eq!(stack_status(&status, "web@a")["host"], "a");
    assert_eq!(stack_status(&status, "web@b")["host"], "b");

    // The next version needs the file: it passes its gate on a, fails on b.
    remote.write(
        "web/compose.yaml",
        &format!(
            "services:\n  app:\n    image: {IMAGE_1}\n    command: [sh, -c, 'test -f /flag/ok && exec sleep 3600']\n    stop_signal: SIGKILL\n    volumes: ['{flag}:/flag:ro']\n"
        ),
    );
    let c2 = remote.commit("needs the flag");
    deployed(&format!("{name}/web@a"), &c2);
    let b = format!("{name}/web@b");
    wait_for(90, "b's deployment of c2 failed", || {
        let h = k.run(["history", "--repo", &b, "-o", "json"]).json();
        h.as_array()?
            .iter()
            .any(|d| d["commit"] == c2.as_str() && d["status"] == "failed")
            .then_some(())
    });
    let commit_on = |n: usize| {
        lab.docker(
            n,
            &[
                "ps",
                "--filter",
                &format!("label=com.docker.compose.project={project}"),
                "--format",
                "{{.Label \"io.kedge.commit\"}}",
            ],
        )
        .trim()
        .to_string()
    };
    assert_eq!(commit_on(1), c2, "a runs the new version");
    wait_for(60, "b running the old version again", || {
        (commit_on(2) == c1).then_some(())
    });
    assert!(has(&events(&k, &b), "deploy_failed"));
    assert!(!has(&events(&k, &format!("{name}/web@a")), "deploy_failed"));
    // Regression: after b's restore its settings were read from the root
    // kedge.yaml, which names no host, and the next check healed b's
    // project onto this machine's engine.
    wait_for(30, "b's checks after the restore", || {
        let h = k.run(["history", "--repo", &b, "-o", "json"]).json();
        (h.as_array()?.len() >= 2).then_some(())
    });
    let status = k.run(["status", "--repo", &name, "-o", "json"]).json();
    assert_eq!(stack_status(&status, "web@b")["host"], "b", "{status}");
    assert!(
        ComposeProject::named(&project).running().is_empty(),
        "nothing of the stack on this machine's engine"
    );
}

/// `docker.target: swarm` on a host reached over SSH, whose engine is a
/// Swarm manager: the same seam deploys, shows and heals it there.
#[test]
fn a_swarm_stack_runs_on_a_remote_hosts_swarm_and_is_healed_there() {
    require_docker();
    let lab = HostsLab::start();
    lab.load(&[IMAGE_1]);
    lab.docker(1, &["swarm", "init", "--advertise-addr", &lab.addrs[0]]);
    let (k, _config) = kedge_for(&lab, "");
    let name = unique_name("hostswarm");
    let remote = GitRemote::new(&name);
    remote.write(
        "kedge.yaml",
        "docker:\n  target: swarm\ntarget:\n  host: a\ndeploy:\n  stable_for: 1s\n  timeout: 90s\n",
    );
    remote.write(
        "compose.yaml",
        &format!(
            "services:\n  web:\n    image: {IMAGE_1}\n    command: [sleep, '3600']\n    deploy:\n      replicas: 2\n"
        ),
    );
    let c1 = remote.commit("a Swarm stack on host a");
    k.run(["repo", "add", &remote.url()]).success();
    k.run(["sync", "--repo", &name]).success();

    let web = format!("{name}_web");
    let spec = |format: &str| {
        lab.docker(1, &["service", "inspect", "--format", format, &web])
            .trim()
            .to_string()
    };
    assert_eq!(spec("{{index .Spec.Labels \"io.kedge.commit\"}}"), c1);
    let st = k.run(["status", "--repo", &name, "-o", "json"]).json()[0].clone();
    assert_eq!(st["host"], "a", "{st:#}");
    assert_eq!(st["sync_state"], "synced", "{st:#}");
    let services = st["services"].as_array().unwrap();
    assert_eq!(services[0]["state"], "running 2/2", "{st:#}");

    // Drift on that Swarm, healed by serve through the host's engine.
    let _serve = k.serve_api(&["--poll-interval", "1h", "--check-interval", "1s"], &[]);
    lab.docker(1, &["service", "scale", "-d", &format!("{web}=1")]);
    wait_for(60, "web scaled back to 2 on host a", || {
        (spec("{{.Spec.Mode.Replicated.Replicas}}") == "2").then_some(())
    });
}
