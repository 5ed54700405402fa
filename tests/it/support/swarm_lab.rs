//! A real three-node Docker Swarm for a test: `scripts/swarm-lab.sh` starts
//! three engines in network namespaces (manager + two workers), loads the
//! test images into each, and takes it all down when dropped, even on panic.

use std::path::PathBuf;
use std::process::{Command, Output};

use super::docker::{IMAGE_1, IMAGE_2};

pub struct SwarmLab {
    pub name: String,
    /// The manager's `DOCKER_HOST`.
    pub host: String,
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/swarm-lab.sh")
}

fn run(args: &[&str]) -> Output {
    let out = Command::new("bash")
        .arg(script())
        .args(args)
        .output()
        .expect("run scripts/swarm-lab.sh");
    assert!(
        out.status.success(),
        "swarm-lab.sh {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

impl SwarmLab {
    pub fn start() -> Self {
        // Short (the script allows 8 characters) and this run's own.
        let name = format!("k17{}", std::process::id() % 100_000);
        let out = run(&["up", &name]);
        let host = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let lab = SwarmLab { name, host };
        run(&["load", &lab.name, IMAGE_1, IMAGE_2]);
        lab
    }

    /// `docker` against the manager; panics on failure.
    pub fn docker(&self, args: &[&str]) -> String {
        let out = Command::new("docker")
            .env("DOCKER_HOST", &self.host)
            .args(args)
            .output()
            .expect("run docker");
        assert!(
            out.status.success(),
            "docker {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// One field of a service (`docker service inspect --format`).
    pub fn service(&self, service: &str, format: &str) -> String {
        self.docker(&["service", "inspect", "--format", format, service])
    }

    /// The ids of a service's running tasks, sorted.
    pub fn running_tasks(&self, service: &str) -> Vec<String> {
        let mut ids: Vec<String> = self
            .docker(&[
                "service",
                "ps",
                "-q",
                "--filter",
                "desired-state=running",
                service,
            ])
            .lines()
            .map(String::from)
            .collect();
        ids.sort();
        ids
    }

    pub fn stop_node(&self, n: u32) {
        run(&["stop-node", &self.name, &n.to_string()]);
    }

    pub fn start_node(&self, n: u32) {
        run(&["start-node", &self.name, &n.to_string()]);
    }
}

impl Drop for SwarmLab {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(script())
            .args(["down", &self.name])
            .output();
    }
}
