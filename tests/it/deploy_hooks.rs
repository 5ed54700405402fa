//! Deploy hooks (`deploy.before`/`deploy.after`, fleet.md §5) against the
//! real engine: a migration that writes a row into a volume runs before
//! the new web starts (the web copies what it finds at start); a failing
//! `before` leaves the running containers untouched; a failing `after`
//! rolls back. The hooks' output is kept in the deployment record.

use crate::support::docker::{IMAGE_1, docker_ok};
use crate::support::stack::Stack;

/// `web` copies the rows it finds at start into `seen-ROUND`; `migrate`
/// appends a row (or fails, `fail`), `smoke` exits `smoke`.
fn compose(round: u32, fail: bool, smoke: u32) -> String {
    let migrate = match fail {
        true => "echo boom: relation exists; exit 3".to_string(),
        false => format!("echo migrated-{round} >> /data/rows; echo applied {round}"),
    };
    format!(
        r#"services:
  web:
    image: {IMAGE_1}
    command: ["sh", "-c", "cat /data/rows > /data/seen-{round}; exec sleep 3600"]
    volumes: [data:/data]
    stop_signal: SIGKILL
  migrate:
    image: {IMAGE_1}
    profiles: [kedge-hooks]
    command: ["sh", "-c", "{migrate}"]
    volumes: [data:/data]
  smoke:
    image: {IMAGE_1}
    profiles: [kedge-hooks]
    command: ["sh", "-c", "echo smoke {round}; exit {smoke}"]
volumes:
  data: {{}}
"#
    )
}

const KEDGE: &str = "deploy:\n  stable_for: 0s\n  before: [migrate]\n  after: [smoke]\n";

fn web_reads(s: &Stack, file: &str) -> String {
    let web = s.running()["web"].id.clone();
    docker_ok(&["exec", &web, "cat", &format!("/data/{file}")])
}

#[test]
fn hooks_run_around_up_and_a_failing_one_changes_nothing_or_rolls_back() {
    let s = Stack::new(
        "hooks",
        &[
            ("compose.yaml", &compose(1, false, 0)),
            ("kedge.yaml", KEDGE),
        ],
    );
    s.kedge.run(["sync", "--repo", &s.name]).success();
    // The first web found the first migration's row: it ran before.
    assert_eq!(web_reads(&s, "seen-1"), "migrated-1");
    let h = s.history();
    let hooks = h[0]["hooks"].as_array().unwrap();
    assert_eq!(hooks.len(), 2, "{h}");
    assert_eq!(
        (&hooks[0]["phase"], &hooks[0]["service"], &hooks[0]["ok"]),
        (&"before".into(), &"migrate".into(), &true.into()),
        "{h}"
    );
    assert_eq!(hooks[0]["output"], "applied 1", "{h}");
    assert_eq!(
        (
            &hooks[1]["phase"],
            &hooks[1]["service"],
            &hooks[1]["output"]
        ),
        (&"after".into(), &"smoke".into(), &"smoke 1".into()),
        "{h}"
    );
    // One-offs are removed; the hooks' services do not run.
    assert_eq!(
        s.running().keys().cloned().collect::<Vec<_>>(),
        ["web"],
        "only web runs"
    );

    // A second version: its migration runs before its web starts.
    s.remote.write("compose.yaml", &compose(2, false, 0));
    let second = s.remote.commit("two");
    s.kedge.run(["sync", "--repo", &s.name]).success();
    assert_eq!(web_reads(&s, "seen-2"), "migrated-1\nmigrated-2");
    let web = s.running()["web"].id.clone();

    // A failing migration: the deployment fails, nothing of the stack
    // changed.
    s.remote.write("compose.yaml", &compose(3, true, 0));
    s.remote.commit("three, whose migration fails");
    s.kedge
        .run(["sync", "--repo", &s.name])
        .code(1)
        .stderr_has("deploy.before hook migrate failed (exit status: 3): boom: relation exists");
    assert_eq!(s.running()["web"].id, web, "the web container untouched");
    assert_eq!(
        s.running()["web"].label("io.kedge.commit"),
        Some(second.as_str())
    );
    let h = s.history();
    assert_eq!(
        (&h[0]["status"], &h[0]["failed_step"]),
        (&"failed".into(), &"before_hook".into()),
        "{h}"
    );
    assert_eq!(h[0]["hooks"][0]["output"], "boom: relation exists", "{h}");
    assert_eq!(s.status()["deployed_commit"], second.as_str());
    let failed = s.events_of("deploy_failed");
    assert_eq!(
        failed.last().unwrap()["fields"]["hooks"][0]["status"],
        "exit status: 3",
        "{failed:?}"
    );

    // A failing smoke test after the gate: rolled back to the second.
    s.remote.write("compose.yaml", &compose(4, false, 1));
    s.remote.commit("four, whose smoke test fails");
    s.kedge
        .run(["sync", "--repo", &s.name])
        .code(1)
        .stderr_has("deploy.after hook smoke failed (exit status: 1): smoke 4");
    let h = s.history();
    assert_eq!(
        (&h[0]["trigger"], &h[0]["status"], &h[0]["commit"]),
        (
            &"auto_rollback".into(),
            &"rolled_back".into(),
            &second.as_str().into()
        ),
        "{h}"
    );
    assert_eq!(h[1]["failed_step"], "after_hook", "{h}");
    assert_eq!(
        s.running()["web"].label("io.kedge.commit"),
        Some(second.as_str())
    );
}

#[test]
fn a_hook_over_deploy_timeout_fails_the_deployment_and_leaves_no_container() {
    let compose = format!(
        "services:\n  web:\n    image: {IMAGE_1}\n    command: [sleep, '3600']\n    stop_signal: SIGKILL\n  migrate:\n    image: {IMAGE_1}\n    profiles: [kedge-hooks]\n    command: [sleep, '600']\n    stop_signal: SIGKILL\n"
    );
    let s = Stack::new(
        "hooktime",
        &[
            ("compose.yaml", &compose),
            (
                "kedge.yaml",
                "deploy:\n  stable_for: 0s\n  timeout: 3s\n  before: [migrate]\n",
            ),
        ],
    );
    s.kedge
        .run(["sync", "--repo", &s.name])
        .code(1)
        .stderr_has("deploy.before hook migrate failed (timed out after 3s (deploy.timeout))");
    let h = s.history();
    assert_eq!(h[0]["failed_step"], "before_hook", "{h}");
    assert!(
        s.project.containers().is_empty(),
        "nothing of the stack, the hook's one-off included: {:?}",
        s.project.containers()
    );
}
