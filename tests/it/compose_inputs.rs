//! What compose keeps beside a service's own section: inline configs (an
//! edit recreates exactly the services using them) and profiles (a
//! service of an inactive one is the operator's, not an extra container).

use crate::support::docker::{IMAGE_1, docker_ok};
use crate::support::stack::Stack;

/// `web` reads the inline config `banner`; `api` uses nothing; `tools`
/// is in the `debug` profile.
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
  tools:
    image: {IMAGE_1}
    command: [sleep, '3600']
    stop_signal: SIGKILL
    profiles: [debug]
configs:
  banner:
    content: |
      {banner}
"
    )
}

/// Regression: an edit of an inline `configs: content:` was never applied
/// and `kedge diff` said in sync: compose leaves the content out of its
/// config hash, and so did Kedge's fingerprint.
#[test]
fn inline_config_edits_are_applied_to_exactly_the_services_using_them() {
    let s = Stack::new("inline", &[("compose.yaml", &stack_file("v1"))]);
    s.kedge.run(["sync", "--repo", &s.name]).success();
    let first = s.running();
    assert_eq!(
        first.keys().collect::<Vec<_>>(),
        ["api", "web"],
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
}
