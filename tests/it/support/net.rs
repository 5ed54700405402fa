//! Starting the real servers the tests use (lighttpd, sshd, a registry) on
//! loopback ports.

use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::process::Child;
use std::time::{Duration, Instant};

/// A loopback port free right now (for a server the test starts itself).
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// Starts a server with `spawn(port)` until it listens: on `port`, or on a
/// free port, trying others when one is taken before the server binds it.
pub fn spawn_listening(
    what: &str,
    port: Option<u16>,
    mut spawn: impl FnMut(u16) -> Child,
) -> (Child, u16) {
    let mut last_error = String::new();
    for _ in 0..5 {
        let port = port.unwrap_or_else(free_port);
        let mut child = spawn(port);
        match wait_listening(&mut child, port) {
            Ok(()) => return (child, port),
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                last_error = e;
            }
        }
    }
    panic!("{what} did not start: {last_error}");
}

/// Until the port accepts connections, or the server exits.
fn wait_listening(child: &mut Child, port: u16) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            let mut stderr = String::new();
            if let Some(mut pipe) = child.stderr.take() {
                use std::io::Read;
                let _ = pipe.read_to_string(&mut stderr);
            }
            return Err(format!("exited ({status}): {stderr}"));
        }
        if TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(format!("nothing listens on port {port} after 10 s"))
}

/// The parent of a process, from /proc (`None` once it is gone).
pub fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) state ppid …": comm may hold spaces and parentheses.
    let after = &stat[stat.rfind(')')? + 2..];
    after.split_whitespace().nth(1)?.parse().ok()
}

/// Whether `ancestor` started `pid`, directly or through others.
pub fn descends_from(mut pid: u32, ancestor: u32) -> bool {
    for _ in 0..16 {
        match parent_of(pid) {
            Some(p) if p == ancestor => return true,
            Some(p) if p > 1 => pid = p,
            _ => return false,
        }
    }
    false
}

/// Kills a server and every process it started (sshd's per-connection
/// processes outlive the listener otherwise).
pub fn kill_tree(child: &mut Child) {
    let pid = child.id();
    let descendants: Vec<u32> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| descends_from(*p, pid))
        .collect();
    let _ = child.kill();
    for p in descendants {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &p.to_string()])
            .status();
    }
    let _ = child.wait();
}
