//! Image update checks in `report` mode against Debian's `docker-registry`
//! with basic auth: a newer tag under `patch`, a re-pushed tag under
//! `digest`, announced once, listed by `kedge updates`; nothing deployed.

use crate::support::docker::{IMAGE_1, IMAGE_2};
use crate::support::registry::{UpdateLab, broken_image, fresh_image, row};
use crate::support::stack::{Stack, sleepers};
use crate::support::wait_for;

#[test]
fn report_finds_a_newer_tag_and_a_new_digest_and_announces_each_once() {
    let lab = UpdateLab::start("upd");
    let app = lab.push(IMAGE_1, "app:1.4.2");
    let cache = lab.push(IMAGE_1, "cache:7");
    let alpine = lab.push(IMAGE_1, "app:1.4.2-alpine");
    let kedge = lab.kedge();
    let s = Stack::with_kedge(
        "updates",
        &[
            (
                "compose.yaml",
                &sleepers(&[
                    ("web", &app),
                    ("mid", &app),
                    ("big", &app),
                    ("alp", &alpine),
                    ("cache", &cache),
                    ("plain", IMAGE_1),
                ]),
            ),
            (
                "kedge.yaml",
                "updates:\n  services:\n    web: {policy: patch}\n    mid: {policy: minor}\n    big: {policy: major}\n    alp: {policy: patch}\n    cache: {policy: digest}\n",
            ),
        ],
        kedge,
    );
    s.kedge.run(["sync", "--repo", &s.name]).success();
    let deployed = s.running();

    // Nothing newer yet: both are current; `plain` has no policy.
    let rows = s
        .kedge
        .run(["updates", "check", "--repo", &s.name, "-o", "json"])
        .json();
    assert_eq!(rows.as_array().unwrap().len(), 5, "{rows}");
    assert_eq!(row(&rows, "web")["state"], "current", "{rows}");
    assert_eq!(row(&rows, "web")["current"], "1.4.2");
    assert_eq!(row(&rows, "cache")["state"], "current", "{rows}");
    let pulled = row(&rows, "cache")["current"].as_str().unwrap().to_string();
    assert!(pulled.starts_with("sha256:"), "{rows}");

    // 1.4.3, 1.5.0 and 2.0.0 published: `patch` proposes 1.4.3, `minor`
    // 1.5.0, `major` 2.0.0; `-alpine` is only offered `-alpine` tags.
    lab.push(IMAGE_1, "app:1.4.3");
    lab.push(IMAGE_1, "app:1.5.0");
    lab.push(IMAGE_1, "app:2.0.0");
    lab.push(IMAGE_1, "app:1.4.3-alpine");
    lab.push(IMAGE_1, "app:1.5.0-alpine");
    // cache:7 rebuilt: the same tag, new content.
    lab.push(IMAGE_2, "cache:7");
    let rows = s
        .kedge
        .run(["updates", "check", "--repo", &s.name, "-o", "json"])
        .json();
    let web = row(&rows, "web");
    assert_eq!(
        (web["current"].as_str(), web["candidate"].as_str()),
        (Some("1.4.2"), Some("1.4.3")),
        "{rows}"
    );
    assert_eq!(web["state"], "available");
    for (service, candidate) in [("mid", "1.5.0"), ("big", "2.0.0"), ("alp", "1.4.3-alpine")] {
        let found = row(&rows, service);
        assert_eq!(found["candidate"], candidate, "{service}: {rows}");
        assert_eq!(found["state"], "available", "{service}: {rows}");
    }
    let cache_row = row(&rows, "cache");
    assert_eq!(cache_row["state"], "available", "{rows}");
    assert_eq!(
        cache_row["current"],
        pulled.as_str(),
        "what runs is unchanged"
    );
    assert_ne!(cache_row["candidate"], cache_row["current"]);
    assert!(
        cache_row["candidate"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );

    // `kedge updates` shows the last check as a table.
    s.kedge
        .run(["updates", "--repo", &s.name])
        .success()
        .stdout_has("REPO")
        .stdout_has("1.4.2")
        .stdout_has("1.4.3")
        .stdout_has("patch")
        .stdout_has("available");

    // And `kedge status` beside the stack's state.
    s.kedge
        .run(["status", "--repo", &s.name])
        .success()
        .stdout_has("Update:      web 1.4.2 → 1.4.3 (patch, available)");

    // Announced once: a second check finds the same and says nothing new.
    s.kedge
        .run(["updates", "check", "--repo", &s.name])
        .success();
    let events = s.kedge.run(["events", "-o", "json"]).json();
    let announced: Vec<&serde_json::Value> = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "update_available")
        .collect();
    assert_eq!(announced.len(), 5, "{events}");
    assert!(
        announced.iter().any(|e| e["service"] == "web" && e["message"] == "update available: web 1.4.2 → 1.4.3"),
        "{events}"
    );

    // serve checks by itself shortly after it starts (then every
    // check_interval): 1.4.4 is found without `check`, and the API
    // answers the findings.
    lab.push(IMAGE_1, "app:1.4.4");
    let token = s.kedge.token("updates-reader", "read");
    let api = s
        .kedge
        .serve_api(&["--poll-interval", "1h", "--check-interval", "1m"], &[]);
    wait_for(60, "serve's first update check", || {
        let rows = s
            .kedge
            .run(["updates", "--repo", &s.name, "-o", "json"])
            .json();
        (row(&rows, "web")["candidate"] == "1.4.4").then_some(())
    });
    let answer = api.get(&format!("/api/v1/updates?repo={}", s.name), &token);
    assert_eq!(answer.status, 200, "{}", answer.body);
    let listed = answer.json();
    assert_eq!(row(&listed, "web")["candidate"], "1.4.4", "{listed}");
    // The dashboard shows it beside the service's image.
    let page = dashboard_page(&api.url(""), &token, &format!("/repos/{}", s.name));
    assert!(page.contains("update available: 1.4.4"), "{page}");
    assert_eq!(api.get("/api/v1/updates?repo=nope", &token).status, 404);
    drop(api);

    // `min_age`: a candidate published more recently waits, saying so;
    // 1.4.5 is built this minute.
    let fresh = fresh_image(&lab.ns);
    lab.untag_after(fresh.clone());
    lab.push(&fresh, "app:1.4.5");
    let young = Stack::with_kedge(
        "updmin",
        &[
            ("compose.yaml", &sleepers(&[("web", &app)])),
            (
                "kedge.yaml",
                "updates:\n  min_age: 1h\n  services:\n    web: {policy: patch}\n",
            ),
        ],
        lab.kedge(),
    );
    young.kedge.run(["sync", "--repo", &young.name]).success();
    let rows = young
        .kedge
        .run(["updates", "check", "--repo", &young.name, "-o", "json"])
        .json();
    let web = row(&rows, "web");
    assert_eq!(web["state"], "waiting", "{rows}");
    assert_eq!(web["candidate"], "1.4.5", "{rows}");
    assert!(
        web["detail"].as_str().unwrap().ends_with("min_age 1h"),
        "{rows}"
    );

    // `report` changes nothing that runs.
    assert_eq!(
        s.running()
            .into_iter()
            .map(|(k, c)| (k, c.id))
            .collect::<Vec<_>>(),
        deployed
            .into_iter()
            .map(|(k, c)| (k, c.id))
            .collect::<Vec<_>>()
    );
}

/// A dashboard page as a signed-in reader sees it: the sign-in form's
/// CSRF cookie, the form posted with `token`, the session cookie.
fn dashboard_page(base: &str, token: &str, path: &str) -> String {
    let base = base.trim_end_matches('/');
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .into();
    let cookie = |r: &ureq::http::Response<ureq::Body>| -> String {
        let set = r.headers().get("set-cookie").unwrap().to_str().unwrap();
        set.split(';').next().unwrap().to_string()
    };
    let login = agent.get(&format!("{base}/login")).call().unwrap();
    let csrf_cookie = cookie(&login);
    let csrf = csrf_cookie.split_once('=').unwrap().1.to_string();
    let signed = agent
        .post(&format!("{base}/login"))
        .header("Cookie", &csrf_cookie)
        .content_type("application/x-www-form-urlencoded")
        .send(format!("token={token}&csrf={csrf}"))
        .unwrap();
    assert_eq!(signed.status(), 303, "signed in");
    let session = cookie(&signed);
    let mut page = agent
        .get(&format!("{base}{path}"))
        .header("Cookie", &session)
        .call()
        .unwrap();
    assert_eq!(page.status(), 200);
    page.body_mut().read_to_string().unwrap()
}

/// A tag whose deployment failed its health gate (rolled back) is never
/// proposed again; the next good one is.
#[test]
fn a_version_that_failed_its_gate_is_not_proposed_again() {
    let lab = UpdateLab::start("updf");
    let good = lab.push(IMAGE_1, "app:1.4.2");
    // 1.4.3 exits at once: its own CMD, as a broken release would.
    let broken_local = broken_image(&lab.ns);
    lab.untag_after(broken_local.clone());
    let broken = lab.push(&broken_local, "app:1.4.3");
    let service =
        |image: &str| format!("services:\n  web:\n    image: {image}\n    stop_signal: SIGKILL\n");
    let kedge_yaml = "updates:\n  services:\n    web: {policy: patch}\ndeploy:\n  stable_for: 2s\n  timeout: 30s\n";
    let s = Stack::with_kedge(
        "updfail",
        &[
            ("compose.yaml", &service(&good)),
            ("kedge.yaml", kedge_yaml),
        ],
        lab.kedge(),
    );
    s.kedge.run(["sync", "--repo", &s.name]).success();
    let rows = s
        .kedge
        .run(["updates", "check", "--repo", &s.name, "-o", "json"])
        .json();
    assert_eq!(row(&rows, "web")["candidate"], "1.4.3", "{rows}");

    // Someone commits 1.4.3: its gate fails and the stack is rolled back.
    s.remote.write("compose.yaml", &service(&broken));
    s.remote.commit("web 1.4.3");
    s.kedge.run(["sync", "--repo", &s.name]).code(1);
    let running = s.running();
    assert_eq!(running["web"].image, good, "rolled back to 1.4.2");

    // 1.4.3 is not proposed again; 1.4.4, once published, is.
    let rows = s
        .kedge
        .run(["updates", "check", "--repo", &s.name, "-o", "json"])
        .json();
    assert_eq!(row(&rows, "web")["current"], "1.4.2", "{rows}");
    assert_eq!(row(&rows, "web")["state"], "current", "{rows}");
    lab.push(IMAGE_1, "app:1.4.4");
    let rows = s
        .kedge
        .run(["updates", "check", "--repo", &s.name, "-o", "json"])
        .json();
    assert_eq!(row(&rows, "web")["candidate"], "1.4.4", "{rows}");
}

/// A registry that stops answering: the check says so once, the finding
/// shows the error, and nothing is deployed.
#[test]
fn a_registry_that_is_down_is_reported_once_and_changes_nothing() {
    let mut lab = UpdateLab::start("upd");
    let app = lab.push(IMAGE_1, "app:1.4.2");
    let s = Stack::with_kedge(
        "upddown",
        &[
            ("compose.yaml", &sleepers(&[("web", &app)])),
            (
                "kedge.yaml",
                "updates:\n  apply: deploy\n  services:\n    web: {policy: patch}\n",
            ),
        ],
        lab.kedge(),
    );
    s.kedge.run(["sync", "--repo", &s.name]).success();
    let deployments = s.history().as_array().unwrap().len();
    lab.registry.stop();
    let first = s
        .kedge
        .run(["updates", "check", "--repo", &s.name, "-o", "json"]);
    let rows = first.json();
    assert_eq!(row(&rows, "web")["state"], "error", "{rows}");
    assert!(
        row(&rows, "web")["detail"]
            .as_str()
            .unwrap()
            .contains("cannot be reached"),
        "{rows}"
    );
    first.stderr_has("update check failed");
    let second = s
        .kedge
        .run(["updates", "check", "--repo", &s.name, "-o", "json"]);
    assert!(
        !second.stderr.contains("update check failed"),
        "said once: {}",
        second.stderr
    );
    assert_eq!(s.history().as_array().unwrap().len(), deployments);
    assert_eq!(s.running()["web"].image, app);
}
