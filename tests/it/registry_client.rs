//! The registry client against Debian's `docker-registry` on loopback with
//! basic auth: tags over several pages, a tag's digest and a re-pushed
//! one, the cache, refused credentials; and the update candidates the
//! policies pick from what it lists.

use kedge::plan::updates::{Policy, candidate};
use kedge::registry::{Client, Login, Reference, RegistryError};

use crate::support::docker::{IMAGE_1, IMAGE_2};
use crate::support::registry::Registry;

#[test]
fn tags_digests_and_candidates_come_from_a_real_registry() {
    let registry = Registry::start("kt-updates", "kt-registry-pw");
    for tag in [
        "1.4.2",
        "1.4.3",
        "1.5.0",
        "2.0.0",
        "1.4.2-alpine",
        "1.4.3-alpine",
    ] {
        registry.push(IMAGE_1, &format!("app:{tag}"));
    }
    let login = Login {
        host: registry.host(),
        username: "kt-updates".into(),
        password: "kt-registry-pw".into(),
    };
    let app = Reference::parse(&format!("{}/app:1.4.2", registry.host())).unwrap();

    let client = Client::new(vec![login.clone()], std::time::Duration::from_secs(60)).page_size(2);
    let mut tags = client.tags(&app).unwrap();
    tags.sort();
    assert_eq!(
        tags,
        [
            "1.4.2",
            "1.4.2-alpine",
            "1.4.3",
            "1.4.3-alpine",
            "1.5.0",
            "2.0.0"
        ]
    );
    // One refusal, then the same request with basic auth. (This
    // registry answers every tag in one page whatever `n` says: the pages
    // are tested against a scripted registry below.)
    let asked = client.requests();
    assert_eq!(asked, 2);
    // Cached for the interval: no request the second time.
    assert_eq!(client.tags(&app).unwrap().len(), 6);
    assert_eq!(client.requests(), asked, "a cached answer asks nothing");

    // What each policy proposes for 1.4.2, the suffix kept.
    let pick = |current: &str, p: Policy| candidate(current, &tags, p, None, &[]).map(String::from);
    assert_eq!(pick("1.4.2", Policy::Patch).as_deref(), Some("1.4.3"));
    assert_eq!(pick("1.4.2", Policy::Minor).as_deref(), Some("1.5.0"));
    assert_eq!(pick("1.4.2", Policy::Major).as_deref(), Some("2.0.0"));
    assert_eq!(
        pick("1.4.2-alpine", Policy::Major).as_deref(),
        Some("1.4.3-alpine")
    );

    // When the image was built (for `min_age`): in the past.
    let created = client.created(&app).unwrap().expect("a created time");
    assert!(created <= kedge::time::now_ms(), "{created}");

    // The same content under two tags has one digest; a re-push of a tag
    // with new content changes it (`digest` policy).
    let before = client.digest(&app).unwrap();
    assert!(before.starts_with("sha256:"), "{before}");
    assert_eq!(client.digest(&app.with_tag("1.4.3")).unwrap(), before);
    registry.push(IMAGE_2, "app:1.4.2");
    assert_eq!(
        client.digest(&app).unwrap(),
        before,
        "cached for the interval"
    );
    let fresh = Client::new(vec![login], std::time::Duration::from_secs(60));
    let after = fresh.digest(&app).unwrap();
    assert_ne!(after, before, "a re-pushed tag has a new digest");

    // Without credentials: refused, naming the registry.
    let anonymous = Client::new(Vec::new(), std::time::Duration::from_secs(60));
    match anonymous.tags(&app) {
        Err(RegistryError::Unauthorized { registry: r, .. }) => assert_eq!(r, registry.host()),
        other => panic!("expected unauthorized, got {other:?}"),
    }
    // A tag that does not exist.
    match fresh.digest(&app.with_tag("9.9.9")) {
        Err(RegistryError::NotFound { what, .. }) => assert_eq!(what, "app:9.9.9"),
        other => panic!("expected not found, got {other:?}"),
    }
}

/// A registry that answers 429 is backed off: the next ask within the wait
/// makes no request and says when it asks again.
#[test]
fn a_registry_answering_429_is_backed_off() {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let served = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = [0u8; 4096];
        let _ = s.read(&mut buf);
        s.write_all(b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 120\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .unwrap();
    });
    let client = Client::new(Vec::new(), std::time::Duration::from_secs(0));
    let r = Reference::parse(&format!("127.0.0.1:{port}/app:1")).unwrap();
    match client.tags(&r) {
        Err(RegistryError::Backoff {
            status: 429, wait, ..
        }) => assert_eq!(wait.as_secs(), 120),
        other => panic!("expected a backoff, got {other:?}"),
    }
    served.join().unwrap();
    let asked = client.requests();
    assert!(matches!(
        client.digest(&r),
        Err(RegistryError::Backoff { .. })
    ));
    assert_eq!(
        client.requests(),
        asked,
        "nothing is asked while backed off"
    );
}

/// What a scripted registry saw: each request line and its
/// `Authorization` header.
type Seen = Vec<(String, Option<String>)>;

/// A registry scripted answer by answer: each connection gets the next
/// one; what it saw comes back.
fn scripted(answers: Vec<String>) -> (u16, std::thread::JoinHandle<Seen>) {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let served = std::thread::spawn(move || {
        let mut seen = Vec::new();
        for answer in answers {
            let (s, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(s.try_clone().unwrap());
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let mut auth = None;
            loop {
                let mut h = String::new();
                reader.read_line(&mut h).unwrap();
                if h.trim().is_empty() {
                    break;
                }
                if let Some(v) = h
                    .strip_prefix("authorization: ")
                    .or(h.strip_prefix("Authorization: "))
                {
                    auth = Some(v.trim().to_string());
                }
            }
            seen.push((line.trim().to_string(), auth));
            let mut s = s;
            s.write_all(answer.as_bytes()).unwrap();
        }
        seen
    });
    (port, served)
}

fn answer(status: &str, headers: &[&str], body: &str) -> String {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for h in headers {
        out.push_str(h);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    out.push_str(body);
    out
}

/// Tags over `Link` pages; basic auth sent at once after the first
/// refusal; a `Link` to another host is not followed.
#[test]
fn tags_follow_link_pages_on_the_same_registry_with_basic_auth_learnt_once() {
    let (port, served) = scripted(vec![
        answer(
            "401 Unauthorized",
            &["WWW-Authenticate: Basic realm=\"r\""],
            "",
        ),
        answer(
            "200 OK",
            &["Link: </v2/app/tags/list?last=b&n=2>; rel=\"next\""],
            r#"{"name":"app","tags":["a","b"]}"#,
        ),
        answer(
            "200 OK",
            &["Link: <https://elsewhere.example/v2/app/tags/list?last=d>; rel=\"next\""],
            r#"{"name":"app","tags":["c","d"]}"#,
        ),
    ]);
    let login = Login {
        host: format!("127.0.0.1:{port}"),
        username: "u".into(),
        password: "p".into(),
    };
    let client = Client::new(vec![login], std::time::Duration::from_secs(60)).page_size(2);
    let r = Reference::parse(&format!("127.0.0.1:{port}/app:a")).unwrap();
    assert_eq!(client.tags(&r).unwrap(), ["a", "b", "c", "d"]);
    let seen = served.join().unwrap();
    let basic = Some("Basic dTpw".to_string());
    assert_eq!(
        seen,
        [
            ("GET /v2/app/tags/list?n=2 HTTP/1.1".to_string(), None),
            (
                "GET /v2/app/tags/list?n=2 HTTP/1.1".to_string(),
                basic.clone()
            ),
            (
                "GET /v2/app/tags/list?last=b&n=2 HTTP/1.1".to_string(),
                basic
            ),
        ]
    );
    assert_eq!(client.requests(), 3);
}

/// A config blob stored elsewhere: the redirect is followed once, and the
/// registry's credentials stay with the registry.
#[test]
fn a_blob_redirect_is_followed_without_the_registrys_credentials() {
    let (store_port, stored) = scripted(vec![answer(
        "200 OK",
        &[],
        r#"{"created":"2026-11-02T03:04:05Z"}"#,
    )]);
    let manifest = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:abc","size":2},"layers":[]}"#;
    let location = format!("Location: http://127.0.0.1:{store_port}/blob?sig=s");
    let (port, served) = scripted(vec![
        answer(
            "401 Unauthorized",
            &["WWW-Authenticate: Basic realm=\"r\""],
            "",
        ),
        answer(
            "200 OK",
            &["Content-Type: application/vnd.oci.image.manifest.v1+json"],
            manifest,
        ),
        answer("307 Temporary Redirect", &[&location], ""),
    ]);
    let login = Login {
        host: format!("127.0.0.1:{port}"),
        username: "u".into(),
        password: "p".into(),
    };
    let client = Client::new(vec![login], std::time::Duration::from_secs(60));
    let r = Reference::parse(&format!("127.0.0.1:{port}/app:1.0.0")).unwrap();
    let created = client.created(&r).unwrap();
    assert_eq!(created, Some(1_793_588_645_000), "2026-11-02T03:04:05Z");
    let seen = served.join().unwrap();
    assert_eq!(seen[2].0, "GET /v2/app/blobs/sha256:abc HTTP/1.1");
    assert_eq!(seen[2].1.as_deref(), Some("Basic dTpw"));
    let stored = stored.join().unwrap();
    assert_eq!(
        stored,
        [("GET /blob?sig=s HTTP/1.1".to_string(), None)],
        "no credentials sent to the blob store"
    );
}
