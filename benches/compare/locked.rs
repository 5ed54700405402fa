//! The `locked` rows: `/healthz` latency, a heal, and a drift event's way
//! to an event stream, while another process holds the store's write
//! transaction; beside the same with the store free, in the same run.

use std::time::{Duration, Instant};

use super::*;
use support::http::{EventStream, event_age_ms, request};

const HEALTH: usize = 50;
/// Per phase: five heals of one service within five minutes are a crash
/// loop, held back.
const HEALS: usize = 2;

/// What one phase measured.
#[derive(Default)]
struct Phase {
    health: Vec<Duration>,
    heals: Vec<Duration>,
    streamed: Vec<Duration>,
}

fn measure(
    engine: &::kedge::observe::Engine,
    s: &Stack,
    port: u16,
    stream: &mut EventStream,
) -> Phase {
    let mut phase = Phase::default();
    for _ in 0..HEALTH {
        let asked = Instant::now();
        assert_eq!(request("GET", port, "/healthz", None, None).status, 200);
        phase.health.push(asked.elapsed());
    }
    let web = format!("{}-web-1", s.name);
    for _ in 0..HEALS {
        let stopped = Instant::now();
        docker_ok(&["stop", "-t", "0", &web]);
        let detected = stream.next_of("drift_detected");
        phase
            .streamed
            .push(Duration::from_millis(event_age_ms(&detected).max(0) as u64));
        stream.next_of("drift_healed");
        until(engine, &s.name, running("web"));
        phase.heals.push(stopped.elapsed());
    }
    phase
}

pub fn locked(engine: &::kedge::observe::Engine) -> Vec<Row> {
    let s = Stack::new("blocked", &[("compose.yaml", &one_service())]);
    let read = s.kedge.token("bench", "read");
    let api = s
        .kedge
        .serve_api(&["--poll-interval", "1h", "--check-interval", "1h"], &[]);
    let port = api.port();
    s.wait_deployed();
    let path = format!("/api/v1/events/stream?repo={}", s.name);
    let mut stream = EventStream::open(port, &path, &read, None);
    let free = measure(engine, &s, port, &mut stream);
    let lock = rusqlite::Connection::open(s.kedge.data_dir().join("kedge.db")).unwrap();
    lock.execute_batch("BEGIN IMMEDIATE; UPDATE repositories SET branch = branch WHERE id = -1;")
        .unwrap();
    let held = measure(engine, &s, port, &mut stream);
    let _ = lock.execute_batch("ROLLBACK");
    let row = |what: &str, held: &[Duration], free: &[Duration], goal: &str| Row {
        what: what.into(),
        kedge: fmt_fine(held),
        baseline: format!("store free: {}", fmt_fine(free)),
        goal: goal.into(),
    };
    vec![
        row(
            "`/healthz` while another process holds the store's write transaction",
            &held.health,
            &free.health,
            "≤ 100 ms more than free",
        ),
        row(
            "heal (`docker stop` → running) while the store is locked",
            &held.heals,
            &free.heals,
            "≤ 100 ms more than free",
        ),
        row(
            "`drift_detected` emitted → on the event stream, store locked",
            &held.streamed,
            &free.streamed,
            "≤ 100 ms",
        ),
    ]
}
