//! The `fleet` rows (fleet.md §1 at scale): 1,000 stacks in 50 repositories
//! (`KEDGE_BENCH_FLEET=REPOSxSTACKS`, default `50x20`). How long they take
//! to converge from scratch beside raw `docker compose up -d` of the same
//! projects four at a time; then idle `serve` at a 60 s poll (RSS, and CPU
//! including the git and compose processes it waited for), `kedge status`
//! of every stack and the dashboard overview.

use std::time::{Duration, Instant};

use super::dashboard::{exchange, sign_in};
use super::*;

const PREFIX: &str = "bflt";

fn stack_file() -> String {
    format!("{}    environment: [V=0]\n", one_service_no_network())
}

/// Running containers whose name starts with `prefix`.
fn running_of(prefix: &str) -> usize {
    docker_ok(&["ps", "-q", "--filter", &format!("name=^{prefix}")])
        .lines()
        .count()
}

/// Removes every container named `prefix…`, 25 to a `docker rm` (one of
/// 200 at once left engine 20.10 hung, its removals never answered).
fn remove_all(prefix: &str) {
    let ids = docker_ok(&["ps", "-aq", "--filter", &format!("name=^{prefix}")]);
    let ids: Vec<&str> = ids.lines().collect();
    for chunk in ids.chunks(25) {
        let mut args = vec!["rm", "-f"];
        args.extend(chunk);
        docker_ok(&args);
    }
}

/// utime + stime of the process and of its waited-for children, in ticks,
/// and its RSS in KiB.
fn cpu_with_children(pid: u32) -> (u64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<u64> = after
        .split_whitespace()
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    // utime, stime, cutime, cstime: fields 14–17, 11–14 after ") ".
    let cpu = f[11] + f[12] + f[13] + f[14];
    (cpu, super::proc_stat(pid).1)
}

pub fn fleet() -> Vec<Row> {
    let (repos, per_repo): (usize, usize) = std::env::var("KEDGE_BENCH_FLEET")
        .ok()
        .and_then(|v| {
            let (r, s) = v.split_once('x')?;
            Some((r.parse().ok()?, s.parse().ok()?))
        })
        .unwrap_or((50, 20));
    let total = repos * per_repo;
    let k = Kedge::new();
    let mut remotes = Vec::new();
    let mut dirs = Vec::new();
    let prefix = format!("kt-{PREFIX}-{}-", std::process::id());
    for r in 0..repos {
        let name = format!("{prefix}{r:02}");
        let remote = GitRemote::new(&name);
        remote.write(
            "kedge.yaml",
            "discover:\n  - path: \"stacks/*\"\ndefaults:\n  deploy:\n    stable_for: 0s\n",
        );
        for s in 0..per_repo {
            remote.write(&format!("stacks/s{s:02}/compose.yaml"), &stack_file());
            dirs.push(format!("{name}-s{s:02}"));
        }
        remote.commit(&format!("{per_repo} stacks"));
        k.run(["repo", "add", &remote.url()]).success();
        remotes.push(remote);
    }
    remove_all(&prefix);

    let token = k.token("bench", "read");
    let start = Instant::now();
    let mut serve = k.serve_with(&["serve", "--poll-interval", "60s", "--listen", "127.0.0.1:0"]);
    let addr = support::plain_http::listen_addr(&serve);
    let deadline = Instant::now() + Duration::from_secs(1800);
    while running_of(&prefix) < total {
        assert!(Instant::now() < deadline, "{total} stacks did not converge");
        std::thread::sleep(Duration::from_millis(500));
    }
    let running = start.elapsed();
    // Converged: every stack's deployment recorded, its gate passed.
    super::wait_all_synced(&k, total);
    let converged = start.elapsed();
    eprintln!("fleet: {total} running after {running:?}, synced after {converged:?}");

    // Idle at a 60 s poll: two polls' worth.
    std::thread::sleep(Duration::from_secs(10));
    let (cpu_pct, rss, peak) = idle_window(
        serve.child.id(),
        Duration::from_secs(120),
        cpu_with_children,
    );
    eprintln!("fleet: idle RSS {rss} KiB (peak {peak}), CPU {cpu_pct:.2} %");

    let status: Vec<Duration> = (0..7).map(|_| timed(k.command(["status"]))).collect();
    let status_json: Vec<Duration> = (0..7)
        .map(|_| timed(k.command(["status", "-o", "json"])))
        .collect();

    eprintln!(
        "fleet: status {}; -o json {}",
        fmt(&status),
        fmt(&status_json)
    );
    let session = sign_in(addr, &token);
    let cookie = [("Cookie", session.as_str())];
    let (code, _, page) = exchange(addr, "GET", "/", &cookie, "");
    assert_eq!(code, 200);
    let assets: usize = ["/assets/kedge.css", "/assets/kedge.js", "/assets/kedge.svg"]
        .iter()
        .map(|p| exchange(addr, "GET", p, &[], "").2.len())
        .sum();
    let pages: Vec<Duration> = (0..50)
        .map(|_| {
            let at = Instant::now();
            let (code, _, _) = exchange(addr, "GET", "/", &cookie, "");
            assert_eq!(code, 200);
            at.elapsed()
        })
        .collect();
    eprintln!(
        "fleet: overview {} ({} + {} bytes)",
        fmt_fine(&pages),
        page.len(),
        assets
    );
    serve.terminate();
    remove_all(&prefix);

    // The baseline: raw `docker compose up -d` of the same projects, four
    // at a time (Kedge's default `serve.max_parallel_deploys`).
    let raw_n: usize = std::env::var("KEDGE_BENCH_FLEET_RAW")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(total);
    let raw_dir = tempfile::tempdir().unwrap();
    for project in dirs.iter().take(raw_n) {
        let dir = raw_dir.path().join(project);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("compose.yaml"), stack_file()).unwrap();
    }
    let raw_start = Instant::now();
    let queue = std::sync::Mutex::new(dirs.iter().take(raw_n).collect::<Vec<_>>());
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                while let Some(project) = queue.lock().unwrap().pop() {
                    let out = compose_up(project, &raw_dir.path().join(project))
                        .output()
                        .unwrap();
                    assert!(out.status.success(), "{out:?}");
                }
            });
        }
    });
    let raw = raw_start.elapsed();
    eprintln!("fleet: raw up of {raw_n}: {raw:?}");
    remove_all(&prefix);
    drop(remotes);

    vec![
        Row {
            what: format!(
                "{total} stacks in {repos} repositories converge from scratch (2 cores): all running; all synced"
            ),
            kedge: format!(
                "{:.0} s; {:.0} s",
                running.as_secs_f64(),
                converged.as_secs_f64()
            ),
            baseline: format!(
                "raw `docker compose up -d` of {raw_n} of the same projects, 4 at a time: {:.0} s",
                raw.as_secs_f64()
            ),
            goal: "≤ 180 s".into(),
        },
        Row {
            what: format!("idle `serve`, {total} stacks, `--poll-interval 60s`, 120 s"),
            kedge: format!(
                "RSS {:.1} MB (peak {:.1}), CPU {cpu_pct:.2} % of a core with its children",
                rss as f64 / 1024.0,
                peak as f64 / 1024.0
            ),
            baseline: "-".into(),
            goal: "≤ 60 MB, ≤ 2 % of a core including child processes".into(),
        },
        Row {
            what: format!("`kedge status` of {total} stacks (text; `-o json`)"),
            kedge: format!("{}; {}", fmt(&status), fmt(&status_json)),
            baseline: "-".into(),
            goal: "≤ 200 ms".into(),
        },
        Row {
            what: format!("dashboard overview `GET /`, {repos} repositories of {total} stacks"),
            kedge: format!(
                "{}; HTML {:.1} KB + CSS/JS/icon {:.1} KB = {:.1} KB",
                fmt_fine(&pages),
                page.len() as f64 / 1000.0,
                assets as f64 / 1000.0,
                (page.len() + assets) as f64 / 1000.0
            ),
            baseline: "-".into(),
            goal: "≤ 100 ms, ≤ 300 KB".into(),
        },
    ]
}
