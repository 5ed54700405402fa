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

    // Two tags a page: three pages, all six tags.
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
    // One refusal teaches the client the registry's scheme: every later
    // page carries basic auth at once (three pages, four requests).
    let asked = client.requests();
    assert_eq!(asked, 4);
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
