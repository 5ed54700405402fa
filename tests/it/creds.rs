//! Credentials by name (issue: a write token made serve send its own
//! secrets anywhere). Over HTTP a repository names a credential of the
//! global config's `credentials:`, never a file, a variable or a local path
//! of the host; roles split into read, deploy and admin; credentials once
//! in a repository URL leave the database and still authenticate.

use std::io::Read as _;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::docker::{IMAGE_1, IMAGE_2};
use crate::support::http_git::HttpGit;
use crate::support::*;

/// A plain TCP listener on loopback that records every request it gets
/// (whatever its first bytes are); stopped when dropped.
struct Capture {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Capture {
    fn start() -> Capture {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a capture listener");
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (seen, stop) = (seen.clone(), stop.clone());
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let Ok(mut conn) = conn else { continue };
                    let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
                    let mut buf = vec![0u8; 16 * 1024];
                    let n = conn.read(&mut buf).unwrap_or(0);
                    seen.lock()
                        .unwrap()
                        .push(String::from_utf8_lossy(&buf[..n]).into_owned());
                }
            })
        };
        Capture {
            addr,
            seen,
            stop,
            thread: Some(thread),
        }
    }

    fn requests(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wakes the accept loop, which then sees `stop`.
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `sha256=<hex HMAC-SHA256 of body>`.
fn sign(secret: &str, body: &[u8]) -> String {
    use hmac::Mac as _;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// A private remote holding one sleeper, served over http with basic auth.
fn private_remote(prefix: &str) -> (String, GitRemote, HttpGit) {
    let name = unique_name(prefix);
    let remote = GitRemote::new(&name);
    remote.write("compose.yaml", &sleepers(&[("web", IMAGE_1)]));
    remote.write("kedge.yaml", QUICK_GATE);
    remote.commit("first");
    let password = format!("pw-{}", unique_name("i22c"));
    let server = HttpGit::start(remote.bare.parent().unwrap(), "bot", &password);
    (name, remote, server)
}

/// A private file (mode 600) holding `content`.
fn private_file(path: &std::path::Path, content: &str) {
    std::fs::write(path, content).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// The global config, where `kedge` looks for it by default (`$HOME` is
/// the Kedge's working directory).
fn write_config(k: &Kedge, text: &str) {
    let dir = k.cwd().join(".config/kedge");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("config.yaml"), text).unwrap();
}

fn deployed(k: &Kedge, name: &str) -> String {
    let status = k.run(["status", "--repo", name, "-o", "json"]).json();
    status[0]["deployed_commit"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Regression: `POST /api/v1/repos {"url": "http://127.0.0.1:PORT/leak.git",
/// "token_env": "KEDGE_WEBHOOK_SECRET"}` (or `token_file: /etc/shadow`)
/// made serve send that secret, as basic auth over plain http, to a
/// listener at every poll. Now the API names no file, variable or local
/// path; a credential is a name from the global config, checked when it is
/// given; and the listener hears nothing at all.
#[test]
fn a_write_token_cannot_make_serve_send_its_secrets_anywhere() {
    require_docker();
    let capture = Capture::start();
    let leak = format!("http://{}/leak.git", capture.addr);
    let (name, remote, server) = private_remote("i22cname");
    let _project = ComposeProject::named(&name);
    let k = Kedge::new();
    let token_file = k.cwd().join("gh.token");
    private_file(&token_file, &format!("{}\n", server.password));
    write_config(
        &k,
        &format!(
            "credentials:\n  - name: gh\n    token_file: {}\n    username: bot\n    hosts: [127.0.0.1:{}]\n  - name: hook\n    secret_env: KEDGE_I22C_HOOK\n",
            token_file.display(),
            server.port
        ),
    );
    // `write`, the former role, is an admin now.
    let admin = k.token("i22c-admin", "write");
    let deploy = k.token("i22c-deploy", "deploy");
    let read = k.token("i22c-read", "read");
    let roles: Vec<(String, String)> = k
        .run(["token", "list", "-o", "json"])
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap().into(),
                t["role"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert!(
        roles.contains(&("i22c-admin".into(), "admin".into())),
        "{roles:?}"
    );
    assert!(
        roles.contains(&("i22c-deploy".into(), "deploy".into())),
        "{roles:?}"
    );
    let webhook_secret = format!("hook-{}", unique_name("i22c"));
    let api = k.serve_api(
        &["--poll-interval", "200ms"],
        &[
            ("KEDGE_WEBHOOK_SECRET", &webhook_secret),
            ("KEDGE_I22C_HOOK", "another-secret"),
        ],
    );

    // What the fault needed is no part of the API any more.
    for (body, status, says) in [
        (
            serde_json::json!({"url": leak, "token_env": "KEDGE_WEBHOOK_SECRET"}),
            400,
            "token_env",
        ),
        (
            serde_json::json!({"url": leak, "token_file": "/etc/shadow"}),
            400,
            "token_file",
        ),
        (
            serde_json::json!({"url": leak, "ssh_key": "/etc/shadow"}),
            400,
            "ssh_key",
        ),
        (
            serde_json::json!({"url": leak, "webhook_secret_file": "/etc/shadow"}),
            400,
            "webhook_secret_file",
        ),
        // No local path, however it is spelled, and nothing on disk is
        // looked at to tell.
        (serde_json::json!({"url": "/etc"}), 422, "path on the host"),
        (
            serde_json::json!({"url": "file:///etc/x.git"}),
            422,
            "path on the host",
        ),
        (
            serde_json::json!({"url": ".kedge", "name": "x"}),
            422,
            "path on the host",
        ),
        // Credentials only by name, and only ones the operator wrote.
        (
            serde_json::json!({"url": leak.replace("http://", "http://bot:pw@")}),
            422,
            "carries credentials",
        ),
        (
            serde_json::json!({"url": leak, "credential": "nope"}),
            422,
            "no credential named 'nope'",
        ),
        // A credential of the config goes only to the servers it lists.
        (
            serde_json::json!({"url": leak, "credential": "gh"}),
            422,
            "its `hosts:` do not list that server",
        ),
        (
            serde_json::json!({"url": leak, "credential": "hook"}),
            422,
            "'hook' is a webhook-secret",
        ),
        (
            serde_json::json!({"url": leak, "webhook_secret": "gh"}),
            422,
            "'gh' is a token",
        ),
    ] {
        let answer = api.post("/api/v1/repos", &admin, &body.to_string());
        answer.refused(status);
        assert!(answer.body.contains(says), "{body}: {answer:?}");
        assert!(!answer.body.contains(&server.password), "{answer:?}");
    }
    // Adding a repository needs an admin token.
    let legit = serde_json::json!({
        "url": server.url(&name),
        "name": name,
        "credential": "gh",
        "webhook_secret": "hook",
    })
    .to_string();
    api.post("/api/v1/repos", &read, &legit).refused(403);
    let refused = api.post("/api/v1/repos", &deploy, &legit);
    refused.refused(403);
    assert!(refused.body.contains("admin"), "{refused:?}");

    // A credential of the config, by name, is how a private repository is
    // added over HTTP: it deploys, and follows pushes.
    let added = api.post("/api/v1/repos", &admin, &legit);
    assert_eq!(added.status, 201, "{added:?}");
    assert_eq!(added.json()["auth"], "token");
    assert_eq!(added.json()["credential"], "gh");
    let first = remote.remote_head();
    wait_for(60, "the repository added by name deployed", || {
        (deployed(&k, &name) == first).then_some(())
    });
    remote.write("compose.yaml", &sleepers(&[("web", IMAGE_2)]));
    let second = remote.commit("second");
    // A deploy token syncs, but does not remove.
    let synced = api.call(
        "POST",
        &format!("/api/v1/repos/{name}/sync?wait=true"),
        Some(&deploy),
        None,
        &[],
    );
    assert_eq!(synced.status, 200, "{synced:?}");
    assert_eq!(synced.json()["commit"], second.as_str());
    api.call(
        "DELETE",
        &format!("/api/v1/repos/{name}"),
        Some(&deploy),
        None,
        &[],
    )
    .refused(403);
    api.call(
        "POST",
        &format!("/api/v1/repos/{name}/sync"),
        Some(&read),
        None,
        &[],
    )
    .refused(403);
    // Its webhook secret is the config's `hook`, by name: that one alone
    // triggers it, the global one does not.
    let hook = serde_json::json!({ "repo": name }).to_string();
    for (secret, triggered) in [
        ("another-secret", serde_json::json!([name])),
        (webhook_secret.as_str(), serde_json::json!([])),
    ] {
        let answer = api.call(
            "POST",
            "/hooks/generic",
            None,
            Some(hook.as_bytes()),
            &[
                ("Content-Type", "application/json"),
                ("X-Kedge-Signature-256", &sign(secret, hook.as_bytes())),
            ],
        );
        assert_eq!(answer.status, 202, "{answer:?}");
        assert_eq!(answer.json()["triggered"], triggered, "{answer:?}");
    }
    let listed = api.get("/api/v1/repos", &read);
    assert!(listed.body.contains("\"credential\":\"gh\""), "{listed:?}");
    assert!(!listed.body.contains("gh.token"), "{listed:?}");

    // Serve polled all along (every 200 ms): nothing ever reached the
    // listener, let alone a secret.
    assert_eq!(capture.requests(), Vec::<String>::new());
    let log = api.serve.log();
    for secret in [&webhook_secret, &server.password] {
        assert!(!log.contains(secret.as_str()), "a secret in serve's log");
    }
}

/// Regression: credentials given in a repository URL stayed in
/// `repositories.url`, in clear. A database of the version before keeps
/// working: the migration moves them to the credential store
/// (`<data-dir>/credentials/`, mode 600) and fetches still authenticate.
#[test]
fn url_credentials_of_an_older_database_leave_it_and_still_authenticate() {
    require_docker();
    let (name, remote, server) = private_remote("i22curl");
    let _project = ComposeProject::named(&name);
    let k = Kedge::new();
    // As an older Kedge left it: the credentials in the URL, schema 13.
    {
        std::fs::create_dir_all(k.data_dir()).unwrap();
        let v13 = ::kedge::record::Store::open_file(&k.db_path(), 13).unwrap();
        drop(v13);
        let db = rusqlite::Connection::open(k.db_path()).unwrap();
        db.execute(
            "INSERT INTO repositories (name, url, branch, created_at) VALUES (?1, ?2, 'main', 1)",
            [name.clone(), server.url_with_credentials(&name)],
        )
        .unwrap();
        db.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
            .unwrap();
    }
    let first = remote.remote_head();
    k.run(["sync", "--repo", &name])
        .success()
        .stdout_has(&first[..7]);
    assert_eq!(deployed(&k, &name), first);

    let mut db = std::fs::read(k.db_path()).unwrap();
    db.extend(std::fs::read(k.db_path().with_extension("db-wal")).unwrap_or_default());
    assert!(
        !String::from_utf8_lossy(&db).contains(&server.password),
        "the password is still in the database"
    );
    let store = k.data_dir().join("credentials");
    let files: Vec<_> = std::fs::read_dir(&store).unwrap().flatten().collect();
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(
        files[0].metadata().unwrap().permissions().mode() & 0o777,
        0o600
    );
    k.run(["repo", "list"])
        .success()
        .stdout_has(&server.url(&name));
    // A new commit comes through the migrated credentials, too.
    remote.write("compose.yaml", &sleepers(&[("web", IMAGE_2)]));
    let second = remote.commit("second");
    k.run(["sync", "--repo", &name]).success();
    assert_eq!(deployed(&k, &name), second);
    // Removing the repository forgets its stored credentials.
    k.run(["repo", "remove", &name, "--down"]).success();
    assert_eq!(std::fs::read_dir(&store).unwrap().count(), 0);
}
