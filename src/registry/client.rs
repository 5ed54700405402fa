//! registry: the OCI distribution API, as much of it as update checks
//! need — a tag's manifest digest (HEAD) and a repository's tags (paged
//! by `Link`) — with anonymous, basic and bearer-token access, the
//! `registries:` credentials, a cache per check interval and a backoff per
//! registry after 429 and 5xx answers.
//!
//! Written on the `ureq` client the notifications already use (rustls with
//! ring) rather than `oci-client`: that crate brings reqwest with the
//! aws-lc crypto provider, a second TLS stack beside the listener's, for
//! two requests.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;

use super::reference::Reference;

/// One request may take this long.
const TIMEOUT: Duration = Duration::from_secs(30);
/// A page of tags, a token answer: never read past this.
const MAX_BODY: u64 = 4 << 20;
/// Pages of tags followed, at most (100,000 tags at 1,000 a page).
const MAX_PAGES: usize = 100;
/// Waits after a 429 or 5xx double from here, up to `MAX_BACKOFF`.
const FIRST_BACKOFF: Duration = Duration::from_secs(30);
const MAX_BACKOFF: Duration = Duration::from_secs(3600);

/// Manifest kinds a HEAD accepts: an index or manifest list (multi-arch
/// images are compared by their index digest) before a single manifest.
const MANIFEST_TYPES: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    #[error("registry {registry} cannot be reached: {why}")]
    Unreachable { registry: String, why: String },
    #[error("registry {registry} refused the credentials (HTTP {status})")]
    Unauthorized { registry: String, status: u16 },
    #[error("registry {registry} has no {what}")]
    NotFound { registry: String, what: String },
    #[error("registry {registry} answered HTTP {status}; asked again after {}s", wait.as_secs())]
    Backoff {
        registry: String,
        status: u16,
        wait: Duration,
    },
    #[error("registry {registry} answered HTTP {status}")]
    Status { registry: String, status: u16 },
    /// A 3xx: only a blob's is followed (see `created`).
    #[error("registry {registry} redirected to {location}")]
    Redirect { registry: String, location: String },
    #[error("registry {registry} answered something unreadable: {why}")]
    Answer { registry: String, why: String },
}

/// Credentials for one registry host (`registries:`).
#[derive(Clone)]
pub struct Login {
    pub host: String,
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Login({}@{})", self.username, self.host)
    }
}

/// What a check found, kept for the check interval.
#[derive(Debug, Clone)]
enum Cached {
    Digest(Result<String, RegistryError>),
    Tags(Result<Vec<String>, RegistryError>),
    Created(Result<Option<i64>, RegistryError>),
}

pub struct Client {
    agent: ureq::Agent,
    logins: Mutex<Vec<Login>>,
    /// Bearer tokens by (registry, scope), until they expire.
    tokens: Mutex<HashMap<(String, String), (String, Instant)>>,
    /// Answers by key, for `ttl`: each image is asked once per interval.
    cache: Mutex<HashMap<String, (Cached, Instant)>>,
    ttl: Duration,
    /// Per registry: no request before this, and the last wait.
    backoff: Mutex<HashMap<String, (Instant, Duration, u16)>>,
    /// Registries that asked for basic auth: later requests carry it at
    /// once instead of being refused first.
    basic: Mutex<std::collections::HashSet<String>>,
    /// Requests made (for tests and benches).
    requests: std::sync::atomic::AtomicU64,
    /// Tags asked per page.
    page: usize,
}

impl Client {
    pub fn new(logins: Vec<Login>, ttl: Duration) -> Client {
        let agent = crate::outbound::agent(TIMEOUT);
        Client {
            agent,
            logins: Mutex::new(logins),
            tokens: Mutex::default(),
            cache: Mutex::default(),
            ttl,
            backoff: Mutex::default(),
            basic: Mutex::default(),
            requests: Default::default(),
            page: 1000,
        }
    }

    /// Tags asked per page (1,000 by default; tests page with fewer).
    pub fn page_size(mut self, n: usize) -> Client {
        self.page = n.max(1);
        self
    }

    /// Forgets every cached answer (`kedge updates check` asks afresh);
    /// backoffs stay.
    pub fn forget(&self) {
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    pub fn requests(&self) -> u64 {
        self.requests.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The digest `r`'s tag points at now (an index digest for a
    /// multi-arch image). Blocking.
    pub fn digest(&self, r: &Reference) -> Result<String, RegistryError> {
        let key = format!("digest {}/{}:{}", r.registry, r.repository, r.tag);
        if let Some(Cached::Digest(d)) = self.cached(&key) {
            return d;
        }
        let url = format!("{}/v2/{}/manifests/{}", r.base_url(), r.repository, r.tag);
        let found = self
            .call("HEAD", &url, r, Some(MANIFEST_TYPES))
            .and_then(|(_, headers, _)| {
                headers
                    .get("docker-content-digest")
                    .cloned()
                    .ok_or_else(|| RegistryError::Answer {
                        registry: r.registry.clone(),
                        why: "no Docker-Content-Digest".into(),
                    })
            })
            .map_err(|e| match e {
                RegistryError::Status {
                    registry,
                    status: 404,
                } => RegistryError::NotFound {
                    registry,
                    what: format!("{}:{}", r.repository, r.tag),
                },
                e => e,
            });
        self.keep(key, Cached::Digest(found.clone()));
        found
    }

    /// Every tag of `r`'s repository, following `Link` pages on the same
    /// registry. Blocking.
    pub fn tags(&self, r: &Reference) -> Result<Vec<String>, RegistryError> {
        let key = format!("tags {}/{}", r.registry, r.repository);
        if let Some(Cached::Tags(t)) = self.cached(&key) {
            return t;
        }
        let found = self.tags_uncached(r);
        self.keep(key, Cached::Tags(found.clone()));
        found
    }

    /// When `r`'s image was built (its config's `created`, ms since the
    /// epoch; for a multi-arch image, this machine's platform's, else the
    /// first), for `min_age`. `None` when the image does not say. Blocking.
    pub fn created(&self, r: &Reference) -> Result<Option<i64>, RegistryError> {
        let key = format!("created {}/{}:{}", r.registry, r.repository, r.tag);
        if let Some(Cached::Created(c)) = self.cached(&key) {
            return c;
        }
        let found = self.created_uncached(r);
        self.keep(key, Cached::Created(found.clone()));
        found
    }

    fn created_uncached(&self, r: &Reference) -> Result<Option<i64>, RegistryError> {
        let answer = |why: String| RegistryError::Answer {
            registry: r.registry.clone(),
            why,
        };
        let json = |body: &str| -> Result<serde_json::Value, RegistryError> {
            serde_json::from_str(body).map_err(|e| answer(e.to_string()))
        };
        let base = r.base_url();
        let manifest_url =
            |reference: &str| format!("{base}/v2/{}/manifests/{reference}", r.repository);
        let (_, _, body) = self.call("GET", &manifest_url(&r.tag), r, Some(MANIFEST_TYPES))?;
        let mut manifest = json(&body)?;
        if let Some(list) = manifest["manifests"].as_array() {
            let arch = match std::env::consts::ARCH {
                "x86_64" => "amd64",
                "aarch64" => "arm64",
                other => other,
            };
            let pick = list
                .iter()
                .find(|m| m["platform"]["os"] == "linux" && m["platform"]["architecture"] == arch)
                .or(list.first())
                .and_then(|m| m["digest"].as_str())
                .ok_or_else(|| answer("an empty image index".into()))?
                .to_string();
            let (_, _, body) = self.call("GET", &manifest_url(&pick), r, Some(MANIFEST_TYPES))?;
            manifest = json(&body)?;
        }
        let Some(config) = manifest["config"]["digest"].as_str() else {
            return Ok(None);
        };
        let url = format!("{base}/v2/{}/blobs/{config}", r.repository);
        let body = match self.call("GET", &url, r, None) {
            Ok((_, _, body)) => body,
            // Blobs often live elsewhere (object storage, a CDN): the
            // redirect is followed once, with no credentials (its URL
            // carries its own signature), over HTTPS unless the registry
            // itself is plain HTTP.
            Err(RegistryError::Redirect { location, .. }) => {
                let target = blob_location(&base, &location).ok_or_else(|| {
                    answer(format!(
                        "the image config is redirected to {location}, which Kedge does not follow"
                    ))
                })?;
                match self.send("GET", &target, None, None, r)? {
                    (200..=299, _, body) => body,
                    (status, _, _) => {
                        return Err(answer(format!(
                            "the image config's redirect answered HTTP {status}"
                        )));
                    }
                }
            }
            Err(e) => return Err(e),
        };
        let created = json(&body)?["created"]
            .as_str()
            .and_then(|c| chrono::DateTime::parse_from_rfc3339(c).ok())
            .map(|t| t.timestamp_millis());
        Ok(created)
    }

    fn tags_uncached(&self, r: &Reference) -> Result<Vec<String>, RegistryError> {
        let base = r.base_url();
        let mut url = format!("{base}/v2/{}/tags/list?n={}", r.repository, self.page);
        let mut out = Vec::new();
        for _ in 0..MAX_PAGES {
            let (_, headers, body) = self.call("GET", &url, r, None)?;
            let page: serde_json::Value =
                serde_json::from_str(&body).map_err(|e| RegistryError::Answer {
                    registry: r.registry.clone(),
                    why: e.to_string(),
                })?;
            out.extend(
                page["tags"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|t| t.as_str().map(String::from)),
            );
            // `Link: </v2/…/tags/list?last=x&n=1000>; rel="next"`: only a
            // path on the same registry is followed.
            match headers.get("link").and_then(|l| next_link(l)) {
                Some(path) if path.starts_with("/v2/") => url = format!("{base}{path}"),
                _ => return Ok(out),
            }
        }
        Ok(out)
    }

    fn cached(&self, key: &str) -> Option<Cached> {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .get(key)
            .filter(|(_, at)| at.elapsed() < self.ttl)
            .map(|(c, _)| c.clone())
    }

    fn keep(&self, key: String, value: Cached) {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.retain(|_, (_, at)| at.elapsed() < self.ttl);
        cache.insert(key, (value, Instant::now()));
    }

    /// The logins as `registries:` reads now (a rotated password is used
    /// from the next request on).
    pub fn set_logins(&self, logins: Vec<Login>) {
        *self.logins.lock().unwrap_or_else(|p| p.into_inner()) = logins;
    }

    fn login(&self, registry: &str) -> Option<Login> {
        self.logins
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|l| l.host == registry)
            .cloned()
    }

    /// One request with what it takes to be let in: the cached token, or
    /// the challenge's scheme (basic with the registry's login; a bearer
    /// token from the realm it names), then once more.
    fn call(
        &self,
        method: &str,
        url: &str,
        r: &Reference,
        accept: Option<&str>,
    ) -> Result<(u16, HashMap<String, String>, String), RegistryError> {
        if let Some((until, wait, status)) = self
            .backoff
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&r.registry)
            .copied()
            && Instant::now() < until
        {
            return Err(RegistryError::Backoff {
                registry: r.registry.clone(),
                status,
                wait,
            });
        }
        let scope = format!("repository:{}:pull", r.repository);
        let token = self
            .tokens
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(r.registry.clone(), scope.clone()))
            .filter(|(_, until)| Instant::now() < *until)
            .map(|(t, _)| format!("Bearer {t}"));
        let known_basic = self
            .basic
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&r.registry);
        let mut auth = match token {
            Some(t) => Some(t),
            None if known_basic => self.basic_auth(&r.registry),
            None => None,
        };
        for attempt in 0..2 {
            let (status, headers, body) = self.send(method, url, accept, auth.as_deref(), r)?;
            match status {
                200..=299 => {
                    self.backoff
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&r.registry);
                    return Ok((status, headers, body));
                }
                401 if attempt == 0 => {
                    let challenge = headers.get("www-authenticate").cloned().unwrap_or_default();
                    auth = Some(self.answer(&challenge, r, &scope)?);
                }
                401 | 403 => {
                    return Err(RegistryError::Unauthorized {
                        registry: r.registry.clone(),
                        status,
                    });
                }
                429 | 500..=599 => {
                    let mut backoff = self.backoff.lock().unwrap_or_else(|p| p.into_inner());
                    let wait = backoff
                        .get(&r.registry)
                        .map_or(FIRST_BACKOFF, |(_, w, _)| (*w * 2).min(MAX_BACKOFF));
                    let asked = headers
                        .get("retry-after")
                        .and_then(|s| s.trim().parse::<u64>().ok())
                        .map(Duration::from_secs)
                        .unwrap_or(wait)
                        .clamp(FIRST_BACKOFF, MAX_BACKOFF);
                    backoff.insert(r.registry.clone(), (Instant::now() + asked, asked, status));
                    return Err(RegistryError::Backoff {
                        registry: r.registry.clone(),
                        status,
                        wait: asked,
                    });
                }
                301 | 302 | 303 | 307 | 308 if headers.contains_key("location") => {
                    return Err(RegistryError::Redirect {
                        registry: r.registry.clone(),
                        location: headers["location"].clone(),
                    });
                }
                _ => {
                    return Err(RegistryError::Status {
                        registry: r.registry.clone(),
                        status,
                    });
                }
            }
        }
        unreachable!("the second answer returns")
    }

    /// `Basic …` with the registry's login, if it has one.
    fn basic_auth(&self, registry: &str) -> Option<String> {
        self.login(registry).map(|l| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD
                    .encode(format!("{}:{}", l.username, l.password))
            )
        })
    }

    /// The `Authorization` value a challenge asks for.
    fn answer(&self, challenge: &str, r: &Reference, scope: &str) -> Result<String, RegistryError> {
        let basic = self.basic_auth(&r.registry);
        let unauthorized = || RegistryError::Unauthorized {
            registry: r.registry.clone(),
            status: 401,
        };
        let (scheme, params) = challenge.split_once(' ').unwrap_or((challenge, ""));
        if scheme.eq_ignore_ascii_case("basic") {
            self.basic
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(r.registry.clone());
            return basic.ok_or_else(unauthorized);
        }
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(unauthorized());
        }
        let params = challenge_params(params);
        let realm = params.get("realm").ok_or_else(unauthorized)?;
        // The token service is asked over HTTPS, or over HTTP only when the
        // registry itself is (this machine's).
        if !(realm.starts_with("https://")
            || (realm.starts_with("http://") && r.base_url().starts_with("http://")))
        {
            return Err(unauthorized());
        }
        let mut url = url::Url::parse(realm).map_err(|_| unauthorized())?;
        {
            let mut q = url.query_pairs_mut();
            if let Some(service) = params.get("service") {
                q.append_pair("service", service);
            }
            q.append_pair("scope", params.get("scope").map_or(scope, String::as_str));
        }
        let (status, _, body) = self.send("GET", url.as_str(), None, basic.as_deref(), r)?;
        if status != 200 {
            return Err(RegistryError::Unauthorized {
                registry: r.registry.clone(),
                status,
            });
        }
        let answer: serde_json::Value =
            serde_json::from_str(&body).map_err(|e| RegistryError::Answer {
                registry: r.registry.clone(),
                why: e.to_string(),
            })?;
        let token = answer["token"]
            .as_str()
            .or(answer["access_token"].as_str())
            .ok_or_else(unauthorized)?
            .to_string();
        let lifetime = answer["expires_in"].as_u64().unwrap_or(60).clamp(10, 3600);
        // Kept a little less long than granted.
        let until = Instant::now() + Duration::from_secs(lifetime * 9 / 10);
        self.tokens
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                (r.registry.clone(), scope.to_string()),
                (token.clone(), until),
            );
        Ok(format!("Bearer {token}"))
    }

    fn send(
        &self,
        method: &str,
        url: &str,
        accept: Option<&str>,
        auth: Option<&str>,
        r: &Reference,
    ) -> Result<(u16, HashMap<String, String>, String), RegistryError> {
        self.requests
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut request = ureq::http::Request::builder().method(method).uri(url);
        if let Some(a) = accept {
            request = request.header("Accept", a);
        }
        if let Some(a) = auth {
            request = request.header("Authorization", a);
        }
        let unreachable = |why: String| RegistryError::Unreachable {
            registry: r.registry.clone(),
            why,
        };
        let request = request.body(()).map_err(|e| unreachable(e.to_string()))?;
        let mut response = self
            .agent
            .run(request)
            .map_err(|e| unreachable(e.to_string()))?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_ascii_lowercase(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let body = if method == "HEAD" {
            String::new()
        } else {
            response
                .body_mut()
                .with_config()
                .limit(MAX_BODY)
                .read_to_string()
                .map_err(|e| RegistryError::Answer {
                    registry: r.registry.clone(),
                    why: e.to_string(),
                })?
        };
        Ok((status, headers, body))
    }
}

/// `<url>; rel="next"` → url.
fn next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        params.contains("rel=\"next\"").then(|| {
            target
                .trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_string()
        })
    })
}

/// `realm="https://x",service="y",scope="z"` → map.
fn challenge_params(s: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut rest = s.trim();
    while let Some((k, v)) = rest.split_once('=') {
        let k = k.trim().trim_start_matches(',').trim().to_ascii_lowercase();
        let v = v.trim_start();
        let (value, after) = match v.strip_prefix('"') {
            Some(q) => match q.find('"') {
                Some(end) => (&q[..end], &q[end + 1..]),
                None => (q, ""),
            },
            None => match v.find(',') {
                Some(end) => (&v[..end], &v[end..]),
                None => (v, ""),
            },
        };
        out.insert(k, value.to_string());
        rest = after.trim_start_matches(',').trim();
    }
    out
}

/// Where a blob redirect may be followed: an absolute URL over HTTPS, or
/// over HTTP when the registry (`base`) is plain HTTP too; a path is on
/// the registry itself.
fn blob_location(base: &str, location: &str) -> Option<String> {
    if location.starts_with('/') && !location.starts_with("//") {
        return Some(format!("{base}{location}"));
    }
    let plain = base.starts_with("http://");
    (location.starts_with("https://") || (plain && location.starts_with("http://")))
        .then(|| location.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_redirects_go_only_where_they_may() {
        let cases = [
            (
                "https://r.example",
                "https://cdn.example/b?sig=1",
                Some("https://cdn.example/b?sig=1"),
            ),
            ("https://r.example", "http://cdn.example/b", None),
            (
                "http://127.0.0.1:5000",
                "http://127.0.0.1:9000/b",
                Some("http://127.0.0.1:9000/b"),
            ),
            (
                "https://r.example",
                "/v2/x/blobs/y",
                Some("https://r.example/v2/x/blobs/y"),
            ),
            ("https://r.example", "//evil.example/b", None),
            ("https://r.example", "file:///etc/passwd", None),
        ];
        for (base, location, want) in cases {
            assert_eq!(blob_location(base, location).as_deref(), want, "{location}");
        }
    }

    #[test]
    fn challenges_and_links_are_read() {
        let p = challenge_params(
            r#"realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#,
        );
        assert_eq!(p["realm"], "https://auth.example/token");
        assert_eq!(p["service"], "registry.example");
        assert_eq!(p["scope"], "repository:a/b:pull,push");
        assert_eq!(
            next_link(r#"</v2/app/tags/list?last=b&n=2>; rel="next""#).as_deref(),
            Some("/v2/app/tags/list?last=b&n=2")
        );
        assert_eq!(next_link(r#"</x>; rel="prev""#), None);
    }
}
