//! api/hooks: the git hosts, as their hooks present themselves — which
//! headers carry the signature and the event, and checking a signature
//! against the raw body in constant time. Pure: no I/O.

use axum::http::HeaderMap;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::Secret;

/// Who sent a hook: it says how it is signed and what its payload holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    GitHub,
    GitLab,
    /// Gitea, Forgejo and Gogs: one payload format.
    Gitea,
    Bitbucket,
    /// Kedge's own format, for CI jobs and scripts.
    Generic,
}

impl Provider {
    pub fn from_path(path: &str) -> Option<Provider> {
        Some(match path {
            "github" => Provider::GitHub,
            "gitlab" => Provider::GitLab,
            "gitea" | "forgejo" | "gogs" => Provider::Gitea,
            "bitbucket" => Provider::Bitbucket,
            "generic" => Provider::Generic,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Provider::GitHub => "github",
            Provider::GitLab => "gitlab",
            Provider::Gitea => "gitea",
            Provider::Bitbucket => "bitbucket",
            Provider::Generic => "generic",
        }
    }

    /// The headers that carry the signature, in the order they are looked for.
    pub fn signature_headers(self) -> &'static [&'static str] {
        match self {
            Provider::GitHub => &["X-Hub-Signature-256"],
            Provider::GitLab => &["X-Gitlab-Token"],
            Provider::Gitea => &[
                "X-Forgejo-Signature",
                "X-Gitea-Signature",
                "X-Gogs-Signature",
            ],
            Provider::Bitbucket => &["X-Hub-Signature"],
            Provider::Generic => &["X-Kedge-Signature-256"],
        }
    }

    fn event_headers(self) -> &'static [&'static str] {
        match self {
            Provider::GitHub => &["X-GitHub-Event"],
            Provider::GitLab => &["X-Gitlab-Event"],
            Provider::Gitea => &["X-Forgejo-Event", "X-Gitea-Event", "X-Gogs-Event"],
            Provider::Bitbucket => &["X-Event-Key"],
            Provider::Generic => &[],
        }
    }
}

/// How a hook proves it knows the secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Proof {
    /// An HMAC-SHA256 of the raw body, keyed with the secret.
    Hmac(Vec<u8>),
    /// The secret itself (GitLab).
    Token(Vec<u8>),
}

/// The hook's proof, as its headers carry it; `None` when missing or not
/// even well formed (that is no proof either).
pub fn proof(provider: Provider, headers: &HeaderMap) -> Option<Proof> {
    let value = provider
        .signature_headers()
        .iter()
        .find_map(|h| headers.get(*h))?;
    if provider == Provider::GitLab {
        return Some(Proof::Token(value.as_bytes().to_vec()));
    }
    let text = value.to_str().ok()?.trim();
    let hex_digest = match provider {
        // Gitea, Forgejo and Gogs send the bare digest; a prefix is tolerated.
        Provider::Gitea => text.strip_prefix("sha256=").unwrap_or(text),
        _ => text.strip_prefix("sha256=")?,
    };
    hex::decode(hex_digest).ok().map(Proof::Hmac)
}

/// Whether `proof` was made with `secret` for this body: in constant time
/// whatever is presented (the token is compared through its digest, so
/// not even the secret's length shows).
pub fn verifies(proof: &Proof, body: &[u8], secret: &Secret) -> bool {
    match proof {
        Proof::Hmac(signature) => {
            let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.0.as_bytes()) else {
                return false;
            };
            mac.update(body);
            mac.verify_slice(signature).is_ok()
        }
        Proof::Token(token) => {
            let presented = Sha256::digest(token);
            let expected = Sha256::digest(secret.0.as_bytes());
            presented.ct_eq(&expected).into()
        }
    }
}

/// What kind of delivery a verified hook is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Push,
    /// The host checking that the hook is set up (GitHub's `ping`,
    /// Bitbucket's `diagnostics:ping`).
    Ping,
    /// Anything else (issues, tags, merge requests …): nothing to do.
    Other(String),
}

/// The delivery's kind from its event header; a hook without one is taken
/// for a push (its payload decides).
pub fn event(provider: Provider, headers: &HeaderMap) -> Event {
    let Some(name) = provider
        .event_headers()
        .iter()
        .find_map(|h| headers.get(*h))
        .map(|v| String::from_utf8_lossy(v.as_bytes()).trim().to_string())
    else {
        return Event::Push;
    };
    let push = match provider {
        Provider::GitHub | Provider::Gitea => name.eq_ignore_ascii_case("push"),
        // A system hook's push has the push payload (and object_kind says so).
        Provider::GitLab => name == "Push Hook" || name == "System Hook",
        Provider::Bitbucket => name == "repo:push",
        Provider::Generic => true,
    };
    let ping = match provider {
        Provider::GitHub => name == "ping",
        Provider::Bitbucket => name == "diagnostics:ping",
        _ => false,
    };
    if push {
        Event::Push
    } else if ping {
        Event::Ping
    } else {
        Event::Other(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    /// Header names and values, as a table row gives them.
    type Pairs<'a> = Vec<(&'static str, &'a str)>;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    /// The HMAC-SHA256 of `body` with `key`, in hex, as the hosts compute it.
    fn hmac_hex(key: &str, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).unwrap();
        mac.update(body);
        hex::encode(mac.finalize().into_bytes())
    }

    #[test]
    fn a_known_hmac_vector() {
        // RFC 4231, test case 2.
        assert_eq!(
            hmac_hex("Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let proof = Proof::Hmac(
            hex::decode("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
                .unwrap(),
        );
        assert!(verifies(
            &proof,
            b"what do ya want for nothing?",
            &Secret("Jefe".into())
        ));
    }

    #[test]
    fn signatures_by_provider() {
        let body = br#"{"ref":"refs/heads/main"}"#;
        let secret = Secret("s3cret".into());
        let good = hmac_hex("s3cret", body);
        let upper = good.to_ascii_uppercase();
        let other = hmac_hex("other", body);
        let prefixed = format!("sha256={good}");
        let prefixed_upper = format!("sha256={upper}");
        let prefixed_other = format!("sha256={other}");
        let short = format!("sha256={}", &good[..40]);
        let sha1ish = format!("sha1={good}");
        use Provider::*;
        let cases: Vec<(Provider, Pairs, bool)> = vec![
            (GitHub, vec![("x-hub-signature-256", &prefixed)], true),
            (GitHub, vec![("X-Hub-Signature-256", &prefixed_upper)], true),
            (
                GitHub,
                vec![("x-hub-signature-256", &prefixed_other)],
                false,
            ),
            (GitHub, vec![("x-hub-signature-256", &good)], false),
            (GitHub, vec![("x-hub-signature-256", &short)], false),
            (GitHub, vec![("x-hub-signature-256", &sha1ish)], false),
            (GitHub, vec![("x-hub-signature-256", "sha256=zz")], false),
            (GitHub, vec![("x-hub-signature", &prefixed)], false),
            (GitHub, vec![], false),
            (Gitea, vec![("x-gitea-signature", &good)], true),
            (Gitea, vec![("x-forgejo-signature", &good)], true),
            (Gitea, vec![("x-gogs-signature", &good)], true),
            (Gitea, vec![("x-gitea-signature", &prefixed)], true),
            (Gitea, vec![("x-gitea-signature", &other)], false),
            (Gitea, vec![("x-hub-signature-256", &prefixed)], false),
            (Bitbucket, vec![("x-hub-signature", &prefixed)], true),
            (Bitbucket, vec![("x-hub-signature", &good)], false),
            (Bitbucket, vec![("x-hub-signature", &prefixed_other)], false),
            (GitLab, vec![("x-gitlab-token", "s3cret")], true),
            (GitLab, vec![("x-gitlab-token", "s3cre")], false),
            (GitLab, vec![("x-gitlab-token", "s3cret ")], false),
            (GitLab, vec![("x-gitlab-token", "")], false),
            (GitLab, vec![("x-gitlab-token", &good)], false),
            (GitLab, vec![], false),
            (Generic, vec![("x-kedge-signature-256", &prefixed)], true),
            (Generic, vec![("x-kedge-signature-256", &good)], false),
            (
                Generic,
                vec![("x-kedge-signature-256", &prefixed_other)],
                false,
            ),
            (Generic, vec![("x-hub-signature-256", &prefixed)], false),
        ];
        for (provider, pairs, want) in cases {
            let got =
                proof(provider, &headers(&pairs)).is_some_and(|p| verifies(&p, body, &secret));
            assert_eq!(got, want, "{provider:?} {pairs:?}");
        }
        // The signature covers the body byte for byte.
        let p = proof(GitHub, &headers(&[("x-hub-signature-256", &prefixed)])).unwrap();
        assert!(!verifies(&p, br#"{"ref": "refs/heads/main"}"#, &secret));
    }

    #[test]
    fn events_by_provider() {
        use Provider::*;
        let cases: Vec<(Provider, Pairs, Event)> = vec![
            (GitHub, vec![("x-github-event", "push")], Event::Push),
            (GitHub, vec![("x-github-event", "ping")], Event::Ping),
            (
                GitHub,
                vec![("x-github-event", "issues")],
                Event::Other("issues".into()),
            ),
            (GitHub, vec![], Event::Push),
            (GitLab, vec![("x-gitlab-event", "Push Hook")], Event::Push),
            (GitLab, vec![("x-gitlab-event", "System Hook")], Event::Push),
            (
                GitLab,
                vec![("x-gitlab-event", "Tag Push Hook")],
                Event::Other("Tag Push Hook".into()),
            ),
            (Gitea, vec![("x-gitea-event", "push")], Event::Push),
            (Gitea, vec![("x-forgejo-event", "push")], Event::Push),
            (Gitea, vec![("x-gogs-event", "push")], Event::Push),
            (
                Gitea,
                vec![("x-gitea-event", "create")],
                Event::Other("create".into()),
            ),
            (Bitbucket, vec![("x-event-key", "repo:push")], Event::Push),
            (
                Bitbucket,
                vec![("x-event-key", "diagnostics:ping")],
                Event::Ping,
            ),
            (
                Bitbucket,
                vec![("x-event-key", "pullrequest:created")],
                Event::Other("pullrequest:created".into()),
            ),
            (Generic, vec![("x-github-event", "ping")], Event::Push),
        ];
        for (provider, pairs, want) in cases {
            assert_eq!(
                event(provider, &headers(&pairs)),
                want,
                "{provider:?} {pairs:?}"
            );
        }
    }

    #[test]
    fn providers_by_path() {
        for (path, want) in [
            ("github", Some(Provider::GitHub)),
            ("gitlab", Some(Provider::GitLab)),
            ("gitea", Some(Provider::Gitea)),
            ("forgejo", Some(Provider::Gitea)),
            ("gogs", Some(Provider::Gitea)),
            ("bitbucket", Some(Provider::Bitbucket)),
            ("generic", Some(Provider::Generic)),
            ("GitHub", None),
            ("svn", None),
        ] {
            assert_eq!(Provider::from_path(path), want, "{path}");
        }
    }
}
