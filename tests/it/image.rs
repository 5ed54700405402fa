//! The container image end to end, once per run (it is the suite's slowest
//! test): the Dockerfile's runtime built on a `debian:bookworm-slim` that
//! `scripts/base-image.sh` bootstraps when the engine lacks it (no image can
//! be pulled here; the tag is kept as the cache), with this build's binary;
//! then deploy/compose.yaml runs it with the socket and a data volume, it
//! deploys a repository mounted into it, and /healthz answers.

use std::path::Path;
use std::process::Command;

use crate::first_run::try_get;
use crate::support::docker::{IMAGE_1, docker, docker_ok};
use crate::support::net::free_port;
use crate::support::*;

fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// An image tag removed when dropped (the base and the cached layers stay).
struct Image(String);

impl Drop for Image {
    fn drop(&mut self) {
        let _ = docker(&["rmi", "-f", &self.0]);
    }
}

#[track_caller]
fn ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn image_builds_runs_deploys_a_mounted_repository_and_answers_healthz() {
    require_docker();
    ok(Command::new("bash").arg(repo_root().join("scripts/base-image.sh")));

    // The build context: the Dockerfile, the entrypoint and this build's
    // binary, stripped (the `prebuilt` target; compiling in the image needs
    // a Rust image, which cannot be pulled here).
    let ctx = tempfile::tempdir().unwrap();
    std::fs::copy(
        repo_root().join("Dockerfile"),
        ctx.path().join("Dockerfile"),
    )
    .unwrap();
    std::fs::create_dir(ctx.path().join("packaging")).unwrap();
    std::fs::copy(
        repo_root().join("packaging/docker-entrypoint.sh"),
        ctx.path().join("packaging/docker-entrypoint.sh"),
    )
    .unwrap();
    let bin = assert_cmd::cargo::cargo_bin!("kedge");
    ok(Command::new("strip")
        .arg("-o")
        .arg(ctx.path().join("kedge"))
        .arg(bin));
    let image = Image(format!("{}:test", unique_name("k18-image")));
    ok(Command::new("docker")
        .args([
            "build",
            "-q",
            "--target",
            "prebuilt",
            "--build-arg",
            "KEDGE_BINARY=kedge",
            "-t",
        ])
        .arg(&image.0)
        .arg(ctx.path()));

    // A repository on the host, mounted read only.
    let stack = ComposeProject::new("k18-img-app");
    let repo = GitRemote::new(&stack.name);
    repo.write(
        "compose.yaml",
        &format!(
            "services:\n  app:\n    image: {IMAGE_1}\n    init: true\n    command: [sleep, '3600']\n"
        ),
    )
    .write("kedge.yaml", QUICK_GATE);
    let head = repo.commit("app");

    let kedge = ComposeProject::new("k18-kedge");
    let port = free_port();
    let extra = ctx.path().join("mount.yaml");
    std::fs::write(
        &extra,
        format!(
            "services:\n  kedge:\n    volumes:\n      - {}:/repos/app:ro\n",
            repo.bare.display()
        ),
    )
    .unwrap();
    let compose = |args: &[&str]| {
        let mut cmd = Command::new("docker");
        cmd.args(["compose", "-p", &kedge.name, "-f"])
            .arg(repo_root().join("deploy/compose.yaml"))
            .arg("-f")
            .arg(&extra)
            .args(args)
            .env("KEDGE_IMAGE", &image.0)
            .env("KEDGE_PORT", port.to_string())
            .env("KEDGE_POLL_INTERVAL", "1s");
        cmd
    };
    ok(&mut compose(&["up", "-d", "--no-build"]));
    let container = ok(&mut compose(&["ps", "-q", "kedge"]));

    // The repository, registered inside the container, is deployed by it.
    ok(&mut compose(&[
        "exec",
        "-T",
        "kedge",
        "kedge",
        "repo",
        "add",
        "/repos/app",
        "--name",
        &stack.name,
    ]));
    let running = wait_for(60, "the mounted repository's stack", || {
        let c = stack.running();
        (c.len() == 1).then_some(c)
    });
    assert_eq!(running[0].label("io.kedge.commit"), Some(head.as_str()));
    let status = wait_for(30, "status synced inside the container", || {
        let out = compose(&["exec", "-T", "kedge", "kedge", "status", "-o", "json"])
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        (v[0]["sync_state"] == "synced").then_some(v)
    });
    assert_eq!(status[0]["deployed_commit"], head.as_str());

    // /healthz on the published port, and the healthcheck that asks it.
    let (code, body) = wait_for(30, "/healthz", || try_get(port, "/healthz"));
    assert_eq!((code, body.trim()), (200, r#"{"status":"ok"}"#));
    wait_for(60, "the container healthy", || {
        let health = docker_ok(&[
            "inspect",
            "--format",
            "{{.State.Health.Status}}",
            &container,
        ]);
        (health == "healthy").then_some(())
    });

    // Not root where the socket's group allows it: Kedge runs as `kedge`
    // with that group.
    let socket_gid = ok(Command::new("stat").args(["-c", "%g", "/var/run/docker.sock"]));
    let ids = ok(&mut compose(&[
        "exec",
        "-T",
        "kedge",
        "sh",
        "-c",
        "grep -E '^(Uid|Groups):' /proc/1/status",
    ]));
    if socket_gid != "0" {
        assert!(ids.contains("Uid:\t10001\t10001"), "{ids}");
        assert!(ids.split_whitespace().any(|g| g == socket_gid), "{ids}");
    }
    // The binary inside is this build, naming its commit.
    let inside = ok(&mut compose(&["exec", "-T", "kedge", "kedge", "--version"]));
    let here = ok(Command::new(bin).arg("--version"));
    assert_eq!(inside, here);
}
