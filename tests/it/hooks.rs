//! Git webhooks end to end: `serve` listening on a free port with a one-hour
//! poll, so only a hook can make it look at the remote soon; signed hooks
//! in each host's format, refusals, per-repository secrets.

use std::io::{Read as _, Write as _};
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::support::docker::IMAGE_1;
use crate::support::kedge::Serve;
use crate::support::*;

const SECRET: &str = "hook-s3cret";

/// One service whose `ROUND` changes with every commit: each deployment
/// recreates the container, labelled with its commit.
/// A signed GitHub push of tag `r` (a full ref) of the repository at `url`.
fn push_tag(port: u16, url: &str, r: &str) -> (u16, Value) {
    let tag = json!({"ref": r, "repository": {"clone_url": url}}).to_string();
    post(
        port,
        "/hooks/github",
        &[("X-Hub-Signature-256", &sign(SECRET, tag.as_bytes()))],
        tag.as_bytes(),
    )
}

/// The answer to a verified push that names no repository registered here.
fn not_addressed() -> Value {
    json!({
        "triggered": [],
        "ignored": "repository",
        "reason": "no repository registered here has that address and the secret that signed it"
    })
}

/// The answer to a verified push of refs that `repo` does not follow.
fn not_followed(pushed: &str, repo: &str) -> Value {
    json!({
        "triggered": [],
        "ignored": "ref",
        "reason": format!("{pushed}: not refs/heads/main, the branch {repo} follows")
    })
}

fn compose(round: u32) -> String {
    format!(
        "services:\n  app:\n    image: {IMAGE_1}\n    command: [sleep, '3600']\n    stop_signal: SIGKILL\n    environment:\n      ROUND: '{round}'\n"
    )
}

/// `serve` on a free port, polling every hour and checking containers
/// every second (passes the tests count), logging JSON at debug level.
fn serve(k: &Kedge) -> (Serve, u16) {
    let serve = k.serve_debug(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--poll-interval",
        "1h",
        "--check-interval",
        "1s",
    ]);
    let port = wait_for(30, "serve listening", || {
        let log = serve.log();
        let at = log.find("listening on ")? + "listening on ".len();
        let addr: String = log[at..]
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
            .collect();
        addr.rsplit_once(':')?.1.parse().ok()
    });
    (serve, port)
}

/// A POST to `serve`, as a git host sends it; the status and the JSON answer.
fn post(port: u16, path: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, Value) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let mut request = agent
        .post(format!("http://127.0.0.1:{port}{path}"))
        .header("content-type", "application/json");
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let mut response = request.send(body).expect("POST to serve");
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap();
    let doc = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text:?}"));
    (status, doc)
}

/// `sha256=<hex HMAC-SHA256 of body>`.
fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// A push hook in `provider`'s format for `url`'s `branch`, signed with
/// `secret`: the path, the headers and the body.
fn push_hook(
    provider: &str,
    url: &str,
    branch: &str,
    secret: &str,
) -> (String, Vec<(&'static str, String)>, Vec<u8>) {
    let r = format!("refs/heads/{branch}");
    let body = match provider {
        "github" => json!({
            "ref": r,
            "repository": {"clone_url": url, "html_url": "https://example.invalid/x"}
        }),
        "gitlab" => json!({
            "object_kind": "push",
            "ref": r,
            "project": {"git_http_url": url, "web_url": "https://example.invalid/x"}
        }),
        "gitea" => json!({"ref": r, "repository": {"clone_url": url}}),
        "bitbucket" => json!({
            "repository": {"full_name": "acme/x", "links": {"clone": [{"href": url}]}},
            "push": {"changes": [{"new": {"type": "branch", "name": branch}}]}
        }),
        "generic" => json!({"url": url, "ref": r}),
        other => panic!("{other}"),
    }
    .to_string()
    .into_bytes();
    let signature = sign(secret, &body);
    let headers = match provider {
        "github" => vec![
            ("X-GitHub-Event", "push".to_string()),
            ("X-Hub-Signature-256", signature),
        ],
        "gitlab" => vec![
            ("X-Gitlab-Event", "Push Hook".to_string()),
            ("X-Gitlab-Token", secret.to_string()),
        ],
        "gitea" => vec![
            ("X-Gitea-Event", "push".to_string()),
            (
                "X-Gitea-Signature",
                signature.trim_start_matches("sha256=").into(),
            ),
        ],
        "bitbucket" => vec![
            ("X-Event-Key", "repo:push".to_string()),
            ("X-Hub-Signature", signature),
        ],
        _ => vec![("X-Kedge-Signature-256", signature)],
    };
    (format!("/hooks/{provider}"), headers, body)
}

fn send(port: u16, hook: &(String, Vec<(&'static str, String)>, Vec<u8>)) -> (u16, Value) {
    let headers: Vec<(&str, &str)> = hook.1.iter().map(|(k, v)| (*k, v.as_str())).collect();
    post(port, &hook.0, &headers, &hook.2)
}

/// The deployments of `commit` so far.
fn deployments_of(s: &Stack, commit: &str) -> Vec<Value> {
    s.history()
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["commit"] == commit)
        .cloned()
        .collect()
}

/// A stack deployed by a `serve` with the global secret.
fn deployed(prefix: &str) -> (Stack, Serve, u16) {
    deployed_with(prefix, &[])
}

/// `deployed`, with more files in the first commit.
fn deployed_with(prefix: &str, more: &[(&str, &str)]) -> (Stack, Serve, u16) {
    let first = compose(0);
    let mut files = vec![("compose.yaml", first.as_str())];
    files.extend_from_slice(more);
    let Stack {
        name,
        remote,
        kedge,
        project,
    } = Stack::new(prefix, &files);
    let s = Stack {
        name,
        remote,
        kedge: kedge.env("KEDGE_WEBHOOK_SECRET", SECRET),
        project,
    };
    let (serve, port) = serve(&s.kedge);
    let first = s.remote.remote_head();
    wait_for(60, "the first deployment running", || {
        (s.running_commit("app")? == first).then_some(())
    });
    (s, serve, port)
}

/// Proof that no hook woke the task: two of its passes end after `mark`
/// (taken once the hooks were answered, their wake-ups queued), and the
/// second began after the first ended, with any wake-up in hand; yet
/// `commit`, pushed before, was not deployed.
#[track_caller]
fn not_deployed_after_passes(s: &Stack, serve: &Serve, mark: usize, commit: &str) {
    serve.wait_passes(&s.name, mark, 2, 30);
    assert_eq!(deployments_of(s, commit), Vec::<Value>::new());
    assert_ne!(s.running_commit("app").as_deref(), Some(commit));
}

#[test]
fn a_signed_push_hook_of_each_format_deploys_the_new_commit_at_once() {
    let (s, serve, port) = deployed("hooks");
    let url = s.remote.url();
    for (round, provider) in ["github", "gitlab", "gitea", "bitbucket", "generic"]
        .into_iter()
        .enumerate()
    {
        s.remote.write("compose.yaml", &compose(round as u32 + 1));
        let commit = s.remote.commit(&format!("round {round}"));
        let (status, answer) = send(port, &push_hook(provider, &url, "main", SECRET));
        assert_eq!(status, 202, "{provider}: {answer}");
        assert_eq!(answer, json!({"triggered": [s.name]}), "{provider}");
        // Polling hourly, only the hook explains it; how fast is the
        // `webhook` row of benches/compare.rs.
        wait_for(30, &format!("{provider}: the new commit running"), || {
            (s.running_commit("app")? == commit).then_some(())
        });
        let d = deployments_of(&s, &commit);
        assert_eq!(d.len(), 1, "{provider}: {d:?}");
    }
    // The generic hook by name, and a GitHub ping.
    s.remote.write("compose.yaml", &compose(10));
    let commit = s.remote.commit("by name");
    let body = json!({"repo": s.name}).to_string();
    let (status, answer) = post(
        port,
        "/hooks/generic",
        &[("X-Kedge-Signature-256", &sign(SECRET, body.as_bytes()))],
        body.as_bytes(),
    );
    assert_eq!((status, &answer), (202, &json!({"triggered": [s.name]})));
    wait_for(30, "the commit named by the generic hook running", || {
        (s.running_commit("app")? == commit).then_some(())
    });
    let ping = br#"{"zen":"Keep it logically awesome.","hook_id":1}"#;
    let (status, answer) = post(
        port,
        "/hooks/github",
        &[
            ("X-GitHub-Event", "ping"),
            ("X-Hub-Signature-256", &sign(SECRET, ping)),
        ],
        ping,
    );
    assert_eq!((status, answer), (200, json!({"pong": true})));
    // The log says which hook triggered what, and nothing of what it carried.
    let log = serve.log();
    assert!(log.contains("webhook accepted"), "{log}");
    assert!(!log.contains(SECRET), "{log}");
    assert!(!log.contains("example.invalid"), "{log}");
}

/// Hooks in quick succession make one remote check: one deployment.
#[test]
fn hooks_in_quick_succession_deploy_once() {
    let (s, serve, port) = deployed("burst");
    let url = s.remote.url();
    s.remote.write("compose.yaml", &compose(1));
    let commit = s.remote.commit("one");
    for provider in ["github", "gitea", "generic", "github"] {
        let (status, answer) = send(port, &push_hook(provider, &url, "main", SECRET));
        assert_eq!(status, 202, "{answer}");
    }
    wait_for(30, "the commit running", || {
        (s.running_commit("app")? == commit).then_some(())
    });
    // Every queued wake-up has been handled two passes later.
    let mark = serve.mark();
    serve.wait_passes(&s.name, mark, 2, 30);
    let d = deployments_of(&s, &commit);
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0]["status"], "success", "{d:?}");
    let fetched = serve
        .records_since(0)
        .into_iter()
        .filter(|(_, r)| {
            r["repo"] == s.name.as_str() && r["message"] == format!("new commit {}", &commit[..7])
        })
        .count();
    assert_eq!(fetched, 1, "one fetch of the new commit");
}

#[test]
fn hooks_that_match_nothing_or_are_not_signed_deploy_nothing() {
    let (s, serve, port) = deployed("nohook");
    let url = s.remote.url();
    s.remote.write("compose.yaml", &compose(1));
    let commit = s.remote.commit("waiting");

    // Verified, but for another branch or another repository.
    for (hook, want) in [
        (
            push_hook("github", &url, "other", SECRET),
            not_followed("refs/heads/other", &s.name),
        ),
        (
            push_hook("github", "file:///srv/git/unregistered.git", "main", SECRET),
            not_addressed(),
        ),
        (
            push_hook(
                "gitlab",
                "https://gitlab.example/acme/app.git",
                "main",
                SECRET,
            ),
            not_addressed(),
        ),
        (
            push_hook("generic", &url, "main-2", SECRET),
            not_followed("refs/heads/main-2", &s.name),
        ),
    ] {
        let (status, answer) = send(port, &hook);
        // Regression: a bare `{"triggered": []}`, though the README
        // promised a reason.
        assert_eq!((status, &answer), (202, &want), "{}", hook.0);
    }
    // A tag push is no branch push.
    assert_eq!(
        push_tag(port, &url, "refs/tags/v1"),
        (202, not_followed("refs/tags/v1", &s.name))
    );
    // Another kind of event.
    let tag = json!({"ref": "refs/tags/v1", "repository": {"clone_url": url}}).to_string();
    let (status, answer) = post(
        port,
        "/hooks/github",
        &[
            ("X-GitHub-Event", "issues"),
            ("X-Hub-Signature-256", &sign(SECRET, tag.as_bytes())),
        ],
        tag.as_bytes(),
    );
    assert_eq!(
        (status, &answer["triggered"], &answer["ignored"]),
        (202, &json!([]), &json!("event"))
    );

    // Not signed, or not with the secret: 401 whatever the payload.
    for provider in ["github", "gitlab", "gitea", "bitbucket", "generic"] {
        let mut wrong = push_hook(provider, &url, "main", "not-the-secret");
        let (status, answer) = send(port, &wrong);
        assert_eq!(status, 401, "{provider}: {answer}");
        assert!(answer["error"].is_string(), "{answer}");
        wrong.1.retain(|(k, _)| k.contains("Event"));
        let (status, _) = send(port, &wrong);
        assert_eq!(status, 401, "{provider} without a signature");
    }
    // Signed, then changed: the signature covers the body.
    let (path, headers, body) = push_hook("github", &url, "main", SECRET);
    let mut tampered = body.clone();
    tampered.push(b' ');
    let (status, _) = send(port, &(path, headers, tampered));
    assert_eq!(status, 401);
    // A wrongly signed ping is refused too.
    let (status, _) = post(
        port,
        "/hooks/github",
        &[
            ("X-GitHub-Event", "ping"),
            ("X-Hub-Signature-256", &sign("nope", b"{}")),
        ],
        b"{}",
    );
    assert_eq!(status, 401);
    // Verified, not JSON.
    let form = b"payload=%7B%7D";
    let (status, answer) = post(
        port,
        "/hooks/github",
        &[("X-Hub-Signature-256", &sign(SECRET, form))],
        form,
    );
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("application/json"),
        "{answer}"
    );
    // Too large: refused before it is read.
    assert_eq!(oversized_post(port, "/hooks/github", 2 << 20), 413);
    // Unknown hosts, and hooks are POST only.
    let (status, _) = post(port, "/hooks/svn", &[], b"{}");
    assert_eq!(status, 404);

    let mark = serve.mark();
    not_deployed_after_passes(&s, &serve, mark, &commit);
    let log = serve.log();
    assert!(!log.contains("not-the-secret"), "{log}");
    assert!(!log.contains("unregistered"), "{log}");

    // The same push, announced properly, is deployed.
    let (status, _) = send(port, &push_hook("github", &url, "main", SECRET));
    assert_eq!(status, 202);
    wait_for(30, "the commit running", || {
        (s.running_commit("app")? == commit).then_some(())
    });

    // Counted by what they were answered; an unknown host is not counted.
    let metrics = crate::support::http::request("GET", port, "/metrics", None, None).body;
    let count = |labels: &str| -> f64 {
        let prefix = format!("kedge_webhook_requests_total{{{labels}}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    };
    assert!(
        count(r#"provider="github",result="accepted""#) >= 1.0,
        "{metrics}"
    );
    assert!(
        count(r#"provider="github",result="unauthorized""#) >= 1.0,
        "{metrics}"
    );
    assert!(!metrics.contains("svn"), "{metrics}");
}

/// A POST announcing `size` bytes whose body is still being written while
/// the answer is read: the status code.
fn oversized_post(port: u16, path: &str, size: usize) -> u16 {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {size}\r\n\r\n"
    )
    .unwrap();
    let mut writer = stream.try_clone().unwrap();
    let body = std::thread::spawn(move || {
        // The server may close before it is all written.
        let _ = writer.write_all(&vec![b' '; size]);
    });
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
        }
    }
    let _ = stream.shutdown(std::net::Shutdown::Both);
    let _ = body.join();
    let text = String::from_utf8_lossy(&answer);
    text.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP answer: {text:?}"))
}

#[test]
fn without_any_secret_the_hooks_answer_404_and_say_how_to_enable_them() {
    let k = Kedge::new();
    let (_serve, port) = serve(&k);
    for provider in ["github", "gitlab", "gitea", "bitbucket", "generic"] {
        let (path, headers, body) = push_hook(provider, "file:///srv/app.git", "main", "x");
        let (status, answer) = send(port, &(path, headers, body));
        assert_eq!(status, 404, "{provider}: {answer}");
        let error = answer["error"].as_str().unwrap();
        assert!(error.contains("webhook.secret"), "{error}");
        assert!(error.contains("KEDGE_WEBHOOK_SECRET"), "{error}");
        assert!(error.contains("--webhook-secret-file"), "{error}");
    }
}

#[test]
fn a_repository_with_its_own_secret_is_triggered_by_it_alone() {
    let name = unique_name("ownhook");
    let remote = GitRemote::new(&name);
    remote.write("compose.yaml", &compose(0));
    remote.write("kedge.yaml", QUICK_GATE);
    remote.commit("first");
    let k = Kedge::new().env("KEDGE_WEBHOOK_SECRET", SECRET);
    let project = ComposeProject::named(&name);
    let file = k.cwd().join("own.hook");
    let set = |content: &str, mode: u32| {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::write(&file, content).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    let url = remote.url();
    let add = |secret_file: &str| {
        k.run([
            "repo",
            "add",
            &url,
            "--name",
            &name,
            "--webhook-secret-file",
            secret_file,
        ])
    };

    // Refused: missing, empty, readable by others. Nothing registered.
    add("missing.hook")
        .code(1)
        .stderr_has("cannot read the webhook secret file");
    set("\n", 0o600);
    add("own.hook").code(1).stderr_has("is empty");
    set("own-s3cret\n", 0o644);
    add("own.hook").code(1).stderr_has("chmod 600");
    k.run(["repo", "list", "-o", "json"])
        .success()
        .stdout_is("[]\n");
    set("own-s3cret\n", 0o600);
    add("own.hook").success();
    let stored: String = rusqlite::Connection::open(k.db_path())
        .unwrap()
        .query_row(
            "SELECT webhook_secret_file FROM repositories WHERE name = ?1",
            [&name],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        std::path::Path::new(&stored),
        file,
        "the path, made absolute"
    );

    let s = Stack {
        name,
        remote,
        kedge: k,
        project,
    };
    let (serve, port) = serve(&s.kedge);
    let first = s.remote.remote_head();
    wait_for(60, "the first deployment running", || {
        (s.running_commit("app")? == first).then_some(())
    });
    s.remote.write("compose.yaml", &compose(1));
    let commit = s.remote.commit("two");

    // The global secret is not accepted for it.
    let (status, answer) = send(port, &push_hook("github", &url, "main", SECRET));
    assert_eq!((status, answer), (202, not_addressed()));
    let mark = serve.mark();
    not_deployed_after_passes(&s, &serve, mark, &commit);

    // Its own is, and is read at each use: a changed file takes effect at once.
    let (status, _) = send(port, &push_hook("gitlab", &url, "main", "own-s3cret-2"));
    assert_eq!(status, 401);
    set("own-s3cret-2\n", 0o600);
    let (status, answer) = send(port, &push_hook("gitlab", &url, "main", "own-s3cret-2"));
    assert_eq!((status, answer), (202, json!({"triggered": [s.name]})));
    wait_for(30, "the commit running", || {
        (s.running_commit("app")? == commit).then_some(())
    });
    assert!(!serve.log().contains("own-s3cret"), "{}", serve.log());
}

/// The answer to a hook whose head announces a body that is never sent:
/// one that arrives at all was given before the body was read.
fn answer_to_head(port: u16, path: &str, headers: &[(&str, &str)]) -> (u16, Value) {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 4096\r\n"
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    let mut got = Vec::new();
    let _ = stream.read_to_end(&mut got);
    let text = String::from_utf8_lossy(&got);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("{path}: no answer before the body: {text:?}"));
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// Regression: a hook's body was read (up to 1 MiB, as slowly as its
/// sender liked) before anything else was checked, even with the hooks off.
#[test]
fn hooks_that_cannot_be_valid_are_refused_before_their_body_is_read() {
    let signed = [("X-Kedge-Signature-256", "sha256=00")];
    // Hooks off: no secret at all.
    let off = Kedge::new();
    let (serve_off, port) = serve(&off);
    for path in ["/hooks/generic", "/hooks/github/app"] {
        let (status, answer) = answer_to_head(port, path, &signed);
        assert_eq!(status, 404, "{path}: {answer}");
    }
    drop(serve_off);

    // One repository with its own secret, one without; no global secret.
    let k = Kedge::new();
    let file = k.cwd().join("own.hook");
    std::fs::write(&file, "own-s3cret\n").unwrap();
    std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let (own, plain) = (unique_name("own"), unique_name("plain"));
    for (name, secret) in [(&own, Some("own.hook")), (&plain, None)] {
        let url = format!("/nowhere/{name}.git");
        let mut args = vec!["repo", "add", url.as_str(), "--name", name.as_str()];
        args.extend(
            secret
                .map(|f| ["--webhook-secret-file", f])
                .into_iter()
                .flatten(),
        );
        k.run(args).success();
    }
    let (serve, port) = serve(&k);
    for (path, headers, want, says) in [
        // No signature header.
        ("/hooks/generic".to_string(), &[][..], 401, "missing"),
        (format!("/hooks/gitlab/{own}"), &[][..], 401, "missing"),
        // A repository the URL names that does not exist.
        (
            "/hooks/generic/nope".to_string(),
            &signed[..],
            404,
            "no repository",
        ),
        // One without a secret of its own, and no global one.
        (
            format!("/hooks/generic/{plain}"),
            &signed[..],
            404,
            "webhooks are off",
        ),
        // No such host.
        ("/hooks/svn/x".to_string(), &signed[..], 404, "no such hook"),
    ] {
        let (status, answer) = answer_to_head(port, &path, headers);
        assert_eq!(status, want, "{path}: {answer}");
        let error = answer["error"].as_str().unwrap_or_default();
        assert!(error.contains(says), "{path}: {answer}");
    }
    // Counted by what they were answered.
    let metrics = crate::support::http::request("GET", port, "/metrics", None, None).body;
    for labels in [
        r#"provider="generic",result="unknown_repo""#,
        r#"provider="gitlab",result="unauthorized""#,
        r#"provider="generic",result="disabled""#,
    ] {
        assert!(metrics.contains(labels), "{labels}: {metrics}");
    }
    assert!(!metrics.contains("svn"), "{metrics}");
    drop(serve);
}

#[test]
fn a_hook_naming_its_repository_triggers_it_alone_with_its_secret() {
    let (s, _serve, port) = deployed("byurl");
    let url = s.remote.url();
    s.remote.write("compose.yaml", &compose(1));
    let commit = s.remote.commit("two");
    // Sent to another repository's URL: the push does not concern it.
    let (_, headers, body) = push_hook("gitea", &url, "main", SECRET);
    let other = unique_name("other");
    s.kedge
        .run(["repo", "add", "/nowhere/other.git", "--name", &other])
        .success();
    let hook = (
        format!("/hooks/gitea/{other}"),
        headers.clone(),
        body.clone(),
    );
    assert_eq!(send(port, &hook), (202, not_addressed()));
    // Its own URL, signed with another secret: refused.
    let (_, wrong, _) = push_hook("gitea", &url, "main", "not-the-secret");
    let hook = (format!("/hooks/gitea/{}", s.name), wrong, body.clone());
    assert_eq!(send(port, &hook).0, 401);
    // Its own URL, signed: deployed.
    let hook = (format!("/hooks/gitea/{}", s.name), headers, body);
    assert_eq!(send(port, &hook), (202, json!({"triggered": [s.name]})));
    wait_for(30, "the commit running", || {
        (s.running_commit("app")? == commit).then_some(())
    });
}

#[test]
fn a_refs_filter_ignores_a_push_to_another_ref_and_wakes_for_a_listed_tag() {
    let (s, serve, port) = deployed_with(
        "hookrefs",
        &[(
            "kedge.yaml",
            "webhooks:\n  refs: ['refs/heads/main', 'refs/tags/v*']\n",
        )],
    );
    let url = s.remote.url();
    s.remote.write("compose.yaml", &compose(1));
    let commit = s.remote.commit("two");

    let (status, answer) = send(port, &push_hook("gitea", &url, "feature", SECRET));
    assert_eq!(
        (status, answer),
        (
            202,
            json!({
                "triggered": [],
                "ignored": "ref",
                "reason": format!(
                    "refs/heads/feature: none matches webhooks.refs of {} (refs/heads/main, refs/tags/v*)",
                    s.name
                )
            })
        )
    );
    let mark = serve.mark();
    not_deployed_after_passes(&s, &serve, mark, &commit);

    // A release tag the filter lists wakes it: the branch's head deploys.
    assert_eq!(
        push_tag(port, &url, "refs/tags/v2.0"),
        (202, json!({"triggered": [s.name.clone()]}))
    );
    wait_for(30, "the commit running", || {
        (s.running_commit("app")? == commit).then_some(())
    });
}
