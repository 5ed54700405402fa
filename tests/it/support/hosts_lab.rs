//! Remote Docker hosts for a test: `scripts/hosts-lab.sh` starts engines in
//! network namespaces, each with an sshd beside it, and takes it all down
//! when dropped, even on panic.

use std::path::PathBuf;
use std::process::{Command, Output};

pub struct HostsLab {
    pub name: String,
    subnet: String,
    /// Each host's address, reached over SSH as root.
    pub addrs: Vec<String>,
    /// The client key the hosts accept.
    pub key: PathBuf,
    /// The client's TLS files (`ca.pem`, `cert.pem`, `key.pem`) for
    /// `tcp://ADDR:2376`, where every engine also listens.
    pub tls: PathBuf,
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/hosts-lab.sh")
}

/// Labs of this run, numbered: each its own name and subnet.
static LABS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

fn run(args: &[&str]) -> Output {
    run_in(args, None)
}

fn run_in(args: &[&str], subnet: Option<&str>) -> Output {
    let mut cmd = Command::new("bash");
    if let Some(subnet) = subnet {
        cmd.env("SUBNET", subnet);
    }
    let out = cmd
        .arg(script())
        .args(args)
        .output()
        .expect("run scripts/hosts-lab.sh");
    assert!(
        out.status.success(),
        "hosts-lab.sh {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

impl HostsLab {
    pub fn start() -> Self {
        // Short (the script allows 8 characters) and this run's own.
        let n = LABS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("kh{}{n}", std::process::id() % 10_000);
        let subnet = format!("10.232.{}", 20 + (std::process::id() * 8 + n) % 200);
        let out = run_in(&["up", &name], Some(&subnet));
        let addrs = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(String::from)
            .collect();
        let key = String::from_utf8_lossy(&run(&["key", &name]).stdout)
            .trim()
            .into();
        let tls = String::from_utf8_lossy(&run(&["tls", &name]).stdout)
            .trim()
            .into();
        HostsLab {
            name,
            subnet,
            addrs,
            key,
            tls,
        }
    }

    /// Stops host `n`'s engine (its sshd keeps running).
    pub fn stop_engine(&self, n: usize) {
        run_in(
            &["stop-engine", &self.name, &n.to_string()],
            Some(&self.subnet),
        );
    }

    /// Starts host `n`'s engine again, in the host's own namespaces.
    pub fn start_engine(&self, n: usize) {
        run_in(
            &["start-engine", &self.name, &n.to_string()],
            Some(&self.subnet),
        );
    }

    /// Copies local images into every host's engine.
    pub fn load(&self, images: &[&str]) {
        let mut args = vec!["load", self.name.as_str()];
        args.extend_from_slice(images);
        run_in(&args, Some(&self.subnet));
    }

    /// The docker CLI on host `n`'s engine (1-based): its stdout.
    pub fn docker(&self, n: usize, args: &[&str]) -> String {
        let n = n.to_string();
        let mut all = vec!["docker", self.name.as_str(), n.as_str()];
        all.extend_from_slice(args);
        String::from_utf8_lossy(&run_in(&all, Some(&self.subnet)).stdout).into_owned()
    }

    /// Host `n`'s engine socket as this machine reaches it (for measuring
    /// from outside, not through Kedge's way to it).
    pub fn engine_socket(&self, n: usize) -> PathBuf {
        let n = n.to_string();
        let out = run_in(&["socket", &self.name, &n], Some(&self.subnet));
        PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
    }

    /// `sh -c SCRIPT` in a container on host `n` that sees the host's
    /// `/var/lib/kedge-remote` read-only at `/remote`: its stdout.
    pub fn in_remote_dir(&self, n: usize, script: &str) -> String {
        self.docker(
            n,
            &[
                "run",
                "--rm",
                "-v",
                "/var/lib/kedge-remote:/remote:ro",
                super::docker::IMAGE_1,
                "sh",
                "-c",
                script,
            ],
        )
    }

    /// Gives host `n` (1-based) a new SSH host key.
    pub fn rekey(&self, n: usize) {
        run_in(&["rekey", &self.name, &n.to_string()], Some(&self.subnet));
    }
}

impl Drop for HostsLab {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .env("SUBNET", &self.subnet)
            .arg(script())
            .args(["down", &self.name])
            .output();
    }
}
