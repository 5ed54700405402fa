//! A real private image registry: Debian's `docker-registry` with htpasswd
//! (bcrypt) auth on a free loopback port, its config and storage in a temp
//! dir. Stopped when dropped, even on panic; images it was given are
//! untagged locally by their owner.

use std::process::{Child, Command, Stdio};

use tempfile::TempDir;

use super::net::spawn_listening;

pub struct Registry {
    dir: TempDir,
    child: Child,
    pub port: u16,
    pub user: String,
    pub password: String,
}

impl Registry {
    pub fn start(user: &str, password: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let htpasswd = Command::new("htpasswd")
            .args(["-Bbn", user, password])
            .output()
            .expect("run htpasswd (scripts/provision.sh installs apache2-utils)");
        assert!(htpasswd.status.success());
        std::fs::write(dir.path().join("htpasswd"), &htpasswd.stdout).unwrap();
        let conf = dir.path().join("config.yml");
        let (child, port) = spawn_listening("docker-registry", None, |port| {
            std::fs::write(
                &conf,
                format!(
                    "version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: {d}/data
http:
  addr: 127.0.0.1:{port}
auth:
  htpasswd:
    realm: kedge-test
    path: {d}/htpasswd
",
                    d = dir.path().display()
                ),
            )
            .unwrap();
            Command::new("docker-registry")
                .arg("serve")
                .arg(&conf)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(dir.path().join("registry.log")).unwrap())
                .spawn()
                .expect("start docker-registry (scripts/provision.sh installs it)")
        });
        Registry {
            dir,
            child,
            port,
            user: user.into(),
            password: password.into(),
        }
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Tags a local image into this registry and pushes it with a login
    /// of its own (a throwaway docker config, not the machine's), then
    /// removes the local tag so that using it means pulling it.
    pub fn push(&self, local: &str, repository: &str) -> String {
        let image = format!("{}/{repository}", self.host());
        let config = self.dir.path().join("docker-config");
        let docker = |args: &[&str], stdin: Option<&str>| {
            let mut cmd = Command::new("docker");
            cmd.arg("--config").arg(&config).args(args);
            let out = match stdin {
                Some(input) => {
                    use std::io::Write as _;
                    let mut child = cmd
                        .stdin(Stdio::piped())
                        .stdout(Stdio::piped())
                        .stderr(Stdio::piped())
                        .spawn()
                        .unwrap();
                    child
                        .stdin
                        .take()
                        .unwrap()
                        .write_all(input.as_bytes())
                        .unwrap();
                    child.wait_with_output().unwrap()
                }
                None => cmd.output().unwrap(),
            };
            assert!(
                out.status.success(),
                "docker {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        docker(&["tag", local, &image], None);
        docker(
            &[
                "login",
                "--username",
                &self.user,
                "--password-stdin",
                &self.host(),
            ],
            Some(&self.password),
        );
        docker(&["push", "--quiet", &image], None);
        docker(&["rmi", &image], None);
        image
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }
}

impl Registry {
    /// Stops answering: the process is gone, its port closed.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- registry log\n{}", self.log());
        }
    }
}

/// Removes the local tags compose pulled when the test ends.
pub struct Untag(pub Vec<String>);

impl Drop for Untag {
    fn drop(&mut self) {
        for image in &self.0 {
            let _ = std::process::Command::new("docker")
                .args(["rmi", "--force", image])
                .output();
        }
    }
}

/// A global config whose `registries:` log in to `registry` as `ci`, the
/// password in the environment of each Kedge made from it.
pub struct RegistryConfig {
    dir: tempfile::TempDir,
    password: String,
}

impl RegistryConfig {
    pub fn new(registry: &Registry, password: &str) -> RegistryConfig {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("config.yaml"),
            format!(
                "registries:\n  - host: {}\n    username: ci\n    password_env: KEDGE_TEST_REGISTRY_PASSWORD\n",
                registry.host()
            ),
        )
        .unwrap();
        RegistryConfig {
            dir,
            password: password.to_string(),
        }
    }

    pub fn kedge(&self) -> super::Kedge {
        super::Kedge::new()
            .env(
                "KEDGE_CONFIG",
                self.dir.path().join("config.yaml").to_str().unwrap(),
            )
            .env("KEDGE_TEST_REGISTRY_PASSWORD", &self.password)
    }
}

pub fn row<'a>(rows: &'a serde_json::Value, service: &str) -> &'a serde_json::Value {
    rows.as_array()
        .unwrap()
        .iter()
        .find(|r| r["service"] == service)
        .unwrap_or_else(|| panic!("no row for {service}: {rows}"))
}

/// A local image built from `IMAGE_1` whose command exits at once, as a
/// broken release would: `kt-broken-<ns>`.
pub fn broken_image(ns: &str) -> String {
    let local = format!("kt-broken-{ns}");
    build(
        &local,
        &format!(
            "FROM {}\nCMD [\"sh\", \"-c\", \"exit 3\"]\n",
            super::docker::IMAGE_1
        ),
    );
    local
}

/// A local image built from `IMAGE_1` just now (a label of its own keeps
/// the build cache from handing back an older one), so its config's
/// `created` is this minute: `kt-fresh-<ns>`.
pub fn fresh_image(ns: &str) -> String {
    let local = format!("kt-fresh-{ns}");
    build(
        &local,
        &format!(
            "FROM {}\nLABEL io.kedge.test.fresh={ns}\n",
            super::docker::IMAGE_1
        ),
    );
    local
}

fn build(local: &str, dockerfile: &str) {
    let mut build = Command::new("docker")
        .args(["build", "-q", "-t", local, "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        build
            .stdin
            .take()
            .unwrap()
            .write_all(dockerfile.as_bytes())
            .unwrap();
    }
    assert!(build.wait().unwrap().success());
}

/// What the image update tests share: a registry with basic auth, a
/// namespace of the test's own in it, and the Kedge config that logs in;
/// every image pushed (or named by `untag_after`) is untagged locally
/// when the lab goes.
pub struct UpdateLab {
    pub registry: Registry,
    pub ns: String,
    pub config: RegistryConfig,
    local: std::sync::Mutex<Vec<String>>,
}

impl UpdateLab {
    pub fn start(prefix: &str) -> UpdateLab {
        let password = format!("pw-{}", super::unique_name(prefix));
        let registry = Registry::start("ci", &password);
        let config = RegistryConfig::new(&registry, &password);
        UpdateLab {
            registry,
            ns: super::unique_name(prefix),
            config,
            local: Default::default(),
        }
    }

    /// Pushes `local` as `<ns>/<image>` (`app:1.4.2`); the full reference.
    pub fn push(&self, local: &str, image: &str) -> String {
        let pushed = self.registry.push(local, &format!("{}/{image}", self.ns));
        self.untag_after(pushed.clone());
        pushed
    }

    pub fn untag_after(&self, image: String) {
        self.local
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(image);
    }

    pub fn kedge(&self) -> super::Kedge {
        self.config.kedge()
    }
}

impl Drop for UpdateLab {
    fn drop(&mut self) {
        let local = std::mem::take(&mut *self.local.lock().unwrap_or_else(|p| p.into_inner()));
        drop(Untag(local));
    }
}
