//! Notification receivers on loopback, started by the tests: an HTTP server
//! that records every request (method, path, headers, body) and answers as
//! told — a status, a redirect, or nothing at all (accepts, reads, never answers) —
//! and a real SMTP server (aiosmtpd, STARTTLS and AUTH required) that
//! records every message. Both stop when dropped.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::ChildGuard;
use super::plain_http::free_port;

/// How the receiver answers the requests that come from now on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    Status(u16),
    /// A redirect: this 3xx status with `Location: URL`.
    Redirect(u16, String),
    /// Accepts and reads the request, never answers.
    Hang,
    /// The first status for a request whose body holds any of these
    /// texts, the second for the others.
    Refuse(Vec<String>, u16, u16),
}

/// One request as it arrived.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// Names lowercased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub at: Instant,
    /// The wall clock at arrival, to compare with an event's `time`.
    pub received: std::time::SystemTime,
    /// The status it was answered with (`None`: held without an answer).
    pub answered: Option<u16>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

pub struct Receiver {
    pub port: u16,
    mode: Arc<Mutex<Mode>>,
    requests: Arc<Mutex<Vec<Request>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Receiver {
    pub fn start(mode: Mode) -> Receiver {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let mode = Arc::new(Mutex::new(mode));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let (mode, requests, stop) = (mode.clone(), requests.clone(), stop.clone());
            move || {
                while !stop.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let (mode, requests, stop) =
                                (mode.clone(), requests.clone(), stop.clone());
                            std::thread::spawn(move || serve(stream, &mode, &requests, &stop));
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            }
        });
        Receiver {
            port,
            mode,
            requests,
            stop,
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT{path}`
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }

    /// The requests answered with a 2xx: the notifications delivered.
    pub fn delivered(&self) -> Vec<Request> {
        self.requests()
            .into_iter()
            .filter(|r| r.answered.is_some_and(|s| (200..300).contains(&s)))
            .collect()
    }

    /// Waits until some delivered request satisfies `matches`; returns it.
    #[track_caller]
    pub fn wait_delivered(
        &self,
        secs: u64,
        what: &str,
        matches: impl Fn(&Request) -> bool,
    ) -> Request {
        super::wait_for(secs, what, || self.delivered().into_iter().find(&matches))
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(
    mut stream: TcpStream,
    mode: &Mutex<Mode>,
    requests: &Mutex<Vec<Request>>,
    stop: &AtomicBool,
) {
    stream.set_nonblocking(false).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let path = parts.next().unwrap_or_default().to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
            break;
        }
        if let Some((name, value)) = h.split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let now = mode.lock().unwrap().clone();
    let index = {
        let mut all = requests.lock().unwrap();
        all.push(Request {
            method,
            path,
            headers,
            body,
            at: Instant::now(),
            received: std::time::SystemTime::now(),
            answered: None,
        });
        all.len() - 1
    };
    let (status, location) = match now {
        Mode::Status(status) => (status, String::new()),
        Mode::Refuse(texts, refused, otherwise) => {
            let body = String::from_utf8_lossy(&requests.lock().unwrap()[index].body).into_owned();
            match texts.iter().any(|t| body.contains(t.as_str())) {
                true => (refused, String::new()),
                false => (otherwise, String::new()),
            }
        }
        Mode::Redirect(status, to) => (status, format!("Location: {to}\r\n")),
        Mode::Hang => {
            while !stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(20));
            }
            return;
        }
    };
    let answer = format!(
        "HTTP/1.1 {status} X\r\n{location}Content-Type: text/plain\r\nContent-Length: 8\r\nConnection: close\r\n\r\nrecorded"
    );
    if stream.write_all(answer.as_bytes()).is_ok() {
        requests.lock().unwrap()[index].answered = Some(status);
    }
}

/// aiosmtpd on a free loopback port, STARTTLS and AUTH required (or, from
/// [`SmtpServer::start_without_starttls`], neither offered nor required),
/// with a certificate of a test CA made here (`ca` is what a client must trust).
pub struct SmtpServer {
    pub port: u16,
    pub user: String,
    pub ca: PathBuf,
    out: PathBuf,
    _child: ChildGuard,
    _dir: tempfile::TempDir,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl (scripts/provision.sh installs it)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl SmtpServer {
    pub fn start(user: &str, password: &str) -> SmtpServer {
        SmtpServer::launch(user, password, true)
    }

    /// A server that offers no STARTTLS and takes AUTH in clear: what a
    /// client must never give a password to. [`SmtpServer::auth_attempts`]
    /// records every AUTH it got.
    pub fn start_without_starttls(user: &str, password: &str) -> SmtpServer {
        SmtpServer::launch(user, password, false)
    }

    fn launch(user: &str, password: &str, starttls: bool) -> SmtpServer {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ];
        let mut ca = vec!["req", "-x509"];
        ca.extend(ec);
        ca.extend([
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-subj",
            "/CN=k14 test CA",
            "-days",
            "1",
        ]);
        openssl(d, &ca);
        let mut csr = vec!["req"];
        csr.extend(ec);
        csr.extend([
            "-keyout",
            "leaf.key",
            "-out",
            "leaf.csr",
            "-subj",
            "/CN=127.0.0.1",
        ]);
        openssl(d, &csr);
        std::fs::write(
            d.join("leaf.ext"),
            "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
        )
        .unwrap();
        openssl(
            d,
            &[
                "x509",
                "-req",
                "-in",
                "leaf.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "leaf.pem",
                "-days",
                "1",
                "-extfile",
                "leaf.ext",
            ],
        );
        let python = std::env::var_os("KEDGE_TEST_PYTHON")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/opt/kedge-test/venv/bin/python"));
        assert!(
            python.exists(),
            "{} is missing: run scripts/provision.sh (or set KEDGE_TEST_PYTHON)",
            python.display()
        );
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/support/smtp_server.py");
        let out = d.join("messages.jsonl");
        let port = free_port();
        let mut child = std::process::Command::new(python)
            .arg(script)
            .arg(port.to_string())
            .arg(d.join("leaf.pem"))
            .arg(d.join("leaf.key"))
            .arg(user)
            .arg(&out)
            .env("SMTP_PASSWORD", password)
            .env("SMTP_STARTTLS", if starttls { "on" } else { "off" })
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("start the SMTP server");
        let mut ready = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut ready)
            .unwrap();
        let child = ChildGuard(child);
        assert_eq!(ready.trim(), "ready", "the SMTP server did not start");
        SmtpServer {
            port,
            user: user.to_string(),
            ca: d.join("ca.pem"),
            out,
            _child: child,
            _dir: dir,
        }
    }

    /// Every message accepted so far: from, to, data (the whole message),
    /// tls, authenticated.
    pub fn messages(&self) -> Vec<serde_json::Value> {
        json_lines(&self.out)
    }

    /// A server without STARTTLS: every AUTH command it got (mechanism, tls).
    pub fn auth_attempts(&self) -> Vec<serde_json::Value> {
        json_lines(&self.out.with_extension("jsonl.auth"))
    }
}

fn json_lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}
