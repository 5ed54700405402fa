//! How Kedge is installed: the version it names, shell completions and man
//! pages generated from its command line, and the Debian package (binary,
//! systemd unit, completions, man pages, example config) installed and
//! removed with dpkg, with `systemd-analyze verify` on the unit.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::docker::docker_ok;
use crate::support::*;

fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What bash completes for `line` (a trailing space: a new word) with the
/// completion script `script` loaded into a shell whose PATH has nothing:
/// loading and completing run no program, `kedge` included.
fn bash_complete(script: &Path, line: &str) -> Vec<String> {
    let empty = tempfile::tempdir().unwrap();
    let program = r#"source "$1" || exit 1
COMP_LINE=$2
COMP_POINT=${#COMP_LINE}
read -ra COMP_WORDS <<<"$2"
[[ $2 == *" " ]] && COMP_WORDS+=("")
COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))
_kedge kedge "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
printf '%s\n' "${COMPREPLY[@]}""#;
    let out = run_ok(
        Command::new("/bin/bash")
            .args(["--norc", "--noprofile", "-c", program, "bash"])
            .arg(script)
            .arg(line)
            .env_clear()
            .env("PATH", empty.path()),
    );
    out.split_whitespace().map(String::from).collect()
}

#[test]
fn bash_completion_offers_the_subcommands_without_running_kedge() {
    let k = Kedge::new();
    let script = k.cwd().join("kedge.bash");
    let out = k.run(["completions", "bash"]);
    out.success();
    std::fs::write(&script, &out.stdout).unwrap();

    let top = bash_complete(&script, "kedge ");
    for sub in [
        "repo",
        "serve",
        "status",
        "sync",
        "events",
        "version",
        "completions",
        "man",
    ] {
        assert!(top.contains(&sub.to_string()), "{sub} not in {top:?}");
    }
    let repo = bash_complete(&script, "kedge repo ");
    for sub in ["add", "list", "remove"] {
        assert!(repo.contains(&sub.to_string()), "{sub} not in {repo:?}");
    }
    let flags = bash_complete(&script, "kedge serve --p");
    assert_eq!(flags, vec!["--poll-interval".to_string()]);
    // The other shells get their own scripts, naming the same commands.
    for (shell, marker) in [("zsh", "#compdef kedge"), ("fish", "complete -c kedge")] {
        let out = k.run(["completions", shell]);
        out.success().stdout_has(marker).stdout_has("rollback");
    }
    k.run(["completions", "tcsh"]).code(2);
}

#[test]
fn man_prints_the_page_and_writes_one_per_subcommand() {
    let k = Kedge::new();
    k.run(["man"])
        .success()
        .stdout_has(".TH kedge 1")
        .stdout_has("GitOps controller for Docker Compose")
        .stdout_has("kedge\\-repo(1)");
    let dir = k.cwd().join("man");
    let out = k.run(["man", "--dir", dir.to_str().unwrap()]);
    out.success();
    for page in [
        "kedge.1",
        "kedge-repo-add.1",
        "kedge-serve.1",
        "kedge-token-create.1",
    ] {
        assert!(
            out.stdout.contains(page),
            "{page} not listed: {}",
            out.stdout
        );
        assert!(dir.join(page).is_file(), "{page} not written");
    }
    // man reads them: the serve page names its flags.
    let text = run_ok(
        Command::new("man")
            .args(["-l", "-P", "cat"])
            .arg(dir.join("kedge-serve.1"))
            .env("MANWIDTH", "100"),
    );
    assert!(text.contains("--poll-interval"), "{text}");
}

#[test]
fn version_names_the_commit_and_with_v_compose_and_the_engine() {
    let k = Kedge::new();
    let head = run_ok(
        Command::new("git")
            .args(["rev-parse", "HEAD"])
            .current_dir(repo_root()),
    );
    let head = head.trim();
    let plain = k.run(["--version"]);
    plain.success().stdout_is(&format!(
        "kedge {} (commit {})\n",
        env!("CARGO_PKG_VERSION"),
        &head[..12]
    ));
    k.run(["version"]).success().stdout_is(&plain.stdout);

    let compose = docker_ok(&["compose", "version", "--short"]);
    let engine = docker_ok(&["version", "--format", "{{.Server.Version}}"]);
    for args in [&["--version", "-v"][..], &["version", "-v"][..]] {
        let out = k.run(args);
        out.success()
            .stdout_has(&plain.stdout)
            .stdout_has(&format!("compose {compose}\n"))
            .stdout_has(&format!("engine {engine} (API "));
    }
    let json = k.run(["version", "-v", "-o", "json"]).json();
    assert_eq!(json["commit"], head);
    assert_eq!(json["compose"]["version"], compose.as_str());
    // An engine that does not answer is reported, not a failure.
    let gone = k
        .command(["version", "-v"])
        .env("DOCKER_HOST", "unix:///nonexistent.sock")
        .output()
        .unwrap();
    assert!(gone.status.success());
    let text = String::from_utf8_lossy(&gone.stdout);
    assert!(
        text.contains("engine: cannot connect to the Docker engine"),
        "{text}"
    );
    // -v alone means nothing.
    k.run(["-v"]).code(2);
}

/// The package's installation, removed when dropped, even on panic.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        if dpkg_installed() {
            let _ = dpkg(&["-r", "kedge"]);
        }
    }
}

fn dpkg_installed() -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f", "${db:Status-Status}", "kedge"])
        .output()
        .map(|o| o.status.success() && String::from_utf8_lossy(&o.stdout) == "installed")
        .unwrap_or(false)
}

/// dpkg, waiting for its lock while another dpkg or apt holds it.
fn dpkg(args: &[&str]) -> std::process::Output {
    wait_for(120, "the dpkg lock", || {
        let out = Command::new("dpkg").args(args).output().unwrap();
        let locked = String::from_utf8_lossy(&out.stderr).contains("lock");
        (!locked || out.status.success()).then_some(out)
    })
}

#[test]
fn debian_package_installs_and_removes_cleanly() {
    // An installation that is not this test's is never replaced or removed.
    assert!(
        !dpkg_installed() && !Path::new("/usr/bin/kedge").exists(),
        "kedge is installed on this machine already: the package test would replace it"
    );
    let mut package = Command::new("bash");
    package
        .arg(repo_root().join("scripts/package-deb.sh"))
        .args(["--profile", "dev"])
        .env("KEDGE_DEB_FAST", "1");
    // The cargo inside sees the environment a developer's would, not the one
    // `cargo test` gives its tests: some build scripts rerun when those
    // variables change, and every later build would compile them again.
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        let cargo_set = key == "CARGO"
            || (key.starts_with("CARGO_") && key != "CARGO_HOME" && key != "CARGO_TARGET_DIR")
            || key == "LD_LIBRARY_PATH"
            || key == "OUT_DIR"
            // build.rs's output, which cargo hands the tests too.
            || key == "KEDGE_GIT_COMMIT";
        if cargo_set {
            package.env_remove(key.as_ref());
        }
    }
    let out = run_ok(&mut package);
    let deb = PathBuf::from(out.lines().last().expect("the .deb's path").trim());
    let listing = run_ok(Command::new("dpkg-deb").arg("-c").arg(&deb));
    let paths: Vec<PathBuf> = listing
        .lines()
        .filter_map(|l| l.split_whitespace().last())
        .map(|p| PathBuf::from(p.trim_start_matches('.')))
        .filter(|p| p != Path::new("/"))
        .collect();
    for want in [
        "/usr/bin/kedge",
        "/lib/systemd/system/kedge.service",
        "/usr/share/bash-completion/completions/kedge",
        "/usr/share/zsh/vendor-completions/_kedge",
        "/usr/share/fish/vendor_completions.d/kedge.fish",
        "/usr/share/man/man1/kedge.1.gz",
        "/usr/share/man/man1/kedge-repo-add.1.gz",
        "/usr/share/doc/kedge/examples/config.yaml",
    ] {
        assert!(
            paths.contains(&PathBuf::from(want)),
            "{want} not in\n{listing}"
        );
    }
    let before: Vec<bool> = paths.iter().map(|p| p.exists()).collect();

    let installed = Installed;
    let out = dpkg(&["-i", deb.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "dpkg -i: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dpkg_installed());

    // What was installed works.
    let version = run_ok(Command::new("/usr/bin/kedge").arg("--version"));
    assert!(version.starts_with("kedge "), "{version}");
    let unit = std::fs::read_to_string("/lib/systemd/system/kedge.service").unwrap();
    assert_eq!(
        unit,
        std::fs::read_to_string(repo_root().join("packaging/kedge.service")).unwrap()
    );
    for unit in [
        repo_root().join("packaging/kedge.service"),
        PathBuf::from("/lib/systemd/system/kedge.service"),
    ] {
        let out = Command::new("systemd-analyze")
            .arg("verify")
            .arg(&unit)
            .output()
            .unwrap();
        assert!(
            out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
            "systemd-analyze verify {}: {}{}",
            unit.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let page = run_ok(Command::new("man").args(["-w", "kedge"]));
    assert_eq!(page.trim(), "/usr/share/man/man1/kedge.1.gz");
    let offered = bash_complete(
        Path::new("/usr/share/bash-completion/completions/kedge"),
        "kedge ",
    );
    assert!(offered.contains(&"serve".to_string()), "{offered:?}");
    let k = Kedge::new();
    k.run([
        "--config",
        "/usr/share/doc/kedge/examples/config.yaml",
        "--data-dir",
        k.data_dir().to_str().unwrap(),
        "repo",
        "list",
    ])
    .success();

    // Removed: every file and folder it brought is gone, nothing else.
    let out = dpkg(&["-r", "kedge"]);
    assert!(
        out.status.success(),
        "dpkg -r: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(installed);
    assert!(!dpkg_installed());
    let stray: Vec<_> = paths
        .iter()
        .zip(&before)
        .filter(|(p, existed)| p.exists() != **existed)
        .map(|(p, _)| p.display().to_string())
        .collect();
    assert!(stray.is_empty(), "left behind: {stray:?}");
}
