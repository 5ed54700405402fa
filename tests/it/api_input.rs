//! Bad input to every route of the HTTP API, end to end: malformed JSON,
//! wrong types, unknown repositories, path traversal, oversized bodies and
//! bad tokens. Each is a 4xx with a JSON `{"error": ...}` body, nothing is
//! changed, and `serve` goes on answering.

use std::io::Write;
use std::time::Duration;

use crate::support::api::Api;
use crate::support::docker::IMAGE_1;
use crate::support::*;

/// Every route under /api/v1: method, path (`{name}` a repository), and
/// a valid body when it takes one.
const ROUTES: &[(&str, &str, Option<&str>)] = &[
    ("GET", "/api/v1/repos", None),
    (
        "POST",
        "/api/v1/repos",
        Some(r#"{"url": "http://127.0.0.1:9/x.git", "name": "fresh"}"#),
    ),
    ("GET", "/api/v1/repos/{name}", None),
    ("DELETE", "/api/v1/repos/{name}", None),
    ("GET", "/api/v1/repos/{name}/history", None),
    ("GET", "/api/v1/repos/{name}/diff", None),
    ("POST", "/api/v1/repos/{name}/sync", None),
    (
        "POST",
        "/api/v1/repos/{name}/rollback",
        Some(r#"{"commit": "abcdef0"}"#),
    ),
    ("GET", "/api/v1/events", None),
    ("GET", "/api/v1/events/stream", None),
    ("GET", "/api/v1/openapi.json", None),
];

/// A deployed stack, served, with a write and a read token.
struct Served {
    s: Stack,
    api: Api,
    write: String,
    read: String,
}

fn served(prefix: &str) -> Served {
    require_docker();
    let s = Stack::new(prefix, &[("compose.yaml", &sleepers(&[("web", IMAGE_1)]))]);
    let write = s.kedge.token("ci", "write");
    let read = s.kedge.token("viewer", "read");
    let api = s.kedge.serve_api(&["--poll-interval", "1s"], &[]);
    wait_for(60, "the first deployment to finish", || {
        (s.history()[0]["status"] == "success").then_some(())
    });
    // The deployment's row is written before its event: the snapshot
    // starts once both are in.
    wait_for(30, "deploy_succeeded in the store", || {
        s.kedge
            .db_snapshot()
            .iter()
            .any(|r| r.starts_with("events:") && r.contains("\"deploy_succeeded\""))
            .then_some(())
    });
    Served {
        s,
        api,
        write,
        read,
    }
}

impl Served {
    /// The registered repositories, the deployments and the events, as
    /// the database holds them: what a refused request must leave alone.
    /// (`stack_state` is left out: serve writes every check of the remote.)
    fn snapshot(&self) -> Vec<String> {
        let mut rows = self.s.kedge.db_snapshot();
        rows.retain(|r| !r.starts_with("stack_state:"));
        rows
    }

    #[track_caller]
    fn still_answers(&self) {
        let health = self.api.call("GET", "/healthz", None, None, &[]);
        assert_eq!(health.status, 200, "{health:?}");
        assert_eq!(health.json()["status"], "ok");
    }
}

#[test]
fn bad_input_to_every_route_is_a_json_4xx_and_changes_nothing() {
    let sv = served("badin");
    let (api, w) = (&sv.api, sv.write.as_str());
    let name = sv.s.name.as_str();
    let before = sv.snapshot();

    // Unknown repositories, and names that climb out of the repositories'
    // directory, encoded so they reach the route as one segment.
    for bad in [
        "nope",
        "..%2F..%2Fetc",
        "..%2F",
        "..",
        "%2E%2E",
        &format!("..%2F{name}"),
        &format!("{name}%2F..%2F..%2F.."),
        "%2Fetc%2Fpasswd",
    ] {
        for (method, path, body) in ROUTES.iter().filter(|r| r.1.contains("{name}")) {
            let path = path.replace("{name}", bad);
            let answer = api.call(method, &path, Some(w), body.map(str::as_bytes), &[]);
            answer.refused(404);
        }
        api.get(&format!("/api/v1/events?repo={bad}"), w)
            .refused(404);
        api.get(&format!("/api/v1/events/stream?repo={bad}"), w)
            .refused(404);
    }
    // Not UTF-8 once decoded.
    api.get("/api/v1/repos/%FF%FE/history", w).refused(400);

    // Malformed JSON, wrong types, unknown or missing fields, no body.
    let rollback = format!("/api/v1/repos/{name}/rollback");
    for path in ["/api/v1/repos", rollback.as_str()] {
        for body in [
            "",
            "{",
            "not json",
            "[]",
            "null",
            "42",
            r#"{"url": 5, "commit": 5}"#,
            r#"{"url": ["a"], "commit": {"a": 1}}"#,
            r#"{"url": "/x.git", "commit": "abcd", "extra": true}"#,
            r#"{"branch": "main"}"#,
            "\u{0}\u{1}",
        ] {
            api.post(path, w, body).refused(400);
        }
        // JSON without saying so.
        api.call(
            "POST",
            path,
            Some(w),
            Some(br#"{"url": "/x.git", "commit": "abcd"}"#),
            &[("Content-Type", "text/plain")],
        )
        .refused(400);
    }
    // Well-formed, but not acceptable to `repo add` or `rollback`.
    for (body, status) in [
        (r#"{"url": ""}"#, 422),
        (r#"{"url": "ftp://host/x.git"}"#, 422),
        (
            r#"{"url": "https://h.invalid/x.git", "name": "Bad Name"}"#,
            422,
        ),
        (
            r#"{"url": "https://h.invalid/x.git", "name": "../../etc"}"#,
            422,
        ),
        (
            r#"{"url": "https://h.invalid/x.git", "name": "ok", "branch": "a..b"}"#,
            422,
        ),
        (
            r#"{"url": "https://h.invalid/x.git", "name": "ok", "branch": ""}"#,
            422,
        ),
        (r#"{"url": "/x.git", "name": "ok"}"#, 422),
        (
            r#"{"url": "https://h.invalid/x.git", "credential": "none-such"}"#,
            422,
        ),
        (
            &format!(r#"{{"url": "https://h.invalid/elsewhere.git", "name": "{name}"}}"#),
            409,
        ),
    ] {
        api.post("/api/v1/repos", w, body).refused(status);
    }
    for (commit, status) in [("ab", 422), ("", 422), ("0000000000", 404)] {
        api.post(&rollback, w, &format!(r#"{{"commit": "{commit}"}}"#))
            .refused(status);
    }

    // Query parameters of the wrong type.
    for path in [
        format!("/api/v1/repos/{name}/history?limit=abc"),
        format!("/api/v1/repos/{name}/history?limit=-1"),
        format!("/api/v1/repos/{name}/history?limit=99999999999999999999"),
        "/api/v1/events?since_id=x".to_string(),
        "/api/v1/events?limit=1.5".to_string(),
        "/api/v1/events?since_id=99999999999999999999".to_string(),
    ] {
        api.get(&path, w).refused(400);
    }
    for (method, path) in [
        ("DELETE", format!("/api/v1/repos/{name}?down=maybe")),
        ("POST", format!("/api/v1/repos/{name}/sync?wait=perhaps")),
    ] {
        api.call(method, &path, Some(w), None, &[]).refused(400);
    }
    api.call(
        "GET",
        "/api/v1/events/stream",
        Some(w),
        None,
        &[("Last-Event-ID", "yesterday")],
    )
    .refused(400);

    // No such route, no such method.
    api.get("/api/v1/nothing", w).refused(404);
    api.get("/api/v2/repos", w).refused(404);
    api.call("PUT", "/api/v1/repos", Some(w), Some(b"{}"), &[])
        .refused(405);
    api.call(
        "PATCH",
        &format!("/api/v1/repos/{name}"),
        Some(w),
        None,
        &[],
    )
    .refused(405);

    assert_eq!(sv.snapshot(), before, "a refused request changed the store");
    let repos = api.get("/api/v1/repos", w);
    assert_eq!(repos.status, 200, "{repos:?}");
    assert_eq!(repos.json()[0]["name"], name);
    sv.still_answers();
}

#[test]
fn missing_unknown_revoked_and_read_tokens_are_refused() {
    let sv = served("tokens");
    let api = &sv.api;
    let name = sv.s.name.as_str();
    let before = sv.snapshot();
    let routes: Vec<(&str, String, Option<&str>)> = ROUTES
        .iter()
        .map(|(m, p, b)| (*m, p.replace("{name}", name), *b))
        .collect();

    // No token, a token that is no token, and the wrong scheme.
    let other_scheme = format!("Basic {}", sv.write);
    let headers: [&[(&str, &str)]; 4] = [
        &[],
        &[("Authorization", "Bearer ")],
        &[("Authorization", "Bearer kedge_not-a-real-token")],
        &[("Authorization", other_scheme.as_str())],
    ];
    for (method, path, body) in &routes {
        for h in headers {
            let answer = api.call(method, path, None, body.map(str::as_bytes), h);
            answer.refused(401);
        }
    }
    // A read token reads, and may not write.
    for (method, path, body) in &routes {
        if *method == "GET" && !path.ends_with("/stream") {
            let answer = api.get(path, &sv.read);
            assert_eq!(answer.status, 200, "{method} {path}: {answer:?}");
        }
        if *method != "GET" {
            api.call(method, path, Some(&sv.read), body.map(str::as_bytes), &[])
                .refused(403);
        }
    }
    assert_eq!(sv.snapshot(), before, "a refused request changed the store");

    // Revoked while serve runs: refused from the next request on.
    assert_eq!(api.get("/api/v1/repos", &sv.write).status, 200);
    sv.s.kedge.run(["token", "revoke", "ci"]).success();
    for (method, path, body) in &routes {
        api.call(method, path, Some(&sv.write), body.map(str::as_bytes), &[])
            .refused(401);
    }
    sv.s.kedge
        .run(["token", "list"])
        .success()
        .stdout_has("viewer")
        .stdout_has("LAST USED");
    sv.still_answers();
}

#[test]
fn bodies_over_a_mebibyte_are_refused_with_413() {
    let sv = served("big");
    let api = &sv.api;
    let name = sv.s.name.as_str();
    let before = sv.snapshot();
    let two_mib = 2 << 20;
    let rollback = format!("/api/v1/repos/{name}/rollback");
    for path in ["/api/v1/repos", rollback.as_str()] {
        // Announced: refused before a byte of it is read.
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: kedge\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/json\r\nContent-Length: {two_mib}\r\n\r\n",
            sv.write
        );
        api.raw(head.as_bytes()).refused(413);
        // Streamed without a length: refused once 1 MiB has come.
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: kedge\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
            sv.write
        );
        api.raw_streaming(head.as_bytes(), two_mib).refused(413);
        // Without a token it is the token that is refused, or the size: either
        // way nothing is read past the limit.
        let head =
            format!("POST {path} HTTP/1.1\r\nHost: kedge\r\nContent-Length: {two_mib}\r\n\r\n");
        let answer = api.raw(head.as_bytes());
        assert!(matches!(answer.status, 401 | 413), "{answer:?}");
        answer.refused(answer.status);
    }
    // Just under the limit is read, and refused for what it says.
    let padded = format!(r#"{{"commit": "{}"}}"#, "a".repeat((1 << 20) - 100));
    api.post(&rollback, &sv.write, &padded).refused(404);
    assert_eq!(sv.snapshot(), before, "a refused request changed the store");
    sv.still_answers();
}

impl Api {
    /// `head` (a chunked request), then `size` bytes of body in chunks
    /// from another thread while the answer is read.
    fn raw_streaming(&self, head: &[u8], size: usize) -> crate::support::api::Answer {
        let mut conn = std::net::TcpStream::connect(&self.addr).expect("connect");
        conn.write_all(head).expect("send the head");
        let mut writer = conn.try_clone().unwrap();
        let feeder = std::thread::spawn(move || {
            let chunk = vec![b' '; 64 << 10];
            let mut sent = 0;
            while sent < size {
                let frame = [format!("{:x}\r\n", chunk.len()).as_bytes(), &chunk, b"\r\n"].concat();
                // The server stops reading at the limit: a write may fail.
                if writer.write_all(&frame).is_err() {
                    return;
                }
                sent += chunk.len();
            }
            let _ = writer.write_all(b"0\r\n\r\n");
        });
        conn.set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let answer = crate::support::api::read_answer(&mut conn);
        let _ = feeder.join();
        answer
    }
}

/// Regression: a connection that never sent a byte stayed open for good
/// (the HTTP version sniff before the header timeout had none), so
/// enough of them would exhaust serve's descriptors.
#[test]
fn silent_and_idle_connections_are_closed_after_the_header_timeout() {
    use std::io::Read;
    use std::net::TcpStream;
    use std::time::Instant;
    let k = Kedge::new();
    let api = k.serve_api(&[], &[]);
    let started = Instant::now();
    let silent = TcpStream::connect(&api.addr).unwrap();
    // A keep-alive connection, idle after its answer.
    let mut idle = TcpStream::connect(&api.addr).unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: kedge\r\n\r\n")
        .unwrap();
    let mut closed_after = Vec::new();
    for mut conn in [silent, idle] {
        conn.set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut got = Vec::new();
        // Ends at EOF: serve closed it. A read timeout would be an error.
        conn.read_to_end(&mut got)
            .expect("serve closes the connection");
        closed_after.push((
            started.elapsed(),
            String::from_utf8_lossy(&got).into_owned(),
        ));
    }
    let (silent_at, silent_got) = &closed_after[0];
    assert!(silent_got.is_empty(), "{silent_got}");
    assert!(
        (Duration::from_secs(9)..Duration::from_secs(20)).contains(silent_at),
        "closed after {silent_at:?}"
    );
    let (idle_at, idle_got) = &closed_after[1];
    assert!(idle_got.starts_with("HTTP/1.1 200"), "{idle_got}");
    assert!(
        *idle_at < Duration::from_secs(20),
        "closed after {idle_at:?}"
    );
    let health = api.call("GET", "/healthz", None, None, &[]);
    assert_eq!(health.status, 200, "{health:?}");
}

/// Regression: a body could take as long as its sender liked, holding its
/// connection (and what was read of it) for good. Through the API (a
/// token) and through the dashboard's sign-in form (none), a body still
/// coming 10 s after it was first read is answered 408 and its connection
/// closed.
#[test]
fn a_body_slower_than_the_body_timeout_is_answered_408_and_closed() {
    use std::io::Read;
    use std::net::TcpStream;
    use std::time::Instant;
    let k = Kedge::new();
    let token = k.token("ci", "write");
    let api = k.serve_api(&[], &[]);
    let heads = [
        format!(
            "POST /api/v1/repos HTTP/1.1\r\nHost: kedge\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{"
        ),
        "POST /login HTTP/1.1\r\nHost: kedge\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\nt"
            .to_string(),
    ];
    let slow: Vec<_> = heads
        .into_iter()
        .map(|head| {
            let addr = api.addr.clone();
            std::thread::spawn(move || {
                let mut conn = TcpStream::connect(&addr).unwrap();
                conn.write_all(head.as_bytes()).unwrap();
                let started = Instant::now();
                conn.set_read_timeout(Some(Duration::from_millis(500)))
                    .unwrap();
                let mut got = Vec::new();
                let mut buf = [0u8; 1024];
                // A byte every half second, while serve keeps the connection.
                while started.elapsed() < Duration::from_secs(30) {
                    match conn.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                        Err(_) if got.is_empty() => {
                            let _ = conn.write_all(b" ");
                        }
                        Err(_) => {}
                    }
                }
                (
                    String::from_utf8_lossy(&got).into_owned(),
                    started.elapsed(),
                )
            })
        })
        .collect();
    for thread in slow {
        let (answer, after) = thread.join().unwrap();
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
        assert!(
            answer.to_ascii_lowercase().contains("connection: close"),
            "{answer}"
        );
        assert!(answer.contains("\"error\""), "{answer}");
        assert!(
            (Duration::from_secs(9)..Duration::from_secs(20)).contains(&after),
            "closed after {after:?}"
        );
    }
    let health = api.call("GET", "/healthz", None, None, &[]);
    assert_eq!(health.status, 200, "{health:?}");
}
