//! `GET /metrics` end to end: the counters of a real deploy, heal and
//! `kedge sync` from another process; the text checked by `promtool`; a
//! real Prometheus scraping `serve`; the README's alert rules.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::support::docker::{IMAGE_1, IMAGE_2, docker_ok};
use crate::support::plain_http::{free_port, get, listen_addr, try_get};
use crate::support::*;

/// The Prometheus tools `scripts/provision.sh` installs; missing fails, never skips.
#[track_caller]
fn require(tool: &str) {
    let found = Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "`{tool}` is missing (Debian's prometheus package); run scripts/provision.sh as root"
    );
}

fn scrape(addr: SocketAddr) -> String {
    let r = get(addr, "/metrics");
    assert_eq!(r.status, 200, "{}", r.body);
    r.body
}

/// The value of the sample written exactly as `series` (name and labels).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// Waits until `series` has the value `want`; returns the scrape.
#[track_caller]
fn wait_sample(addr: SocketAddr, series: &str, want: f64) -> String {
    let mut last = String::new();
    let found = (0..300).find_map(|_| {
        last = scrape(addr);
        if sample(&last, series) == Some(want) {
            return Some(last.clone());
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        None
    });
    found.unwrap_or_else(|| panic!("{series} never became {want}; last scrape:\n{last}"))
}

#[track_caller]
fn promtool_check_metrics(text: &str) {
    require("promtool");
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start promtool");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}\n--- the text:\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn metrics_count_a_deploy_a_heal_and_a_sync_from_another_shell_and_pass_promtool() {
    require_docker();
    let compose = |image| sleepers(&[("web", image), ("api", IMAGE_1)]);
    let s = Stack::new("metrics", &[("compose.yaml", &compose(IMAGE_1))]);
    let first = s.remote.remote_head();
    // A poll of an hour: after the first check, only the CLI deploys.
    let serve = s.kedge.serve_with(&[
        "serve",
        "--poll-interval",
        "1h",
        "--check-interval",
        "1m",
        "--listen",
        "127.0.0.1:0",
    ]);
    let addr = listen_addr(&serve);
    let repo = &s.name;

    let deployed = format!("kedge_deployments_total{{repo=\"{repo}\",status=\"success\"}}");
    wait_sample(addr, &deployed, 1.0);
    wait_for(30, "the stack running", || {
        (s.running().len() == 2).then_some(())
    });

    // One heal: the stopped web runs again.
    docker_ok(&["stop", "-t", "0", &format!("{repo}-web-1")]);
    let healed = format!("kedge_heals_total{{repo=\"{repo}\",result=\"success\"}}");
    wait_sample(addr, &healed, 1.0);
    let text = wait_sample(
        addr,
        &format!("kedge_repo_sync_state{{repo=\"{repo}\",state=\"synced\"}}"),
        1.0,
    );
    let r = get(addr, "/metrics");
    assert!(
        r.header("content-type")
            .is_some_and(|t| t.starts_with("text/plain; version=0.0.4")),
        "{:?}",
        r.headers
    );
    for (series, want) in [
        ("kedge_repos".to_string(), 1.0),
        (
            format!("kedge_repo_deployed_info{{repo=\"{repo}\",commit=\"{first}\"}}"),
            1.0,
        ),
        (
            format!("kedge_deployments_total{{repo=\"{repo}\",status=\"failed\"}}"),
            0.0,
        ),
        (
            format!("kedge_heals_total{{repo=\"{repo}\",result=\"failure\"}}"),
            0.0,
        ),
        (
            format!("kedge_git_checks_total{{repo=\"{repo}\",result=\"success\"}}"),
            1.0,
        ),
        (
            format!("kedge_deployment_duration_seconds_count{{repo=\"{repo}\"}}"),
            1.0,
        ),
        (
            format!("kedge_drift_services{{repo=\"{repo}\",kind=\"stopped\"}}"),
            0.0,
        ),
    ] {
        assert_eq!(sample(&text, &series), Some(want), "{series} in:\n{text}");
    }
    let deployed_at = sample(
        &text,
        &format!("kedge_last_deploy_timestamp_seconds{{repo=\"{repo}\"}}"),
    )
    .expect("a last deploy time");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!((now - 120.0..=now).contains(&deployed_at), "{deployed_at}");
    promtool_check_metrics(&text);

    // A deploy by `kedge sync` in another process is counted from the log.
    s.remote.write("compose.yaml", &compose(IMAGE_2));
    let second = s.remote.commit("web on image 2");
    s.kedge.run(["sync", "--repo", repo]).success();
    let text = wait_sample(addr, &deployed, 2.0);
    wait_sample(
        addr,
        &format!("kedge_repo_deployed_info{{repo=\"{repo}\",commit=\"{second}\"}}"),
        1.0,
    );
    assert!(
        !text.contains(&format!("commit=\"{first}\"")),
        "one deployed commit per repository:\n{text}"
    );
    promtool_check_metrics(&scrape(addr));
}

/// The README's Prometheus rules, the YAML block that starts with `groups:`.
fn readme_rules() -> String {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md");
    let start = readme
        .find("```yaml\ngroups:")
        .expect("README.md holds the alert rules in a ```yaml block starting with `groups:`")
        + "```yaml\n".len();
    let len = readme[start..].find("```").expect("the block ends");
    readme[start..start + len].to_string()
}

#[test]
fn the_readme_alert_rules_are_valid_for_promtool() {
    require("promtool");
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("kedge.rules.yaml");
    std::fs::write(&rules, readme_rules()).unwrap();
    let out = Command::new("promtool")
        .args(["check", "rules"])
        .arg(&rules)
        .output()
        .expect("run promtool");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("SUCCESS: 3 rules found"), "{said}");
}

/// A real Prometheus on a free loopback port, with its own config and data
/// in a temporary directory; killed when dropped, also on a panic.
struct Prometheus {
    child: ChildGuard,
    log: std::path::PathBuf,
    addr: SocketAddr,
}

impl Prometheus {
    /// Scrapes `target` every second and loads the README's alert rules.
    fn start(dir: &Path, target: SocketAddr) -> Prometheus {
        require("prometheus");
        std::fs::write(dir.join("kedge.rules.yaml"), readme_rules()).unwrap();
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 rule_files: [kedge.rules.yaml]\n\
                 scrape_configs:\n  - job_name: kedge\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let log = dir.join("prometheus.log");
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .current_dir(dir)
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("start prometheus");
        Prometheus {
            child: ChildGuard(child),
            log,
            addr,
        }
    }

    /// The instant value of `query`, once it has one.
    fn query(&mut self, query: &str) -> Option<String> {
        if let Ok(Some(status)) = self.child.0.try_wait() {
            panic!("prometheus exited ({status}):\n{}", self.log());
        }
        let r = try_get(self.addr, &format!("/api/v1/query?query={query}"))?;
        let v: serde_json::Value = serde_json::from_str(&r.body).ok()?;
        Some(v["data"]["result"][0]["value"][1].as_str()?.to_string())
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- prometheus log\n{}", self.log());
        }
    }
}

#[test]
fn a_real_prometheus_scrapes_serve() {
    // No repository: nothing to deploy, and `kedge_repos` is 0.
    let kedge = Kedge::new();
    let serve = kedge.serve_with(&["serve", "--poll-interval", "1h", "--listen", "127.0.0.1:0"]);
    let target = listen_addr(&serve);
    let dir = tempfile::tempdir().unwrap();
    // Declared after `dir`: dropped (killed) before the directory goes.
    let mut prometheus = Prometheus::start(dir.path(), target);
    let repos = wait_for(60, "Prometheus to have scraped kedge_repos", || {
        prometheus.query("kedge_repos")
    });
    assert_eq!(repos, "0");
    let up = wait_for(10, "up{job=\"kedge\"}", || {
        prometheus.query("up%7Bjob%3D%22kedge%22%7D")
    });
    assert_eq!(up, "1", "the scrape succeeded");
}
