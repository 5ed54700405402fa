//! http: dashboard sessions. Signing in with an API token opens one: a
//! random id in an HttpOnly, SameSite=Strict cookie (Secure under TLS),
//! kept in `serve`'s memory with the token's digest and the session's CSRF
//! token. Every request looks the token up again, so revoking it ends its
//! sessions at once; a restart of `serve` ends them all (sign in again).
//! A token holds [`MAX_SESSIONS_PER_TOKEN`] sessions at most, all tokens
//! [`MAX_SESSIONS`]; beyond either, the oldest is signed out.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, header};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::AppState;
use crate::ops::{OpsError, Role};

/// The session cookie.
pub const COOKIE: &str = "kedge_session";
/// The sign-in form's CSRF cookie (double submit: no session yet).
pub const LOGIN_COOKIE: &str = "kedge_login";
/// How long a session lasts after signing in.
pub const LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// Sessions kept at most; the oldest goes first beyond this.
pub const MAX_SESSIONS: usize = 10_000;
/// Sessions one token may hold at once: signing in once more signs that
/// token's oldest session out, and no other token's.
pub const MAX_SESSIONS_PER_TOKEN: usize = 16;

/// A signed-in request: who, with which role, and the CSRF token its
/// forms carry.
#[derive(Debug, Clone)]
pub struct Session {
    pub token_name: String,
    pub role: Role,
    pub csrf: String,
    /// The cookie's value, to end the session.
    id: String,
}

impl Session {
    /// A session for page tests.
    #[cfg(test)]
    pub fn for_test(token_name: &str, role: Role) -> Session {
        Session {
            token_name: token_name.into(),
            role,
            csrf: "test-csrf".into(),
            id: "test-id".into(),
        }
    }

    /// May sync and roll back: a `deploy` or `admin` token.
    pub fn can_write(&self) -> bool {
        self.role >= Role::Deploy
    }

    pub fn id(&self) -> &str {
        &self.id
    }
}

struct Entry {
    token_digest: String,
    csrf: String,
    opened: Instant,
}

/// The open sessions, by the digest of their id (the id itself is not
/// kept), and the failed sign-ins of recent addresses.
#[derive(Default)]
pub struct Sessions {
    open: Mutex<HashMap<String, Entry>>,
    /// The sign-in form's back-off, per client address.
    pub sign_ins: super::throttle::LoginThrottle,
}

impl Sessions {
    /// Opens a session for the token with this digest: the cookie value.
    pub fn open(&self, token_digest: String) -> String {
        let id = random_hex();
        let mut open = self.lock();
        open.retain(|_, e| e.opened.elapsed() < LIFETIME);
        // A token's own sign-ins push out its own oldest session first:
        // one token signing in over and over never signs another out.
        let mine = open
            .values()
            .filter(|e| e.token_digest == token_digest)
            .count();
        if mine >= MAX_SESSIONS_PER_TOKEN {
            oldest_out(&mut open, |e| e.token_digest == token_digest);
        }
        if open.len() >= MAX_SESSIONS {
            oldest_out(&mut open, |_| true);
        }
        open.insert(
            digest(&id),
            Entry {
                token_digest,
                csrf: random_hex(),
                opened: Instant::now(),
            },
        );
        id
    }

    pub fn close(&self, id: &str) {
        self.lock().remove(&digest(id));
    }

    /// The token digest and CSRF token of a live session.
    fn get(&self, id: &str) -> Option<(String, String)> {
        let mut open = self.lock();
        let key = digest(id);
        let entry = open.get(&key)?;
        if entry.opened.elapsed() >= LIFETIME {
            open.remove(&key);
            return None;
        }
        Some((entry.token_digest.clone(), entry.csrf.clone()))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Ends the oldest session of those `which` picks.
fn oldest_out(open: &mut HashMap<String, Entry>, which: impl Fn(&Entry) -> bool) {
    if let Some(oldest) = open
        .iter()
        .filter(|(_, e)| which(e))
        .min_by_key(|(_, e)| e.opened)
        .map(|(k, _)| k.clone())
    {
        open.remove(&oldest);
    }
}

/// The request's session, if its cookie names one whose token still exists.
/// The event stream takes it too.
pub fn current(state: &AppState, headers: &HeaderMap) -> Result<Option<Session>, OpsError> {
    let Some(id) = cookie(headers, COOKIE) else {
        return Ok(None);
    };
    let Some((token_digest, csrf)) = state.sessions.get(id) else {
        return Ok(None);
    };
    match state.ops.token_by_digest(&token_digest)? {
        Some(token) => Ok(Some(Session {
            token_name: token.name,
            role: token.role,
            csrf,
            id: id.to_string(),
        })),
        None => {
            // Revoked: the session ends with it.
            state.sessions.close(id);
            Ok(None)
        }
    }
}

/// A form's CSRF token against the expected one, in constant time.
pub fn csrf_matches(expected: &str, presented: Option<&str>) -> bool {
    let Some(presented) = presented else {
        return false;
    };
    !expected.is_empty() && bool::from(expected.as_bytes().ct_eq(presented.as_bytes()))
}

/// The value of cookie `name`.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Strict, Secure when the page
/// was served over TLS (by `serve` itself or a proxy that says so).
pub fn set_cookie(name: &str, value: &str, path: &str, max_age: Duration, secure: bool) -> String {
    format!(
        "{name}={value}; Path={path}; Max-Age={}; HttpOnly; SameSite=Strict{}",
        max_age.as_secs(),
        if secure { "; Secure" } else { "" }
    )
}

/// Whether the request came over TLS: `serve`'s own, or a proxy's
/// `X-Forwarded-Proto: https`.
pub fn secure(state: &AppState, headers: &HeaderMap) -> bool {
    state.ops.settings().tls.is_some()
        || headers
            .get("x-forwarded-proto")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"))
}

/// 32 random bytes as hex.
pub fn random_hex() -> String {
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes);
    hex::encode(bytes)
}

fn digest(id: &str) -> String {
    hex::encode(Sha256::digest(id.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_is_found_by_its_id_only_and_closes() {
        let sessions = Sessions::default();
        let id = sessions.open("digest-of-token".into());
        let (token, csrf) = sessions.get(&id).unwrap();
        assert_eq!(token, "digest-of-token");
        assert_eq!(csrf.len(), 64);
        assert!(sessions.get(&random_hex()).is_none());
        // Only the id's digest is kept.
        assert!(!sessions.lock().contains_key(&id));
        sessions.close(&id);
        assert!(sessions.get(&id).is_none());
    }

    /// A read token signing in 10,050 times (the count) signed
    /// everyone else out once the global cap was reached.
    #[test]
    fn one_tokens_sign_ins_never_sign_out_another_tokens_session() {
        let sessions = Sessions::default();
        let theirs = sessions.open("digest-of-their-token".into());
        let first = sessions.open("digest-of-a-read-token".into());
        let mut last = String::new();
        for _ in 0..MAX_SESSIONS + 50 {
            last = sessions.open("digest-of-a-read-token".into());
        }
        assert!(
            sessions.get(&theirs).is_some(),
            "another token's session ended"
        );
        assert!(
            sessions.get(&first).is_none(),
            "the token's oldest stays open"
        );
        assert!(sessions.get(&last).is_some());
        let open = sessions.lock();
        let mine = open
            .values()
            .filter(|e| e.token_digest == "digest-of-a-read-token")
            .count();
        assert_eq!(mine, MAX_SESSIONS_PER_TOKEN);
        assert_eq!(open.len(), MAX_SESSIONS_PER_TOKEN + 1);
    }

    #[test]
    fn the_global_cap_still_holds_across_tokens() {
        let sessions = Sessions::default();
        let first = sessions.open("token-0".into());
        for i in 0..MAX_SESSIONS {
            sessions.open(format!("token-{}", i + 1));
        }
        assert_eq!(sessions.lock().len(), MAX_SESSIONS);
        assert!(sessions.get(&first).is_none(), "the oldest of all goes");
    }

    #[test]
    fn csrf_tokens_must_match_exactly() {
        assert!(csrf_matches("abc", Some("abc")));
        assert!(!csrf_matches("abc", Some("abd")));
        assert!(!csrf_matches("abc", Some("ab")));
        assert!(!csrf_matches("abc", None));
        assert!(!csrf_matches("", Some("")));
    }

    #[test]
    fn cookies_are_read_by_name_and_set_strict() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            "other=1; kedge_session=abc ; x=".parse().unwrap(),
        );
        assert_eq!(cookie(&headers, COOKIE), Some("abc"));
        assert_eq!(cookie(&headers, "x"), None);
        assert_eq!(cookie(&headers, "missing"), None);
        let c = set_cookie(COOKIE, "v", "/", Duration::from_secs(60), true);
        assert_eq!(
            c,
            "kedge_session=v; Path=/; Max-Age=60; HttpOnly; SameSite=Strict; Secure"
        );
        assert!(!set_cookie(COOKIE, "v", "/", Duration::from_secs(60), false).contains("Secure"));
    }
}
