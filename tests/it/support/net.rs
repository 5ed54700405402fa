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
