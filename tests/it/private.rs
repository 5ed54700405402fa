//! Private repositories and registries against real servers on loopback:
//! sshd with git-shell and a deploy key, git http-backend behind basic
//! auth, docker-registry with htpasswd.

use std::os::unix::fs::PermissionsExt;

use crate::support::docker::{IMAGE_1, IMAGE_2};
use crate::support::http_git::HttpGit;
use crate::support::registry::Registry;
use crate::support::ssh_git::{SshGit, keygen};
use crate::support::*;

/// A remote holding one sleeper service.
fn remote_with_sleeper(name: &str) -> GitRemote {
    let remote = GitRemote::new(name);
    remote.write("compose.yaml", &sleepers(&[("web", IMAGE_1)]));
    remote.write("kedge.yaml", QUICK_GATE);
    remote.commit("first");
    remote
}

fn status_of(k: &Kedge, name: &str) -> serde_json::Value {
    k.run(["status", "--repo", name, "-o", "json"]).json()[0].clone()
}

/// Waits until the repository's last error contains `needle`; returns it.
fn wait_error(k: &Kedge, name: &str, needle: &str) -> String {
    wait_for(
        60,
        &format!("{name}'s last error to say {needle:?}"),
        || {
            let status = status_of(k, name);
            let error = status["last_error"].as_str()?;
            error.contains(needle).then(|| error.to_string())
        },
    )
}

fn wait_deployed(k: &Kedge, name: &str, commit: &str) {
    wait_for(60, &format!("{name} to deploy {}", &commit[..7]), || {
        (status_of(k, name)["deployed_commit"] == commit).then_some(())
    });
}

#[test]
fn an_ssh_deploy_key_deploys_follows_pushes_and_pins_the_host_key() {
    let name = unique_name("k13ssh");
    let denied = unique_name("k13deny");
    let remote = remote_with_sleeper(&name);
    let mut server = SshGit::start(remote.bare.parent().unwrap());
    let project = ComposeProject::named(&name);
    let k = Kedge::new();

    // A key others may read is refused, as ssh would.
    let open_key = k.cwd().join("open_key");
    std::fs::copy(&server.key, &open_key).unwrap();
    std::fs::set_permissions(&open_key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let url = server.url(&name);
    let refused = k.run(["repo", "add", &url, "--ssh-key", "open_key"]);
    refused
        .code(1)
        .stderr_has("mode 644")
        .stderr_has("chmod 600");

    let key = server.key.to_str().unwrap();
    k.run(["repo", "add", &url, "--ssh-key", key])
        .success()
        .stdout_has("auth ssh-key");
    // Another repository whose key the server does not know.
    let wrong_key = k.cwd().join("wrong_key");
    keygen(&wrong_key);
    k.run([
        "repo",
        "add",
        &server.url("elsewhere"),
        "--name",
        &denied,
        "--ssh-key",
        wrong_key.to_str().unwrap(),
    ])
    .success();
    let list = k.run(["repo", "list"]);
    list.success().stdout_has("AUTH");
    let row = list.stdout.lines().find(|l| l.starts_with(&name)).unwrap();
    assert!(row.trim_end().ends_with("ssh-key"), "{row}");

    // First contact records the host key in the data dir and logs its
    // fingerprint, in whichever process makes it: here `status`, before
    // serve starts, so that the line's place is known.
    let first_contact = k.run(["status", "--repo", &name]);
    first_contact.success();
    let old_fingerprint = server.host_key_fingerprint();
    assert!(
        first_contact
            .stderr
            .lines()
            .any(|l| l.contains("recorded the host key") && l.contains(&old_fingerprint)),
        "{}",
        first_contact.stderr
    );
    let _serve = k.serve("300ms");
    let first = remote.remote_head();
    wait_deployed(&k, &name, &first);
    assert_eq!(
        project.running()[0].label("io.kedge.commit"),
        Some(first.as_str())
    );
    // (Two repositories contacting the host at once may both record it:
    // the same key twice, which ssh accepts.)
    let known_hosts = k.data_dir().join("known_hosts");
    let lines = std::fs::read_to_string(&known_hosts)
        .unwrap()
        .lines()
        .count();
    assert!(lines >= 1);
    for line in 1..=lines {
        assert_eq!(
            ::kedge::source::auth::known_hosts_fingerprint(&known_hosts, line),
            Some(server.host_key_fingerprint())
        );
    }
    // Checks share one connection per key and server: its socket lives in
    // a directory only Kedge's user may enter.
    let sockets = k.data_dir().join("ssh");
    assert_eq!(
        std::fs::metadata(&sockets).unwrap().permissions().mode() & 0o777,
        0o700
    );
    assert!(std::fs::read_dir(&sockets).unwrap().count() >= 1);

    // The wrong key fails its repository, naming what ssh said; the other
    // repository went on regardless.
    let error = wait_error(
        &k,
        &denied,
        "permission denied (publickey) for git@127.0.0.1",
    );
    assert!(!error.contains("-----"), "{error}");
    assert_eq!(status_of(&k, &denied)["sync_state"], "failed");

    remote.write("compose.yaml", &sleepers(&[("web", IMAGE_2)]));
    let second = remote.commit("second");
    wait_deployed(&k, &name, &second);
    assert_eq!(
        project.running()[0].label("io.kedge.commit"),
        Some(second.as_str())
    );

    // The server comes back with another host key: nothing is fetched or
    // deployed from it, and the error names the host and both keys.
    server.restart_with_new_host_key();
    let new_fingerprint = server.host_key_fingerprint();
    assert_ne!(old_fingerprint, new_fingerprint);
    remote.write("README.md", "three\n");
    remote.commit("third");
    let error = wait_error(&k, &name, "has changed");
    let host = format!("[127.0.0.1]:{}", server.port);
    assert!(
        error.contains(&format!(
            "the host key of {host} has changed: known {old_fingerprint}, offered {new_fingerprint}"
        )),
        "{error}"
    );
    let status = status_of(&k, &name);
    assert_eq!(status["sync_state"], "failed", "{status}");
    assert_eq!(status["deployed_commit"], second.as_str());
    assert_eq!(
        project.running()[0].label("io.kedge.commit"),
        Some(second.as_str())
    );
}

#[test]
fn an_https_token_from_the_environment_or_a_file_clones_and_fetches() {
    let name = unique_name("k13tok");
    let remote = remote_with_sleeper(&name);
    let token = format!("tok-{}", unique_name("secret"));
    let server = HttpGit::start(remote.bare.parent().unwrap(), "bot", &token);
    let project = ComposeProject::named(&name);
    let var = format!("KEDGE_TEST_TOKEN_{}", std::process::id());
    let k = Kedge::new().env(&var, &token);

    k.run([
        "repo",
        "add",
        &server.url(&name),
        "--token-env",
        &var,
        "--username",
        "bot",
    ])
    .success();
    let first = remote.remote_head();
    k.run(["sync", "--repo", &name]).success();
    assert_eq!(
        project.running()[0].label("io.kedge.commit"),
        Some(first.as_str())
    );
    remote.write("README.md", "two\n");
    let second = remote.commit("second");
    k.run(["sync", "--repo", &name])
        .success()
        .stdout_has(&second[..7]);
    let list = k.run(["repo", "list", "-o", "json"]).json();
    let row = list
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name.as_str())
        .unwrap();
    assert_eq!(row["auth"], "token");

    // A wrong token in a file: the server's 401, said plainly.
    std::fs::write(k.cwd().join("wrong"), "not-the-token\n").unwrap();
    let wrong = unique_name("k13wrong");
    k.run([
        "repo",
        "add",
        &server.url(&name),
        "--branch",
        "other",
        "--name",
        &wrong,
        "--token-file",
        "wrong",
        "--username",
        "bot",
    ])
    .success();
    k.run(["sync", "--repo", &wrong])
        .code(1)
        .stderr_has("the server refused the credentials (HTTP 401 Unauthorized)");
    assert_eq!(status_of(&k, &wrong)["sync_state"], "failed");

    // No credentials at all, and a token variable that is not set.
    let anonymous = unique_name("k13anon");
    k.run([
        "repo",
        "add",
        &server.url(&name),
        "--branch",
        "x",
        "--name",
        &anonymous,
    ])
    .success();
    k.run(["sync", "--repo", &anonymous])
        .code(1)
        .stderr_has("the server asks for credentials (HTTP 401 Unauthorized)");
    let unset = unique_name("k13unset");
    k.run([
        "repo",
        "add",
        &server.url(&name),
        "--branch",
        "y",
        "--name",
        &unset,
        "--token-env",
        "KEDGE_TEST_UNSET_TOKEN",
    ])
    .success();
    k.run(["sync", "--repo", &unset])
        .code(1)
        .stderr_has("the environment variable KEDGE_TEST_UNSET_TOKEN is not set");
}

#[test]
fn a_private_registry_image_is_pulled_with_the_configured_credentials() {
    require_docker();
    let password = format!("pw-{}", unique_name("reg"));
    let registry = Registry::start("ci", &password);
    let name = unique_name("k13reg");
    let image = registry.push(IMAGE_1, &format!("{name}/app:1"));
    let _untag = Untag(image.clone());
    let remote = GitRemote::new(&name);
    remote.write("compose.yaml", &sleepers(&[("app", &image)]));
    remote.write("kedge.yaml", QUICK_GATE);
    let commit = remote.commit("private image");
    let project = ComposeProject::named(&name);

    // Without credentials: the pull fails naming the image and the answer.
    let k = Kedge::new();
    k.run(["repo", "add", &remote.url()]).success();
    let failed = k.run(["sync", "--repo", &name]);
    failed.code(1).stderr_has(&image);
    assert!(
        failed.stderr.contains("no basic auth credentials")
            || failed.stderr.contains("unauthorized"),
        "{}",
        failed.stderr
    );
    assert!(project.running().is_empty());

    // With them, in the global config; the password from the environment.
    let config = k.cwd().join("kedge.yaml");
    std::fs::write(
        &config,
        format!(
            "registries:\n  - host: {}\n    username: ci\n    password_env: KEDGE_TEST_REGISTRY_PASSWORD\n",
            registry.host()
        ),
    )
    .unwrap();
    let k = k
        .env("KEDGE_CONFIG", config.to_str().unwrap())
        .env("KEDGE_TEST_REGISTRY_PASSWORD", &password);
    k.run(["sync", "--repo", &name])
        .success()
        .stdout_has(&commit[..7]);
    let running = project.running();
    assert_eq!(running.len(), 1, "{running:?}");
    assert_eq!(running[0].label("io.kedge.commit"), Some(commit.as_str()));

    // Compose's credentials live in a directory only Kedge's user reads.
    let dir = k.data_dir().join("docker");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join("config.json")), 0o600);
}

/// Removes a local image tag when the test ends.
struct Untag(String);

impl Drop for Untag {
    fn drop(&mut self) {
        let _ = std::process::Command::new("docker")
            .args(["rmi", "--force", &self.0])
            .output();
    }
}
