//! Kedge side by side with raw `docker` / `docker compose`, on the real
//! engine: `cargo bench --bench compare` (about fifteen minutes). Prints a
//! Markdown table for BENCHMARKS.md. Set KEDGE_BENCH_RUNS to change the
//! number of runs (default 7; heal latency uses at most 5, see below).

#[path = "../tests/it/support/mod.rs"]
mod support;

#[path = "compare/attack.rs"]
mod attack;
#[path = "compare/dashboard.rs"]
mod dashboard;
#[path = "compare/fleet.rs"]
mod fleet;
#[path = "compare/hosts.rs"]
mod hosts;
#[path = "compare/locked.rs"]
mod locked;
#[path = "compare/sops.rs"]
mod sops;
#[path = "compare/stacks.rs"]
mod stacks;
#[path = "compare/updates.rs"]
mod updates;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::docker::{IMAGE_1, IMAGE_2, docker_ok};
use support::*;

struct Row {
    what: String,
    kedge: String,
    baseline: String,
    goal: String,
}

fn stats(samples: &[Duration]) -> (Duration, Duration, Duration) {
    let mut v = samples.to_vec();
    v.sort();
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

fn fmt(samples: &[Duration]) -> String {
    let (med, min, max) = stats(samples);
    format!(
        "{:.0} ms (min {:.0}, max {:.0}, n={})",
        ms(med),
        ms(min),
        ms(max),
        samples.len()
    )
}

/// As `fmt`, to a hundredth of a millisecond: for what takes about one.
fn fmt_fine(samples: &[Duration]) -> String {
    let (med, min, max) = stats(samples);
    format!(
        "{:.2} ms (min {:.2}, max {:.2}, n={})",
        ms(med),
        ms(min),
        ms(max),
        samples.len()
    )
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Polls the engine API (not the CLI, whose own start-up would blur the
/// figure) until `check` holds.
fn until(
    engine: &::kedge::observe::Engine,
    project: &str,
    check: impl Fn(&[::kedge::observe::ContainerState]) -> bool,
) {
    let rt = runtime();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let containers = rt.block_on(engine.project_containers(project)).unwrap();
        if check(&containers) {
            return;
        }
        assert!(Instant::now() < deadline, "timed out on {project}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn running(service: &'static str) -> impl Fn(&[::kedge::observe::ContainerState]) -> bool {
    move |cs| {
        cs.iter()
            .any(|c| c.service == service && c.state == ::kedge::observe::RunState::Running)
    }
}

/// Waits (ten minutes at most) until `kedge status` says `total` stacks
/// are synced: deployed, gates passed.
fn wait_all_synced(k: &Kedge, total: usize) {
    wait_for(600, "every stack synced", || {
        let status = k.run(["status", "-o", "json"]).json();
        let synced = status
            .as_array()?
            .iter()
            .filter(|s| s["sync_state"] == "synced")
            .count();
        (synced == total).then_some(())
    });
}

fn timed(mut cmd: Command) -> Duration {
    let start = Instant::now();
    let out = cmd.output().unwrap();
    let took = start.elapsed();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    took
}

fn two_services(api_image: &str) -> String {
    format!(
        "services:
  web:
    image: {IMAGE_1}
    command: [sleep, '3600']
    stop_signal: SIGKILL
  api:
    image: {api_image}
    command: [sleep, '3600']
    stop_signal: SIGKILL
"
    )
}

fn one_service() -> String {
    format!(
        "services:\n  web:\n    image: {IMAGE_1}\n    command: [sleep, '3600']\n    stop_signal: SIGKILL\n"
    )
}

/// Without a network of its own: the engine's default address pools hold
/// about thirty bridge networks, fewer than the hundred projects measured.
fn one_service_no_network() -> String {
    one_service() + "    network_mode: none\n"
}

fn main() {
    require_docker();
    let runs: usize = std::env::var("KEDGE_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(7);
    let engine = ::kedge::observe::Engine::new();
    // `cargo bench --bench compare -- deploy` measures only the rows whose
    // name contains "deploy" (cargo itself passes `--bench`).
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with("--"));
    let wanted = |name: &str| filter.as_deref().is_none_or(|f| name.contains(f));
    let show = |r: &Row| eprintln!("bench: {} | {} | {}", r.what, r.kedge, r.baseline);
    let mut rows = Vec::new();
    let measurements: [(&str, &dyn Fn() -> Vec<Row>); 21] = [
        ("heal", &|| vec![heal_latency(&engine, runs.min(5))]),
        // A ratio of two medians on a noisy engine wants more samples.
        ("deploy", &|| vec![deploy_overhead(runs.max(15))]),
        // The health gate: what a passing one costs, and a failing one's rollback.
        ("gate", &|| {
            vec![
                gate_overhead(runs.max(9)),
                gate_with_healthchecks(runs.max(9)),
                gate_rollback(&engine, runs),
            ]
        }),
        ("push", &|| vec![push_to_running(&engine, runs)]),
        ("webhook", &|| vec![push_webhook_to_running(&engine, runs)]),
        ("noop", &|| vec![noop_pass(&engine)]),
        // Idle footprint and `kedge status`, on the same 100 repositories.
        ("footprint", &|| footprint(&engine)),
        ("history", &|| vec![history_100k()]),
        ("events", &|| vec![events_100k()]),
        ("follow", &|| vec![follow_lag(runs)]),
        // `GET /api/v1/repos` under load, and deploys meanwhile.
        ("api", &|| api_load(&engine)),
        ("metrics", &|| vec![metrics_scrape(&engine)]),
        // A remote check over ssh with a deploy key, against file://.
        ("ssh", &|| vec![ssh_check(runs.max(20))]),
        // The overview page of 100 repositories, and what it weighs.
        ("dashboard", &|| vec![dashboard::dashboard(&engine)]),
        // `/healthz` and a push under slow clients, streams and a hook flood.
        ("attack", &|| attack::attack(&engine)),
        // `/healthz`, a heal and the event stream while another process
        // holds the store's write transaction.
        ("locked", &|| locked::locked(&engine)),
        // One repository of 200 stacks: convergence, one stack's commit.
        ("stacks", &|| stacks::stacks(&engine, runs)),
        // 1,000 stacks in 50 repositories: convergence, idle, status, overview.
        ("fleet", &fleet::fleet),
        // 100 SOPS files of 50 values, beside `sops decrypt` of each.
        ("sops", &|| sops::sops(runs)),
        // One update check of 200 services over 50 images, and without the cache.
        ("updates", &updates::updates),
        // A heal on a host over SSH beside a local one; idle with 3 hosts.
        ("hosts", &|| hosts::hosts(&engine, runs)),
    ];
    for (name, measure) in measurements {
        if !wanted(name) {
            continue;
        }
        for r in measure() {
            show(&r);
            rows.push(r);
        }
    }

    println!("| measurement | Kedge | baseline | goal |");
    println!("| --- | --- | --- | --- |");
    for r in rows {
        println!("| {} | {} | {} | {} |", r.what, r.kedge, r.baseline, r.goal);
    }
}

/// `docker stop` of a managed container until it runs again under `serve`,
/// against `docker start` of the same container. Five runs: a sixth heal
/// within five minutes would (rightly) be held back as a crash loop.
fn heal_latency(engine: &::kedge::observe::Engine, runs: usize) -> Row {
    let compose = one_service();
    let Stack {
        name,
        remote: _remote,
        kedge: k,
        project: _project,
    } = Stack::new("bheal", &[("compose.yaml", &compose)]);
    let mut serve = k.serve_with(&["serve", "--poll-interval", "60s", "--check-interval", "60s"]);
    until(engine, &name, running("web"));
    let container = format!("{name}-web-1");

    let mut kedge = Vec::new();
    for _ in 0..runs {
        std::thread::sleep(Duration::from_millis(500));
        docker_ok(&["stop", "-t", "0", &container]);
        let start = Instant::now();
        until(engine, &name, running("web"));
        kedge.push(start.elapsed());
    }
    serve.terminate();

    let mut baseline = Vec::new();
    for _ in 0..runs {
        docker_ok(&["stop", "-t", "0", &container]);
        let start = Instant::now();
        docker_ok(&["start", &container]);
        until(engine, &name, running("web"));
        baseline.push(start.elapsed());
    }
    let ratio = ms(stats(&kedge).0) / ms(stats(&baseline).0);
    Row {
        what: "heal latency: `docker stop` → running again".into(),
        kedge: fmt(&kedge),
        baseline: format!("`docker start`: {}; ratio {ratio:.2}", fmt(&baseline)),
        goal: "p50 ≤ 500 ms and ≤ 2× baseline".into(),
    }
}

/// `kedge sync --no-wait` of a commit changing one service's image, against
/// `docker compose up -d` of the identical change on an identical project
/// (neither waits for the service to come up; the gate has its own rows).
fn deploy_overhead(runs: usize) -> Row {
    let compose = two_services(IMAGE_1);
    let Stack {
        name,
        remote,
        kedge: k,
        project: _kedge_project,
    } = Stack::new("bsync", &[("compose.yaml", &compose)]);
    k.run(["sync", "--repo", &name]).success();

    let raw = ComposeProject::new("braw");
    let raw_dir = tempfile::tempdir().unwrap();
    std::fs::write(raw_dir.path().join("compose.yaml"), two_services(IMAGE_1)).unwrap();
    raw.up(raw_dir.path());

    let mut kedge = Vec::new();
    let mut baseline = Vec::new();
    for i in 0..runs {
        let image = if i % 2 == 0 { IMAGE_2 } else { IMAGE_1 };
        remote.write("compose.yaml", &two_services(image));
        remote.commit(&format!("api on {image}"));
        std::fs::write(raw_dir.path().join("compose.yaml"), two_services(image)).unwrap();
        // Alternate which goes first so neither always runs on a warm cache.
        let sync = || timed(k.command(["sync", "--repo", &name, "--no-wait"]));
        let up = || timed(compose_up(&raw.name, raw_dir.path()));
        if i % 2 == 0 {
            kedge.push(sync());
            baseline.push(up());
        } else {
            baseline.push(up());
            kedge.push(sync());
        }
    }
    let ratio = ms(stats(&kedge).0) / ms(stats(&baseline).0);
    Row {
        what: "deploy: commit changing one service's image".into(),
        kedge: format!("`kedge sync --no-wait`: {}", fmt(&kedge)),
        baseline: format!(
            "`docker compose up -d`: {}; ratio {ratio:.2}",
            fmt(&baseline)
        ),
        goal: "ratio ≤ 1.10".into(),
    }
}

/// The gate's `stable_for` in the rows without healthchecks.
const BENCH_STABLE_FOR: Duration = Duration::from_secs(1);

/// `kedge sync` through a passing gate (services without healthchecks,
/// `stable_for: 1s`) against `kedge sync --no-wait` of the same change on
/// an identical repository: what the gate adds.
fn gate_overhead(runs: usize) -> Row {
    let yaml = format!(
        "deploy:\n  stable_for: {}ms\n",
        BENCH_STABLE_FOR.as_millis()
    );
    let stack = |prefix| {
        let s = Stack::new(
            prefix,
            &[
                ("compose.yaml", &two_services(IMAGE_1)),
                ("kedge.yaml", &yaml),
            ],
        );
        s.kedge.run(["sync", "--repo", &s.name]).success();
        s
    };
    let (gated, plain) = (stack("bgate"), stack("bnowait"));
    let mut kedge = Vec::new();
    let mut baseline = Vec::new();
    for i in 0..runs {
        let image = if i % 2 == 0 { IMAGE_2 } else { IMAGE_1 };
        for s in [&gated, &plain] {
            s.remote.write("compose.yaml", &two_services(image));
            s.remote.commit(&format!("api on {image}"));
        }
        let sync = || timed(gated.kedge.command(["sync", "--repo", &gated.name]));
        let no_wait = || {
            timed(
                plain
                    .kedge
                    .command(["sync", "--repo", &plain.name, "--no-wait"]),
            )
        };
        if i % 2 == 0 {
            kedge.push(sync());
            baseline.push(no_wait());
        } else {
            baseline.push(no_wait());
            kedge.push(sync());
        }
    }
    let added = stats(&kedge).0.saturating_sub(stats(&baseline).0);
    Row {
        what: format!(
            "deploy through a passing gate, no healthcheck (`stable_for: {} s`)",
            BENCH_STABLE_FOR.as_secs()
        ),
        kedge: format!("`kedge sync`: {}", fmt(&kedge)),
        baseline: format!(
            "`kedge sync --no-wait`: {}; the gate adds {:.0} ms",
            fmt(&baseline),
            ms(added)
        ),
        goal: format!(
            "adds ≤ stable_for + 200 ms = {:.0} ms",
            ms(BENCH_STABLE_FOR) + 200.0
        ),
    }
}

/// Two services with a healthcheck every second, healthy once their
/// command has written its file.
fn two_checked_services(api_image: &str) -> String {
    let svc = |name: &str, image: &str| {
        format!(
            "  {name}:
    image: {image}
    command: [sh, -c, 'echo ok > /tmp/ok; exec sleep 3600']
    stop_signal: SIGKILL
    healthcheck:
      test: [CMD-SHELL, '[ -f /tmp/ok ]']
      interval: 1s
      timeout: 1s
      retries: 3
"
        )
    };
    format!(
        "services:\n{}{}",
        svc("web", IMAGE_1),
        svc("api", api_image)
    )
}

/// `kedge sync` (gated: until the changed service is healthy) against
/// `docker compose up -d --wait` of the same change on an identical project.
fn gate_with_healthchecks(runs: usize) -> Row {
    let s = Stack::new(
        "bhealth",
        &[
            ("compose.yaml", &two_checked_services(IMAGE_1)),
            ("kedge.yaml", "deploy:\n  timeout: 60s\n"),
        ],
    );
    s.kedge.run(["sync", "--repo", &s.name]).success();
    let raw = ComposeProject::new("bhealthraw");
    let raw_dir = tempfile::tempdir().unwrap();
    std::fs::write(
        raw_dir.path().join("compose.yaml"),
        two_checked_services(IMAGE_1),
    )
    .unwrap();
    timed({
        let mut up = compose_up(&raw.name, raw_dir.path());
        up.arg("--wait");
        up
    });
    let mut kedge = Vec::new();
    let mut baseline = Vec::new();
    for i in 0..runs {
        let image = if i % 2 == 0 { IMAGE_2 } else { IMAGE_1 };
        s.remote.write("compose.yaml", &two_checked_services(image));
        s.remote.commit(&format!("api on {image}"));
        std::fs::write(
            raw_dir.path().join("compose.yaml"),
            two_checked_services(image),
        )
        .unwrap();
        let sync = || timed(s.kedge.command(["sync", "--repo", &s.name]));
        let up = || {
            let mut up = compose_up(&raw.name, raw_dir.path());
            up.arg("--wait");
            timed(up)
        };
        if i % 2 == 0 {
            kedge.push(sync());
            baseline.push(up());
        } else {
            baseline.push(up());
            kedge.push(sync());
        }
    }
    let ratio = ms(stats(&kedge).0) / ms(stats(&baseline).0);
    Row {
        what: "deploy through a passing gate, healthcheck every 1 s".into(),
        kedge: format!("`kedge sync`: {}", fmt(&kedge)),
        baseline: format!(
            "`docker compose up -d --wait`: {}; ratio {ratio:.2}",
            fmt(&baseline)
        ),
        goal: "ratio ≤ 1.10".into(),
    }
}

/// A commit whose changed service exits 1 at start, deployed by `kedge
/// sync`: from the failure detected (the `deploy_failed` event) to the
/// previous version running again (seen through the engine API), against
/// putting the previous version back by hand: `docker compose up -d` of the
/// previous file after the same broken `up`, until it runs.
fn gate_rollback(engine: &::kedge::observe::Engine, runs: usize) -> Row {
    let broken = |n: usize| {
        format!(
            "services:
  web:
    image: {IMAGE_1}
    command: [sleep, '3600']
    stop_signal: SIGKILL
  api:
    image: {IMAGE_2}
    command: [sh, -c, 'echo broken {n}; exit 1']
    restart: unless-stopped
"
        )
    };
    let s = Stack::new(
        "brollback",
        &[
            ("compose.yaml", &two_services(IMAGE_1)),
            ("kedge.yaml", "deploy:\n  stable_for: 1s\n"),
        ],
    );
    let good = s.remote.remote_head();
    s.kedge.run(["sync", "--repo", &s.name]).success();
    let raw = ComposeProject::new("brollbackraw");
    let raw_dir = tempfile::tempdir().unwrap();
    let raw_file = raw_dir.path().join("compose.yaml");
    std::fs::write(&raw_file, two_services(IMAGE_1)).unwrap();
    raw.up(raw_dir.path());
    let id1 = image_id(IMAGE_1);
    let back = |project: &str, before: &str| {
        let (before, id1) = (before.to_string(), id1.clone());
        until(engine, project, move |cs| {
            cs.iter().any(|c| {
                c.service == "api"
                    && c.state == ::kedge::observe::RunState::Running
                    && c.image_id == id1
                    && c.id != before
            })
        })
    };
    let api_id = |project: &str| {
        let rt = runtime();
        rt.block_on(engine.project_containers(project))
            .unwrap()
            .into_iter()
            .find(|c| c.service == "api")
            .map(|c| c.id)
            .unwrap_or_default()
    };
    let mut kedge = Vec::new();
    let mut whole = Vec::new();
    let mut baseline = Vec::new();
    for i in 0..runs {
        s.remote.write("compose.yaml", &broken(i));
        let bad = s.remote.commit(&format!("broken api {i}"));
        let before = api_id(&s.name);
        let start = Instant::now();
        let mut sync = ChildGuard(
            s.kedge
                .command(["sync", "--repo", &s.name])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap(),
        );
        back(&s.name, &before);
        let running_at = ::kedge::time::now_ms();
        whole.push(start.elapsed());
        assert_eq!(sync.wait_exit(60).code(), Some(1));
        let events = s
            .kedge
            .run(["events", "--repo", &s.name, "-o", "json", "--limit", "20"])
            .json();
        let failed = events
            .as_array()
            .unwrap()
            .iter()
            .rev()
            .find(|e| e["kind"] == "deploy_failed" && e["commit"] == bad.as_str())
            .expect("the deploy_failed event");
        let detected = chrono::DateTime::parse_from_rfc3339(failed["time"].as_str().unwrap())
            .unwrap()
            .timestamp_millis();
        kedge.push(Duration::from_millis((running_at - detected).max(0) as u64));
        assert_eq!(
            s.history()[0]["commit"],
            good.as_str(),
            "the rollback is the newest deployment"
        );

        // By hand: the same broken `up`, then the previous file back.
        std::fs::write(&raw_file, broken(i)).unwrap();
        timed(compose_up(&raw.name, raw_dir.path()));
        let before = api_id(&raw.name);
        std::fs::write(&raw_file, two_services(IMAGE_1)).unwrap();
        let start = Instant::now();
        timed(compose_up(&raw.name, raw_dir.path()));
        back(&raw.name, &before);
        baseline.push(start.elapsed());
    }
    Row {
        what: "failed gate (a service exits 1): failure detected → previous version running".into(),
        kedge: format!(
            "{}; the whole `kedge sync` until then: {}",
            fmt(&kedge),
            fmt(&whole)
        ),
        baseline: format!(
            "`docker compose up -d` of the previous file by hand: {}",
            fmt(&baseline)
        ),
        goal: "≈ baseline".into(),
    }
}

fn compose_up(project: &str, dir: &Path) -> Command {
    let mut cmd = Command::new("docker");
    cmd.args(["compose", "-p", project, "--project-directory"])
        .arg(dir)
        .args(["up", "-d"]);
    cmd
}

/// The baseline of the push rows: the same change applied by hand, `docker
/// compose up -d` right away, until `api` runs the image `id`.
fn compose_up_until_running(
    engine: &::kedge::observe::Engine,
    project: &ComposeProject,
    dir: &Path,
    image: &str,
    id: &str,
) -> Duration {
    std::fs::write(dir.join("compose.yaml"), two_services(image)).unwrap();
    let start = Instant::now();
    compose_up(&project.name, dir).output().unwrap();
    until(engine, &project.name, |cs| {
        cs.iter().any(|c| {
            c.service == "api" && c.state == ::kedge::observe::RunState::Running && c.image_id == id
        })
    });
    start.elapsed()
}

/// Push → the new image running, under `serve` with a 1 s poll interval.
fn push_to_running(engine: &::kedge::observe::Engine, runs: usize) -> Row {
    let compose = two_services(IMAGE_1);
    let Stack {
        name,
        remote,
        kedge: k,
        project: _project,
    } = Stack::new("bpush", &[("compose.yaml", &compose)]);
    let mut serve = k.serve("1s");
    until(engine, &name, |cs| {
        cs.iter()
            .filter(|c| c.state == ::kedge::observe::RunState::Running)
            .count()
            == 2
    });
    let id2 = image_id(IMAGE_2);
    let id1 = image_id(IMAGE_1);
    let mut samples = Vec::new();
    let mut raw = Vec::new();
    let raw_project = ComposeProject::new("bpushraw");
    let raw_dir = tempfile::tempdir().unwrap();
    for i in 0..runs {
        let (image, id) = if i % 2 == 0 {
            (IMAGE_2, id2.clone())
        } else {
            (IMAGE_1, id1.clone())
        };
        remote.write("compose.yaml", &two_services(image));
        let start = Instant::now();
        remote.commit("change");
        until(engine, &name, |cs| {
            cs.iter().any(|c| {
                c.service == "api"
                    && c.state == ::kedge::observe::RunState::Running
                    && c.image_id == id
            })
        });
        samples.push(start.elapsed());
        raw.push(compose_up_until_running(
            engine,
            &raw_project,
            raw_dir.path(),
            image,
            &id,
        ));
    }
    serve.terminate();
    Row {
        what: "push → new image running (`serve --poll-interval 1s`)".into(),
        kedge: fmt(&samples),
        baseline: format!("`docker compose up -d` by hand at push time: {}", fmt(&raw)),
        goal: "≈ poll/2 + deploy".into(),
    }
}

/// Push, then a signed generic webhook → the new image running, under
/// `serve --poll-interval 1h` (so only the hook can have triggered it),
/// beside `docker compose up -d` at push time.
fn push_webhook_to_running(engine: &::kedge::observe::Engine, runs: usize) -> Row {
    use hmac::Mac;
    use support::http::{listening_port, request_with};
    const SECRET: &str = "bench-secret";
    let compose = two_services(IMAGE_1);
    let Stack {
        name,
        remote,
        kedge: k,
        project: _project,
    } = Stack::new("bhook", &[("compose.yaml", &compose)]);
    let k = k.env("KEDGE_WEBHOOK_SECRET", SECRET);
    let mut serve = k.serve_with(&["serve", "--listen", "127.0.0.1:0", "--poll-interval", "1h"]);
    let port = wait_for(30, "the listener", || listening_port(&serve.log()));
    until(engine, &name, |cs| {
        cs.iter()
            .filter(|c| c.state == ::kedge::observe::RunState::Running)
            .count()
            == 2
    });
    let body = serde_json::json!({ "repo": name }).to_string();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body.as_bytes());
    let signature = format!(
        "sha256={}",
        ::kedge::desired::render::hex(&mac.finalize().into_bytes())
    );
    let id2 = image_id(IMAGE_2);
    let id1 = image_id(IMAGE_1);
    let mut samples = Vec::new();
    let mut raw = Vec::new();
    let raw_project = ComposeProject::new("bhookraw");
    let raw_dir = tempfile::tempdir().unwrap();
    for i in 0..runs {
        let (image, id) = if i % 2 == 0 {
            (IMAGE_2, id2.clone())
        } else {
            (IMAGE_1, id1.clone())
        };
        remote.write("compose.yaml", &two_services(image));
        // The clock starts when the push is done: the hook goes out then,
        // as the baseline's `up` does.
        remote.commit("change");
        let start = Instant::now();
        let answer = request_with(
            "POST",
            port,
            "/hooks/generic",
            None,
            Some(&body),
            &[("X-Kedge-Signature-256", &signature)],
        );
        assert_eq!(answer.status, 202, "{answer:?}");
        until(engine, &name, |cs| {
            cs.iter().any(|c| {
                c.service == "api"
                    && c.state == ::kedge::observe::RunState::Running
                    && c.image_id == id
            })
        });
        samples.push(start.elapsed());
        raw.push(compose_up_until_running(
            engine,
            &raw_project,
            raw_dir.path(),
            image,
            &id,
        ));
    }
    serve.terminate();
    let ratio = ms(stats(&samples).0) / ms(stats(&raw).0);
    Row {
        what: "push + webhook → new image running (`serve --poll-interval 1h`)".into(),
        kedge: fmt(&samples),
        baseline: format!(
            "`docker compose up -d` by hand at push time: {}; ratio {ratio:.2}",
            fmt(&raw)
        ),
        goal: "ratio ≤ 1.15".into(),
    }
}

/// Passes with nothing to do: wall time and child processes. Run in this
/// process through the library, where spawned processes are counted.
fn noop_pass(engine: &::kedge::observe::Engine) -> Row {
    let compose = two_services(IMAGE_1);
    let Stack {
        name,
        remote: _remote,
        kedge: k,
        project: _project,
    } = Stack::new("bnoop", &[("compose.yaml", &compose)]);
    k.run(["sync", "--repo", &name]).success();
    until(engine, &name, |cs| cs.len() == 2);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (pass, spawned, poll, poll_spawned) = rt.block_on(async {
        let flags = ::kedge::config::Flags {
            data_dir: Some(k.data_dir()),
            poll_interval: Some(Duration::from_secs(3600)),
            ..Default::default()
        };
        let settings = ::kedge::config::resolve(Default::default(), &|_| None, &flags).unwrap();
        let store = ::kedge::record::Store::open(&k.data_dir()).unwrap();
        let repo = store.repo(&name).unwrap().unwrap();
        let engine = ::kedge::observe::Engine::new();
        let shared = Arc::new(::kedge::controller::Shared::new(settings, store, engine));
        let mut task = ::kedge::controller::task::RepoTask::new(&shared, repo.clone());
        // The first pass checks the remote (git ls-remote): nothing new.
        let before = ::kedge::process::spawned();
        let start = Instant::now();
        ::kedge::controller::reconcile::reconcile(&shared, &mut task)
            .await
            .unwrap();
        let poll = start.elapsed();
        let poll_spawned = ::kedge::process::spawned() - before;
        // Then passes as engine events and the full check run them.
        let before = ::kedge::process::spawned();
        let mut samples = Vec::new();
        for _ in 0..200 {
            let start = Instant::now();
            ::kedge::controller::reconcile::reconcile(&shared, &mut task)
                .await
                .unwrap();
            samples.push(start.elapsed());
        }
        (
            samples,
            ::kedge::process::spawned() - before,
            poll,
            poll_spawned,
        )
    });
    let (med, min, max) = stats(&pass);
    Row {
        what: "no-op pass (nothing changed), per repository".into(),
        kedge: format!(
            "drift pass: {:.2} ms (min {:.2}, max {:.2}, n=200), {spawned} processes; \
             with the remote check: {:.0} ms, {poll_spawned} process (`git ls-remote`)",
            ms(med),
            ms(min),
            ms(max),
            ms(poll)
        ),
        baseline: String::new(),
        goal: "no process".into(),
    }
}

fn proc_stat(pid: u32) -> (u64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    // utime, stime are fields 14 and 15 (1-based), i.e. 11 and 12 after ") ".
    let cpu = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss_kb = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap()
        .parse()
        .unwrap();
    (cpu, rss_kb)
}

/// `pid` over `window`: its CPU in % of a core, its RSS at the end and at
/// its peak (KiB), from `sample` (CPU ticks, RSS).
fn idle_window(pid: u32, window: Duration, sample: fn(u32) -> (u64, u64)) -> (f64, u64, u64) {
    let (cpu0, _) = sample(pid);
    let mut peak = 0;
    let start = Instant::now();
    while start.elapsed() < window {
        peak = peak.max(sample(pid).1);
        std::thread::sleep(Duration::from_millis(500));
    }
    let (cpu1, rss) = sample(pid);
    let ticks = 100.0; // USER_HZ on Linux
    let cpu_pct = (cpu1 - cpu0) as f64 / ticks / window.as_secs_f64() * 100.0;
    (cpu_pct, rss, peak.max(rss))
}

/// Registers `n` more repositories of one service without a network (the
/// engine's address pools hold about thirty), named `kt-<prefix>-…`.
fn register(
    k: &Kedge,
    prefix: &str,
    n: usize,
    remotes: &mut Vec<(String, GitRemote)>,
    projects: &mut Vec<ComposeProject>,
) {
    for _ in 0..n {
        let name = unique_name(prefix);
        let remote = GitRemote::new(&name);
        remote.write("compose.yaml", &one_service_no_network());
        remote.commit("one");
        k.run(["repo", "add", &remote.url()]).success();
        projects.push(ComposeProject::named(&name));
        remotes.push((name, remote));
    }
}

/// Idle `serve` with 10 and 100 repositories (one service each, 60 s poll),
/// and `kedge status` over 100 repositories.
fn footprint(engine: &::kedge::observe::Engine) -> Vec<Row> {
    let k = Kedge::new();
    let mut remotes = Vec::new();
    let mut projects = Vec::new();
    let mut rows = Vec::new();
    let mut serve: Option<support::kedge::Serve> = None;
    for target in [10usize, 100] {
        register(
            &k,
            "bidle",
            target - remotes.len(),
            &mut remotes,
            &mut projects,
        );
        let s = serve.get_or_insert_with(|| {
            k.serve_with(&["serve", "--poll-interval", "60s", "--check-interval", "30s"])
        });
        for (name, _) in &remotes {
            until(engine, name, running("web"));
        }
        std::thread::sleep(Duration::from_secs(5));
        let (cpu_pct, rss, peak) = idle_window(s.child.id(), Duration::from_secs(30), proc_stat);
        rows.push(Row {
            what: format!("idle `serve`, {target} repositories, 30 s"),
            kedge: format!(
                "RSS {:.1} MB (peak {:.1}), CPU {cpu_pct:.2} %",
                rss as f64 / 1024.0,
                peak as f64 / 1024.0
            ),
            baseline: String::new(),
            goal: if target == 100 {
                "≤ 30 MB, ≤ 1 % CPU".into()
            } else {
                String::new()
            },
        });
    }

    let status: Vec<Duration> = (0..7)
        .map(|_| timed(k.command(["status", "-o", "json"])))
        .collect();
    let ps: Vec<Duration> = (0..7)
        .map(|_| {
            let mut c = Command::new("docker");
            c.args(["ps", "-a", "--filter", "label=io.kedge.managed=true"]);
            timed(c)
        })
        .collect();
    rows.push(Row {
        what: "`kedge status` with 100 repositories".into(),
        kedge: fmt(&status),
        baseline: format!("`docker ps -a` of the same containers: {}", fmt(&ps)),
        goal: "well under 100 ms".into(),
    });
    if let Some(mut s) = serve {
        s.terminate();
    }
    remove_containers(&remotes);
    drop(projects);
    rows
}

/// Bulk cleanup: one `docker rm` instead of a hundred `compose down`s, of
/// these repositories' containers only (the engine may be shared).
fn remove_containers(repos: &[(String, GitRemote)]) {
    let all = docker_ok(&[
        "ps",
        "-a",
        "--filter",
        "label=io.kedge.managed=true",
        "--format",
        "{{.ID}} {{.Label \"com.docker.compose.project\"}}",
    ]);
    let mine: Vec<&str> = all
        .lines()
        .filter_map(|l| l.split_once(' '))
        .filter(|(_, project)| repos.iter().any(|(name, _)| name == project))
        .map(|(id, _)| id)
        .collect();
    if !mine.is_empty() {
        let mut args = vec!["rm", "-f"];
        args.extend(mine);
        docker_ok(&args);
    }
}

/// `kedge history` of a repository with 100,000 deployments.
fn history_100k() -> Row {
    let k = Kedge::new();
    k.run(["repo", "add", "https://example.com/acme/big.git"])
        .success();
    {
        let mut store = ::kedge::record::Store::open(&k.data_dir()).unwrap();
        let repo = store.repo("big").unwrap().unwrap();
        store
            .with_transaction(|store| {
                for i in 0..100_000u32 {
                    let commit = format!("{i:040x}");
                    let id = store.begin_deployment(&::kedge::record::NewDeployment {
                        stack_id: repo.id,
                        commit: &commit,
                        message: "bench",
                        trigger: ::kedge::record::Trigger::NewCommit,
                        compose_snapshot: Some("{\"services\":{}}"),
                        rolled_back_from: None,
                    })?;
                    store.finish_deployment(
                        id,
                        ::kedge::record::DeploymentStatus::Success,
                        &[],
                        None,
                    )?;
                }
                Ok(())
            })
            .unwrap();
    }
    let history: Vec<Duration> = (0..10)
        .map(|_| timed(k.command(["history", "--repo", "big"])))
        .collect();
    let json: Vec<Duration> = (0..10)
        .map(|_| timed(k.command(["history", "--repo", "big", "-o", "json", "--limit", "100"])))
        .collect();
    let floor: Vec<Duration> = (0..10).map(|_| timed(k.command(["--version"]))).collect();
    Row {
        what: "`kedge history` on 100,000 deployments".into(),
        kedge: format!("{}; `-o json --limit 100`: {}", fmt(&history), fmt(&json)),
        baseline: format!("`kedge --version` (process start): {}", fmt(&floor)),
        goal: "well under 100 ms".into(),
    }
}

/// `kedge events` over a log of 100,000 events: the first page (the newest
/// 100, the default) and one repository's since 10 minutes ago.
fn events_100k() -> Row {
    use ::kedge::events::{EventKind, NewEvent};
    let k = Kedge::new();
    k.run(["repo", "add", "https://example.com/acme/loud.git"])
        .success();
    {
        let mut store = ::kedge::record::Store::open(&k.data_dir()).unwrap();
        store
            .with_transaction(|store| {
                for i in 0..100_000u32 {
                    let repo = if i % 10 == 0 { "loud" } else { "other" };
                    store.add_event(
                        &NewEvent::new(repo, EventKind::DriftDetected, format!("drift {i}"))
                            .service("web")
                            .field("drift", "stopped"),
                    )?;
                }
                Ok(())
            })
            .unwrap();
    }
    let page: Vec<Duration> = (0..10).map(|_| timed(k.command(["events"]))).collect();
    let json: Vec<Duration> = (0..10)
        .map(|_| timed(k.command(["events", "-o", "json"])))
        .collect();
    let repo: Vec<Duration> = (0..10)
        .map(|_| timed(k.command(["events", "--repo", "loud", "--since", "10m"])))
        .collect();
    let floor: Vec<Duration> = (0..10).map(|_| timed(k.command(["--version"]))).collect();
    Row {
        what: "`kedge events` on 100,000 events".into(),
        kedge: format!(
            "first page: {}; `-o json`: {}; `--repo X --since 10m`: {}",
            fmt(&page),
            fmt(&json),
            fmt(&repo)
        ),
        baseline: format!("`kedge --version` (process start): {}", fmt(&floor)),
        goal: "first page well under 100 ms".into(),
    }
}

/// `kedge events --follow` while `kedge sync` runs in another process:
/// from each event's stored time to its line on the follower's stdout.
fn follow_lag(runs: usize) -> Row {
    use std::io::BufRead;
    let s = Stack::new("bfollow", &[("compose.yaml", &two_services(IMAGE_1))]);
    s.kedge
        .run(["sync", "--repo", &s.name, "--no-wait"])
        .success();
    let mut child = s
        .kedge
        .command(["events", "--follow", "-o", "json", "--repo", &s.name])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let _follower = ChildGuard(child);
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let value: serde_json::Value = serde_json::from_str(&line).unwrap();
            if tx.send((chrono::Utc::now(), value)).is_err() {
                break;
            }
        }
    });
    let mut lags = Vec::new();
    for i in 0..runs {
        let image = if i % 2 == 0 { IMAGE_2 } else { IMAGE_1 };
        s.remote.write("compose.yaml", &two_services(image));
        let commit = s.remote.commit(&format!("api on {image}"));
        s.kedge
            .run(["sync", "--repo", &s.name, "--no-wait"])
            .success();
        // Every event of this commit, up to the last one `sync` stores.
        loop {
            let (at, e) = lines
                .recv_timeout(Duration::from_secs(60))
                .expect("the sync's events followed");
            if e["commit"] != commit.as_str() {
                continue;
            }
            let stored = chrono::DateTime::parse_from_rfc3339(e["time"].as_str().unwrap())
                .unwrap()
                .with_timezone(&chrono::Utc);
            lags.push((at - stored).to_std().unwrap_or_default());
            if e["kind"] == "deploy_succeeded" {
                break;
            }
        }
    }
    Row {
        what:
            "`kedge events --follow`: an event stored by `kedge sync` in another process → printed"
                .into(),
        kedge: fmt(&lags),
        baseline: String::new(),
        goal: "≤ 1 s (spec)".into(),
    }
}

/// `GET /api/v1/repos` with 100 repositories under a 30 s load from `wrk`
/// (2 threads, 8 connections), `serve`'s RSS during and after it, and the
/// deploy ratio measured while the load runs.
fn api_load(engine: &::kedge::observe::Engine) -> Vec<Row> {
    let k = Kedge::new();
    let (mut remotes, mut projects) = (Vec::new(), Vec::new());
    register(&k, "bapi", 100, &mut remotes, &mut projects);
    let (mut serve, addr) = serve_ready(&k, engine, &remotes);
    let port = addr.port();
    let token = k
        .run(["token", "create", "bench"])
        .stdout
        .trim()
        .to_string();
    let pid = serve.child.id();
    let url = format!("http://127.0.0.1:{port}/api/v1/repos");
    let header = format!("Authorization: Bearer {token}");
    let load = std::thread::spawn(move || {
        Command::new("wrk")
            .args(["-t2", "-c8", "-d30s", "--latency", "-H", &header, &url])
            .output()
            .expect("wrk (Debian package wrk)")
    });
    let sampler = std::thread::spawn(move || {
        let mut peak = 0;
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(30) {
            peak = peak.max(proc_stat(pid).1);
            std::thread::sleep(Duration::from_millis(250));
        }
        peak
    });
    let deploy = deploy_overhead(10);
    let out = load.join().unwrap();
    let peak = sampler.join().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let rps = text
        .lines()
        .find(|l| l.starts_with("Requests/sec:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("?")
        .to_string();
    let p99 = text
        .lines()
        .find(|l| l.trim_start().starts_with("99%"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("?")
        .to_string();
    let errors = text
        .lines()
        .find(|l| l.contains("Non-2xx") || l.contains("Socket errors"))
        .unwrap_or("no errors")
        .trim()
        .to_string();
    std::thread::sleep(Duration::from_secs(2));
    let after = proc_stat(pid).1;
    serve.terminate();
    remove_containers(&remotes);
    vec![
        Row {
            what: "`GET /api/v1/repos`, 100 repositories, 30 s of `wrk -t2 -c8`".into(),
            kedge: format!(
                "{rps} req/s, p99 {p99} ({errors}); `serve` RSS peak {:.1} MB, after {:.1} MB",
                peak as f64 / 1024.0,
                after as f64 / 1024.0
            ),
            baseline: String::new(),
            goal: "p99 ≤ 20 ms at ≥ 500 req/s; RSS ≤ 40 MB".into(),
        },
        Row {
            what: format!("{} (during the load)", deploy.what),
            goal: "ratio ≤ 1.25".into(),
            ..deploy
        },
    ]
}

/// `GET /metrics` of a `serve` running 100 deployed repositories (one
/// service each) with 1,000 deployments of history each, against
/// `GET /healthz` on the same listener: the HTTP floor.
fn metrics_scrape(engine: &::kedge::observe::Engine) -> Row {
    const REPOS: usize = 100;
    let k = Kedge::new();
    let (mut remotes, mut projects) = (Vec::new(), Vec::new());
    register(&k, "bmetrics", REPOS, &mut remotes, &mut projects);
    {
        let mut store = ::kedge::record::Store::open(&k.data_dir()).unwrap();
        let repos = store.repos().unwrap();
        store
            .with_transaction(|store| {
                for repo in &repos {
                    for i in 0..1_000u32 {
                        let commit = format!("{i:040x}");
                        let id = store.begin_deployment(&::kedge::record::NewDeployment {
                            stack_id: repo.id,
                            commit: &commit,
                            message: "bench",
                            trigger: ::kedge::record::Trigger::NewCommit,
                            compose_snapshot: None,
                            rolled_back_from: None,
                        })?;
                        let status = if i % 10 == 0 {
                            ::kedge::record::DeploymentStatus::Failed
                        } else {
                            ::kedge::record::DeploymentStatus::Success
                        };
                        store.finish_deployment(id, status, &[], None)?;
                    }
                }
                Ok(())
            })
            .unwrap();
    }
    let (mut serve, addr) = serve_ready(&k, engine, &remotes);
    let first = support::plain_http::get(addr, "/metrics");
    assert_eq!(first.status, 200);
    let synced = first
        .body
        .lines()
        .filter(|l| l.starts_with("kedge_repo_sync_state{") && l.contains("state=\"synced\"} 1"))
        .count();
    assert_eq!(synced, REPOS, "{}", first.body);
    let series = first.body.lines().filter(|l| !l.starts_with('#')).count();
    let timed_get = |path: &str| {
        let start = Instant::now();
        let r = support::plain_http::get(addr, path);
        let took = start.elapsed();
        assert_eq!(r.status, 200);
        took
    };
    let scrapes: Vec<Duration> = (0..200).map(|_| timed_get("/metrics")).collect();
    let health: Vec<Duration> = (0..200).map(|_| timed_get("/healthz")).collect();
    serve.terminate();
    remove_containers(&remotes);
    drop(projects);
    Row {
        what: format!("`GET /metrics`, {REPOS} repositories (1,000 deployments each)"),
        kedge: format!(
            "{} ({} KiB, {series} series)",
            fmt_fine(&scrapes),
            first.body.len() / 1024
        ),
        baseline: format!("`GET /healthz` on the same listener: {}", fmt_fine(&health)),
        goal: "≤ 5 ms".into(),
    }
}

/// CPU time of this process's finished children, in ms.
fn children_cpu_ms() -> f64 {
    // SAFETY: getrusage writes into the struct it is given.
    let usage = unsafe {
        let mut u = std::mem::zeroed::<libc::rusage>();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut u);
        u
    };
    let ms = |t: libc::timeval| t.tv_sec as f64 * 1e3 + t.tv_usec as f64 / 1e3;
    ms(usage.ru_utime) + ms(usage.ru_stime)
}

/// The ssh master connection Kedge keeps for sockets under `dir`.
fn ssh_master(dir: &Path) -> u32 {
    let dir = dir.to_string_lossy().into_owned();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .find(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).starts_with(&format!("ssh: {dir}")))
        })
        .expect("an ssh master connection")
}

/// One remote check (`git ls-remote`) of a repository behind a real sshd
/// with a deploy key: Kedge's (its connection reused) against a new
/// connection per check (the same git and ssh options, without reuse)
/// and against file://. Time, and CPU of git and ssh (for reuse, the
/// master's share included).
fn ssh_check(runs: usize) -> Row {
    use ::kedge::source::auth::{GitAuth, ssh_command};
    use ::kedge::source::git::Repository;
    use support::ssh_git::SshGit;

    let name = unique_name("bssh");
    let remote = GitRemote::new(&name);
    remote.write("compose.yaml", &one_service());
    remote.commit("one");
    let server = SshGit::start(remote.bare.parent().unwrap());
    let data = tempfile::tempdir().unwrap();
    let rt = runtime();
    let auth = GitAuth::SshKey {
        key: server.key.clone(),
        known_hosts: None,
    };
    let ssh = Repository::new(&server.url(&name), "main", data.path().join("a")).with_auth(
        &auth,
        data.path(),
        Duration::from_secs(60),
    );
    let file = Repository::new(&remote.url(), "main", data.path().join("b"));
    let checks = |repo: &Repository| -> Vec<Duration> {
        (0..runs)
            .map(|_| {
                let start = Instant::now();
                rt.block_on(repo.remote_head()).unwrap();
                start.elapsed()
            })
            .collect()
    };
    // The first check records the host key and opens the master.
    rt.block_on(ssh.remote_head()).unwrap();
    let master = ssh_master(&data.path().join("ssh"));
    let (master_before, _) = proc_stat(master);
    let cpu_before = children_cpu_ms();
    let reused = checks(&ssh);
    let tick_ms = 1000.0 / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let reused_cpu = (children_cpu_ms() - cpu_before
        + (proc_stat(master).0 - master_before) as f64 * tick_ms)
        / runs as f64;

    let fresh_ssh = ssh_command(&server.key, &data.path().join("known_hosts"), false, None);
    let cpu_before = children_cpu_ms();
    let fresh: Vec<Duration> = (0..runs)
        .map(|_| {
            let mut cmd = Command::new("git");
            cmd.args([
                "ls-remote",
                "--heads",
                "--",
                &server.url(&name),
                "refs/heads/main",
            ])
            .env("GIT_SSH_COMMAND", &fresh_ssh);
            timed(cmd)
        })
        .collect();
    let fresh_cpu = (children_cpu_ms() - cpu_before) / runs as f64;
    let cpu_before = children_cpu_ms();
    let local = checks(&file);
    let local_cpu = (children_cpu_ms() - cpu_before) / runs as f64;
    Row {
        what: "remote check (`git ls-remote`) over ssh with a deploy key".into(),
        kedge: format!(
            "connection reused: {}, {reused_cpu:.1} ms CPU per check",
            fmt_fine(&reused)
        ),
        baseline: format!(
            "new connection per check: {}, {fresh_cpu:.1} ms CPU; file://: {}, {local_cpu:.1} ms CPU",
            fmt_fine(&fresh),
            fmt_fine(&local)
        ),
        goal: "decide connection reuse for 100 repositories on one host".into(),
    }
}

/// `serve` at the default intervals on a free loopback port, returned once
/// every repository's `web` runs and `/readyz` says each has finished its
/// first pass (and published its snapshot).
fn serve_ready(
    k: &Kedge,
    engine: &::kedge::observe::Engine,
    remotes: &[(String, GitRemote)],
) -> (support::kedge::Serve, std::net::SocketAddr) {
    let serve = k.serve_with(&[
        "serve",
        "--poll-interval",
        "60s",
        "--check-interval",
        "30s",
        "--listen",
        "127.0.0.1:0",
    ]);
    let addr = support::plain_http::listen_addr(&serve);
    for (name, _) in remotes {
        until(engine, name, running("web"));
    }
    wait_for(60, "serve ready", || {
        (support::plain_http::get(addr, "/readyz").status == 200).then_some(())
    });
    (serve, addr)
}
