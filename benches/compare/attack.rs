//! The `attack` rows: `/healthz` latency and a signed push's time to the
//! new image running, under 200 event-stream clients, 1,000 slow
//! connections (half sending their headers a byte every 2 s, half a hook
//! body a byte every 2 s, each opened again once serve closes it) and a
//! 2,000-request unsigned webhook flood started with each push; beside the
//! same measurement with no attack, in the same run.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::*;

const SECRET: &str = "bench-secret";
const STREAMS: usize = 200;
const SLOW: usize = 1000;
const FLOOD: usize = 2000;
const FLOOD_THREADS: usize = 8;
const PUSHES: usize = 5;

/// What one phase measured.
struct Phase {
    health: Vec<Duration>,
    health_failed: usize,
    pushes: Vec<Duration>,
    /// Each flood: how long it took, and how many were answered 401.
    floods: Vec<(Duration, usize)>,
    rss_peak_kib: u64,
}

fn percentile(samples: &[Duration], p: usize) -> Duration {
    let mut v = samples.to_vec();
    v.sort();
    v[(v.len() * p / 100).min(v.len() - 1)]
}

fn health_figures(p: &Phase) -> String {
    format!(
        "p99 {:.1} ms (p50 {:.1}, max {:.1}, n={}, {} without answer)",
        ms(percentile(&p.health, 99)),
        ms(percentile(&p.health, 50)),
        ms(percentile(&p.health, 100)),
        p.health.len(),
        p.health_failed
    )
}

pub fn attack(engine: &::kedge::observe::Engine) -> Vec<Row> {
    let Stack {
        name,
        remote,
        kedge: k,
        project: _project,
    } = Stack::new("battack", &[("compose.yaml", &two_services(IMAGE_1))]);
    let k = k.env("KEDGE_WEBHOOK_SECRET", SECRET);
    let token = k.token("bench", "read");
    let mut serve = k.serve_with(&["serve", "--listen", "127.0.0.1:0", "--poll-interval", "1h"]);
    let addr = support::plain_http::listen_addr(&serve);
    wait_deployed(&k, &name);
    let pid = serve.child.id();
    let mut round = 0;
    let quiet = phase(engine, &k, &name, &remote, addr, pid, false, &mut round);
    let attackers = Attackers::start(addr, &token);
    wait_for(60, "the attack under way", || {
        (attackers.rounds.load(Ordering::Relaxed) >= 3).then_some(())
    });
    let attacked = phase(engine, &k, &name, &remote, addr, pid, true, &mut round);
    let (streams_open, answered_408, refused_503) = attackers.stop();
    let log = serve.log();
    serve.terminate();
    let cap = log
        .split("max_connections=")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or("?")
        .to_string();
    let flood = attacked
        .floods
        .iter()
        .map(|(took, unauthorized)| format!("{:.1} s ({unauthorized} × 401)", took.as_secs_f64()))
        .collect::<Vec<_>>()
        .join(", ");
    vec![
        Row {
            what: format!(
                "`GET /healthz` under {STREAMS} event-stream clients, {SLOW} slow connections \
                 and a {FLOOD}-request unsigned webhook flood per push"
            ),
            kedge: format!(
                "{}; `serve` RSS peak {:.1} MB; {streams_open} streams open at the end, {answered_408} \
                 slow bodies answered 408, {refused_503} connections refused (cap {cap}); floods: {flood}",
                health_figures(&attacked),
                attacked.rss_peak_kib as f64 / 1024.0,
            ),
            baseline: format!(
                "no attack: {}; RSS peak {:.1} MB",
                health_figures(&quiet),
                quiet.rss_peak_kib as f64 / 1024.0
            ),
            goal: "p99 ≤ 50 ms".into(),
        },
        Row {
            what: "signed push + webhook → new image running, during that attack".into(),
            kedge: fmt(&attacked.pushes),
            baseline: format!("no attack: {}", fmt(&quiet.pushes)),
            goal: "≤ 2 s".into(),
        },
    ]
}

/// `PUSHES` pushes, each announced by a signed generic hook (with a flood
/// of unsigned ones started at the same time when `flood`), timed to the
/// new image running; `/healthz` sampled all along.
#[allow(clippy::too_many_arguments)]
fn phase(
    engine: &::kedge::observe::Engine,
    k: &Kedge,
    name: &str,
    remote: &GitRemote,
    addr: SocketAddr,
    pid: u32,
    flood: bool,
    round: &mut usize,
) -> Phase {
    use hmac::Mac;
    let body = serde_json::json!({ "repo": name }).to_string();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body.as_bytes());
    let signature = format!(
        "sha256={}",
        ::kedge::desired::render::hex(&mac.finalize().into_bytes())
    );
    let (id1, id2) = (image_id(IMAGE_1), image_id(IMAGE_2));
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let (mut samples, mut failed, mut peak) = (Vec::new(), 0, 0);
            while !stop.load(Ordering::Relaxed) {
                let start = Instant::now();
                match support::plain_http::try_get(addr, "/healthz") {
                    Some(r) if r.status == 200 => samples.push(start.elapsed()),
                    _ => failed += 1,
                }
                peak = peak.max(support::kedge::rss_kib(pid));
                std::thread::sleep(Duration::from_millis(20));
            }
            (samples, failed, peak)
        })
    };
    let mut pushes = Vec::new();
    let mut floods = Vec::new();
    for _ in 0..PUSHES {
        *round += 1;
        let (image, id) = if *round % 2 == 1 {
            (IMAGE_2, id2.clone())
        } else {
            (IMAGE_1, id1.clone())
        };
        remote.write("compose.yaml", &two_services(image));
        remote.commit("change");
        let flooding = flood.then(|| std::thread::spawn(move || unsigned_flood(addr)));
        let start = Instant::now();
        let answer = support::http::request_with(
            "POST",
            addr.port(),
            &format!("/hooks/generic/{name}"),
            None,
            Some(&body),
            &[("X-Kedge-Signature-256", &signature)],
        );
        assert_eq!(answer.status, 202, "{answer:?}");
        until(engine, name, |cs| {
            cs.iter().any(|c| {
                c.service == "api"
                    && c.state == ::kedge::observe::RunState::Running
                    && c.image_id == id
            })
        });
        pushes.push(start.elapsed());
        if let Some(f) = flooding {
            floods.push(f.join().unwrap());
        }
        wait_deployed(k, name);
    }
    stop.store(true, Ordering::Relaxed);
    let (health, health_failed, rss_peak_kib) = sampler.join().unwrap();
    Phase {
        health,
        health_failed,
        pushes,
        floods,
        rss_peak_kib,
    }
}

/// `FLOOD` unsigned GitHub hooks with a 1 KiB body, from `FLOOD_THREADS`
/// threads, each on a connection of its own: how long, how many 401s.
fn unsigned_flood(addr: SocketAddr) -> (Duration, usize) {
    let start = Instant::now();
    let body = format!("{{\"pad\": \"{}\"}}", "x".repeat(1000));
    let threads: Vec<_> = (0..FLOOD_THREADS)
        .map(|_| {
            let body = body.clone();
            std::thread::spawn(move || {
                (0..FLOOD / FLOOD_THREADS)
                    .filter(|_| {
                        support::http::request_with(
                            "POST",
                            addr.port(),
                            "/hooks/github",
                            None,
                            Some(&body),
                            &[("X-GitHub-Event", "push")],
                        )
                        .status
                            == 401
                    })
                    .count()
            })
        })
        .collect();
    let unauthorized = threads.into_iter().map(|t| t.join().unwrap()).sum();
    (start.elapsed(), unauthorized)
}

/// The event-stream clients and the slow connections, driven by one
/// thread in rounds of 2 s.
struct Attackers {
    stop: Arc<AtomicBool>,
    rounds: Arc<AtomicUsize>,
    driver: JoinHandle<(usize, usize, usize)>,
}

/// One slow connection: which kind, and the socket while it is open.
struct Slow {
    head: Vec<u8>,
    /// Bytes of `head` sent so far: a slow-header client sends one per round.
    sent: usize,
    conn: Option<TcpStream>,
}

impl Attackers {
    fn start(addr: SocketAddr, token: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let rounds = Arc::new(AtomicUsize::new(0));
        let (flag, done) = (stop.clone(), rounds.clone());
        let stream_head = format!(
            "GET /api/v1/events/stream HTTP/1.1\r\nHost: kedge\r\nAuthorization: Bearer {token}\r\n\r\n"
        );
        let body_head = format!(
            "POST /hooks/generic HTTP/1.1\r\nHost: kedge\r\nContent-Type: application/json\r\n\
             Content-Length: 1000\r\nX-Kedge-Signature-256: sha256={}\r\n\r\n",
            "0".repeat(64)
        );
        let header_head =
            "POST /hooks/github HTTP/1.1\r\nHost: kedge\r\nX-Slow: ".to_string() + &"a".repeat(100);
        let driver = std::thread::spawn(move || {
            let open = |head: &[u8]| -> Option<TcpStream> {
                let mut c = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
                c.write_all(head).ok()?;
                c.set_nonblocking(true).ok()?;
                Some(c)
            };
            let mut streams: Vec<Option<TcpStream>> =
                (0..STREAMS).map(|_| open(stream_head.as_bytes())).collect();
            let mut slow: Vec<Slow> = (0..SLOW)
                .map(|i| Slow {
                    head: if i % 2 == 0 {
                        body_head.clone().into_bytes()
                    } else {
                        header_head.clone().into_bytes()
                    },
                    sent: 0,
                    conn: None,
                })
                .collect();
            let (mut answered_408, mut refused_503) = (0, 0);
            let until = Instant::now() + Duration::from_secs(600);
            let mut buf = vec![0u8; 64 << 10];
            while !flag.load(Ordering::Relaxed) && Instant::now() < until {
                let round = Instant::now();
                for s in streams.iter_mut() {
                    let Some(c) = s else { continue };
                    // Drained; one that ended is opened again.
                    let ended = match c.read(&mut buf) {
                        Ok(0) => true,
                        Ok(_) => false,
                        Err(e) => e.kind() != ErrorKind::WouldBlock,
                    };
                    if ended {
                        *s = open(stream_head.as_bytes());
                    }
                }
                for s in slow.iter_mut() {
                    let Some(c) = &mut s.conn else {
                        // A body client sends its whole head at once; a
                        // header client its first part.
                        let first = if s.head.ends_with(b"\r\n\r\n") {
                            s.head.len()
                        } else {
                            s.head.len() - 100
                        };
                        s.conn = open(&s.head[..first]);
                        s.sent = first;
                        continue;
                    };
                    let ended = match c.read(&mut buf) {
                        Ok(0) => true,
                        Ok(n) => {
                            if buf[..n].starts_with(b"HTTP/1.1 408") {
                                answered_408 += 1;
                            }
                            if buf[..n].starts_with(b"HTTP/1.1 503") {
                                refused_503 += 1;
                            }
                            true
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {
                            let byte = if s.sent < s.head.len() {
                                s.sent += 1;
                                s.head[s.sent - 1]
                            } else {
                                b' '
                            };
                            c.write_all(&[byte]).is_err()
                        }
                        Err(_) => true,
                    };
                    if ended {
                        s.conn = None;
                    }
                }
                done.fetch_add(1, Ordering::Relaxed);
                let wake = round + Duration::from_secs(2);
                while !flag.load(Ordering::Relaxed) && Instant::now() < wake {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            let streams_open = streams.iter().flatten().count();
            (streams_open, answered_408, refused_503)
        });
        Attackers {
            stop,
            rounds,
            driver,
        }
    }

    /// Stops and closes everything: the streams still open, the slow
    /// bodies answered 408, the connections refused over the cap.
    fn stop(self) -> (usize, usize, usize) {
        self.stop.store(true, Ordering::Relaxed);
        self.driver.join().unwrap()
    }
}
