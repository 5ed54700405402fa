//! Docker hosts (fleet.md §4) on the hosts lab: a heal on a host reached
//! over SSH beside the same heal on this machine's engine, in one serve;
//! then idle `serve` with 20 stacks on each of three hosts (local, SSH,
//! TCP with TLS): its CPU with its children (the SSH connection included),
//! and the processes it keeps.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use super::support::docker::{IMAGE_1, docker_ok};
use super::support::hosts_lab::HostsLab;
use super::support::*;
use super::{Row, fmt, ms, running, stats, until};

fn config(lab: &HostsLab) -> String {
    format!(
        "hosts:\n  a:\n    docker_host: ssh://root@{}\n    ssh_key: {}\n  edge:\n    docker_host: tcp://{}:2376\n    tls: {{ca: {}, cert: {}, key: {}}}\n",
        lab.addrs[0],
        lab.key.display(),
        lab.addrs[1],
        lab.tls.join("ca.pem").display(),
        lab.tls.join("cert.pem").display(),
        lab.tls.join("key.pem").display()
    )
}

fn kedge_with(lab: &HostsLab, dir: &Path) -> Kedge {
    std::fs::write(dir.join("config.yaml"), config(lab)).unwrap();
    Kedge::new().env("KEDGE_CONFIG", dir.join("config.yaml").to_str().unwrap())
}

fn sleeper() -> String {
    format!(
        "services:\n  web:\n    image: {IMAGE_1}\n    command: [sleep, '3600']\n    stop_signal: SIGKILL\n    network_mode: none\n"
    )
}

/// A repository of `stacks` per host, `stacks/<host>-<i>`.
fn repository(name: &str, hosts: &[&str], stacks: usize) -> GitRemote {
    let remote = GitRemote::new(name);
    remote.write(
        "kedge.yaml",
        "discover:\n  - path: \"stacks/*\"\ndefaults:\n  deploy:\n    stable_for: 0s\n",
    );
    for host in hosts {
        for i in 0..stacks {
            let dir = format!("stacks/{host}-{i}");
            remote.write(&format!("{dir}/compose.yaml"), &sleeper());
            remote.write(
                &format!("{dir}/kedge.yaml"),
                &format!("target:\n  host: {host}\n"),
            );
        }
    }
    remote.commit("stacks on hosts");
    remote
}

pub fn hosts(engine: &::kedge::observe::Engine, runs: usize) -> Vec<Row> {
    let lab = HostsLab::start();
    lab.load(&[IMAGE_1]);
    let a = ::kedge::observe::Engine::at(&lab.engine_socket(1));
    vec![remote_heal(&lab, engine, &a, runs), idle(&lab, engine)]
}

/// `docker stop` of a managed container until it runs again, on host `a`
/// (over SSH) and on `local`, alternately, under one `serve`.
fn remote_heal(
    lab: &HostsLab,
    local: &::kedge::observe::Engine,
    a: &::kedge::observe::Engine,
    runs: usize,
) -> Row {
    let dir = tempfile::tempdir().unwrap();
    let k = kedge_with(lab, dir.path());
    let name = unique_name("bhosts");
    let _remote = repository(&name, &["local", "a"], 1);
    k.run(["repo", "add", &_remote.url()]).success();
    let _here = ComposeProject::named(&format!("{name}-local-0"));
    let mut serve = k.serve_with(&["serve", "--poll-interval", "60s", "--check-interval", "60s"]);
    let (here, there) = (format!("{name}-local-0"), format!("{name}-a-0"));
    until(local, &here, running("web"));
    until(a, &there, running("web"));
    let a_socket = lab.engine_socket(1);
    let stop_on_a = |container: &str| {
        let out = Command::new("docker")
            .arg("-H")
            .arg(format!("unix://{}", a_socket.display()))
            .args(["stop", "-t", "0", container])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    };
    let (mut local_heals, mut remote_heals) = (Vec::new(), Vec::new());
    // Five each: a sixth heal within five minutes is (rightly) held back
    // as a crash loop.
    for i in 0..runs.min(5) {
        let mut local_heal = || {
            std::thread::sleep(Duration::from_millis(500));
            docker_ok(&["stop", "-t", "0", &format!("{here}-web-1")]);
            let start = Instant::now();
            until(local, &here, running("web"));
            local_heals.push(start.elapsed());
        };
        let mut remote_heal = || {
            std::thread::sleep(Duration::from_millis(500));
            stop_on_a(&format!("{there}-web-1"));
            let start = Instant::now();
            until(a, &there, running("web"));
            remote_heals.push(start.elapsed());
        };
        if i % 2 == 0 {
            local_heal();
            remote_heal();
        } else {
            remote_heal();
            local_heal();
        }
    }
    serve.terminate();
    k.run(["repo", "remove", &name, "--down"]).success();
    let ratio = ms(stats(&remote_heals).0) / ms(stats(&local_heals).0);
    Row {
        what: "heal on a remote host (SSH): `docker stop` → running again".into(),
        kedge: fmt(&remote_heals),
        baseline: format!(
            "the same heal on `local`, same serve: {}; ratio {ratio:.2}",
            fmt(&local_heals)
        ),
        goal: "≤ 1.5× the local heal".into(),
    }
}

/// The pids of `pid`'s live children.
fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            let list = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
            out.extend(
                list.split_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok()),
            );
        }
    }
    out
}

/// utime + stime + cutime + cstime of a process, in ticks.
fn ticks(pid: u32) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<u64> = after
        .split_whitespace()
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    f[11] + f[12] + f[13] + f[14]
}

/// `serve` and its live children (the SSH connection), and the finished
/// ones it waited for.
fn ticks_with_children(pid: u32) -> u64 {
    ticks(pid) + children(pid).into_iter().map(ticks).sum::<u64>()
}

fn idle(lab: &HostsLab, local: &::kedge::observe::Engine) -> Row {
    const PER_HOST: usize = 20;
    let dir = tempfile::tempdir().unwrap();
    let k = kedge_with(lab, dir.path());
    let name = unique_name("bidle");
    let hosts = ["local", "a", "edge"];
    let remote = repository(&name, &hosts, PER_HOST);
    k.run(["repo", "add", &remote.url()]).success();
    let _projects: Vec<ComposeProject> = (0..PER_HOST)
        .map(|i| ComposeProject::named(&format!("{name}-local-{i}")))
        .collect();
    let serve = k.serve_with(&["serve", "--poll-interval", "60s", "--check-interval", "60s"]);
    let total = hosts.len() * PER_HOST;
    super::wait_all_synced(&k, total);
    until(local, &format!("{name}-local-0"), running("web"));
    std::thread::sleep(Duration::from_secs(10));
    let pid = serve.child.id();
    let window = Duration::from_secs(120);
    let before = ticks_with_children(pid);
    let mut most_children = 0;
    let start = Instant::now();
    while start.elapsed() < window {
        most_children = most_children.max(children(pid).len());
        std::thread::sleep(Duration::from_millis(200));
    }
    let cpu_pct = (ticks_with_children(pid) - before) as f64 / 100.0 / window.as_secs_f64() * 100.0;
    let kept: Vec<String> = children(pid)
        .into_iter()
        .filter_map(|c| std::fs::read_to_string(format!("/proc/{c}/comm")).ok())
        .map(|c| c.trim().to_string())
        .collect();
    drop(serve);
    k.run(["repo", "remove", &name, "--down"]).success();
    Row {
        what: format!(
            "idle `serve`, 3 hosts × {PER_HOST} stacks (local, SSH, TCP+TLS), `--check-interval 60s`, 120 s"
        ),
        kedge: format!(
            "CPU {cpu_pct:.2} % of a core with its children; children {kept:?} (at most {most_children} seen, sampled every 200 ms)"
        ),
        baseline: "-".into(),
        goal: "≤ 2 % CPU, one event stream per host, no process per pass".into(),
    }
}
