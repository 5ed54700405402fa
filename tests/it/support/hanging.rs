//! A remote that hangs: a loopback TCP listener that accepts every
//! connection, reads the request and never answers. Closed when dropped.

use std::io::Read;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

pub struct HangingRemote {
    pub port: u16,
    stop: Arc<AtomicBool>,
    /// The request line of every connection so far.
    requests: Arc<Mutex<Vec<String>>>,
    thread: Option<JoinHandle<()>>,
}

impl HangingRemote {
    pub fn start() -> Self {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let thread = std::thread::spawn({
            let stop = stop.clone();
            let requests = requests.clone();
            move || serve(listener, &stop, &requests)
        });
        HangingRemote {
            port,
            stop,
            requests,
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT/<name>.git`
    pub fn url(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}/{name}.git", self.port)
    }

    /// How many requests for `<name>.git` came in so far.
    pub fn requests_for(&self, name: &str) -> usize {
        let path = format!("/{name}.git/");
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.contains(&path))
            .count()
    }

    /// Pids of processes whose command line names this remote.
    pub fn clients(&self) -> Vec<String> {
        let needle = format!("127.0.0.1:{}", self.port);
        let Ok(procs) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        procs
            .flatten()
            .filter(|p| {
                std::fs::read(p.path().join("cmdline"))
                    .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&needle))
            })
            .map(|p| p.file_name().to_string_lossy().into_owned())
            .collect()
    }
}

impl Drop for HangingRemote {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Accepts, reads the request line, holds the connection open.
fn serve(listener: TcpListener, stop: &AtomicBool, requests: &Mutex<Vec<String>>) {
    let mut open: Vec<(TcpStream, Vec<u8>, bool)> = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        while let Ok((stream, _)) = listener.accept() {
            stream.set_nonblocking(true).unwrap();
            open.push((stream, Vec::new(), false));
        }
        for (stream, buf, seen) in open.iter_mut().filter(|(_, _, seen)| !*seen) {
            let mut chunk = [0u8; 1024];
            if let Ok(n) = stream.read(&mut chunk) {
                buf.extend_from_slice(&chunk[..n]);
            }
            if let Some(end) = buf.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&buf[..end]).into_owned();
                requests.lock().unwrap().push(line);
                *seen = true;
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
