//! What compose keeps beside a service's own section: inline configs (an
//! edit recreates exactly the services using them) and profiles (a
//! service of an inactive one is the operator's, not an extra container).

use crate::support::docker::{IMAGE_1, docker_ok};
use crate::support::stack::Stack;
use crate::support::wait_for;

/// `web` reads the inline config `banner`; `worker` the secret `token`,
/// from the variable `KT_TOKEN` (set in the repository's `.env`); `api`
/// uses nothing; `tools` is in the `debug` profile.
fn stack_file(banner: &str) -> String {
    format!(
        "services:
  web:
    image: {IMAGE_1}
    command: [sleep, '3600']
    stop_signal: SIGKILL
    configs:
      - source: banner
        target: /etc/banner
  api:
    image: {IMAGE_1}
    command: [sleep, '3600']
    stop_signal: SIGKILL
  worker:
    image: {IMAGE_1}
    command: [sleep, '3600']
    stop_signal: SIGKILL
    secrets: [token]
  tools:
    image: {IMAGE_1}
    command: [sleep, '3600']
    stop_signal: SIGKILL
    profiles: [debug]
configs:
  banner:
    content: |
      {banner}
secrets:
  token:
    environment: KT_TOKEN
"
    )
}

/// Regression: an edit of an inline `configs: content:` was never applied
/// and `kedge diff` said in sync: compose leaves the content out of its
/// config hash, and so did Kedge's fingerprint.
#[test]
fn inline_config_edits_are_applied_to_exactly_the_services_using_them() {
    let s = Stack::new(
        "inline",
        &[
            ("compose.yaml", &stack_file("v1")),
            (".env", "KT_TOKEN=first-s3cret\n"),
        ],
    );
    s.kedge.run(["sync", "--repo", &s.name]).success();
    let first = s.running();
    assert_eq!(
        first.keys().collect::<Vec<_>>(),
        ["api", "web", "worker"],
        "the profiled service stays down"
    );
    let seen = docker_ok(&["exec", &first["web"].id, "cat", "/etc/banner"]);
    assert_eq!(seen, "v1");

    s.remote.write("compose.yaml", &stack_file("v2"));
    let c2 = s.remote.commit("banner v2");
    let diff = s
        .kedge
        .run(["diff", "--repo", &s.name, "-o", "json"])
        .json();
    assert_eq!(diff["in_sync"], false, "{diff}");
    assert_eq!(diff["pending"]["commit"], c2.as_str(), "{diff}");
    let changed: Vec<&str> = diff["pending"]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["service"].as_str().unwrap())
        .collect();
    assert_eq!(changed, ["web"], "{diff}");

    s.kedge.run(["sync", "--repo", &s.name]).success();
    let second = s.running();
    assert_ne!(second["web"].id, first["web"].id, "web is recreated");
    assert_eq!(second["api"].id, first["api"].id, "api is left alone");
    assert_eq!(second["web"].label("io.kedge.commit"), Some(c2.as_str()));
    let seen = docker_ok(&["exec", &second["web"].id, "cat", "/etc/banner"]);
    assert_eq!(seen, "v2");
    assert_eq!(
        s.history()[0]["services_changed"],
        serde_json::json!(["web"])
    );
    s.kedge
        .run(["diff", "--repo", &s.name, "--exit-code"])
        .success()
        .stdout_has("In sync");

    // A secret read from a variable: a new value recreates its user alone,
    // and the value is nowhere in the store.
    s.remote.write(".env", "KT_TOKEN=second-s3cret\n");
    let c3 = s.remote.commit("rotate the token");
    let diff = s
        .kedge
        .run(["diff", "--repo", &s.name, "-o", "json"])
        .json();
    assert_eq!(diff["pending"]["changes"][0]["service"], "worker", "{diff}");
    assert_eq!(
        diff["pending"]["changes"].as_array().unwrap().len(),
        1,
        "{diff}"
    );
    s.kedge.run(["sync", "--repo", &s.name]).success();
    let third = s.running();
    assert_ne!(
        third["worker"].id, second["worker"].id,
        "worker is recreated"
    );
    assert_eq!(third["web"].id, second["web"].id);
    assert_eq!(third["api"].id, second["api"].id);
    assert_eq!(third["worker"].label("io.kedge.commit"), Some(c3.as_str()));
    let seen = docker_ok(&["exec", &third["worker"].id, "cat", "/run/secrets/token"]);
    assert_eq!(seen, "second-s3cret");
    for file in ["kedge.db", "kedge.db-wal"] {
        let bytes = std::fs::read(s.kedge.data_dir().join(file)).unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            !text.contains("first-s3cret") && !text.contains("second-s3cret"),
            "a secret's value is in {file}"
        );
    }
}

/// Regression: a container of a service the compose file defines under a
/// profile that is not enabled, started by hand, was removed within a
/// second as "belongs to no service", and so was one labelled
/// `io.kedge.ignore: "true"`. `docker.profiles` now enables profiles.
#[test]
fn services_of_inactive_profiles_and_ignored_containers_are_not_extra() {
    let s = Stack::new(
        "profiles",
        &[
            ("compose.yaml", &stack_file("v1")),
            (".env", "KT_TOKEN=t\n"),
        ],
    );
    let serve = s.kedge.serve_debug(&[
        "serve",
        "--poll-interval",
        "300ms",
        "--check-interval",
        "1s",
    ]);
    wait_for(60, "web, api and worker deployed", || {
        (s.running().len() == 3).then_some(())
    });
    s.wait_deployed();

    // The operator starts the profiled service in the same project, with
    // the file of the repository, and a scratch container labelled ignore.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("compose.yaml"), stack_file("v1")).unwrap();
    std::fs::write(dir.path().join(".env"), "KT_TOKEN=t\n").unwrap();
    let by_hand = std::process::Command::new("docker")
        .args(["compose", "-p", &s.name, "--project-directory"])
        .arg(dir.path())
        .args(["--profile", "debug", "up", "-d", "--no-deps", "tools"])
        .output()
        .unwrap();
    assert!(by_hand.status.success(), "{by_hand:?}");
    // A scratch service of the operator's own file in the same project,
    // labelled as Kedge's to ignore: compose labels it as its own, so
    // `up --remove-orphans` would take it for an orphan.
    std::fs::write(
        dir.path().join("scratch.yaml"),
        format!(
            "services:\n  scratch:\n    image: {IMAGE_1}\n    command: [sleep, '3600']\n    stop_signal: SIGKILL\n    labels:\n      io.kedge.ignore: \"true\"\n"
        ),
    )
    .unwrap();
    let by_hand = std::process::Command::new("docker")
        .args(["compose", "-p", &s.name, "--project-directory"])
        .arg(dir.path())
        .args(["-f", "scratch.yaml", "up", "-d"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(by_hand.status.success(), "{by_hand:?}");
    let hand_made = s.running();
    let scratch = hand_made["scratch"].id.clone();
    assert_eq!(
        hand_made.keys().collect::<Vec<_>>(),
        ["api", "scratch", "tools", "web", "worker"]
    );

    // Full drift checks come and go; both stay, and no drift is reported.
    serve.wait_passes(&s.name, serve.mark(), 3, 30);
    let after = s.running();
    assert_eq!(
        after["tools"].id, hand_made["tools"].id,
        "tools was removed"
    );
    assert_eq!(
        after["scratch"].id, scratch,
        "the ignored container was removed"
    );
    let diff = s
        .kedge
        .run(["diff", "--repo", &s.name, "-o", "json"])
        .json();
    assert_eq!(diff["drifts"], serde_json::json!([]), "{diff}");
    assert_eq!(diff["in_sync"], true, "{diff}");

    // A deployment (with prune) leaves them too.
    s.remote.write("compose.yaml", &stack_file("v2"));
    let c2 = s.remote.commit("banner v2");
    wait_for(60, "web on banner v2", || {
        (s.running().get("web")?.label("io.kedge.commit") == Some(c2.as_str())).then_some(())
    });
    s.wait_deployed();
    let deployed = s.running();
    assert_eq!(deployed["tools"].id, hand_made["tools"].id);
    assert_eq!(deployed["scratch"].id, scratch);

    // Enabling the profile makes tools Kedge's: deployed with its labels.
    s.remote.write(
        "kedge.yaml",
        "docker:\n  profiles: [debug]\ndeploy:\n  stable_for: 0s\n",
    );
    let c3 = s.remote.commit("enable the debug profile");
    let managed = wait_for(60, "tools deployed by Kedge", || {
        let m = s.running();
        (m.get("tools")?.label("io.kedge.commit") == Some(c3.as_str())).then_some(m)
    });
    s.wait_deployed();
    assert_eq!(managed["tools"].label("io.kedge.managed"), Some("true"));
    assert_eq!(managed["web"].id, deployed["web"].id, "web is left alone");
    assert_eq!(managed["api"].id, deployed["api"].id, "api is left alone");
    assert_eq!(managed["scratch"].id, scratch);
    let status = s.status();
    assert_eq!(status["sync_state"], "synced", "{status}");
}

/// Rendering every profile to find the dormant services must not fail a
/// commit that compose renders fine with the enabled ones: a profiled
/// service may name an env file that only exists where it is used.
#[test]
fn a_dormant_service_that_does_not_render_fails_nothing() {
    let compose = format!(
        "{}  local:\n    image: {IMAGE_1}\n    profiles: [local]\n    env_file: ./local.env\n",
        crate::support::stack::sleepers(&[("web", IMAGE_1)])
    );
    let s = Stack::new("dormant-env", &[("compose.yaml", &compose)]);
    s.kedge.run(["sync", "--repo", &s.name]).success();
    assert_eq!(s.running().keys().collect::<Vec<_>>(), ["web"]);
    assert_eq!(s.history()[0]["status"], "success");
}
