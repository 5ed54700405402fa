//! `kedge serve`'s HTTP API from the outside: serve on a free port, tokens
//! made with `kedge token create`, and plain requests that report every
//! answer (4xx and 5xx included) as a status and a body.

use std::io::{Read, Write};
use std::time::Duration;

use super::kedge::{Kedge, Serve, wait_for};

/// One answer: the status, the Content-Type and the body as text.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub content_type: String,
    pub body: String,
}

impl Answer {
    /// The body as JSON; panics (showing it) when it is not.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("the body is not JSON ({e}): {self:?}"))
    }

    /// A refusal of this status, in the API's error form `{"error": "..."}`.
    #[track_caller]
    pub fn refused(&self, status: u16) -> &Self {
        assert_eq!(self.status, status, "unexpected status: {self:?}");
        assert!(
            self.content_type.starts_with("application/json"),
            "an error that is not JSON: {self:?}"
        );
        let doc = self.json();
        let text = doc["error"].as_str().unwrap_or_default();
        assert!(
            !text.is_empty() && doc.as_object().is_some_and(|o| o.len() == 1),
            "not the error form {{\"error\": \"...\"}}: {self:?}"
        );
        self
    }
}

/// A running `serve` and the address it listens on.
pub struct Api {
    pub serve: Serve,
    pub addr: String,
    agent: ureq::Agent,
}

impl Kedge {
    /// `kedge token create NAME --role ROLE`: the token, alone on stdout.
    pub fn token(&self, name: &str, role: &str) -> String {
        let out = self.run(["token", "create", name, "--role", role]);
        out.success();
        let token = out.stdout.trim().to_string();
        assert!(!token.is_empty() && !token.contains('\n'), "{out:?}");
        token
    }

    /// `kedge serve` on a free loopback port, with `extra` arguments and
    /// environment; returns once it says where it listens.
    pub fn serve_api(&self, extra: &[&str], envs: &[(&str, &str)]) -> Api {
        let mut args = vec!["serve", "--listen", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        let serve = self.spawn_serve(&args, envs);
        let addr = wait_for(60, "serve to say where it listens", || {
            let log = serve.log();
            let at = log.find("listening on ")? + "listening on ".len();
            let addr: String = log[at..]
                .chars()
                .take_while(|c| !c.is_whitespace())
                .collect();
            addr.parse::<std::net::SocketAddr>().ok().map(|_| addr)
        });
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(120)))
            .build()
            .into();
        Api { serve, addr, agent }
    }
}

impl Api {
    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.addr.rsplit(':').next().unwrap().parse().unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `METHOD path` with `token` (if any), a JSON `body` (if any) and
    /// extra headers.
    pub fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&[u8]>,
        headers: &[(&str, &str)],
    ) -> Answer {
        let mut req = ureq::http::Request::builder()
            .method(method)
            .uri(self.url(path));
        if let Some(token) = token {
            req = req.header("Authorization", format!("Bearer {token}"));
        }
        if body.is_some() {
            req = req.header("Content-Type", "application/json");
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(body.unwrap_or_default().to_vec()).unwrap();
        let mut res = self
            .agent
            .run(req)
            .unwrap_or_else(|e| panic!("{method} {path}: no answer: {e}"));
        let content_type = res
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        Answer {
            status: res.status().as_u16(),
            content_type,
            body: res
                .body_mut()
                .read_to_string()
                .unwrap_or_else(|e| panic!("{method} {path}: cannot read the body: {e}")),
        }
    }

    pub fn get(&self, path: &str, token: &str) -> Answer {
        self.call("GET", path, Some(token), None, &[])
    }

    pub fn post(&self, path: &str, token: &str, body: &str) -> Answer {
        self.call("POST", path, Some(token), Some(body.as_bytes()), &[])
    }

    /// Signs in on the dashboard with `token`, as its sign-in form does
    /// (the form's CSRF token is its cookie's): the session's `Cookie`
    /// header value.
    pub fn dashboard_session(&self, token: &str) -> String {
        let body = format!("csrf=kt-login&token={token}");
        let request = format!(
            "POST /login HTTP/1.1\r\nHost: {}\r\nCookie: kedge_login=kt-login\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.addr,
            body.len()
        );
        let mut conn = std::net::TcpStream::connect(&self.addr).expect("connect");
        conn.write_all(request.as_bytes())
            .expect("send the sign-in");
        let mut answer = String::new();
        conn.read_to_string(&mut answer)
            .expect("the sign-in's answer");
        answer
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                let v = v.trim();
                (k.eq_ignore_ascii_case("set-cookie") && v.starts_with("kedge_session="))
                    .then(|| v.split(';').next().unwrap().to_string())
            })
            .unwrap_or_else(|| panic!("signed in, no session: {answer}"))
    }

    /// A dashboard page in `session`.
    pub fn page(&self, path: &str, session: &str) -> Answer {
        self.call("GET", path, None, None, &[("Cookie", session)])
    }

    /// A dashboard form posted in `session`, its `fields` URL-encoded
    /// (`csrf` among them).
    pub fn form(&self, path: &str, session: &str, fields: &str) -> Answer {
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nCookie: {session}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{fields}",
            self.addr,
            fields.len()
        );
        self.raw(request.as_bytes())
    }

    /// A request written by hand on its own connection (for what a client
    /// library would not send), and the status line of the answer.
    pub fn raw(&self, request: &[u8]) -> Answer {
        let mut conn = std::net::TcpStream::connect(&self.addr).expect("connect");
        conn.set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        conn.write_all(request).expect("send the request");
        read_answer(&mut conn)
    }
}

/// One answer from `conn`: up to its Content-Length, or until it closes.
pub fn read_answer(conn: &mut std::net::TcpStream) -> Answer {
    let mut answer = Vec::new();
    // The server may close without reading what it refused: what it
    // answered before is what counts.
    let mut buf = [0u8; 8192];
    loop {
        match conn.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(_) if !answer.is_empty() => break,
            Err(e) => panic!("no answer: {e}"),
        }
        if complete(&answer) {
            break;
        }
    }
    parse_raw(&answer)
}

/// Whether `raw` holds a whole answer with a Content-Length.
fn complete(raw: &[u8]) -> bool {
    let text = String::from_utf8_lossy(raw);
    let Some(end) = text.find("\r\n\r\n") else {
        return false;
    };
    let length = text[..end].lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse::<usize>().ok())?
    });
    length.is_some_and(|n| raw.len() >= end + 4 + n)
}

fn parse_raw(raw: &[u8]) -> Answer {
    let text = String::from_utf8_lossy(raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {text:?}"));
    let content_type = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-type")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_default();
    Answer {
        status,
        content_type,
        body: body.to_string(),
    }
}
