//! `serve` while another process holds the store's write lock: the runtime
//! never waits for it. Readers use their own connections (WAL), writes go
//! to one writer thread, events are broadcast before they are stored.

use std::time::{Duration, Instant};

use crate::support::docker::{IMAGE_1, docker_ok};
use crate::support::http::{EventStream, event_age_ms, request};
use crate::support::*;

/// What another Kedge process (a `kedge` command, a backup tool) does to
/// the store at its worst: a write transaction held open. Released on drop,
/// a failed assertion included.
struct HeldWriteLock {
    conn: rusqlite::Connection,
}

impl HeldWriteLock {
    fn take(db: &std::path::Path) -> HeldWriteLock {
        let conn = rusqlite::Connection::open(db).expect("open the store");
        conn.execute_batch(
            "BEGIN IMMEDIATE; UPDATE repositories SET branch = branch WHERE id = -1;",
        )
        .expect("take the write lock");
        HeldWriteLock { conn }
    }
}

impl Drop for HeldWriteLock {
    fn drop(&mut self) {
        let _ = self.conn.execute_batch("ROLLBACK");
    }
}

#[test]
fn a_cli_holding_a_write_transaction_for_15s_delays_neither_healthz_nor_a_heal_nor_an_sse_event() {
    let s = Stack::new(
        "storelock",
        &[("compose.yaml", &sleepers(&[("web", IMAGE_1)]))],
    );
    let k = &s.kedge;
    let read = k.token("watcher", "read");
    // Hourly polls and full checks: the heal below comes from the engine's
    // event stream alone.
    let api = k.serve_api(&["--poll-interval", "1h", "--check-interval", "1h"], &[]);
    let port = api.port();
    wait_for(60, "the first deployment", || {
        (s.project.running().len() == 1).then_some(())
    });
    s.wait_deployed();
    let web = format!("{}-web-1", s.name);
    let path = format!("/api/v1/events/stream?repo={}", s.name);
    let mut stream = EventStream::open(port, &path, &read, None);

    // A heal with the store free, for comparison.
    docker_ok(&["stop", "-t", "0", &web]);
    let detected = stream.next_of("drift_detected");
    let healed = stream.next_of("drift_healed");
    let free_heal = heal_ms(&detected, &healed);

    let lock = HeldWriteLock::take(&k.data_dir().join("kedge.db"));
    let held = Instant::now();

    // /healthz answers at once, again and again.
    let mut slowest = Duration::ZERO;
    for _ in 0..20 {
        let asked = Instant::now();
        let health = request("GET", port, "/healthz", None, None);
        slowest = slowest.max(asked.elapsed());
        assert_eq!(health.status, 200);
    }
    assert!(
        slowest <= Duration::from_millis(100),
        "/healthz took {slowest:?} while the store was locked"
    );

    // A heal: seen, streamed and done while the lock is still held.
    docker_ok(&["stop", "-t", "0", &web]);
    let detected = stream.next_of("drift_detected");
    let streamed_after = event_age_ms(&detected);
    let healed = stream.next_of("drift_healed");
    wait_for(30, "the container running again", || {
        s.project
            .running()
            .iter()
            .any(|c| c.name == web)
            .then_some(())
    });
    let locked_for = held.elapsed();
    assert!(
        locked_for < Duration::from_secs(15),
        "the heal took until {locked_for:?} into the lock"
    );
    assert!(
        streamed_after <= 100,
        "drift_detected reached the stream {streamed_after} ms after it was emitted"
    );
    let locked_heal = heal_ms(&detected, &healed);
    eprintln!(
        "heal with the store free: {free_heal} ms; with it locked: {locked_heal} ms; \
         /healthz slowest {slowest:?}; drift_detected streamed after {streamed_after} ms"
    );

    // Held for 15 s in all, then let go: what waited is stored, none lost,
    // and the stream's client gets the ids to resume after.
    std::thread::sleep(Duration::from_secs(15).saturating_sub(held.elapsed()));
    drop(lock);
    let stored_id = loop {
        let m = stream
            .next(Duration::from_secs(30))
            .expect("the ids once stored");
        if m.data.is_null() {
            break m.id.expect("an id");
        }
    };
    assert!(stored_id.parse::<i64>().is_ok(), "{stored_id}");
    let stored = |e: &serde_json::Value| {
        let events = k.run(["events", "--repo", &s.name, "-o", "json"]).json();
        events
            .as_array()
            .unwrap()
            .iter()
            .any(|row| row["kind"] == e["kind"] && row["time"] == e["time"])
            .then_some(())
    };
    wait_for(30, "the heal's drift_detected stored", || stored(&detected));
    wait_for(30, "the heal's drift_healed stored", || stored(&healed));
}

fn heal_ms(detected: &serde_json::Value, healed: &serde_json::Value) -> i64 {
    let at = |e: &serde_json::Value| {
        chrono::DateTime::parse_from_rfc3339(e["time"].as_str().unwrap())
            .unwrap()
            .timestamp_millis()
    };
    at(healed) - at(detected)
}
