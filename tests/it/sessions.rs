//! Who stays signed in, against a real `serve` on loopback: one token's
//! sign-ins cannot sign another token out.

use std::time::Duration;

use crate::support::*;

/// A client that keeps its connections and never follows a redirect.
fn client() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

/// What `POST /login` answered.
#[derive(Debug)]
struct SignIn {
    status: u16,
    /// `kedge_session=…`, when a session was opened.
    session: Option<String>,
}

/// Signs in on the dashboard with `token`, as its form does (the CSRF
/// token doubled in the form and its cookie).
fn sign_in(agent: &ureq::Agent, addr: &str, token: &str) -> SignIn {
    let csrf = "i22n-csrf-0123456789";
    let res = agent
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
    SignIn {
        status: res.status().as_u16(),
        session,
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
