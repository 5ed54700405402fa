//! The `dashboard` row: the overview page of 100 repositories as `serve`
//! renders it (signed in, over loopback, each deployed commit with a
//! 60-character message), and what the whole page weighs (HTML + CSS + JS
//! + icon), beside `GET /api/v1/repos` of the same repositories.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use super::*;

/// One HTTP/1.0 exchange: status, `Set-Cookie` values, body.
pub(super) fn exchange(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Vec<String>, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let cookies = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
        .map(|(_, v)| v.trim().split(';').next().unwrap().to_string())
        .collect();
    (status, cookies, body.to_string())
}

/// Signs in with `token` as the page's form does: the session cookie.
pub(super) fn sign_in(addr: SocketAddr, token: &str) -> String {
    let (status, cookies, page) = exchange(addr, "GET", "/login", &[], "");
    assert_eq!(status, 200);
    let login_cookie = cookies[0].clone();
    let csrf = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_string();
    let (status, cookies, _) = exchange(
        addr,
        "POST",
        "/login",
        &[
            ("Cookie", &login_cookie),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        &format!("csrf={csrf}&token={token}"),
    );
    assert_eq!(status, 303);
    cookies
        .into_iter()
        .find(|c| c.starts_with("kedge_session="))
        .unwrap()
}

pub fn dashboard(engine: &::kedge::observe::Engine) -> Row {
    const REPOS: usize = 100;
    let k = Kedge::new();
    let (mut remotes, mut projects) = (Vec::new(), Vec::new());
    // As `register`, with a commit message of a usual length (the page
    // shows each deployed commit's message).
    for i in 0..REPOS {
        let name = unique_name("bdash");
        let remote = GitRemote::new(&name);
        remote.write("compose.yaml", &one_service_no_network());
        remote.commit(&format!(
            "web: raise the worker pool to 8 and log slow requests (#{i})"
        ));
        k.run(["repo", "add", &remote.url()]).success();
        projects.push(ComposeProject::named(&name));
        remotes.push((name, remote));
    }
    let token = k.token("bench", "read");
    let (mut serve, addr) = serve_ready(&k, engine, &remotes);
    let session = sign_in(addr, &token);
    let cookie = [("Cookie", session.as_str())];
    let (status, _, page) = exchange(addr, "GET", "/", &cookie, "");
    assert_eq!(status, 200);
    let rows = page.matches("<tr id=\"repo-").count();
    assert_eq!(rows, REPOS, "{page}");
    assert_eq!(page.matches("synced</span>").count(), REPOS, "{page}");
    let assets: usize = ["/assets/kedge.css", "/assets/kedge.js", "/assets/kedge.svg"]
        .iter()
        .map(|p| {
            let (status, _, body) = exchange(addr, "GET", p, &[], "");
            assert_eq!(status, 200);
            body.len()
        })
        .sum();
    let timed = |path: &str, headers: &[(&str, &str)]| {
        let start = Instant::now();
        let (status, _, _) = exchange(addr, "GET", path, headers, "");
        let took = start.elapsed();
        assert_eq!(status, 200);
        took
    };
    let pages: Vec<Duration> = (0..200).map(|_| timed("/", &cookie)).collect();
    let bearer = format!("Bearer {token}");
    let api: Vec<Duration> = (0..200)
        .map(|_| timed("/api/v1/repos", &[("Authorization", &bearer)]))
        .collect();
    serve.terminate();
    remove_containers(&remotes);
    drop(projects);
    Row {
        what: format!("dashboard overview `GET /`, {REPOS} repositories, signed in"),
        kedge: format!(
            "{} (HTML {:.1} KB + CSS/JS/icon {:.1} KB = {:.1} KB)",
            fmt_fine(&pages),
            page.len() as f64 / 1000.0,
            assets as f64 / 1000.0,
            (page.len() + assets) as f64 / 1000.0
        ),
        baseline: format!(
            "`GET /api/v1/repos` on the same listener: {}",
            fmt_fine(&api)
        ),
        goal: "≤ 50 ms, ≤ 100 KB".into(),
    }
}
