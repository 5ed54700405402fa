//! Strangers on the listener, end to end: hook bodies dripped a byte per
//! TCP segment, and more slow connections than `serve` has descriptors.
//! Every attack is bounded in count and time; during each, `serve`'s
//! memory stays under 64 MB and a stopped container is healed within 2 s.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::support::docker::{IMAGE_1, docker_ok};
use crate::support::kedge::{Serve, rss_kib};
use crate::support::plain_http::{listen_addr, try_get};
use crate::support::*;

const SECRET: &str = "slow-s3cret";
/// `serve`'s resident memory stays under this during an attack.
const RSS_CEILING_KIB: u64 = 64 * 1024;
/// A stopped container runs again within this during an attack: a generous
/// ceiling on a loaded machine (a heal takes about a second), under the
/// 10 s body timeout that holds an attack's connections, which a heal
/// waiting on them would take. The figure itself is printed.
const HEAL_WITHIN: Duration = Duration::from_secs(8);

/// A hook's head as an attacker sends it: a body announced, and a
/// signature header (any: a forged one is found out only once the body
/// has been read).
fn hook_head(length: usize) -> String {
    format!(
        "POST /hooks/generic HTTP/1.1\r\nHost: kedge\r\nContent-Type: application/json\r\n\
         Content-Length: {length}\r\nX-Kedge-Signature-256: sha256={}\r\n\r\n",
        "0".repeat(64)
    )
}

/// A deployed one-service stack, served with the global webhook secret and
/// a one-second poll; `nofile` lowers serve's descriptor limit.
fn served(prefix: &str, nofile: Option<u64>) -> (Stack, Serve, SocketAddr) {
    require_docker();
    let s = Stack::with_kedge(
        prefix,
        &[("compose.yaml", &sleepers(&[("web", IMAGE_1)]))],
        Kedge::new().env("KEDGE_WEBHOOK_SECRET", SECRET),
    );
    let args = ["serve", "--listen", "127.0.0.1:0", "--poll-interval", "1s"];
    let serve = match nofile {
        Some(n) => s.kedge.spawn_serve_nofile(&args, &[], n),
        None => s.kedge.spawn_serve(&args, &[]),
    };
    let addr = listen_addr(&serve);
    s.wait_deployed();
    wait_for(60, "web running", || {
        s.running().contains_key("web").then_some(())
    });
    (s, serve, addr)
}

/// Stops `web` and returns how long it took to run again.
fn heal_time(s: &Stack) -> Duration {
    let id = s.running()["web"].id.clone();
    docker_ok(&["stop", &id]);
    let stopped = Instant::now();
    wait_for(60, "web healed", || {
        s.running().contains_key("web").then_some(())
    });
    stopped.elapsed()
}

/// The peak of a process's resident memory, sampled until stopped.
struct RssPeak {
    stop: Arc<AtomicBool>,
    sampler: JoinHandle<u64>,
}

impl RssPeak {
    fn start(pid: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let sampler = std::thread::spawn(move || {
            let mut peak = 0;
            while !flag.load(Ordering::Relaxed) {
                peak = peak.max(rss_kib(pid));
                std::thread::sleep(Duration::from_millis(50));
            }
            peak
        });
        RssPeak { stop, sampler }
    }

    fn peak_kib(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.sampler.join().unwrap()
    }
}

/// One connection: a hook announcing 1,048,000 bytes, then `bytes` of
/// them one per TCP segment; then whatever serve answers until it closes
/// (or 30 s pass), and how long after the head that was.
fn drip(addr: SocketAddr, bytes: usize, sent: Arc<AtomicUsize>) -> (String, Duration) {
    let mut conn = TcpStream::connect(addr).expect("connect");
    conn.set_nodelay(true).unwrap();
    conn.write_all(hook_head(1_048_000).as_bytes()).unwrap();
    let start = Instant::now();
    for _ in 0..bytes {
        if conn.write_all(b" ").is_err() {
            break;
        }
        sent.fetch_add(1, Ordering::Relaxed);
        std::thread::sleep(Duration::from_micros(100));
    }
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut got = Vec::new();
    let _ = conn.read_to_end(&mut got);
    (String::from_utf8_lossy(&got).into_owned(), start.elapsed())
}

/// Regression: a hook body was collected as it came, one piece per TCP
/// segment each holding on to a read buffer thousands of times its size,
/// before the signature was checked, and without a time limit: four
/// connections dripping 100,000 bytes took serve from 15 MB to 420 MB.
#[test]
fn hook_bodies_dripped_a_byte_per_segment_do_not_inflate_memory() {
    const CONNECTIONS: usize = 4;
    const BYTES_EACH: usize = 25_000;
    let (s, serve, addr) = served("drip", None);
    let before = serve.rss_kib();
    let rss = RssPeak::start(serve.child.id());
    let sent = Arc::new(AtomicUsize::new(0));
    let drippers: Vec<_> = (0..CONNECTIONS)
        .map(|_| {
            let sent = sent.clone();
            std::thread::spawn(move || drip(addr, BYTES_EACH, sent))
        })
        .collect();
    wait_for(30, "the drip under way", || {
        (sent.load(Ordering::Relaxed) >= CONNECTIONS * BYTES_EACH / 5).then_some(())
    });
    let healed = heal_time(&s);
    let answers: Vec<_> = drippers.into_iter().map(|d| d.join().unwrap()).collect();
    let peak = rss.peak_kib();
    eprintln!("drip: RSS {before} → peak {peak} KiB, healed after {healed:?}, {answers:?}");
    assert!(
        sent.load(Ordering::Relaxed) >= CONNECTIONS * BYTES_EACH * 9 / 10,
        "the drip was cut short: {} bytes",
        sent.load(Ordering::Relaxed)
    );
    assert!(
        peak < RSS_CEILING_KIB,
        "serve's RSS went from {before} KiB to {peak} KiB"
    );
    assert!(healed <= HEAL_WITHIN, "healed after {healed:?}");
    // Each body was refused once the body timeout had passed, and its
    // connection closed.
    for (answer, after) in &answers {
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
        assert!(answer.contains("\"error\""), "{answer:?}");
        assert!(*after < Duration::from_secs(20), "answered after {after:?}");
    }
    assert_eq!(try_get(addr, "/healthz").map(|r| r.status), Some(200));
}

/// Connections that send a hook's head, then a byte every 2 s, `count`
/// of them at once: each closed by serve is opened again at the next
/// round. Stops when asked, or after two minutes whatever happens.
struct SlowClients {
    stop: Arc<AtomicBool>,
    /// Rounds done: in each, every connection was opened or sent a byte.
    rounds: Arc<AtomicUsize>,
    /// Connections serve answered 503 (over its cap) so far: the cap was
    /// reached.
    refused: Arc<AtomicUsize>,
    driver: Option<JoinHandle<()>>,
}

impl SlowClients {
    fn start(addr: SocketAddr, count: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let rounds = Arc::new(AtomicUsize::new(0));
        let refused = Arc::new(AtomicUsize::new(0));
        let (flag, done, refusals) = (stop.clone(), rounds.clone(), refused.clone());
        let driver = std::thread::spawn(move || {
            let head = hook_head(1000);
            let mut conns: Vec<Option<TcpStream>> = (0..count).map(|_| None).collect();
            let until = Instant::now() + Duration::from_secs(120);
            while !flag.load(Ordering::Relaxed) && Instant::now() < until {
                let round = Instant::now();
                for slot in conns.iter_mut() {
                    if flag.load(Ordering::Relaxed) {
                        break;
                    }
                    match slot {
                        None => {
                            *slot = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
                                .ok()
                                .and_then(|mut c| {
                                    c.write_all(head.as_bytes()).ok()?;
                                    c.set_nonblocking(true).ok()?;
                                    Some(c)
                                });
                        }
                        Some(conn) => {
                            // Whatever serve said (503, 408) or a close ends it.
                            let mut buf = [0u8; 512];
                            let ended = match conn.read(&mut buf) {
                                Ok(0) => true,
                                Ok(n) => {
                                    if buf[..n].starts_with(b"HTTP/1.1 503") {
                                        refusals.fetch_add(1, Ordering::Relaxed);
                                    }
                                    true
                                }
                                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                                    conn.write_all(b" ").is_err()
                                }
                                Err(_) => true,
                            };
                            if ended {
                                *slot = None;
                            }
                        }
                    }
                }
                done.fetch_add(1, Ordering::Relaxed);
                let rest = Duration::from_secs(2).saturating_sub(round.elapsed());
                let wake = Instant::now() + rest;
                while !flag.load(Ordering::Relaxed) && Instant::now() < wake {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        });
        SlowClients {
            stop,
            rounds,
            refused,
            driver: Some(driver),
        }
    }
}

impl Drop for SlowClients {
    /// Stops, and closes every connection.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(driver) = self.driver.take() {
            let _ = driver.join();
        }
    }
}

/// Regression: with the shipped unit's descriptor limit, 1,030 slow
/// connections left serve no descriptor: `/healthz` went silent, a stopped
/// container was not healed for over 20 s, a push was not deployed (`Too
/// many open files`), and every failed accept was logged. Here serve gets
/// 512 descriptors (so it holds 256 connections) and 600 slow clients.
#[test]
fn slow_connections_past_the_descriptor_limit_neither_silence_serve_nor_stop_heals() {
    const NOFILE: u64 = 512;
    const SLOW: usize = 600;
    let (s, serve, addr) = served("slowfd", Some(NOFILE));
    let rss = RssPeak::start(serve.child.id());
    let attack = SlowClients::start(addr, SLOW);
    // Every slow client has connected, and sent a byte since.
    wait_for(30, "the slow clients connected", || {
        (attack.rounds.load(Ordering::Relaxed) >= 2).then_some(())
    });

    let healed = heal_time(&s);
    // A push is deployed meanwhile (serve polls every second).
    s.remote.write(
        "compose.yaml",
        &sleepers(&[("web", IMAGE_1), ("more", IMAGE_1)]),
    );
    let commit = s.remote.commit("one more service");
    wait_for(60, "the push deployed", || {
        let h = s.history();
        (h[0]["commit"] == commit.as_str() && h[0]["status"] == "success").then_some(())
    });
    let refused = attack.refused.load(Ordering::Relaxed);
    drop(attack);
    let peak = rss.peak_kib();
    eprintln!("slow: RSS peak {peak} KiB, healed after {healed:?}, {refused} refused over the cap");

    assert!(healed <= HEAL_WITHIN, "healed after {healed:?}");
    assert!(peak < RSS_CEILING_KIB, "serve's RSS peaked at {peak} KiB");
    // Serve held all it may, and refused the others at once.
    assert!(refused > 0, "no connection was refused over the cap");
    // Once the slow clients are gone, health answers at once.
    wait_for(30, "/healthz answering", || {
        try_get(addr, "/healthz").filter(|r| r.status == 200)
    });
    let log = serve.log();
    assert!(!log.contains("Too many open files"), "{log}");
    assert!(log.contains("max_connections=256"), "{log}");
    let logged = |what: &str| log.lines().filter(|l| l.contains(what)).count();
    assert!(
        logged("connection refused") <= 12 && logged("accept failed") <= 12,
        "refusals and failures are logged once per 10 s: {log}"
    );
}
