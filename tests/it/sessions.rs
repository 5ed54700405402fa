//! Who stays signed in, against a real `serve` on loopback: a revoked
//! token's open event streams end (bearer and dashboard cookie), one
//! token's sign-ins cannot sign another token out, and failed sign-ins back
//! off per address; how many event streams one token may hold open.

use std::time::{Duration, Instant};

use crate::support::http::EventStream;
use crate::support::*;

const STREAM: &str = "/api/v1/events/stream";

/// A client that keeps its connections and never follows a redirect.
pub(crate) fn client() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

/// What `POST /login` answered.
#[derive(Debug)]
pub(crate) struct SignIn {
    status: u16,
    /// `kedge_session=…`, when a session was opened.
    pub session: Option<String>,
    retry_after: Option<String>,
    body: String,
}

/// Signs in on the dashboard with `token`, as its form does (the CSRF
/// token doubled in the form and its cookie).
pub(crate) fn sign_in(agent: &ureq::Agent, addr: &str, token: &str) -> SignIn {
    let csrf = "i22n-csrf-0123456789";
    let mut res = agent
        .post(format!("http://{addr}/login"))
        .header("Cookie", format!("kedge_login={csrf}"))
        .content_type("application/x-www-form-urlencoded")
        .send(format!("csrf={csrf}&token={token}"))
        .expect("POST /login: no answer");
    let session = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .find(|v| v.starts_with("kedge_session=") && v.len() > "kedge_session=".len())
        .map(str::to_string);
    let retry_after = res
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    SignIn {
        status: res.status().as_u16(),
        session,
        retry_after,
        body: res.body_mut().read_to_string().unwrap_or_default(),
    }
}

/// Whether the overview page takes this session cookie (200) rather than
/// sending to the sign-in page.
fn signed_in(agent: &ureq::Agent, addr: &str, cookie: &str) -> bool {
    let res = agent
        .get(format!("http://{addr}/"))
        .header("Cookie", cookie)
        .call()
        .expect("GET /: no answer");
    res.status().as_u16() == 200
}

/// `kedge token revoke` (another process, the store) ends the streams the
/// token opened, bearer and dashboard cookie alike; another token's stream
/// stays open.
#[test]
fn a_revoked_tokens_open_event_streams_end_bearer_and_cookie() {
    let k = Kedge::new();
    let revoked = k.token("i22n-stream", "read");
    let kept = k.token("i22n-keeps", "read");
    let api = k.serve_api(&[], &[]);
    let agent = client();
    let cookie = sign_in(&agent, &api.addr, &revoked)
        .session
        .expect("signed in");
    let mut bearer = EventStream::open(api.port(), STREAM, &revoked, None);
    let mut dashboard = EventStream::open_with_cookie(api.port(), STREAM, &cookie);
    let mut other = EventStream::open(api.port(), STREAM, &kept, None);

    k.run(["token", "revoke", "i22n-stream"]).success();
    let revoked_at = Instant::now();
    assert!(
        bearer.ends_within(Duration::from_secs(30)),
        "the bearer stream of a revoked token is still open"
    );
    assert!(
        dashboard.ends_within(Duration::from_secs(30)),
        "the dashboard stream of a revoked token is still open"
    );
    // The other token's stream has been checked again since (every 5 s)
    // and holds.
    let checked = Duration::from_secs(7).saturating_sub(revoked_at.elapsed());
    assert!(!other.ends_within(checked), "another token's stream ended");
    api.get(STREAM, &revoked).refused(401);
}

/// Regression: every open event stream is a task and a store query every
/// 5 s, and nothing capped them: one token could hold thousands. At most 8
/// per token, its dashboard sessions' included; one more is 429 with the
/// reason; another token is not held back; a closed stream gives its place
/// back.
#[test]
fn event_streams_past_eight_per_token_are_refused_with_429_bearer_and_cookie() {
    let k = Kedge::new();
    let many = k.token("i23b-many", "read");
    let other = k.token("i23b-other", "read");
    let api = k.serve_api(&[], &[]);
    let port = api.port();
    let agent = client();
    let cookie = sign_in(&agent, &api.addr, &many)
        .session
        .expect("signed in");
    let mut open: Vec<EventStream> = (0..7)
        .map(|_| EventStream::open(port, STREAM, &many, None))
        .collect();
    open.push(EventStream::open_with_cookie(port, STREAM, &cookie));

    let refused = api.get(STREAM, &many);
    refused.refused(429);
    let reason = refused.json()["error"].as_str().unwrap().to_string();
    assert!(
        reason.contains("'i23b-many'") && reason.contains('8'),
        "{reason}"
    );
    let err = EventStream::try_open_with_cookie(port, STREAM, &cookie)
        .err()
        .expect("a ninth stream through the token's session");
    assert!(err.contains(" 429 ") && err.contains("i23b-many"), "{err}");
    let _theirs = EventStream::open(port, STREAM, &other, None);

    // One closes: its place is given back once serve sees it gone.
    drop(open.remove(0));
    let again = wait_for(60, "a stream in the closed one's place", || {
        EventStream::try_open(port, STREAM, &many).ok()
    });
    open.push(again);
    api.get(STREAM, &many).refused(429);
}

/// A read token signing in 10,050 times (the count: past the
/// global cap of 10,000) signs out its own oldest sessions, never another
/// token's.
#[test]
fn one_tokens_ten_thousand_sign_ins_sign_no_other_token_out() {
    let k = Kedge::new();
    let theirs = k.token("i22n-theirs", "read");
    let flood = k.token("i22n-flood", "read");
    let api = k.serve_api(&[], &[]);
    let agent = client();
    let their_session = sign_in(&agent, &api.addr, &theirs).session.unwrap();
    let first = sign_in(&agent, &api.addr, &flood).session.unwrap();
    let mut last = String::new();
    for i in 0..10_050 {
        let s = sign_in(&agent, &api.addr, &flood);
        assert_eq!(s.status, 303, "sign-in {i}: {s:?}");
        last = s.session.unwrap();
    }
    assert!(
        signed_in(&agent, &api.addr, &their_session),
        "another token's session was signed out"
    );
    assert!(signed_in(&agent, &api.addr, &last));
    assert!(
        !signed_in(&agent, &api.addr, &first),
        "the flooding token's oldest session is still open"
    );
}

/// Failed sign-ins from one address: five cost nothing, then each makes
/// the next wait (429 with Retry-After, the token not even looked at, a
/// good one neither), doubling. The API's bearer tokens are not held back.
#[test]
fn failed_sign_ins_back_off_per_address_with_429_and_retry_after() {
    let k = Kedge::new();
    let good = k.token("i22n-good", "read");
    let api = k.serve_api(&[], &[]);
    let agent = client();
    let bad = "kedge_0000000000000000000000000000000000000000000000bad";
    for i in 0..6 {
        let s = sign_in(&agent, &api.addr, bad);
        assert_eq!(s.status, 401, "failure {i}: {s:?}");
    }
    let held = sign_in(&agent, &api.addr, &good);
    assert_eq!(held.status, 429, "{held:?}");
    assert_eq!(held.retry_after.as_deref(), Some("1"), "{held:?}");
    assert!(held.session.is_none(), "{held:?}");
    assert!(
        held.body
            .contains("Too many failed sign-ins from your address"),
        "{}",
        held.body
    );
    // The API is not concerned.
    assert_eq!(api.get("/api/v1/repos", &good).status, 200);

    // Once the wait is over a good token signs in, and the failures are
    // forgotten.
    let session = wait_for(30, "the good token to sign in after the wait", || {
        sign_in(&agent, &api.addr, &good).session
    });
    assert!(signed_in(&agent, &api.addr, &session));

    // A flood: a few are checked, the rest wait.
    let (mut checked, mut waited) = (0, 0);
    let started = Instant::now();
    for _ in 0..300 {
        match sign_in(&agent, &api.addr, bad).status {
            401 => checked += 1,
            429 => waited += 1,
            other => panic!("answered {other}"),
        }
    }
    // 5 free, 1 that sets the wait, then one after 1 s, 3 s, 7 s, …
    let secs = started.elapsed().as_secs_f64();
    let most = 6 + (secs + 1.0).log2().ceil() as u32;
    assert!(
        checked <= most,
        "{checked} failed sign-ins checked in {secs:.1} s (at most {most})"
    );
    assert_eq!(checked + waited, 300);
}
