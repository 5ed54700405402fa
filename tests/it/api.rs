//! `serve`'s HTTP API end to end: tokens and roles, the same JSON as the
//! CLI, repositories added, synced, rolled back and removed over HTTP, the
//! event stream, readiness.

use std::time::{Duration, Instant};

use crate::support::docker::{IMAGE_1, IMAGE_2, docker_ok};
use crate::support::http::{EventStream, listening_port, request};
use crate::support::*;

/// `serve` with its listener on a free loopback port.
fn serve_http(k: &Kedge, extra: &[&str]) -> (kedge::Serve, u16) {
    let mut args = vec!["serve", "--listen", "127.0.0.1:0"];
    if !extra.contains(&"--poll-interval") {
        args.extend(["--poll-interval", "300ms"]);
    }
    args.extend_from_slice(extra);
    let serve = k.serve_with(&args);
    let port = wait_for(30, "the listener", || listening_port(&serve.log()));
    (serve, port)
}

fn token(k: &Kedge, name: &str, role: &str) -> String {
    let out = k.run(["token", "create", name, "--role", role]);
    out.success();
    let token = out.stdout.trim().to_string();
    assert_eq!(
        out.stdout.lines().count(),
        1,
        "the token alone on stdout: {out:?}"
    );
    assert!(token.starts_with("kedge_"), "{token}");
    token
}

#[test]
fn api_reads_like_the_cli_and_writes_with_a_write_token() {
    let s = Stack::new("api", &[("compose.yaml", &sleepers(&[("web", IMAGE_1)]))]);
    let k = &s.kedge;
    let read = token(k, "reader", "read");
    let write = token(k, "writer", "write");
    // The repository added over HTTP below is private: the request names a
    // credential of the global config (the API names no file of the host).
    let other = GitRemote::new("api-added");
    other.write("compose.yaml", &sleepers(&[("web", IMAGE_1)]));
    other.write("kedge.yaml", QUICK_GATE);
    other.commit("first");
    let password = format!("pw-{}", unique_name("apiadd"));
    let other_server =
        crate::support::http_git::HttpGit::start(other.bare.parent().unwrap(), "bot", &password);
    let token_file = k.cwd().join("git.token");
    std::fs::write(&token_file, &password).unwrap();
    std::fs::create_dir_all(k.cwd().join(".config/kedge")).unwrap();
    std::fs::write(
        k.cwd().join(".config/kedge/config.yaml"),
        format!(
            "credentials:\n  - name: git\n    token_file: {}\n    username: bot\n",
            token_file.display()
        ),
    )
    .unwrap();
    let (serve, port) = serve_http(k, &[]);
    // Finished, not only running: the API and the CLI are compared below,
    // one after the other (regression: the API saw it in progress, the
    // CLI a moment later done).
    wait_for(60, "the first deployment", || {
        (s.history()[0]["status"] == "success").then_some(())
    });

    // Tokens: none, unknown, read on a write route.
    assert_eq!(
        request("GET", port, "/api/v1/repos", None, None).status,
        401
    );
    assert_eq!(
        request("GET", port, "/api/v1/repos", Some("kedge_nope"), None).status,
        401
    );
    let forbidden = request(
        "POST",
        port,
        &format!("/api/v1/repos/{}/sync", s.name),
        Some(&read),
        None,
    );
    assert_eq!(forbidden.status, 403, "{forbidden:?}");
    assert!(forbidden.json()["error"].as_str().unwrap().contains("read"));
    let forbidden = request(
        "POST",
        port,
        &format!("/api/v1/repos/{}/rollback", s.name),
        Some(&read),
        Some(r#"{"commit":"abcd"}"#),
    );
    assert_eq!(forbidden.status, 403);

    // GET routes answer what the CLI's -o json prints.
    let api = request("GET", port, "/api/v1/repos", Some(&read), None).json();
    assert_eq!(api, k.run(["repo", "list", "-o", "json"]).json());
    let api = request(
        "GET",
        port,
        &format!("/api/v1/repos/{}/history", s.name),
        Some(&read),
        None,
    )
    .json();
    assert_eq!(
        api,
        k.run(["history", "--repo", &s.name, "-o", "json"]).json()
    );
    let api = request(
        "GET",
        port,
        &format!("/api/v1/repos/{}", s.name),
        Some(&read),
        None,
    )
    .json();
    let cli = k.run(["status", "--repo", &s.name, "-o", "json"]).json();
    for field in [
        "name",
        "sync_state",
        "deployed_commit",
        "remote_head",
        "services",
    ] {
        assert_eq!(api[field], cli[0][field], "{field}");
    }
    let api = request(
        "GET",
        port,
        &format!("/api/v1/repos/{}/diff", s.name),
        Some(&read),
        None,
    )
    .json();
    assert_eq!(api["in_sync"], true, "{api}");
    let missing = request("GET", port, "/api/v1/repos/nope/history", Some(&read), None);
    assert_eq!(missing.status, 404);
    assert!(missing.json()["error"].as_str().unwrap().contains("nope"));

    // A repository registered over HTTP is deployed by serve.
    let name = unique_name("apiadd");
    let added_project = ComposeProject::named(&name);
    let body = serde_json::json!({
        "url": other_server.url("api-added"),
        "name": name,
        "credential": "git",
    })
    .to_string();
    let added = request("POST", port, "/api/v1/repos", Some(&write), Some(&body));
    assert_eq!(added.status, 201, "{added:?}");
    assert_eq!(added.json()["name"], name.as_str());
    let dup = request("POST", port, "/api/v1/repos", Some(&write), Some(&body));
    assert_eq!(dup.status, 409, "{dup:?}");
    wait_for(60, "the repository added over HTTP deployed", || {
        (added_project.running().len() == 1).then_some(())
    });

    // sync?wait=true answers with the finished deployment.
    let c1 = s.remote.remote_head();
    s.remote
        .write("compose.yaml", &sleepers(&[("web", IMAGE_2)]));
    let c2 = s.remote.commit("two");
    let synced = request(
        "POST",
        port,
        &format!("/api/v1/repos/{}/sync?wait=true", s.name),
        Some(&write),
        None,
    );
    assert_eq!(synced.status, 200, "{synced:?}");
    let d = synced.json();
    assert_eq!(d["commit"], c2.as_str(), "{d}");
    assert_eq!(d["status"], "success", "{d}");
    assert_eq!(d["trigger"], "sync", "{d}");

    // rollback (202, then the pin shows) to the first commit.
    let body = serde_json::json!({ "commit": &c1[..8] }).to_string();
    let rolled = request(
        "POST",
        port,
        &format!("/api/v1/repos/{}/rollback", s.name),
        Some(&write),
        Some(&body),
    );
    assert_eq!(rolled.status, 202, "{rolled:?}");
    assert!(rolled.json()["deployment"].as_i64().is_some(), "{rolled:?}");
    wait_for(60, "the rollback pinned", || {
        let st = request(
            "GET",
            port,
            &format!("/api/v1/repos/{}", s.name),
            Some(&read),
            None,
        )
        .json();
        (st["pinned_commit"] == c1.as_str() && st["sync_state"] == "pinned").then_some(())
    });

    // DELETE ?down=true takes the stack down.
    let gone = request(
        "DELETE",
        port,
        &format!("/api/v1/repos/{name}?down=true"),
        Some(&write),
        None,
    );
    assert_eq!(gone.status, 204, "{gone:?}");
    assert!(added_project.containers().is_empty());

    // A revoked token is refused from then on.
    k.run(["token", "revoke", "reader"]).success();
    assert_eq!(
        request("GET", port, "/api/v1/repos", Some(&read), None).status,
        401
    );
    let list = k.run(["token", "list"]);
    list.success().stdout_has("writer");
    assert!(list.stdout.starts_with("NAME"), "{}", list.stdout);
    assert!(!list.stdout.contains("kedge_"), "no token is ever listed");
    drop(serve);
}

#[test]
fn the_event_stream_delivers_drift_and_resumes_from_last_event_id() {
    let s = Stack::new(
        "apistream",
        &[(
            "compose.yaml",
            &sleepers(&[("web", IMAGE_1), ("api", IMAGE_1)]),
        )],
    );
    let k = &s.kedge;
    let read = token(k, "watcher", "read");
    // Every pass looks for drift: with polls and full checks hourly, only
    // the engine's event stream can explain it within the waits below.
    let (_serve, port) = serve_http(k, &["--poll-interval", "1h", "--check-interval", "1h"]);
    wait_for(60, "the first deployment", || {
        (s.project.running().len() == 2).then_some(())
    });
    s.wait_deployed();
    let path = format!("/api/v1/events/stream?repo={}", s.name);
    let mut stream = EventStream::open(port, &path, &read, None);
    docker_ok(&["stop", "-t", "0", &format!("{}-web-1", s.name)]);
    let drift = loop {
        let m = stream.next(Duration::from_secs(30)).expect("a drift event");
        if m.data["kind"] == "drift_detected" {
            break m;
        }
    };
    assert_eq!(drift.data["service"], "web");
    // Sent as emitted, before the log gave it an id: the id follows alone.
    assert_eq!(drift.id, None, "{drift:?}");
    assert_eq!(drift.data["id"], 0);
    let id = loop {
        let m = stream
            .next(Duration::from_secs(30))
            .expect("the drift's id");
        if m.data.is_null() {
            break m.id.expect("an id");
        }
    };
    drop(stream);
    let stored = k.run(["events", "--repo", &s.name, "-o", "json"]).json();
    let drift_row = stored
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"].as_i64().unwrap().to_string() == id)
        .expect("the id is a stored event's");
    assert_eq!(drift_row["kind"], "drift_detected", "{drift_row}");
    assert_eq!(drift_row["time"], drift.data["time"]);

    // Reconnect from that id: everything after it, without gaps, in order.
    wait_for(30, "the heal recorded", || {
        let events = k.run(["events", "--repo", &s.name, "-o", "json"]).json();
        events
            .as_array()?
            .iter()
            .any(|e| e["kind"] == "drift_healed")
            .then_some(())
    });
    let stored: Vec<i64> = k
        .run(["events", "--repo", &s.name, "-o", "json"])
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_i64().unwrap())
        .filter(|i| *i > id.parse::<i64>().unwrap())
        .collect();
    assert!(!stored.is_empty());
    let mut again = EventStream::open(port, &path, &read, Some(&id));
    let mut got = Vec::new();
    while got.len() < stored.len() {
        let m = again
            .next(Duration::from_secs(30))
            .expect("the stored events after the id");
        got.push(m.id.unwrap().parse::<i64>().unwrap());
    }
    assert_eq!(got, stored);
}

#[test]
fn readyz_waits_for_every_first_pass_and_healthz_answers_at_once() {
    // A remote that never answers keeps its repository's first pass going.
    let hang = crate::support::hanging::HangingRemote::start();
    let k = Kedge::new().env("KEDGE_GIT_TIMEOUT", "3s");
    k.run(["repo", "add", &hang.url("slow")]).success();
    let (_serve, port) = serve_http(&k, &[]);
    let health = request("GET", port, "/healthz", None, None);
    assert_eq!(
        (health.status, health.json()),
        (200, serde_json::json!({"status": "ok"}))
    );
    let ready = request("GET", port, "/readyz", None, None);
    assert_eq!(ready.status, 503, "{ready:?}");
    assert_eq!(ready.json()["status"], "not_ready");
    assert!(ready.body.contains("slow"), "{}", ready.body);
    // Once the remote check gave up (an error is a finished pass), ready.
    wait_for(30, "ready", || {
        (request("GET", port, "/readyz", None, None).status == 200).then_some(())
    });

    // An engine that does not answer: alive, not ready, and it says why.
    let gone = Kedge::new().env(
        "DOCKER_HOST",
        &format!("unix://{}/no-engine.sock", k.cwd().display()),
    );
    let (_serve, port) = serve_http(&gone, &[]);
    assert_eq!(request("GET", port, "/healthz", None, None).status, 200);
    let ready = request("GET", port, "/readyz", None, None);
    assert_eq!(ready.status, 503, "{ready:?}");
    assert!(
        ready.json()["reasons"][0]
            .as_str()
            .unwrap()
            .contains("Docker engine does not answer"),
        "{ready:?}"
    );
}

/// SIGTERM stops accepting, lets a request in flight (a sync waiting for
/// its deployment) finish, then exits.
#[test]
fn sigterm_finishes_a_sync_in_flight_over_http() {
    use crate::support::stack::{compose_up_running, slow_to_stop};
    let s = Stack::new("apistop", &[("compose.yaml", &slow_to_stop(IMAGE_1))]);
    let k = &s.kedge;
    let write = token(k, "stopper", "write");
    let (mut serve, port) = serve_http(k, &["--poll-interval", "1h"]);
    wait_for(60, "the first deployment", || {
        (s.project.running().len() == 1).then_some(())
    });
    s.remote.write("compose.yaml", &slow_to_stop(IMAGE_2));
    let c2 = s.remote.commit("two");
    let path = format!("/api/v1/repos/{}/sync?wait=true", s.name);
    let asked = std::thread::spawn(move || request("POST", port, &path, Some(&write), None));
    wait_for(30, "the sync's compose up running", || {
        compose_up_running(&s.name).then_some(())
    });
    serve.sigterm();
    let answer = asked.join().unwrap();
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.json()["commit"], c2.as_str());
    assert_eq!(answer.json()["status"], "success");
    // It exits on its own once the apply is done: a second signal would
    // mean "abort" (regression: the test sent one, racing the exit).
    let status = wait_for(60, "serve to exit after the sync", || {
        serve.child.try_wait().unwrap()
    });
    assert_eq!(status.code(), Some(0), "{}", serve.log());
    // Closed: nothing answers any more.
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
}

/// A stack whose deploys go through a health gate of up to 90 s.
fn gated_stack(prefix: &str) -> Stack {
    Stack::new(
        prefix,
        &[
            ("compose.yaml", &sleepers(&[("web", IMAGE_1)])),
            ("kedge.yaml", "deploy:\n  timeout: 90s\n  stable_for: 1s\n"),
        ],
    )
}

/// `web` on image 2 running `script`, healthy once /tmp/ready exists.
fn slow_web(script: &str) -> String {
    format!(
        "services:\n  web:\n    image: {IMAGE_2}\n    command: [sh, -c, '{script}']\n    \
         stop_signal: SIGKILL\n    healthcheck:\n      test: [CMD-SHELL, '[ -f /tmp/ready ]']\n      \
         interval: 1s\n      start_period: 90s\n"
    )
}

/// Regression: a sync started over HTTP ran in a task that serve's
/// shutdown did not wait for; past the listener's 10 s grace, a SIGTERM cut
/// it in half. Here its gate takes 15 s after the signal.
#[test]
fn sigterm_waits_for_a_gated_sync_started_over_http_past_the_grace() {
    let s = gated_stack("apigrace");
    let k = &s.kedge;
    let write = token(k, "stopper", "write");
    let (mut serve, port) = serve_http(k, &["--poll-interval", "1h"]);
    wait_for(60, "the first deployment", || {
        (s.history()[0]["status"] == "success").then_some(())
    });
    s.remote.write(
        "compose.yaml",
        &slow_web("sleep 15; touch /tmp/ready; exec sleep 3600"),
    );
    let c2 = s.remote.commit("ready after 15 s");
    let path = format!("/api/v1/repos/{}/sync?wait=true", s.name);
    let asked = std::thread::spawn(move || request("POST", port, &path, Some(&write), None));
    wait_for(60, "the gate waiting on the new commit", || {
        let h = s.history();
        (h[0]["commit"] == c2.as_str() && h[0]["status"] == "in_progress").then_some(())
    });
    serve.sigterm();
    let answer = asked.join().unwrap();
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.json()["commit"], c2.as_str());
    assert_eq!(answer.json()["status"], "success", "{answer:?}");
    let status = wait_for(60, "serve to exit after the sync", || {
        serve.child.try_wait().unwrap()
    });
    assert_eq!(status.code(), Some(0), "{}", serve.log());
}

/// `http.tls_cert` and `http.tls_key` serve HTTPS on the same routes.
#[test]
fn tls_files_serve_https() {
    let k = Kedge::new();
    let (cert, key) = (k.cwd().join("cert.pem"), k.cwd().join("key.pem"));
    let made = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=127.0.0.1", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl");
    assert!(made.status.success(), "{made:?}");
    let config = k.cwd().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "http:\n  tls_cert: {}\n  tls_key: {}\n",
            cert.display(),
            key.display()
        ),
    )
    .unwrap();
    let (_serve, port) = serve_http(&k, &["--config", config.to_str().unwrap()]);
    let https = std::process::Command::new("curl")
        .args(["-s", "--cacert"])
        .arg(&cert)
        .arg(format!("https://127.0.0.1:{port}/healthz"))
        .output()
        .expect("curl");
    assert_eq!(
        String::from_utf8_lossy(&https.stdout),
        r#"{"status":"ok"}"#,
        "{https:?}"
    );
    // Plain HTTP on the TLS port gets no answer.
    assert_eq!(request("GET", port, "/healthz", None, None).status, 0);
}

/// Regression: a diff over HTTP waited for the repository lock as long as
/// an apply held it, a health gate's minutes included. It now answers 409
/// after 10 s, and the deployment goes on untouched.
#[test]
fn a_diff_during_a_gated_deploy_answers_409_after_ten_seconds() {
    let s = gated_stack("apibusy");
    let k = &s.kedge;
    let read = token(k, "reader", "read");
    let (mut serve, port) = serve_http(k, &[]);
    wait_for(60, "the first deployment", || {
        (s.history()[0]["status"] == "success").then_some(())
    });
    // Healthy only once /tmp/ready exists, which nothing creates: the gate
    // waits out the start period.
    s.remote.write("compose.yaml", &slow_web("exec sleep 3600"));
    let c2 = s.remote.commit("a start that takes its time");
    wait_for(60, "the gate waiting on the new commit", || {
        let h = s.history();
        (h[0]["commit"] == c2.as_str() && h[0]["status"] == "in_progress").then_some(())
    });
    let path = format!("/api/v1/repos/{}/diff", s.name);
    let started = Instant::now();
    let answer = request("GET", port, &path, Some(&read), None);
    let waited = started.elapsed();
    assert_eq!(answer.status, 409, "{answer:?}");
    let error = answer.json()["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(error.contains("an apply is in progress on"), "{error}");
    // It waited for the lock before giving up (a floor: slowness only
    // lengthens it), and gave up long before the gate's 90 s.
    assert!(
        (Duration::from_secs(9)..Duration::from_secs(60)).contains(&waited),
        "answered after {waited:?}"
    );
    let h = s.history();
    assert_eq!(h[0]["commit"], c2.as_str(), "{h}");
    assert_eq!(h[0]["status"], "in_progress", "{h}");
    // A graceful stop would wait out the gate's 90 s.
    serve.kill9();
}

/// Regression: a sync over HTTP that had not begun within the wait was
/// answered 409, but the command it had spawned kept waiting and deployed
/// later. A command the repository's task has not taken up in time is
/// withdrawn now: 409 means "not started and will not start". Two syncs
/// and serve's own pass run one after another through the task.
#[test]
fn an_http_sync_answered_409_never_deploys_later() {
    let s = gated_stack("api409");
    let k = &s.kedge;
    let deployer = token(k, "deployer", "deploy");
    std::fs::create_dir_all(k.cwd().join(".config/kedge")).unwrap();
    std::fs::write(
        k.cwd().join(".config/kedge/config.yaml"),
        "http:\n  command_wait: 2s\n",
    )
    .unwrap();
    let (_serve, port) = serve_http(k, &["--poll-interval", "1h"]);
    wait_for(60, "the first deployment", || {
        (s.history()[0]["status"] == "success").then_some(())
    });
    s.remote.write(
        "compose.yaml",
        &slow_web("sleep 12; touch /tmp/ready; exec sleep 3600"),
    );
    let c2 = s.remote.commit("ready after 12 s");
    let sync = format!("/api/v1/repos/{}/sync", s.name);

    // The first sync begins and holds the task in its gate.
    let first = request("POST", port, &sync, Some(&deployer), None);
    assert_eq!(first.status, 202, "{first:?}");
    let gated = first.json()["deployment"].as_i64().unwrap();
    // The second is not taken up within 2 s: 409, and withdrawn.
    let second = request("POST", port, &sync, Some(&deployer), None);
    assert_eq!(second.status, 409, "{second:?}");
    assert!(
        second.json()["error"]
            .as_str()
            .unwrap()
            .contains("in progress"),
        "{second:?}"
    );
    let history = s.history();
    assert_eq!(history[0]["id"], gated, "{history}");
    assert_eq!(history[0]["status"], "in_progress", "{history}");

    // A third, once the first is done, runs next: had the second been
    // kept, it would have run in between.
    wait_for(60, "the first sync's gate", || {
        (s.history()[0]["status"] != "in_progress").then_some(())
    });
    let third = request(
        "POST",
        port,
        &format!("{sync}?wait=true"),
        Some(&deployer),
        None,
    );
    assert_eq!(third.status, 200, "{third:?}");
    let history = s.history();
    let syncs: Vec<_> = history
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["trigger"] == "sync")
        .collect();
    assert_eq!(syncs.len(), 2, "the withdrawn sync never ran: {history}");
    assert_eq!(syncs[1]["id"], gated);
    assert_eq!(syncs[1]["commit"], c2.as_str());
    assert_eq!(syncs[1]["status"], "success", "{history}");
    assert!(
        syncs[0]["id"].as_i64().unwrap() > gated,
        "one after another: {history}"
    );
}

/// Regression: `history?limit=` took any u32 and `kedge history --limit`
/// any number: one request could read a repository's whole history. Both
/// give at most 10,000, as events do.
#[test]
fn history_past_ten_thousand_deployments_gives_ten_thousand() {
    let name = unique_name("i23b-hist");
    let remote = GitRemote::new(&name);
    // Manual: serve deploys nothing, it only answers.
    remote
        .write("compose.yaml", &sleepers(&[("web", IMAGE_1)]))
        .write("kedge.yaml", "reconciliation:\n  mode: manual\n")
        .commit("one");
    let k = Kedge::new();
    k.run(["repo", "add", &remote.url(), "--name", &name])
        .success();
    {
        let mut db = rusqlite::Connection::open(k.db_path()).unwrap();
        let tx = db.transaction().unwrap();
        // Recent: `history.retention` would delete old ones.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        for i in 0..10_005_i64 {
            tx.execute(
                "INSERT INTO deployments (stack_id, commit_hash, commit_message, status, trigger, started_at, finished_at)
                 SELECT id, printf('%040d', ?1), 'm', 'failed', 'sync', ?3, ?3 FROM repositories WHERE name = ?2",
                rusqlite::params![i, name, now - 10_005 + i],
            )
            .unwrap();
        }
        tx.commit().unwrap();
    }
    let rows = |v: serde_json::Value| v.as_array().map_or(0, Vec::len);
    let cli = k.run(["history", "--repo", &name, "--limit", "20000", "-o", "json"]);
    assert_eq!(rows(cli.json()), 10_000);
    let reader = token(&k, "i23b-hist", "read");
    let (_serve, port) = serve_http(&k, &["--poll-interval", "1h"]);
    for limit in ["20000", "4294967295"] {
        let path = format!("/api/v1/repos/{name}/history?limit={limit}");
        let answer = request("GET", port, &path, Some(&reader), None);
        assert_eq!(
            answer.status,
            200,
            "{}",
            &answer.body[..answer.body.len().min(300)]
        );
        assert_eq!(rows(answer.json()), 10_000, "limit={limit}");
    }
    // Below the cap, the limit is the limit.
    let path = format!("/api/v1/repos/{name}/history?limit=3");
    assert_eq!(
        rows(request("GET", port, &path, Some(&reader), None).json()),
        3
    );
}
