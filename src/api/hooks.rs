//! api: git webhooks, `POST /hooks/{github,gitlab,gitea,bitbucket,generic}`.
//! Not behind the API's tokens: each hook proves it knows a webhook secret
//! (the global one, or a repository's own), checked in constant time
//! against the raw body before the body is parsed. A verified push wakes
//! the repositories it concerns for an immediate remote check. Nothing of
//! a request — headers or body — is ever logged.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{ApiError, AppState};
use crate::config::Secret;
use crate::ops::hooks::{HookTarget, Hooks, RepoSecret, Verified};

pub fn routes() -> axum::Router<Arc<AppState>> {
    axum::Router::new().route("/hooks/{provider}", post(hook))
}

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
    fn signature_headers(self) -> &'static [&'static str] {
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

/// The branch a ref names, if it names one.
fn branch_of(r: &str) -> Option<String> {
    r.strip_prefix("refs/heads/")
        .filter(|b| !b.is_empty())
        .map(str::to_string)
}

fn strings(v: &Value, pointers: &[&str]) -> Vec<String> {
    pointers
        .iter()
        .filter_map(|p| v.pointer(p)?.as_str())
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// What a verified payload asks for: the repository's addresses and the
/// branches it moved (or, for the generic hook, a repository by name).
/// `Ok(None)`: a payload that is not a push after all (a GitLab tag push).
pub fn target(provider: Provider, payload: &Value) -> Result<Option<HookTarget>, String> {
    let pushed = |urls: Vec<String>| HookTarget::Push {
        urls,
        branches: payload
            .get("ref")
            .and_then(Value::as_str)
            .and_then(branch_of)
            .into_iter()
            .collect(),
    };
    Ok(Some(match provider {
        Provider::GitHub => pushed(strings(
            payload,
            &[
                "/repository/clone_url",
                "/repository/ssh_url",
                "/repository/html_url",
                "/repository/git_url",
            ],
        )),
        Provider::GitLab => {
            if payload
                .get("object_kind")
                .and_then(Value::as_str)
                .is_some_and(|k| k != "push")
            {
                return Ok(None);
            }
            pushed(strings(
                payload,
                &[
                    "/project/git_http_url",
                    "/project/git_ssh_url",
                    "/project/web_url",
                    "/repository/git_http_url",
                    "/repository/git_ssh_url",
                    "/repository/homepage",
                    "/repository/url",
                ],
            ))
        }
        Provider::Gitea => pushed(strings(
            payload,
            &[
                "/repository/clone_url",
                "/repository/ssh_url",
                "/repository/html_url",
            ],
        )),
        Provider::Bitbucket => bitbucket(payload),
        Provider::Generic => generic(payload)?,
    }))
}

/// Bitbucket Cloud: the web address and the clone addresses (given, or
/// derived from the full name on bitbucket.org); the branches of the
/// changes that left a branch head (a deleted branch has none).
fn bitbucket(payload: &Value) -> HookTarget {
    let mut urls = strings(payload, &["/repository/links/html/href"]);
    if let Some(clones) = payload
        .pointer("/repository/links/clone")
        .and_then(Value::as_array)
    {
        urls.extend(
            clones
                .iter()
                .filter_map(|c| c.get("href")?.as_str())
                .map(str::to_string),
        );
    }
    let on_bitbucket_org = urls.is_empty()
        || urls
            .iter()
            .any(|u| crate::ops::hooks::host_of(u).as_deref() == Some("bitbucket.org"));
    if let Some(full_name) = payload
        .pointer("/repository/full_name")
        .and_then(Value::as_str)
        .filter(|n| on_bitbucket_org && !n.is_empty())
    {
        urls.push(format!("https://bitbucket.org/{full_name}.git"));
        urls.push(format!("git@bitbucket.org:{full_name}.git"));
    }
    let branches = payload
        .pointer("/push/changes")
        .and_then(Value::as_array)
        .map(|changes| {
            changes
                .iter()
                .filter_map(|c| {
                    let new = c.get("new")?;
                    if new.get("type")?.as_str()? != "branch" {
                        return None;
                    }
                    new.get("name")?.as_str().map(str::to_string)
                })
                .collect()
        })
        .unwrap_or_default();
    HookTarget::Push { urls, branches }
}

/// `{"repo": NAME}` or `{"url": URL, "ref": "refs/heads/BRANCH"}`.
fn generic(payload: &Value) -> Result<HookTarget, String> {
    let field = |k: &str| payload.get(k).and_then(Value::as_str);
    match (field("repo"), field("url"), field("ref")) {
        (Some(repo), None, None) => Ok(HookTarget::Repo(repo.to_string())),
        (None, Some(url), Some(r)) => Ok(HookTarget::Push {
            urls: vec![url.to_string()],
            branches: branch_of(r).into_iter().collect(),
        }),
        _ => Err(
            r#"the generic hook takes {"repo": NAME} or {"url": URL, "ref": "refs/heads/BRANCH"}"#
                .into(),
        ),
    }
}

const DISABLED: &str = "webhooks are off: no webhook secret is configured. Set `webhook.secret` \
     (or `webhook.secret_file`) in the config file or KEDGE_WEBHOOK_SECRET, or give a repository \
     its own with `kedge repo add … --webhook-secret-file FILE`";

/// A hook, counted in `kedge_webhook_requests_total{provider,result}` by
/// what it was answered (a path that names no host is not counted: its
/// label would be whatever a stranger sent).
async fn hook(
    State(state): State<Arc<AppState>>,
    Path(provider): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let known = Provider::from_path(&provider).map(Provider::name);
    let answer = handle(state.clone(), provider, headers, body).await;
    if let Some(provider) = known {
        let status = match &answer {
            Ok(r) => r.status(),
            Err(e) => e.status(),
        };
        let result = match status.as_u16() {
            200 => "ping",
            202 => "accepted",
            400 => "bad_request",
            401 => "unauthorized",
            404 => "disabled",
            _ => "error",
        };
        state.metrics.webhook(provider, result);
    }
    answer
}

async fn handle(
    state: Arc<AppState>,
    provider: String,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let Some(provider) = Provider::from_path(&provider) else {
        return Err(ApiError::NotFound(
            "no such hook: use /hooks/github, /hooks/gitlab, /hooks/gitea, /hooks/bitbucket or /hooks/generic"
                .into(),
        ));
    };
    // Reading the secret files and an HMAC of up to 1 MiB per secret: on
    // the blocking pool, so that a flood of forged hooks never holds the
    // runtime's threads, which the controller needs.
    let (hooks, verified) = {
        let (state, headers, body) = (state.clone(), headers.clone(), body.clone());
        tokio::task::spawn_blocking(move || check(&state, provider, &headers, &body))
            .await
            .map_err(|e| ApiError::Internal(format!("the webhook check stopped: {e}")))??
    };
    if !verified.any() {
        tracing::debug!(
            provider = provider.name(),
            "webhook refused: the signature matches no secret"
        );
        return Err(ApiError::Unauthorized(
            "the signature does not match the webhook secret".into(),
        ));
    }
    let ignored = |what: String| {
        tracing::info!(provider = provider.name(), "webhook ignored: {what}");
        Ok((
            StatusCode::ACCEPTED,
            Json(serde_json::json!({ "triggered": [], "ignored": what })),
        )
            .into_response())
    };
    match event(provider, &headers) {
        Event::Ping => {
            tracing::info!(provider = provider.name(), "webhook ping");
            return Ok((StatusCode::OK, Json(serde_json::json!({ "pong": true }))).into_response());
        }
        Event::Other(name) => return ignored(format!("event {name:?} is not a push")),
        Event::Push => {}
    }
    let payload: Value = serde_json::from_slice(&body).map_err(|_| {
        ApiError::BadRequest(
            "the body is not JSON: set the webhook's content type to application/json".into(),
        )
    })?;
    let Some(target) = target(provider, &payload).map_err(ApiError::BadRequest)? else {
        return ignored("not a branch push".into());
    };
    let matched = hooks.matching(&target, &verified);
    let triggered = state.ops.webhook_wake(&matched)?;
    if triggered.is_empty() {
        tracing::info!(
            provider = provider.name(),
            "webhook accepted: no repository follows that address and branch"
        );
    } else {
        tracing::info!(
            provider = provider.name(),
            repos = %triggered.join(", "),
            "webhook accepted: checking the remote now"
        );
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({ "triggered": triggered })),
    )
        .into_response())
}

/// The hooks' secrets, read now, and which of them the request's proof
/// verifies.
fn check(
    state: &AppState,
    provider: Provider,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(Hooks, Verified), ApiError> {
    let mut hooks = state.ops.hooks()?;
    hooks.global = hooks.global.filter(|s| !s.0.is_empty());
    if !hooks.enabled() {
        return Err(ApiError::NotFound(DISABLED.into()));
    }
    let Some(proof) = proof(provider, headers) else {
        tracing::debug!(provider = provider.name(), "webhook refused: no signature");
        return Err(ApiError::Unauthorized(format!(
            "missing {} header",
            provider.signature_headers().join(" or ")
        )));
    };
    // Every secret is tried (each in constant time): which ones verified
    // decides which repositories the hook may trigger.
    let verified = Verified {
        global: hooks
            .global
            .as_ref()
            .is_some_and(|s| verifies(&proof, body, s)),
        repos: hooks
            .repos
            .iter()
            .filter(|r| matches!(&r.secret, RepoSecret::Own(s) if verifies(&proof, body, s)))
            .map(|r| r.name.clone())
            .collect(),
    };
    Ok((hooks, verified))
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

    fn push(urls: &[&str], branches: &[&str]) -> Option<HookTarget> {
        Some(HookTarget::Push {
            urls: urls.iter().map(|s| s.to_string()).collect(),
            branches: branches.iter().map(|s| s.to_string()).collect(),
        })
    }

    #[test]
    fn payloads_by_provider() {
        use Provider::*;
        let cases: Vec<(Provider, Value, Option<HookTarget>)> = vec![
            (
                GitHub,
                serde_json::json!({
                    "ref": "refs/heads/main",
                    "repository": {
                        "clone_url": "https://github.com/acme/app.git",
                        "ssh_url": "git@github.com:acme/app.git",
                        "html_url": "https://github.com/acme/app",
                        "git_url": "git://github.com/acme/app.git",
                        "name": "app"
                    }
                }),
                push(
                    &[
                        "https://github.com/acme/app.git",
                        "git@github.com:acme/app.git",
                        "https://github.com/acme/app",
                        "git://github.com/acme/app.git",
                    ],
                    &["main"],
                ),
            ),
            (
                GitHub,
                serde_json::json!({"ref": "refs/tags/v1", "repository": {"clone_url": "https://h/a.git"}}),
                push(&["https://h/a.git"], &[]),
            ),
            (
                GitLab,
                serde_json::json!({
                    "object_kind": "push",
                    "ref": "refs/heads/release/1.2",
                    "project": {
                        "git_http_url": "https://gitlab.com/g/sub/app.git",
                        "git_ssh_url": "git@gitlab.com:g/sub/app.git",
                        "web_url": "https://gitlab.com/g/sub/app"
                    },
                    "repository": {"homepage": "https://gitlab.com/g/sub/app"}
                }),
                push(
                    &[
                        "https://gitlab.com/g/sub/app.git",
                        "git@gitlab.com:g/sub/app.git",
                        "https://gitlab.com/g/sub/app",
                        "https://gitlab.com/g/sub/app",
                    ],
                    &["release/1.2"],
                ),
            ),
            (
                GitLab,
                serde_json::json!({"object_kind": "tag_push", "ref": "refs/tags/v1"}),
                None,
            ),
            (
                Gitea,
                serde_json::json!({
                    "ref": "refs/heads/main",
                    "repository": {
                        "clone_url": "http://gitea.local:3000/acme/app.git",
                        "ssh_url": "ssh://git@gitea.local:2222/acme/app.git",
                        "html_url": "http://gitea.local:3000/acme/app"
                    }
                }),
                push(
                    &[
                        "http://gitea.local:3000/acme/app.git",
                        "ssh://git@gitea.local:2222/acme/app.git",
                        "http://gitea.local:3000/acme/app",
                    ],
                    &["main"],
                ),
            ),
            (
                Bitbucket,
                serde_json::json!({
                    "repository": {
                        "full_name": "acme/app",
                        "links": {"html": {"href": "https://bitbucket.org/acme/app"}}
                    },
                    "push": {"changes": [
                        {"new": {"type": "branch", "name": "main"}},
                        {"new": {"type": "tag", "name": "v1"}},
                        {"new": null, "old": {"type": "branch", "name": "gone"}},
                        {"new": {"type": "branch", "name": "dev"}}
                    ]}
                }),
                push(
                    &[
                        "https://bitbucket.org/acme/app",
                        "https://bitbucket.org/acme/app.git",
                        "git@bitbucket.org:acme/app.git",
                    ],
                    &["main", "dev"],
                ),
            ),
            (
                Bitbucket,
                serde_json::json!({
                    "repository": {
                        "full_name": "acme/app",
                        "links": {"html": {"href": "https://bb.example.com/acme/app"}}
                    },
                    "push": {"changes": []}
                }),
                push(&["https://bb.example.com/acme/app"], &[]),
            ),
            (
                Generic,
                serde_json::json!({"repo": "app"}),
                Some(HookTarget::Repo("app".into())),
            ),
            (
                Generic,
                serde_json::json!({"url": "file:///srv/app.git", "ref": "refs/heads/main"}),
                push(&["file:///srv/app.git"], &["main"]),
            ),
            (
                Generic,
                serde_json::json!({"url": "file:///srv/app.git", "ref": "main"}),
                push(&["file:///srv/app.git"], &[]),
            ),
            (GitHub, serde_json::json!({}), push(&[], &[])),
            (GitHub, serde_json::json!([1, 2]), push(&[], &[])),
        ];
        for (provider, payload, want) in cases {
            assert_eq!(
                target(provider, &payload),
                Ok(want),
                "{provider:?} {payload}"
            );
        }
        for bad in [
            serde_json::json!({}),
            serde_json::json!({"url": "file:///srv/app.git"}),
            serde_json::json!({"repo": "app", "url": "x", "ref": "refs/heads/main"}),
            serde_json::json!({"repo": 3}),
            serde_json::json!("app"),
        ] {
            assert!(target(Generic, &bad).is_err(), "{bad}");
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
