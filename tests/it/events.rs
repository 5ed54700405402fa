//! `kedge events`: the event log, listed and followed, fed by `serve` and
//! by commands run in other shells.

use std::io::BufRead;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::support::docker::{IMAGE_1, IMAGE_2, docker_ok};
use crate::support::*;

/// `kedge events --follow -o json`, its lines read as they come, each
/// with the moment it arrived.
struct Follower {
    _child: ChildGuard,
    lines: mpsc::Receiver<(Instant, serde_json::Value)>,
    seen: Vec<serde_json::Value>,
}

impl Follower {
    fn start(k: &Kedge, repo: &str) -> Follower {
        let mut child = k
            .command(["events", "--follow", "-o", "json", "--repo", repo])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("not one JSON object per line: {e}: {line}"));
                if tx.send((Instant::now(), value)).is_err() {
                    break;
                }
            }
        });
        Follower {
            _child: ChildGuard(child),
            lines,
            seen: Vec::new(),
        }
    }

    /// Reads until an event of `kind` (for `commit`, if given) arrives;
    /// returns it with when it arrived.
    #[track_caller]
    fn until(
        &mut self,
        secs: u64,
        kind: &str,
        commit: Option<&str>,
    ) -> (Instant, serde_json::Value) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok((at, e)) = self.lines.recv_timeout(left) else {
                panic!("no {kind} within {secs}s; seen: {:#?}", self.seen);
            };
            self.seen.push(e.clone());
            if e["kind"] == kind && commit.is_none_or(|c| e["commit"] == c) {
                return (at, e);
            }
        }
    }

    /// The kinds seen so far, in order.
    fn kinds(&self) -> Vec<String> {
        self.seen
            .iter()
            .map(|e| e["kind"].as_str().unwrap().to_string())
            .collect()
    }
}

fn position(kinds: &[String], kind: &str) -> usize {
    kinds
        .iter()
        .position(|k| k == kind)
        .unwrap_or_else(|| panic!("no {kind} in {kinds:?}"))
}

#[test]
fn events_follow_sees_a_push_a_stop_and_a_rollback_in_order() {
    let s = Stack::new(
        "evfollow",
        &[(
            "compose.yaml",
            &sleepers(&[("web", IMAGE_1), ("api", IMAGE_1)]),
        )],
    );
    let c1 = s.remote.remote_head();
    let mut follow = Follower::start(&s.kedge, &s.name);
    let _serve = s.kedge.serve_with(&[
        "serve",
        "--poll-interval",
        "300ms",
        "--check-interval",
        "1m",
    ]);
    follow.until(60, "deploy_succeeded", Some(&c1));

    // A push: detected, started, succeeded, in that order.
    s.remote.write(
        "compose.yaml",
        &sleepers(&[("web", IMAGE_2), ("api", IMAGE_1)]),
    );
    let c2 = s.remote.commit("web on image 2");
    let (_, detected) = follow.until(30, "commit_detected", Some(&c2));
    assert_eq!(detected["severity"], "info", "{detected}");
    let (_, started) = follow.until(30, "deploy_started", Some(&c2));
    assert_eq!(started["fields"]["trigger"], "new_commit", "{started}");
    let (_, done) = follow.until(60, "deploy_succeeded", Some(&c2));
    for field in [
        "id", "time", "repo", "kind", "severity", "service", "commit", "message", "fields",
    ] {
        assert!(done.get(field).is_some(), "{field} missing in {done}");
    }
    assert_eq!(done["repo"], s.name.as_str());

    // A container stopped by hand: drift found and healed (how fast is
    // the `heal` row of benches/compare.rs).
    docker_ok(&["stop", "-t", "0", &format!("{}-web-1", s.name)]);
    let (_, drift) = follow.until(30, "drift_detected", None);
    assert_eq!(drift["service"], "web", "{drift}");
    assert_eq!(drift["severity"], "warning", "{drift}");
    assert_eq!(drift["fields"]["drift"], "stopped", "{drift}");
    let (_, healed) = follow.until(30, "drift_healed", None);
    assert_eq!(healed["service"], "web", "{healed}");

    // A rollback from another shell, while serve runs.
    // What another process stored reaches the follower (the spec's
    // "within 1 s" is the `follow` row of benches/compare.rs).
    s.kedge
        .run(["rollback", "--repo", &s.name, &c1[..7]])
        .success();
    let (_, rolled) = follow.until(30, "rolled_back", Some(&c1));
    assert_eq!(rolled["severity"], "warning", "{rolled}");

    let kinds = follow.kinds();
    assert!(position(&kinds, "commit_detected") < position(&kinds, "deploy_started"));
    let ids: Vec<i64> = follow
        .seen
        .iter()
        .map(|e| e["id"].as_i64().unwrap())
        .collect();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "ids out of order: {ids:?}"
    );
}

#[test]
fn events_lists_text_columns_and_refuses_bad_arguments() {
    let s = Stack::new(
        "evlist",
        &[("compose.yaml", &sleepers(&[("web", IMAGE_1)]))],
    );
    let _serve = s.kedge.serve("300ms");
    wait_for(60, "the first deployment", || {
        (s.project.running().len() == 1).then_some(())
    });
    // A commit compose refuses: deploy_failed, an error, with compose's reason.
    s.remote
        .write("compose.yaml", "services:\n  web: [unclosed\n");
    let bad = s.remote.commit("broken compose file");
    let failed = wait_for(30, "deploy_failed", || {
        let events = s
            .kedge
            .run(["events", "--repo", &s.name, "-o", "json"])
            .json();
        events
            .as_array()?
            .iter()
            .find(|e| e["kind"] == "deploy_failed" && e["commit"] == bad.as_str())
            .cloned()
    });
    assert_eq!(failed["severity"], "error", "{failed}");
    assert!(
        failed["message"]
            .as_str()
            .unwrap()
            .contains("invalid compose project"),
        "{failed}"
    );

    let text = s.kedge.run(["events", "--repo", &s.name, "--since", "10m"]);
    text.success();
    let lines: Vec<&str> = text.stdout.lines().collect();
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(header, ["TIME", "REPO", "KIND", "SERVICE", "MESSAGE"]);
    assert!(
        lines
            .iter()
            .any(|l| l.contains(&s.name) && l.contains("repo_added")),
        "{}",
        text.stdout
    );
    assert!(
        lines.iter().any(|l| l.contains("deploy_failed")),
        "{}",
        text.stdout
    );
    // --limit keeps the newest, oldest first.
    let last = s
        .kedge
        .run(["events", "--repo", &s.name, "--limit", "1", "-o", "json"])
        .json();
    assert_eq!(last.as_array().unwrap().len(), 1);
    assert_eq!(last[0]["kind"], "deploy_failed", "{last}");

    s.kedge
        .run(["events", "--repo", "no-such-repo"])
        .code(1)
        .stderr_has("no repository named 'no-such-repo'");
    s.kedge
        .run(["events", "--since", "nonsense"])
        .code(2)
        .stderr_has("nonsense");

    // A removed repository's events stay readable (regression: refused
    // as an unknown repository though the log keeps them).
    s.kedge.run(["repo", "remove", &s.name]).success();
    let kept = s
        .kedge
        .run(["events", "--repo", &s.name, "-o", "json"])
        .json();
    assert!(
        kept.as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "repo_removed"),
        "{kept}"
    );
}

/// Regression: terminal escapes in a commit message reached the terminal
/// through `history`, `events` and `status` (`ESC]0;…` retitles it,
/// `ESC[2J` clears it). Text output shows them escaped; JSON keeps the
/// message as it is (JSON escapes it).
#[test]
fn terminal_escapes_in_a_commit_message_reach_the_terminal() {
    let s = Stack::new(
        "escapes",
        &[("compose.yaml", &sleepers(&[("web", IMAGE_1)]))],
    );
    let _serve = s.kedge.serve("300ms");
    s.wait_deployed();
    // A change of the stack's own: a commit that changes none of its
    // inputs is not deployed, and would reach no history.
    s.remote
        .write("compose.yaml", &sleepers(&[("web", IMAGE_2)]));
    let message = "\x1b]0;owned\x07retitled \x1b[2Jcleared \u{9b}31m";
    let commit = s.remote.commit(message);
    wait_for(60, "the commit deployed", || {
        let h = s.history();
        (h[0]["commit"] == commit.as_str() && h[0]["status"] == "success").then_some(())
    });
    let shown = "\\x1b]0;owned\\x07retitled \\x1b[2Jcleared \\u{9b}31m";
    for args in [
        ["history", "--repo", &s.name],
        ["events", "--repo", &s.name],
        ["status", "--repo", &s.name],
    ] {
        let out = s.kedge.run(args);
        out.success();
        assert!(
            !out.stdout.contains(['\x1b', '\x07', '\u{9b}']),
            "{args:?} printed a control character: {:?}",
            out.stdout
        );
        assert!(out.stdout.contains(shown), "{args:?}: {}", out.stdout);
    }
    let json = s
        .kedge
        .run(["history", "--repo", &s.name, "-o", "json"])
        .json();
    assert_eq!(json[0]["message"], message);
}
