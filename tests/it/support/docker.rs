//! The real engine: compose projects with unique names that are always
//! taken down (also when the test panics), and containers found by label.

use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

use serde::Deserialize;

pub const IMAGE_1: &str = "kedge-test/busybox:1";
pub const IMAGE_2: &str = "kedge-test/busybox:2";

/// Fails (never skips) when the engine is not there: the real-Docker tests
/// are part of the suite.
#[track_caller]
pub fn require_docker() {
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    let ready = READY.get_or_init(|| {
        let info = Command::new("docker")
            .args(["info", "--format", "{{.ServerVersion}}"])
            .output();
        match info {
            Ok(o) if o.status.success() => {}
            Ok(o) => return Err(String::from_utf8_lossy(&o.stderr).into_owned()),
            Err(e) => return Err(e.to_string()),
        }
        for image in [IMAGE_1, IMAGE_2] {
            if image_id_checked(image).is_none() {
                return Err(format!("test image {image} is missing"));
            }
        }
        Ok(())
    });
    if let Err(e) = ready {
        panic!(
            "the Docker engine or its test images are not ready ({e}); run scripts/provision.sh as root"
        );
    }
}

pub fn docker(args: &[&str]) -> std::process::Output {
    Command::new("docker")
        .args(args)
        .output()
        .expect("run docker")
}

#[track_caller]
pub fn docker_ok(args: &[&str]) -> String {
    let out = docker(args);
    assert!(
        out.status.success(),
        "docker {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn image_id_checked(image: &str) -> Option<String> {
    let out = docker(&["image", "inspect", "--format", "{{.Id}}", image]);
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[track_caller]
pub fn image_id(image: &str) -> String {
    image_id_checked(image).unwrap_or_else(|| panic!("no image {image}"))
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Inspect {
    id: String,
    name: String,
    image: String,
    config: InspectConfig,
    state: InspectState,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct InspectConfig {
    image: String,
    labels: Option<std::collections::HashMap<String, String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct InspectState {
    status: String,
    started_at: String,
}

/// What tests need to know of a container.
#[derive(Debug, Clone, PartialEq)]
pub struct Container {
    pub id: String,
    pub name: String,
    /// The image reference it was created from.
    pub image: String,
    pub image_id: String,
    pub status: String,
    pub started_at: String,
    pub labels: std::collections::HashMap<String, String>,
}

impl Container {
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.get(key).map(String::as_str)
    }

    pub fn service(&self) -> &str {
        self.label("com.docker.compose.service").unwrap_or("")
    }
}

/// Every container, running or not, carrying `label` (`key` or `key=value`).
pub fn containers_by_label(label: &str) -> Vec<Container> {
    let ids = docker_ok(&[
        "ps",
        "-aq",
        "--no-trunc",
        "--filter",
        &format!("label={label}"),
    ]);
    let ids: Vec<&str> = ids.split_whitespace().collect();
    if ids.is_empty() {
        return Vec::new();
    }
    let mut args = vec!["inspect"];
    args.extend(ids);
    // A container removed between ps and inspect is simply gone.
    let out = docker(&args);
    let parsed: Vec<Inspect> = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let mut containers: Vec<Container> = parsed
        .into_iter()
        .map(|i| Container {
            id: i.id,
            name: i.name.trim_start_matches('/').to_string(),
            image: i.config.image,
            image_id: i.image,
            status: i.state.status,
            started_at: i.state.started_at,
            labels: i.config.labels.unwrap_or_default(),
        })
        .collect();
    containers.sort_by(|a, b| a.name.cmp(&b.name));
    containers
}

/// A compose project name owned by one test. Dropping it removes every
/// container, network and volume of the project, panic or not.
pub struct ComposeProject {
    pub name: String,
}

impl ComposeProject {
    pub fn new(prefix: &str) -> Self {
        require_docker();
        ComposeProject {
            name: super::unique_name(prefix),
        }
    }

    /// Wraps a name chosen elsewhere (e.g. a Kedge repo name) for cleanup.
    pub fn named(name: &str) -> Self {
        require_docker();
        ComposeProject {
            name: name.to_string(),
        }
    }

    pub fn containers(&self) -> Vec<Container> {
        containers_by_label(&format!("com.docker.compose.project={}", self.name))
    }

    pub fn running(&self) -> Vec<Container> {
        self.containers()
            .into_iter()
            .filter(|c| c.status == "running")
            .collect()
    }

    /// `docker compose up -d` of a directory, as an operator would by hand.
    #[track_caller]
    pub fn up(&self, dir: &Path) {
        let out = Command::new("docker")
            .args(["compose", "-p", &self.name, "--project-directory"])
            .arg(dir)
            .args(["up", "-d", "--quiet-pull"])
            .output()
            .expect("run docker compose");
        assert!(
            out.status.success(),
            "compose up failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn volumes(&self) -> Vec<String> {
        docker_ok(&[
            "volume",
            "ls",
            "-q",
            "--filter",
            &format!("label=com.docker.compose.project={}", self.name),
        ])
        .split_whitespace()
        .map(String::from)
        .collect()
    }
}

impl Drop for ComposeProject {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args([
                "compose",
                "-p",
                &self.name,
                "down",
                "-v",
                "--remove-orphans",
                "-t",
                "0",
            ])
            .current_dir(std::env::temp_dir())
            .output();
        // Containers made by hand with the project's labels are not compose's to remove.
        for c in containers_by_label(&format!("com.docker.compose.project={}", self.name))
            .into_iter()
            .chain(containers_by_label(&format!(
                "io.kedge.project={}",
                self.name
            )))
        {
            let _ = docker(&["rm", "-f", "-v", &c.id]);
        }
        for v in self.volumes() {
            let _ = docker(&["volume", "rm", "-f", &v]);
        }
    }
}

/// A socket that forwards to the real engine once opened: `DOCKER_HOST`
/// pointed at it gives a Kedge whose engine does not answer until the test
/// says so, without touching the engine every other test uses.
pub struct EngineProxy {
    dir: tempfile::TempDir,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    accept: Option<std::thread::JoinHandle<()>>,
}

impl EngineProxy {
    /// Not listening yet: connections are refused.
    pub fn closed() -> Self {
        EngineProxy {
            dir: tempfile::tempdir().expect("temp dir"),
            stop: Default::default(),
            accept: None,
        }
    }

    fn path(&self) -> std::path::PathBuf {
        self.dir.path().join("engine.sock")
    }

    pub fn docker_host(&self) -> String {
        format!("unix://{}", self.path().display())
    }

    /// From now on every connection is forwarded to the engine.
    pub fn open(&mut self) {
        use std::os::unix::net::{UnixListener, UnixStream};
        let engine = std::env::var("DOCKER_HOST")
            .ok()
            .and_then(|h| h.strip_prefix("unix://").map(String::from))
            .unwrap_or_else(|| "/var/run/docker.sock".into());
        let listener = UnixListener::bind(self.path()).expect("bind the proxy socket");
        let stop = self.stop.clone();
        self.accept = Some(std::thread::spawn(move || {
            for client in listener.incoming() {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    return;
                }
                let Ok(client) = client else { continue };
                let Ok(upstream) = UnixStream::connect(&engine) else {
                    continue;
                };
                // One thread per direction; each ends when its side closes.
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), upstream.try_clone().unwrap()),
                    (upstream, client),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Write);
                    });
                }
            }
        }));
    }
}

impl Drop for EngineProxy {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(accept) = self.accept.take() {
            // Wakes the accept loop so it sees `stop`.
            let _ = std::os::unix::net::UnixStream::connect(self.path());
            let _ = accept.join();
        }
    }
}

/// The builds Kedge keeps of `image` (`image:kedge-…`).
pub fn kept_builds(image: &str) -> Vec<String> {
    let out = docker(&[
        "image",
        "ls",
        "--filter",
        &format!("reference={image}:kedge-*"),
        "--format",
        "{{.Repository}}:{{.Tag}}",
    ]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(String::from)
        .collect()
}

/// Removes a built image and the builds Kedge kept of it.
pub fn remove_built_image(image: &str) {
    for tag in kept_builds(image) {
        let _ = docker(&["image", "rm", "-f", &tag]);
    }
    let _ = docker(&["image", "rm", "-f", image]);
}
