//! The `stacks` rows (fleet.md §1): one repository of many stacks (200 by
//! default, `KEDGE_BENCH_STACKS`). How long they take to converge from
//! scratch; a commit touching one stack: the compose processes it starts
//! and its deployment's time beside a raw `docker compose up -d` of the
//! same project, in the same run; a stack's pass with nothing new.

use std::time::{Duration, Instant};

use super::*;
use support::compose_calls::ComposeCalls;

/// A stack of one service without a network (the engine's default address
/// pools hold about thirty), its environment `V=value`.
fn stack_file(value: usize) -> String {
    format!("{}    environment: [V={value}]\n", one_service_no_network())
}

/// Running containers of projects named `prefix-…`.
fn running_of(prefix: &str) -> usize {
    docker_ok(&["ps", "-q", "--filter", &format!("name=^{prefix}-")])
        .lines()
        .count()
}

/// The project a compose call names (`-p NAME`).
fn project_of(call: &str) -> String {
    let args: Vec<&str> = call.split_whitespace().collect();
    args.windows(2)
        .find(|w| w[0] == "-p")
        .map(|w| w[1].to_string())
        .unwrap_or_default()
}

pub fn stacks(engine: &::kedge::observe::Engine, runs: usize) -> Vec<Row> {
    let n: usize = std::env::var("KEDGE_BENCH_STACKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let calls = ComposeCalls::new(None);
    let k = Kedge::new().env("DOCKER_CONFIG", &calls.config_dir().to_string_lossy());
    let name = unique_name("bstk");
    let remote = GitRemote::new(&name);
    remote.write(
        "kedge.yaml",
        "discover:\n  - path: \"stacks/*\"\ndefaults:\n  deploy:\n    stable_for: 0s\n",
    );
    for i in 0..n {
        remote.write(&format!("stacks/s{i:03}/compose.yaml"), &stack_file(0));
    }
    remote.commit("many stacks");
    let _projects: Vec<ComposeProject> = (0..n)
        .map(|i| ComposeProject::named(&format!("{name}-s{i:03}")))
        .collect();
    k.run(["repo", "add", &remote.url()]).success();

    let start = Instant::now();
    let mut serve = k.serve_with(&[
        "serve",
        "--poll-interval",
        "200ms",
        "--check-interval",
        "1h",
    ]);
    let deadline = Instant::now() + Duration::from_secs(1800);
    while running_of(&name) < n {
        assert!(Instant::now() < deadline, "{n} stacks did not converge");
        std::thread::sleep(Duration::from_millis(200));
    }
    let converged = start.elapsed();

    // One stack changes: its deployment, and who else runs compose.
    let touched = format!("{name}-s007");
    let address = format!("{name}/s007");
    let raw_project = ComposeProject::new("bstkraw");
    let raw_dir = tempfile::tempdir().unwrap();
    std::fs::write(raw_dir.path().join("compose.yaml"), stack_file(0)).unwrap();
    compose_up(&raw_project.name, raw_dir.path())
        .output()
        .unwrap();
    let (mut pushed, mut deployed, mut raw) = (Vec::new(), Vec::new(), Vec::new());
    let mut others = 0usize;
    let mut processes = Vec::new();
    for i in 1..=runs {
        let before_calls = calls.calls().len();
        let old: Vec<String> = docker_ok(&["ps", "-q", "--filter", &format!("name=^{touched}-")])
            .lines()
            .map(String::from)
            .collect();
        remote.write("stacks/s007/compose.yaml", &stack_file(i));
        let pushed_at = Instant::now();
        remote.commit(&format!("s007: {i}"));
        until(engine, &touched, |cs| {
            cs.iter().any(|c| {
                c.state == ::kedge::observe::RunState::Running
                    && !old.contains(&c.id[..12].to_string())
            })
        });
        pushed.push(pushed_at.elapsed());
        let history = wait_for(60, "the deployment recorded", || {
            let h = k.run(["history", "--repo", &address, "-o", "json"]).json();
            (h[0]["status"] == "success" && h[0]["message"] == format!("s007: {i}")).then_some(h)
        });
        deployed.push(Duration::from_millis(
            history[0]["duration_ms"].as_u64().unwrap_or_default(),
        ));
        let new_calls: Vec<String> = calls.calls()[before_calls..].to_vec();
        others += new_calls
            .iter()
            .filter(|c| project_of(c) != touched)
            .count();
        processes.push(new_calls.len());

        std::fs::write(raw_dir.path().join("compose.yaml"), stack_file(i)).unwrap();
        raw.push(timed(compose_up(&raw_project.name, raw_dir.path())));
    }

    // Nothing new: a stack's pass, in process, counting what it starts.
    let before = calls.calls().len();
    let quiet = Instant::now();
    while quiet.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let idle_calls = calls.calls().len() - before;
    serve.terminate();

    let ratio = ms(stats(&deployed).0) / ms(stats(&raw).0);
    vec![
        Row {
            what: format!(
                "{n} stacks of one repository converge from scratch (`discover:`, 2 cores)"
            ),
            kedge: format!("{:.0} s", converged.as_secs_f64()),
            baseline: "-".into(),
            goal: "1,000 stacks in 50 repositories ≤ 180 s (not measured here)".into(),
        },
        Row {
            what: format!("a commit touching one of {n} stacks: its deployment (render, up, gate)"),
            kedge: format!(
                "{} (× {ratio:.2} the raw `up`); compose processes per commit: {:?}, for other stacks: {others}",
                fmt(&deployed),
                processes
            ),
            baseline: format!("`docker compose up -d` of the same project: {}", fmt(&raw)),
            goal: "≤ 1.15 × raw `up`; one compose process tree".into(),
        },
        Row {
            what: format!(
                "… push → its container running (`--poll-interval 200ms`), and {n} stacks idle for 5 s"
            ),
            kedge: format!(
                "{}; compose processes while idle: {idle_calls}",
                fmt(&pushed)
            ),
            baseline: "-".into(),
            goal: "no process on a pass with nothing new".into(),
        },
    ]
}
