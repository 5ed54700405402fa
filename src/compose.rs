//! How Kedge invokes `docker compose`: always with `-p`, `--project-directory`
//! and every `-f`, so nothing depends on the working directory or on
//! compose's search of parent directories.

use std::ffi::OsString;
use std::os::fd::RawFd;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use crate::process::{Cmd, ProcessError};

/// Where the docker CLI looks for its compose plugin.
const PLUGIN_DIRS: [&str; 4] = [
    "/usr/local/lib/docker/cli-plugins",
    "/usr/local/libexec/docker/cli-plugins",
    "/usr/lib/docker/cli-plugins",
    "/usr/libexec/docker/cli-plugins",
];

/// `docker compose …`, as the compose plugin binary run directly when it
/// can be found: it is the same compose, but going through the docker CLI
/// costs that CLI's start-up plus a metadata call to the plugin, about 90 ms
/// on every invocation. Falls back to `docker compose`.
pub fn command() -> Cmd {
    static PROGRAM: OnceLock<Option<OsString>> = OnceLock::new();
    let plugin = PROGRAM.get_or_init(|| {
        let home = std::env::var_os("DOCKER_CONFIG")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker")));
        home.map(|h| h.join("cli-plugins"))
            .into_iter()
            .chain(PLUGIN_DIRS.iter().map(PathBuf::from))
            .map(|dir| dir.join("docker-compose"))
            .find(|p| p.is_file())
            .map(PathBuf::into_os_string)
    });
    let cmd = match plugin {
        Some(path) => Cmd::new(path),
        None => Cmd::new("docker").arg("compose"),
    };
    // Compose is a short-lived Go program whose start-up allocates past the
    // garbage collector's first target (4 MB): at Go's default GOGC=100 it
    // collects three times in a `config` of a small project, at 400 never.
    // That saves ≈ 4 ms per call at the same peak RSS (BENCHMARKS.md). An
    // operator's own GOGC wins.
    if std::env::var_os("GOGC").is_some() {
        cmd
    } else {
        cmd.env("GOGC", GOGC)
    }
}

/// Compose's version (`docker compose version --short`), as the plugin
/// Kedge runs answers it.
pub async fn version() -> Result<String, crate::process::ProcessError> {
    let out = command()
        .args(["version", "--short"])
        .timeout(Duration::from_secs(10))
        .run()
        .await?;
    Ok(out.stdout_text().trim().to_string())
}

/// The GOGC compose runs with, unless the environment sets one.
pub const GOGC: &str = "400";

pub const CONFIG_TIMEOUT: Duration = Duration::from_secs(60);
pub const APPLY_TIMEOUT: Duration = Duration::from_secs(900);

/// Compose's own default file names, in its order of preference.
pub const DEFAULT_FILES: [&str; 4] = [
    "compose.yaml",
    "compose.yml",
    "docker-compose.yaml",
    "docker-compose.yml",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compose {
    pub project: String,
    pub dir: PathBuf,
    /// Relative to `dir`, or absolute.
    pub files: Vec<PathBuf>,
    /// The repository lock's descriptor, inherited by compose (see
    /// `Cmd::keep_open`).
    pub lock_fd: Option<RawFd>,
    /// `DOCKER_CONFIG` for pulls from private registries (`registries:`).
    pub docker_config: Option<PathBuf>,
    /// Profiles enabled (`docker.profiles`), each passed as `--profile`.
    pub profiles: Vec<String>,
    /// A stack's directory, relative to `dir`: the project directory
    /// whatever the files (fleet.md §1). `None`: the first file's.
    pub stack_dir: Option<PathBuf>,
    /// `--env-file`s, relative to the project directory.
    pub env_files: Vec<PathBuf>,
    /// A remote host's engine, as a local socket (`DOCKER_HOST`).
    pub docker_host: Option<PathBuf>,
}

impl Compose {
    pub fn new(project: &str, dir: &Path, files: Vec<PathBuf>) -> Self {
        Compose {
            project: project.to_string(),
            dir: dir.to_path_buf(),
            files,
            lock_fd: None,
            docker_config: None,
            profiles: Vec::new(),
            stack_dir: None,
            env_files: Vec::new(),
            docker_host: None,
        }
    }

    /// `--env-file`s, relative to the project directory.
    pub fn with_env_files(mut self, env_files: &[String]) -> Self {
        self.env_files = env_files.iter().map(PathBuf::from).collect();
        self
    }

    /// A stack of a repository with several: its directory is the
    /// project directory, and compose reads these env files.
    pub fn of_stack(mut self, dir: Option<PathBuf>, env_files: &[String]) -> Self {
        self.stack_dir = dir;
        self.env_files = env_files.iter().map(PathBuf::from).collect();
        self
    }

    /// Every call enables these profiles.
    pub fn with_profiles(mut self, profiles: &[String]) -> Self {
        self.profiles = profiles.to_vec();
        self
    }

    /// Compose talks to the engine at this socket (a host's, fleet.md §4).
    pub fn on_host(mut self, socket: Option<PathBuf>) -> Self {
        self.docker_host = socket;
        self
    }

    /// Pulls use the registry credentials in this directory.
    pub fn pulling_with(mut self, docker_config: Option<PathBuf>) -> Self {
        self.docker_config = docker_config;
        self
    }

    /// Compose calls hold the repository's lock while they run, even past
    /// a Kedge killed meanwhile.
    pub fn holding(mut self, lock_fd: Option<RawFd>) -> Self {
        self.lock_fd = lock_fd;
        self
    }

    pub fn with_file(mut self, file: PathBuf) -> Self {
        self.files.push(file);
        self
    }

    /// Where compose resolves relative paths: the stack's directory, else
    /// see [`project_dir`].
    pub fn project_dir(&self) -> PathBuf {
        if let Some(dir) = &self.stack_dir {
            return self.dir.join(dir);
        }
        match project_dir(&self.files) {
            dir if dir.as_os_str().is_empty() => self.dir.clone(),
            dir => self.dir.join(dir),
        }
    }

    /// `docker compose -p P --project-directory D -f F… <args>`
    pub fn cmd<I, S>(&self, args: I) -> Cmd
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut cmd = command()
            .args([
                "--ansi",
                "never",
                "-p",
                &self.project,
                "--project-directory",
            ])
            .arg(self.project_dir())
            .cwd(&self.dir)
            .keep_open(self.lock_fd);
        for f in &self.files {
            cmd = cmd.arg("-f").arg(self.dir.join(f));
        }
        if !self.env_files.is_empty() {
            let project = self.project_dir();
            for f in &self.env_files {
                cmd = cmd.arg("--env-file").arg(project.join(f));
            }
        }
        // Given on the command line, never through COMPOSE_PROFILES: an
        // operator's own variable must not switch profiles on or off.
        for p in &self.profiles {
            cmd = cmd.arg("--profile").arg(p);
        }
        cmd = cmd.env_remove("COMPOSE_PROFILES");
        if let Some(dir) = &self.docker_config {
            cmd = cmd.env("DOCKER_CONFIG", dir);
        }
        reaching(cmd, self.docker_host.as_deref()).args(args)
    }
}

/// A docker or compose command pointed at a host's engine socket
/// (fleet.md §4); unchanged for `None`, this machine's engine.
pub fn reaching(cmd: Cmd, socket: Option<&Path>) -> Cmd {
    match socket {
        Some(socket) => cmd
            .env("DOCKER_HOST", format!("unix://{}", socket.display()))
            .env_remove("DOCKER_CONTEXT"),
        None => cmd,
    }
}

/// Compose's project directory for `files` (relative to where Kedge runs
/// compose): the directory of the first, as `docker compose -f F` picks it,
/// so relative paths in the files resolve as they would for an operator
/// who runs compose there.
pub fn project_dir(files: &[PathBuf]) -> PathBuf {
    files
        .first()
        .and_then(|f| f.parent())
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// The compose files of a checkout when kedge.yaml names none: the first
/// of compose's default names, plus its `.override` sibling when present.
pub fn discover_files(dir: &Path) -> Option<Vec<PathBuf>> {
    let main = DEFAULT_FILES.iter().find(|f| dir.join(f).is_file())?;
    let (stem, _) = main.rsplit_once('.')?;
    let mut files = vec![PathBuf::from(main)];
    for ext in ["yaml", "yml"] {
        let over = format!("{stem}.override.{ext}");
        if dir.join(&over).is_file() {
            files.push(PathBuf::from(over));
            break;
        }
    }
    Some(files)
}

/// Lines of compose's output a reason is at most: an error and the few
/// lines of context it came with.
const REASON_LINES: usize = 5;

/// Why compose failed, as it said it: the last lines it printed after its
/// progress lines (` Container app-web-1  Started`), which only say what it
/// did before. Never Kedge's command line: that is logged at debug level.
pub fn reason(err: &ProcessError) -> String {
    match err {
        ProcessError::Failed { stderr, status, .. } => {
            let lines: Vec<&str> = stderr
                .lines()
                .map(str::trim_end)
                .filter(|l| !l.trim().is_empty())
                .collect();
            let mut said: Vec<&str> = lines
                .iter()
                .rev()
                .take_while(|l| !is_progress(l))
                .filter(|l| !l.trim_start().starts_with("WARN["))
                .take(REASON_LINES)
                .copied()
                .collect();
            if said.is_empty() {
                said.extend(lines.last());
            }
            said.reverse();
            if said.is_empty() {
                format!("compose exited with {status}")
            } else {
                said.iter()
                    .map(|l| without_ids(l.trim()))
                    .collect::<Vec<_>>()
                    .join("\n")
            }
        }
        ProcessError::Timeout { after, .. } => {
            format!("not finished within {}s", after.as_secs())
        }
        other => crate::error_chain(other),
    }
}

/// `line` without the engine's object ids in parentheses (`endpoint
/// app-web-1 (1e12…):`): new with every try, they would make each failure
/// news to the notifications' de-duplication, and say nothing to a reader.
fn without_ids(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(at) = rest.find(" (") {
        let after = &rest[at + 2..];
        let hex = after.bytes().take_while(u8::is_ascii_hexdigit).count();
        out.push_str(&rest[..at]);
        if hex >= 12 && after[hex..].starts_with(')') {
            rest = &after[hex + 1..];
        } else {
            out.push_str(" (");
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// A line of compose's progress: a resource, its name, two spaces, what
/// happened to it (` Container app-web-1  Started`).
fn is_progress(line: &str) -> bool {
    const RESOURCES: [&str; 7] = [
        "Container ",
        "Network ",
        "Volume ",
        "Image ",
        "Service ",
        "Secret ",
        "Config ",
    ];
    let line = line.trim_start();
    RESOURCES.iter().any(|r| {
        line.strip_prefix(r)
            .is_some_and(|rest| rest.trim_start().contains("  "))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_follows_compose() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(discover_files(dir.path()), None);
        std::fs::write(dir.path().join("docker-compose.yml"), "").unwrap();
        assert_eq!(
            discover_files(dir.path()).unwrap(),
            [PathBuf::from("docker-compose.yml")]
        );
        std::fs::write(dir.path().join("compose.yaml"), "").unwrap();
        std::fs::write(dir.path().join("compose.override.yml"), "").unwrap();
        assert_eq!(
            discover_files(dir.path()).unwrap(),
            [
                PathBuf::from("compose.yaml"),
                PathBuf::from("compose.override.yml")
            ]
        );
    }

    #[test]
    fn every_file_and_the_project_are_passed() {
        let c = Compose::new("shop", Path::new("/srv/shop"), vec!["a.yaml".into()])
            .with_file("/state/override.json".into())
            .with_profiles(&["debug".into(), "ops".into()]);
        let shown = c.cmd(["up", "-d"]).display();
        assert!(
            shown.ends_with(
                "--ansi never -p shop --project-directory /srv/shop -f /srv/shop/a.yaml -f /state/override.json --profile debug --profile ops up -d"
            ),
            "{shown}"
        );
        assert!(
            shown.starts_with("docker compose ") || shown.contains("docker-compose "),
            "{shown}"
        );
    }

    /// Regression: `compose_file: stacks/web/compose.yaml` was run with the
    /// repository root as its project directory, so its `../../.env` left
    /// the repository. Compose's own rule: the first file's directory.
    #[test]
    fn a_compose_file_in_a_directory_resolves_its_paths_from_there() {
        let c = Compose::new(
            "web",
            Path::new("/srv/repo"),
            vec![
                "stacks/web/compose.yaml".into(),
                "stacks/web/prod.yaml".into(),
            ],
        );
        assert_eq!(c.project_dir(), Path::new("/srv/repo/stacks/web"));
        let shown = c.cmd(["config"]).display();
        assert!(
            shown.contains(
                "--project-directory /srv/repo/stacks/web -f /srv/repo/stacks/web/compose.yaml"
            ),
            "{shown}"
        );
        let root = Compose::new("web", Path::new("/srv/repo"), vec!["compose.yaml".into()]);
        assert_eq!(root.project_dir(), Path::new("/srv/repo"));
    }

    /// Regression: `history`, `status` and every notification of a failed
    /// `up` started with compose's command line and its first progress
    /// line, the reason (on the last line) buried after them.
    #[test]
    fn errors_bury_the_cause_no_more_the_reason_is_what_compose_said_last() {
        let failed = |stderr: &str| ProcessError::Failed {
            command: "docker compose --ansi never -p shop --project-directory /srv/shop up -d"
                .into(),
            status: "exit status: 1".into(),
            stderr: stderr.into(),
        };
        let port = "Error response from daemon: driver failed programming external connectivity on endpoint shop-web-1: Bind for 127.0.0.1:19592 failed: port is already allocated";
        let cases = [
            (
                failed(&format!(
                    " Container shop-db-1  Recreate\n Container shop-db-1  Recreated\n Container shop-web-1  Starting\n{port}\n"
                )),
                port.to_string(),
            ),
            // The engine's ids, new with every try, are left out.
            (
                failed(
                    " Container shop-web-1  Starting\nError response from daemon: driver failed programming external connectivity on endpoint shop-web-1 (1e127cda715c852cc80e5ae19afc18553f902887cf377e7cd5ded1807123f4db): Bind for 127.0.0.1:19592 failed: port is already allocated (a (note))\n",
                ),
                format!("{port} (a (note))"),
            ),
            // A warning at the end is not the reason.
            (
                failed(&format!(
                    " Container shop-web-1  Starting\n{port}\nWARN[0001] a warning\n"
                )),
                port.to_string(),
            ),
            // Several lines of reason, after the progress.
            (
                failed(" Image x  Pulling\nfailed to solve: exit code: 3\nsee the log above\n"),
                "failed to solve: exit code: 3\nsee the log above".to_string(),
            ),
            // Progress unindented, as compose prints some of it.
            (
                failed(&format!("Container shop-web-1  Starting\n{port}\n")),
                port.to_string(),
            ),
            // Nothing but progress: its last line is all there is.
            (
                failed(" Container shop-web-1  Started\n"),
                "Container shop-web-1  Started".to_string(),
            ),
            (
                failed(" \n"),
                "compose exited with exit status: 1".to_string(),
            ),
            (
                ProcessError::Timeout {
                    command: "docker compose up".into(),
                    after: Duration::from_secs(900),
                },
                "not finished within 900s".to_string(),
            ),
        ];
        for (err, want) in cases {
            let got = reason(&err);
            assert_eq!(got, want);
            assert!(!got.contains("--project-directory"), "{got}");
        }
    }
}
