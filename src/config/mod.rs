//! config: Kedge's own settings, resolved once at start-up with the
//! precedence defaults < global config file < `KEDGE_*` environment < flags.

pub mod commit_status;
pub mod credentials;
pub mod duration;
pub mod hosts;
pub mod interpolate;
pub mod notifications;
pub mod registries;
pub mod schema;
pub mod yaml;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use duration::parse_duration;
use interpolate::Env;
use schema::{SchemaError, Section};

pub const DEFAULT_DATA_DIR: &str = ".kedge";
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(60);
pub const DEFAULT_CHECK_INTERVAL: Duration = Duration::from_secs(30);
pub const DEFAULT_GIT_TIMEOUT: Duration = Duration::from_secs(60);
pub const DEFAULT_EVENTS_RETENTION: Duration = Duration::from_secs(30 * 86_400);
/// `http.command_wait`: a health gate may hold a repository for minutes.
pub const DEFAULT_COMMAND_WAIT: Duration = Duration::from_secs(60);
/// A quarter: the deployments one would still roll back to or look up. A
/// repository's last good, pinned and deployed ones are kept regardless.
pub const DEFAULT_HISTORY_RETENTION: Duration = Duration::from_secs(90 * 86_400);
/// Compose files larger than this are refused before rendering: compose
/// holds a file many times over while it parses (a 20 MB file, 880 MB RSS).
pub const DEFAULT_MAX_COMPOSE_SIZE: u64 = 4 << 20;
/// `serve.max_parallel_deploys` (fleet.md §1), and its ceiling.
pub const DEFAULT_MAX_PARALLEL_DEPLOYS: usize = 4;
pub const MAX_PARALLEL_DEPLOYS: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl LogFormat {
    fn parse(s: &str) -> Result<Self, String> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err("text or json".into()),
        }
    }
}

/// What the global config file may say; everything is optional.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FileConfig {
    pub data_dir: Option<PathBuf>,
    pub poll_interval: Option<Duration>,
    pub check_interval: Option<Duration>,
    pub git_timeout: Option<Duration>,
    pub log_format: Option<LogFormat>,
    pub log_level: Option<String>,
    pub max_compose_size: Option<u64>,
    pub events_retention: Option<Duration>,
    pub history_retention: Option<Duration>,
    pub listen: Option<Listen>,
    pub command_wait: Option<Duration>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub webhook_secret: Option<Secret>,
    pub webhook_secret_file: Option<PathBuf>,
    pub registries: Vec<registries::Registry>,
    pub credentials: Vec<credentials::Credential>,
    pub hosts: Vec<hosts::Host>,
    pub public_url: Option<String>,
    pub notifications: Vec<notifications::SinkConfig>,
    /// `commit_status:`: the git hosts deployments are reported to.
    pub commit_status: Vec<commit_status::StatusTarget>,
    pub max_parallel_deploys: Option<usize>,
    pub sops_age_key_file: Option<PathBuf>,
}

/// Where `serve` listens for HTTP: an address (port 0 picks a free one), or
/// nowhere (`none`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listen {
    Addr(std::net::SocketAddr),
    Off,
}

impl Listen {
    pub fn parse(s: &str) -> Result<Listen, String> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("none") {
            return Ok(Listen::Off);
        }
        s.parse().map(Listen::Addr).map_err(|_| {
            format!("{s:?} is not an address to listen on (e.g. 127.0.0.1:9470, [::1]:9470, 0.0.0.0:0) nor `none`")
        })
    }
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:9470";

/// A secret read from configuration: never shown by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// What the command line said.
#[derive(Debug, Clone, Default)]
pub struct Flags {
    pub config: Option<PathBuf>,
    pub data_dir: Option<PathBuf>,
    pub poll_interval: Option<Duration>,
    pub check_interval: Option<Duration>,
    pub log_format: Option<LogFormat>,
    pub listen: Option<Listen>,
}

/// The settings in force.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub data_dir: PathBuf,
    pub poll_interval: Duration,
    /// The safety net behind the engine's events: a full drift check this often.
    pub check_interval: Duration,
    /// How long a remote check (`ls-remote`) may take; clone and fetch get
    /// `git::TRANSFER_FACTOR` times as long.
    pub git_timeout: Duration,
    pub log_format: LogFormat,
    /// A `tracing` filter directive such as `info` or `kedge=debug`.
    pub log_level: String,
    /// Bytes; a larger compose file is refused before rendering.
    pub max_compose_size: u64,
    /// Events older than this are deleted by `serve`.
    pub events_retention: Duration,
    /// Deployments that finished longer ago are deleted by `serve` (not a
    /// repository's last good, pinned, deployed or running one), with the
    /// snapshots nothing refers to any more.
    pub history_retention: Duration,
    /// `serve`'s HTTP listener.
    pub listen: Listen,
    /// `http.command_wait`: how long a sync or rollback over HTTP or from
    /// the dashboard waits for its repository's task to take it up (an
    /// apply in flight) before the answer is 409; it never runs then.
    pub command_wait: Duration,
    /// PEM certificate chain and key: HTTPS when both are set.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// The git webhooks' shared secret (`webhook.secret`, its file, or
    /// `KEDGE_WEBHOOK_SECRET`); without one the hooks answer 404.
    pub webhook_secret: Option<Secret>,
    /// Credentials for pulls from private registries (`registries:`).
    pub registries: Vec<registries::Registry>,
    /// Named secrets repositories refer to (`credentials:`).
    pub credentials: Vec<credentials::Credential>,
    /// The Docker hosts stacks may target (`hosts:`), `local` excepted.
    pub hosts: Vec<hosts::Host>,
    /// `http.public_url`: where people reach the dashboard; notifications
    /// link to a repository's page under it.
    pub public_url: Option<String>,
    /// The notification sinks (`notifications:`), in file order.
    pub notifications: Vec<notifications::SinkConfig>,
    /// `commit_status:`: the git hosts deployments are reported to.
    pub commit_status: Vec<commit_status::StatusTarget>,
    /// `serve.max_parallel_deploys`: how many stacks apply at once.
    pub max_parallel_deploys: usize,
    /// `sops.age_key_file` (or `KEDGE_SOPS_AGE_KEY_FILE`): the age
    /// identities that open SOPS files; without it, sops's own variables.
    pub sops_age_key_file: Option<PathBuf>,
    /// The config file that was read, if any.
    pub config_file: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid config file {}", path.display())]
    Invalid {
        path: PathBuf,
        #[source]
        source: SchemaError,
    },
    #[error("invalid environment variable {name}={value:?}: expected {expected}")]
    Env {
        name: &'static str,
        value: String,
        expected: String,
    },
    #[error("poll interval must be greater than zero")]
    ZeroPollInterval,
    #[error("drift check interval must be greater than zero")]
    ZeroCheckInterval,
    #[error("git timeout must be greater than zero")]
    ZeroGitTimeout,
    #[error("http.tls_cert and http.tls_key go together: only {0} is set")]
    HalfTls(&'static str),
    #[error("cannot read the secret file {}", path.display())]
    SecretFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the secret file {} is empty", path.display())]
    EmptySecret { path: PathBuf },
    #[error(
        "the secret file {} is accessible by group or others (mode {mode:03o}); `chmod 600` it",
        path.display()
    )]
    SecretFileOpen { path: PathBuf, mode: u32 },
}

pub fn parse_file(text: &str, env: Env) -> Result<FileConfig, SchemaError> {
    let doc = yaml::parse(text)?;
    let top = Section::new(
        &doc,
        "",
        &[
            "data_dir",
            "git",
            "drift",
            "log",
            "render",
            "events",
            "history",
            "http",
            "webhook",
            "registries",
            "credentials",
            "notifications",
            "commit_status",
            "serve",
            "sops",
            "hosts",
        ],
    )?;
    let mut out = FileConfig {
        data_dir: top.string("data_dir", env)?.map(|(s, _)| PathBuf::from(s)),
        registries: registries::parse(&top, env)?,
        credentials: credentials::parse(&top, env)?,
        hosts: hosts::parse(&top, env)?,
        ..FileConfig::default()
    };
    if let Some(git) = top.section("git", &["poll_interval", "timeout"])? {
        out.poll_interval = git.parsed("poll_interval", env, |s| {
            parse_duration(s).map_err(|e| e.to_string())
        })?;
        out.git_timeout = git.parsed("timeout", env, |s| {
            parse_duration(s).map_err(|e| e.to_string())
        })?;
    }
    if let Some(drift) = top.section("drift", &["check_interval"])? {
        out.check_interval = drift.parsed("check_interval", env, |s| {
            parse_duration(s).map_err(|e| e.to_string())
        })?;
    }
    if let Some(log) = top.section("log", &["format", "level"])? {
        out.log_format = log.parsed("format", env, LogFormat::parse)?;
        out.log_level = log.string("level", env)?.map(|(s, _)| s);
    }
    if let Some(render) = top.section("render", &["max_compose_size"])? {
        out.max_compose_size = render.parsed("max_compose_size", env, parse_size)?;
    }
    if let Some(http) = top.section(
        "http",
        &[
            "listen",
            "tls_cert",
            "tls_key",
            "public_url",
            "command_wait",
        ],
    )? {
        out.listen = http.parsed("listen", env, Listen::parse)?;
        out.command_wait = http.parsed("command_wait", env, |s| {
            parse_duration(s).map_err(|e| e.to_string())
        })?;
        out.public_url = http.parsed("public_url", env, parse_public_url)?;
        out.tls_cert = http.string("tls_cert", env)?.map(|(s, _)| PathBuf::from(s));
        out.tls_key = http.string("tls_key", env)?.map(|(s, _)| PathBuf::from(s));
    }
    if let Some(hook) = top.section("webhook", &["secret", "secret_file"])? {
        out.webhook_secret = interpolate::hiding_secrets(env, |env| hook.string("secret", env))?
            .map(|(s, _)| Secret(s));
        out.webhook_secret_file = hook
            .string("secret_file", env)?
            .map(|(s, _)| PathBuf::from(s));
    }
    if let Some(serve) = top.section("serve", &["max_parallel_deploys"])? {
        out.max_parallel_deploys =
            serve.parsed("max_parallel_deploys", env, parse_parallel_deploys)?;
    }
    if let Some(sops) = top.section("sops", &["age_key_file"])? {
        out.sops_age_key_file = sops
            .string("age_key_file", env)?
            .map(|(s, _)| PathBuf::from(s));
    }
    if let Some(entry) = top.get("notifications") {
        out.notifications = notifications::parse(&entry.node, env)?;
    }
    if let Some(entry) = top.get("commit_status") {
        out.commit_status = commit_status::parse(&entry.node, env)?;
    }
    if let Some(events) = top.section("events", &["retention"])? {
        out.events_retention = events.parsed("retention", env, parse_retention)?;
    }
    if let Some(history) = top.section("history", &["retention"])? {
        out.history_retention = history.parsed("retention", env, parse_retention)?;
    }
    Ok(out)
}

/// `serve.max_parallel_deploys`: 1 to 64.
fn parse_parallel_deploys(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (1..=MAX_PARALLEL_DEPLOYS).contains(&n) => Ok(n),
        _ => Err(format!("a number from 1 to {MAX_PARALLEL_DEPLOYS}")),
    }
}

/// `events.retention`, `history.retention`: a duration greater than zero.
fn parse_retention(s: &str) -> Result<Duration, String> {
    parse_duration(s).map_err(|e| e.to_string()).and_then(|d| {
        if d.is_zero() {
            Err("a duration greater than zero such as 30d".to_string())
        } else {
            Ok(d)
        }
    })
}

/// `http.public_url`: an http(s) URL, kept without its trailing slash.
fn parse_public_url(s: &str) -> Result<String, String> {
    match url::Url::parse(s.trim()) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {
            Ok(s.trim().trim_end_matches('/').to_string())
        }
        _ => Err("an http:// or https:// URL such as https://kedge.example.com".into()),
    }
}

/// A secret kept in a file: its content, without the trailing newline.
pub fn read_secret_file(path: &Path) -> Result<Secret, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::SecretFile {
        path: path.to_path_buf(),
        source,
    })?;
    let secret = text.trim_end_matches(['\n', '\r']);
    if secret.is_empty() {
        return Err(ConfigError::EmptySecret {
            path: path.to_path_buf(),
        });
    }
    Ok(Secret(secret.to_string()))
}

/// A secret file only its owner may read: the global webhook secret's
/// (`webhook.secret_file`), a commit status token's. Like a repository's
/// own secret file (and ssh with a private key), a file its group or
/// others may read or write is refused: anyone who reads it can trigger
/// deploys, or write to the git host.
pub fn read_private_secret_file(path: &Path) -> Result<Secret, ConfigError> {
    use std::os::unix::fs::PermissionsExt as _;
    let meta = std::fs::metadata(path).map_err(|source| ConfigError::SecretFile {
        path: path.to_path_buf(),
        source,
    })?;
    let mode = meta.permissions().mode() & 0o777;
    if meta.is_file() && mode & 0o077 != 0 {
        return Err(ConfigError::SecretFileOpen {
            path: path.to_path_buf(),
            mode,
        });
    }
    read_secret_file(path)
}

/// A size in bytes: a whole number with an optional unit (`B`, `KiB`, `MiB`,
/// `GiB`), greater than zero.
pub fn parse_size(s: &str) -> Result<u64, String> {
    const EXPECTED: &str = "a size greater than zero such as 4MiB, 512KiB or 1048576";
    let s = s.trim();
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(digits);
    let shift = match unit.trim() {
        "" | "B" => 0,
        "KiB" => 10,
        "MiB" => 20,
        "GiB" => 30,
        _ => return Err(EXPECTED.into()),
    };
    number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(1 << shift))
        .filter(|n| *n > 0)
        .ok_or_else(|| EXPECTED.into())
}

/// The config file to read: `--config`, else `KEDGE_CONFIG`, else
/// `~/.config/kedge/config.yaml` when it exists. A file named explicitly must exist.
pub fn config_path(flags: &Flags, env: Env) -> Option<(PathBuf, bool)> {
    if let Some(p) = &flags.config {
        return Some((p.clone(), true));
    }
    if let Some(p) = env("KEDGE_CONFIG").filter(|p| !p.is_empty()) {
        return Some((PathBuf::from(p), true));
    }
    let home = env("HOME").filter(|h| !h.is_empty())?;
    let p = Path::new(&home).join(".config/kedge/config.yaml");
    Some((p, false))
}

/// Reads the config file (if any) and resolves every setting.
pub fn load(flags: &Flags, env: Env) -> Result<Settings, ConfigError> {
    let mut file = None;
    let mut used = None;
    if let Some((path, required)) = config_path(flags, env) {
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let parsed = parse_file(&text, env).map_err(|source| ConfigError::Invalid {
                    path: path.clone(),
                    source,
                })?;
                file = Some(parsed);
                used = Some(path);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {}
            Err(source) => return Err(ConfigError::Read { path, source }),
        }
    }
    let mut settings = resolve(file.unwrap_or_default(), env, flags)?;
    settings.config_file = used;
    // Variables holding secrets are read by Kedge, never inherited.
    crate::process::hide_env("KEDGE_WEBHOOK_SECRET");
    for registry in &settings.registries {
        if let registries::SecretRef::Env(name) = &registry.password {
            crate::process::hide_env(name);
        }
    }
    for credential in &settings.credentials {
        if let Some(name) = credential.variable() {
            crate::process::hide_env(name);
        }
    }
    // Git and compose run in other directories: every path must be absolute.
    if settings.data_dir.is_relative()
        && let Ok(cwd) = std::env::current_dir()
    {
        settings.data_dir = cwd.join(&settings.data_dir);
    }
    Ok(settings)
}

/// Pure precedence: defaults < file < environment < flags.
pub fn resolve(file: FileConfig, env: Env, flags: &Flags) -> Result<Settings, ConfigError> {
    let var = |name: &str| env(name).filter(|v| !v.is_empty());

    let data_dir = flags
        .data_dir
        .clone()
        .or_else(|| var("KEDGE_DATA_DIR").map(PathBuf::from))
        .or(file.data_dir)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));

    let env_duration = |name: &'static str| {
        var(name)
            .map(|v| {
                parse_duration(&v).map_err(|e| ConfigError::Env {
                    name,
                    value: v.clone(),
                    expected: format!("a duration ({})", e.reason),
                })
            })
            .transpose()
    };
    let env_poll = env_duration("KEDGE_POLL_INTERVAL")?;
    let poll_interval = flags
        .poll_interval
        .or(env_poll)
        .or(file.poll_interval)
        .unwrap_or(DEFAULT_POLL_INTERVAL);
    if poll_interval.is_zero() {
        return Err(ConfigError::ZeroPollInterval);
    }
    let check_interval = flags
        .check_interval
        .or(env_duration("KEDGE_CHECK_INTERVAL")?)
        .or(file.check_interval)
        .unwrap_or(DEFAULT_CHECK_INTERVAL);
    if check_interval.is_zero() {
        return Err(ConfigError::ZeroCheckInterval);
    }
    let git_timeout = env_duration("KEDGE_GIT_TIMEOUT")?
        .or(file.git_timeout)
        .unwrap_or(DEFAULT_GIT_TIMEOUT);
    if git_timeout.is_zero() {
        return Err(ConfigError::ZeroGitTimeout);
    }

    let env_format = var("KEDGE_LOG_FORMAT")
        .map(|v| {
            LogFormat::parse(&v).map_err(|expected| ConfigError::Env {
                name: "KEDGE_LOG_FORMAT",
                value: v.clone(),
                expected,
            })
        })
        .transpose()?;
    let log_format = flags
        .log_format
        .or(env_format)
        .or(file.log_format)
        .unwrap_or_default();

    let log_level = var("KEDGE_LOG")
        .or(file.log_level)
        .unwrap_or_else(|| "info".to_string());

    let listen = match flags.listen {
        Some(l) => l,
        None => match var("KEDGE_LISTEN") {
            Some(v) => Listen::parse(&v).map_err(|expected| ConfigError::Env {
                name: "KEDGE_LISTEN",
                value: v.clone(),
                expected,
            })?,
            None => file
                .listen
                .unwrap_or_else(|| Listen::parse(DEFAULT_LISTEN).expect("the default parses")),
        },
    };
    let tls = match (file.tls_cert, file.tls_key) {
        (Some(cert), Some(key)) => Some((cert, key)),
        (None, None) => None,
        (Some(_), None) => return Err(ConfigError::HalfTls("http.tls_cert")),
        (None, Some(_)) => return Err(ConfigError::HalfTls("http.tls_key")),
    };
    let webhook_secret = match (
        var("KEDGE_WEBHOOK_SECRET"),
        file.webhook_secret,
        file.webhook_secret_file,
    ) {
        (Some(v), _, _) => Some(Secret(v)),
        (None, Some(s), _) => Some(s),
        (None, None, Some(path)) => Some(read_private_secret_file(&path)?),
        (None, None, None) => None,
    };

    Ok(Settings {
        data_dir,
        poll_interval,
        check_interval,
        git_timeout,
        log_format,
        log_level,
        max_compose_size: file.max_compose_size.unwrap_or(DEFAULT_MAX_COMPOSE_SIZE),
        events_retention: file.events_retention.unwrap_or(DEFAULT_EVENTS_RETENTION),
        history_retention: file.history_retention.unwrap_or(DEFAULT_HISTORY_RETENTION),
        listen,
        command_wait: file.command_wait.unwrap_or(DEFAULT_COMMAND_WAIT),
        tls,
        webhook_secret,
        registries: file.registries,
        credentials: file.credentials,
        hosts: file.hosts,
        public_url: file.public_url,
        notifications: file.notifications,
        commit_status: file.commit_status,
        max_parallel_deploys: file
            .max_parallel_deploys
            .unwrap_or(DEFAULT_MAX_PARALLEL_DEPLOYS),
        sops_age_key_file: var("KEDGE_SOPS_AGE_KEY_FILE")
            .map(PathBuf::from)
            .or(file.sops_age_key_file),
        config_file: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    fn file(data_dir: &str, poll: u64) -> FileConfig {
        FileConfig {
            data_dir: Some(data_dir.into()),
            poll_interval: Some(Duration::from_secs(poll)),
            check_interval: Some(Duration::from_secs(7)),
            git_timeout: Some(Duration::from_secs(9)),
            log_format: Some(LogFormat::Json),
            log_level: Some("debug".into()),
            max_compose_size: None,
            events_retention: None,
            ..FileConfig::default()
        }
    }

    #[test]
    fn listen_and_webhook_secret() {
        let none = env_of(&[]);
        let s = resolve(FileConfig::default(), &none, &Flags::default()).unwrap();
        assert_eq!(s.listen, Listen::Addr("127.0.0.1:9470".parse().unwrap()));
        assert_eq!(s.webhook_secret, None);
        assert_eq!(Listen::parse("none"), Ok(Listen::Off));
        assert!(Listen::parse("localhost").is_err());
        let env = env_of(&[("KEDGE_LISTEN", "none"), ("KEDGE_WEBHOOK_SECRET", "s3")]);
        let s = resolve(FileConfig::default(), &env, &Flags::default()).unwrap();
        assert_eq!(s.listen, Listen::Off);
        assert_eq!(s.webhook_secret, Some(Secret("s3".into())));
        assert!(!format!("{s:?}").contains("s3\""), "{s:?}");
        let flags = Flags {
            listen: Some(Listen::Addr("[::1]:0".parse().unwrap())),
            ..Flags::default()
        };
        let s = resolve(FileConfig::default(), &env, &flags).unwrap();
        assert_eq!(s.listen, Listen::Addr("[::1]:0".parse().unwrap()));
        let half = FileConfig {
            tls_cert: Some("c.pem".into()),
            ..FileConfig::default()
        };
        assert!(matches!(
            resolve(half, &none, &Flags::default()),
            Err(ConfigError::HalfTls("http.tls_cert"))
        ));
    }

    #[test]
    fn precedence_defaults_file_env_flags() {
        let none = env_of(&[]);
        let env = env_of(&[
            ("KEDGE_DATA_DIR", "/from-env"),
            ("KEDGE_POLL_INTERVAL", "5s"),
            ("KEDGE_GIT_TIMEOUT", "3s"),
            ("KEDGE_LOG_FORMAT", "text"),
        ]);
        let flags = Flags {
            data_dir: Some("/from-flag".into()),
            poll_interval: Some(Duration::from_millis(500)),
            ..Flags::default()
        };

        // defaults only
        let s = resolve(FileConfig::default(), &none, &Flags::default()).unwrap();
        assert_eq!(s.data_dir, PathBuf::from(".kedge"));
        assert_eq!(s.poll_interval, Duration::from_secs(60));
        assert_eq!(s.check_interval, Duration::from_secs(30));
        assert_eq!(s.git_timeout, Duration::from_secs(60));
        assert_eq!(s.log_format, LogFormat::Text);
        assert_eq!(s.log_level, "info");
        assert_eq!(s.max_compose_size, 4 * 1024 * 1024);
        assert_eq!(s.history_retention, Duration::from_secs(90 * 86_400));

        // file beats defaults
        let s = resolve(file("/from-file", 30), &none, &Flags::default()).unwrap();
        assert_eq!(s.data_dir, PathBuf::from("/from-file"));
        assert_eq!(s.poll_interval, Duration::from_secs(30));
        assert_eq!(s.check_interval, Duration::from_secs(7));
        assert_eq!(s.git_timeout, Duration::from_secs(9));
        assert_eq!(s.log_format, LogFormat::Json);
        assert_eq!(s.log_level, "debug");

        // environment beats the file
        let s = resolve(file("/from-file", 30), &env, &Flags::default()).unwrap();
        assert_eq!(s.data_dir, PathBuf::from("/from-env"));
        assert_eq!(s.poll_interval, Duration::from_secs(5));
        assert_eq!(s.git_timeout, Duration::from_secs(3));
        assert_eq!(s.log_format, LogFormat::Text);

        // flags beat the environment
        let s = resolve(file("/from-file", 30), &env, &flags).unwrap();
        assert_eq!(s.data_dir, PathBuf::from("/from-flag"));
        assert_eq!(s.poll_interval, Duration::from_millis(500));
    }

    #[test]
    fn empty_environment_values_do_not_count() {
        let env = env_of(&[("KEDGE_DATA_DIR", ""), ("KEDGE_POLL_INTERVAL", "")]);
        let s = resolve(file("/from-file", 30), &env, &Flags::default()).unwrap();
        assert_eq!(s.data_dir, PathBuf::from("/from-file"));
        assert_eq!(s.poll_interval, Duration::from_secs(30));
    }

    #[test]
    fn bad_environment_is_named() {
        let env = env_of(&[("KEDGE_POLL_INTERVAL", "soon")]);
        let err = resolve(FileConfig::default(), &env, &Flags::default()).unwrap_err();
        assert!(
            err.to_string().contains("KEDGE_POLL_INTERVAL=\"soon\""),
            "{err}"
        );
        let env = env_of(&[("KEDGE_POLL_INTERVAL", "0s")]);
        assert!(matches!(
            resolve(FileConfig::default(), &env, &Flags::default()),
            Err(ConfigError::ZeroPollInterval)
        ));
        let env = env_of(&[("KEDGE_GIT_TIMEOUT", "0ms")]);
        assert!(matches!(
            resolve(FileConfig::default(), &env, &Flags::default()),
            Err(ConfigError::ZeroGitTimeout)
        ));
    }

    #[test]
    fn config_file_table() {
        let none = env_of(&[]);
        let parsed = parse_file(
            "data_dir: /srv/kedge\ngit:\n  poll_interval: 2m\n  timeout: 20s\ndrift:\n  check_interval: 10s\nlog:\n  format: json\n  level: kedge=debug\nrender:\n  max_compose_size: 512KiB\nevents:\n  retention: 7d\nhistory:\n  retention: 180d\nhttp:\n  listen: 0.0.0.0:8080\n  command_wait: 2m\n  tls_cert: /etc/kedge/cert.pem\n  tls_key: /etc/kedge/key.pem\nwebhook:\n  secret_file: /etc/kedge/hook\nserve:\n  max_parallel_deploys: 2\nsops:\n  age_key_file: /etc/kedge/age.key\n",
            &none,
        )
        .unwrap();
        assert_eq!(
            parsed,
            FileConfig {
                data_dir: Some("/srv/kedge".into()),
                poll_interval: Some(Duration::from_secs(120)),
                check_interval: Some(Duration::from_secs(10)),
                git_timeout: Some(Duration::from_secs(20)),
                log_format: Some(LogFormat::Json),
                log_level: Some("kedge=debug".into()),
                max_compose_size: Some(512 * 1024),
                events_retention: Some(Duration::from_secs(7 * 86_400)),
                history_retention: Some(Duration::from_secs(180 * 86_400)),
                listen: Some(Listen::Addr("0.0.0.0:8080".parse().unwrap())),
                command_wait: Some(Duration::from_secs(120)),
                tls_cert: Some("/etc/kedge/cert.pem".into()),
                tls_key: Some("/etc/kedge/key.pem".into()),
                webhook_secret: None,
                webhook_secret_file: Some("/etc/kedge/hook".into()),
                registries: Vec::new(),
                credentials: Vec::new(),
                hosts: Vec::new(),
                public_url: None,
                notifications: Vec::new(),
                commit_status: Vec::new(),
                max_parallel_deploys: Some(2),
                sops_age_key_file: Some("/etc/kedge/age.key".into()),
            }
        );
        assert_eq!(parse_file("", &none).unwrap(), FileConfig::default());

        let bad: &[(&str, &str)] = &[
            (
                "git:\n  poll_intervall: 5s\n",
                "line 2: unknown key `git.poll_intervall` (expected one of: poll_interval, timeout)",
            ),
            (
                "git:\n  poll_interval: often\n",
                "line 2: `git.poll_interval`: invalid value \"often\", expected invalid duration \"often\": expected a number (examples: 500ms, 2s, 1m, 1m30s)",
            ),
            (
                "log:\n  format: xml\n",
                "line 2: `log.format`: invalid value \"xml\", expected text or json",
            ),
            (
                "render:\n  max_compose_size: 4MB\n",
                "line 2: `render.max_compose_size`: invalid value \"4MB\", expected a size greater than zero such as 4MiB, 512KiB or 1048576",
            ),
            (
                "render:\n  max_compose_size: 0\n",
                "line 2: `render.max_compose_size`: invalid value \"0\", expected a size greater than zero such as 4MiB, 512KiB or 1048576",
            ),
            (
                "history:\n  retention: 0s\n",
                "line 2: `history.retention`: invalid value \"0s\", expected a duration greater than zero such as 30d",
            ),
            (
                "git: 5\n",
                "line 1: `git` must be a mapping, found a scalar",
            ),
            (
                "serve:\n  max_parallel_deploys: 0\n",
                "line 2: `serve.max_parallel_deploys`: invalid value \"0\", expected a number from 1 to 64",
            ),
        ];
        for (text, want) in bad {
            assert_eq!(
                parse_file(text, &none).unwrap_err().to_string(),
                *want,
                "{text:?}"
            );
        }
    }

    #[test]
    fn sizes() {
        for (text, want) in [
            ("1", 1),
            ("4MiB", 4 << 20),
            ("512KiB", 512 << 10),
            ("2GiB", 2 << 30),
            ("10B", 10),
        ] {
            assert_eq!(parse_size(text), Ok(want), "{text}");
        }
        for bad in [
            "",
            "0",
            "MiB",
            "1.5MiB",
            "4mb",
            "-1",
            "99999999999999999999GiB",
        ] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn load_reads_the_named_file_and_requires_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yaml");
        std::fs::write(&path, "git:\n  poll_interval: 3s\n").unwrap();
        let none = env_of(&[]);
        let flags = Flags {
            config: Some(path.clone()),
            ..Flags::default()
        };
        let s = load(&flags, &none).unwrap();
        assert_eq!(s.poll_interval, Duration::from_secs(3));
        assert!(s.data_dir.is_absolute(), "{:?}", s.data_dir);
        assert_eq!(s.config_file, Some(path));

        let missing = Flags {
            config: Some(dir.path().join("nope.yaml")),
            ..Flags::default()
        };
        assert!(matches!(
            load(&missing, &none),
            Err(ConfigError::Read { .. })
        ));

        // The default location is optional.
        let home = env_of(&[("HOME", dir.path().to_str().unwrap())]);
        let s = load(&Flags::default(), &home).unwrap();
        assert_eq!(s.config_file, None);
        std::fs::create_dir_all(dir.path().join(".config/kedge")).unwrap();
        std::fs::write(
            dir.path().join(".config/kedge/config.yaml"),
            "data_dir: /x\n",
        )
        .unwrap();
        assert_eq!(
            load(&Flags::default(), &home).unwrap().data_dir,
            PathBuf::from("/x")
        );
    }

    /// Regression: the global webhook secret's file was read whatever its
    /// mode, where a repository's own was refused when others could read it.
    #[test]
    fn the_global_webhook_secret_file_must_be_private() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hook");
        std::fs::write(&path, "s3cret\n").unwrap();
        let file = || FileConfig {
            webhook_secret_file: Some(path.clone()),
            ..FileConfig::default()
        };
        let none = env_of(&[]);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = resolve(file(), &none, &Flags::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("mode 644") && err.contains("chmod 600"),
            "{err}"
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let s = resolve(file(), &none, &Flags::default()).unwrap();
        assert_eq!(s.webhook_secret, Some(Secret("s3cret".into())));
    }
}
