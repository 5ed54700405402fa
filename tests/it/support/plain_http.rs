//! Plain HTTP GETs for the metrics tests: the address `serve` logged, and a GET over a
//! `TcpStream` (HTTP/1.0, so the answer is never chunked).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use super::kedge::{Serve, wait_for};

/// The address `serve` listens on, from its log line `listening on ADDR`.
#[track_caller]
pub fn listen_addr(serve: &Serve) -> SocketAddr {
    wait_for(30, "serve to log `listening on ADDR`", || {
        let log = serve.log();
        let rest = &log[log.find("listening on ")? + "listening on ".len()..];
        let addr: String = rest
            .chars()
            .take_while(|c| !c.is_whitespace() && *c != '"' && *c != ',')
            .collect();
        addr.parse().ok()
    })
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    /// Header lines, names lowercased: `("content-type", "text/plain; …")`.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// `GET path` (with its query) on `addr`; `None` when nothing answers.
pub fn try_get(addr: SocketAddr, path: &str) -> Option<Response> {
    let timeout = Duration::from_secs(10);
    let mut stream = TcpStream::connect_timeout(&addr, timeout).ok()?;
    stream.set_read_timeout(Some(timeout)).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).ok()?;
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw.split_once("\r\n\r\n")?;
    let mut lines = head.lines();
    let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Some(Response {
        status,
        headers,
        body: body.to_string(),
    })
}

#[track_caller]
pub fn get(addr: SocketAddr, path: &str) -> Response {
    try_get(addr, path).unwrap_or_else(|| panic!("GET {path} on {addr}: no answer"))
}

pub use super::net::free_port;
