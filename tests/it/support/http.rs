//! A small HTTP/1.1 client over a TCP socket, for `serve`'s listener on
//! loopback: plain requests, and a server-sent event stream read as it
//! comes. Enough for tests; no dependency.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// An answer: status, headers (lower-case names) and body.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// `serve`'s listener, found in its log line `listening on ADDR`.
pub fn listening_port(log: &str) -> Option<u16> {
    let line = log.lines().find(|l| l.contains("listening on "))?;
    let addr = line.split("listening on ").nth(1)?;
    let addr = addr.split_whitespace().next()?.trim_end_matches('"');
    addr.rsplit(':').next()?.parse().ok()
}

fn head(method: &str, port: u16, path: &str, token: Option<&str>, body: Option<&str>) -> String {
    let mut req =
        format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    if let Some(b) = body {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    req
}

/// One request; `body` is sent as JSON.
pub fn request(
    method: &str,
    port: u16,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> Answer {
    request_with(method, port, path, token, body, &[])
}

pub fn request_with(
    method: &str,
    port: u16,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
    extra: &[(&str, &str)],
) -> Answer {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    let mut req = head(method, port, path, token, body);
    for (k, v) in extra {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).unwrap();
    if let Some(b) = body {
        stream.write_all(b.as_bytes()).unwrap();
    }
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    parse(&raw)
}

fn parse(raw: &[u8]) -> Answer {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    Answer {
        status,
        headers,
        body,
    }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// A server-sent event stream, read message by message.
pub struct EventStream {
    reader: BufReader<TcpStream>,
}

/// One message: its `id:` and `data:`. An event `serve` sent before it
/// was stored has no id; a message with an id and no data (`data` null)
/// moves the client's id once one is stored.
#[derive(Debug, Clone)]
pub struct Message {
    pub id: Option<String>,
    pub data: serde_json::Value,
}

impl EventStream {
    pub fn open(port: u16, path: &str, token: &str, last_event_id: Option<&str>) -> EventStream {
        let mut req = head("GET", port, path, Some(token), None);
        if let Some(id) = last_event_id {
            req.push_str(&format!("Last-Event-ID: {id}\r\n"));
        }
        EventStream::start(port, req)
    }

    /// The stream as the dashboard's page opens it: with its session
    /// cookie (`kedge_session=…`), no `Authorization`.
    pub fn open_with_cookie(port: u16, path: &str, cookie: &str) -> EventStream {
        let mut req = head("GET", port, path, None, None);
        req.push_str(&format!("Cookie: {cookie}\r\n"));
        EventStream::start(port, req)
    }

    /// The stream, or the status line and body of the refusal.
    pub fn try_open(port: u16, path: &str, token: &str) -> Result<EventStream, String> {
        EventStream::try_start(port, head("GET", port, path, Some(token), None))
    }

    pub fn try_open_with_cookie(
        port: u16,
        path: &str,
        cookie: &str,
    ) -> Result<EventStream, String> {
        let mut req = head("GET", port, path, None, None);
        req.push_str(&format!("Cookie: {cookie}\r\n"));
        EventStream::try_start(port, req)
    }

    fn start(port: u16, req: String) -> EventStream {
        EventStream::try_start(port, req).unwrap_or_else(|e| panic!("stream answered {e}"))
    }

    fn try_start(port: u16, mut req: String) -> Result<EventStream, String> {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        req.push_str("Accept: text/event-stream\r\n\r\n");
        stream.write_all(req.as_bytes()).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut reader = BufReader::new(stream);
        // Status line and headers.
        let mut status = String::new();
        read_line(&mut reader, &mut status, Duration::from_secs(10));
        loop {
            let mut line = String::new();
            read_line(&mut reader, &mut line, Duration::from_secs(10));
            if line.trim().is_empty() {
                break;
            }
        }
        if !status.contains(" 200 ") {
            // A refusal closes its connection: the rest is its body.
            let mut body = String::new();
            while read_line(&mut reader, &mut body, Duration::from_secs(10)) {}
            return Err(format!("{} {body}", status.trim()));
        }
        Ok(EventStream { reader })
    }

    /// The next message within `within`, or None.
    pub fn next(&mut self, within: Duration) -> Option<Message> {
        let deadline = std::time::Instant::now() + within;
        let (mut id, mut data) = (None, None);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return None;
            }
            let mut line = String::new();
            if !read_line(&mut self.reader, &mut line, left) {
                return None;
            }
            // Chunked framing: sizes and blanks between chunks are skipped.
            let line = line.trim_end_matches(['\r', '\n']);
            if let Some(v) = line.strip_prefix("id:") {
                id = Some(v.trim().to_string());
            } else if let Some(v) = line.strip_prefix("data:") {
                data = serde_json::from_str(v.trim()).ok();
            } else if line.is_empty() && (data.is_some() || id.is_some()) {
                return Some(Message {
                    id: id.take(),
                    data: data.take().unwrap_or_default(),
                });
            }
        }
    }
}

impl EventStream {
    /// Whether the server ends the stream within `within` (what it sends
    /// until then is read and dropped).
    pub fn ends_within(&mut self, within: Duration) -> bool {
        let deadline = std::time::Instant::now() + within;
        let mut buf = [0u8; 4096];
        loop {
            match self.reader.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    if std::time::Instant::now() > deadline {
                        return false;
                    }
                }
                // Reset by the server: ended too.
                Err(_) => return true,
            }
        }
    }
}

/// Reads one line, retrying read timeouts until `within`; false on EOF or time out.
fn read_line(reader: &mut BufReader<TcpStream>, line: &mut String, within: Duration) -> bool {
    let deadline = std::time::Instant::now() + within;
    loop {
        match reader.read_line(line) {
            Ok(0) => return false,
            Ok(_) if line.ends_with('\n') => return true,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                if std::time::Instant::now() > deadline {
                    return false;
                }
            }
            Err(_) => return false,
        }
    }
}

impl EventStream {
    /// The data of the next message of `kind` within 60 s (the others are
    /// read and dropped).
    pub fn next_of(&mut self, kind: &str) -> serde_json::Value {
        loop {
            let m = self
                .next(Duration::from_secs(60))
                .unwrap_or_else(|| panic!("a {kind} event"));
            if m.data["kind"] == kind {
                return m.data;
            }
        }
    }
}

/// Milliseconds from an event's `time` (when it was emitted) until now.
pub fn event_age_ms(event: &serde_json::Value) -> i64 {
    let at = chrono::DateTime::parse_from_rfc3339(event["time"].as_str().unwrap()).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    now - at.timestamp_millis()
}
