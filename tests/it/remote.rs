//! Remotes over the network: a real smart-HTTP git server with basic auth.

use crate::support::docker::IMAGE_1;
use crate::support::http_git::HttpGit;
use crate::support::*;

/// A remote holding one sleeper service, and an HTTP server for it.
fn served(prefix: &str) -> (String, GitRemote, HttpGit) {
    let name = unique_name(prefix);
    let remote = GitRemote::new(&name);
    remote.write("compose.yaml", &sleepers(&[("web", IMAGE_1)]));
    remote.commit("first");
    let password = format!("pw-{}", unique_name("secret"));
    let root = remote.bare.parent().unwrap();
    let server = HttpGit::start(root, "bot", &password);
    (name, remote, server)
}

/// Regression: `ls-remote` carried the URL's credentials but `clone` did
/// not, so a private repository over http(s) could never be cloned.
#[test]
fn credentials_in_an_http_url_never_work() {
    let (name, remote, server) = served("cred");
    let project = ComposeProject::named(&name);
    let k = Kedge::new();
    k.run(["repo", "add", &server.url_with_credentials(&name)])
        .success();

    let first = remote.remote_head();
    k.run(["sync", "--repo", &name]).success();
    let running = project.running();
    assert_eq!(running.len(), 1, "{running:?}");
    assert_eq!(running[0].label("io.kedge.commit"), Some(first.as_str()));

    // A new commit comes in through fetch, with the same credentials.
    remote.write("README.md", "two\n");
    let second = remote.commit("second");
    k.run(["sync", "--repo", &name])
        .success()
        .stdout_has(&second[..7]);
    let status = k.run(["status", "--repo", &name, "-o", "json"]).json();
    assert_eq!(status[0]["deployed_commit"], second.as_str());

    // The secret went nowhere git's arguments or the clone's config show.
    let config =
        std::fs::read_to_string(k.data_dir().join("repos").join(&name).join(".git/config"))
            .unwrap();
    assert!(!config.contains(&server.password), "{config}");
}

/// Regression: a failed clone or fetch was retried forever while `status`
/// said `Last error: -`.
#[test]
fn clone_errors_reach_status() {
    let (name, remote, server) = served("clonerr");
    // The branch head's tree object is lost: ls-remote reads only the refs
    // and succeeds, the clone cannot send the objects and fails.
    let tree = crate::support::git::git(&remote.bare, &["rev-parse", "HEAD^{tree}"]);
    std::fs::remove_file(
        remote
            .bare
            .join("objects")
            .join(&tree[..2])
            .join(&tree[2..]),
    )
    .unwrap();
    let _project = ComposeProject::named(&name);
    let k = Kedge::new();
    k.run(["repo", "add", &server.url_with_credentials(&name)])
        .success();
    let _serve = k.serve("300ms");
    let error = wait_for(30, "the clone error in status", || {
        let status = k.run(["status", "--repo", &name, "-o", "json"]).json();
        status[0]["last_error"].as_str().map(String::from)
    });
    assert!(error.contains("cannot clone"), "{error}");
    assert!(!error.contains(&server.password), "{error}");
    k.run(["status", "--repo", &name])
        .success()
        .stdout_has("Last error:  cannot clone");
}
