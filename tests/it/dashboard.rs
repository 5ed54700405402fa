//! The dashboard end to end in a real browser: headless Chromium through
//! chromedriver against a real `serve` with real repositories on the real
//! engine. Sign-in, the overview's rows, live updates (a push, a stopped
//! container and its heal), sync and rollback for a write token, nothing of
//! the kind for a read token, CSRF, escaping; and the screenshots the README
//! shows, written under `target/`.

use serde_json::json;

use crate::support::browser::Browser;
use crate::support::docker::{IMAGE_1, IMAGE_2, docker_ok};
use crate::support::*;

/// A repository of one `web` service registered with `k` (named
/// `kt-k16-…`), with `kedge_yaml` added to the quick health gate.
fn register(k: &Kedge, kedge_yaml: &str) -> (String, GitRemote, ComposeProject) {
    let name = unique_name("k16");
    let project = ComposeProject::named(&name);
    let remote = register_as(k, &name, kedge_yaml);
    (name, remote, project)
}

/// [`register`] under a name the caller chose, so that it can hold the
/// project's guard before it starts `serve`: dropped after `serve`, or
/// `serve` would heal the project back up after the guard took it down.
fn register_as(k: &Kedge, name: &str, kedge_yaml: &str) -> GitRemote {
    let remote = GitRemote::new(name);
    remote.write("compose.yaml", &sleepers(&[("web", IMAGE_1)]));
    remote.write("kedge.yaml", &format!("{kedge_yaml}{QUICK_GATE}"));
    remote.commit("first: one web service");
    k.run(["repo", "add", &remote.url()]).success();
    remote
}

fn short(commit: &str) -> &str {
    &commit[..7]
}

fn row(repo: &str, cell: &str) -> String {
    format!("tr[data-repo=\"{repo}\"] {cell}")
}

/// Signs in on the page at `/login` with `token`.
fn sign_in(b: &Browser, token: &str) {
    b.fill("#token", token);
    b.click("form.login button");
}

/// A form posted from the page with `fields` (URL-encoded): its status.
fn post_from_page(b: &Browser, path: &str, fields: &str) -> u64 {
    b.js_async(
        "var done = arguments[arguments.length - 1];
         fetch(arguments[0], {method: 'POST', credentials: 'same-origin',
             headers: {'Content-Type': 'application/x-www-form-urlencoded'}, body: arguments[1]})
           .then(function (r) { done(r.status); }, function (e) { done(String(e)); });",
        json!([path, fields]),
    )
    .as_u64()
    .expect("a status")
}

fn screenshots_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard")
}

#[test]
fn a_write_token_sees_pushes_and_drift_live_and_syncs_and_rolls_back() {
    require_docker();
    let k = Kedge::new();
    let (a, a_remote, a_project) = register(&k, "");
    let (b, b_remote, _b_project) = register(&k, "reconciliation:\n  mode: manual\n");
    let write = k.token("k16-write", "write");
    let api = k.serve_api(&["--poll-interval", "500ms", "--check-interval", "1m"], &[]);
    wait_deployed(&k, &a);
    let first = a_remote.remote_head();

    let browser = Browser::new(1280, 900);
    browser.goto(&api.url("/"));
    assert!(
        browser.current_url().ends_with("/login"),
        "{}",
        browser.current_url()
    );

    // A wrong token cannot sign in.
    sign_in(
        &browser,
        "kedge_0123456789abcdef0123456789abcdef0123456789abcdef",
    );
    browser.wait_text(10, "p.error", "Unknown or revoked token");
    browser.goto(&api.url("/"));
    assert!(browser.current_url().ends_with("/login"));

    sign_in(&browser, &write);
    browser.wait_text(10, "h1", "Repositories");
    browser.wait_text(10, "#live", "Live");
    browser.wait_text(10, &row(&a, "td.deployed > code.commit"), short(&first));
    browser.wait_text(30, &row(&a, "td[data-label=State]"), "synced");
    browser.wait_text(10, &row(&a, "td.services"), "1/1");
    assert!(
        browser.find(&row(&a, "a[href$='/sync']")).is_some(),
        "no Sync for a write token"
    );

    // A push changes the row without a reload; its message is text.
    browser.js("window.k16SamePage = true;", json!([]));
    a_remote.write("compose.yaml", &sleepers(&[("web", IMAGE_2)]));
    let second = a_remote.commit("<script>alert(1)</script>");
    wait_for(60, "the row to show the pushed commit", || {
        browser
            .text(&row(&a, "td.deployed > code.commit"))
            .filter(|t| t.contains(short(&second)))
    });
    assert_eq!(
        browser.js("return window.k16SamePage === true;", json!([])),
        json!(true),
        "the page reloaded"
    );
    assert_eq!(
        browser.text(&row(&a, "td.deployed .msg")).as_deref(),
        Some("<script>alert(1)</script>")
    );
    assert_eq!(browser.dialog(), None, "a dialog opened");
    assert_eq!(
        browser.js("return document.scripts.length;", json!([])),
        json!(1)
    );

    // A stopped container: drifted, then healed, without a reload.
    browser.wait_text(30, &row(&a, "td[data-label=State]"), "synced");
    browser.js(
        "var name = arguments[0]; window.k16Seen = [];
         function look() {
           var st = document.querySelector('tr[data-repo=\"' + name + '\"] td[data-label=State] .state');
           var t = st ? st.textContent : '';
           if (window.k16Seen[window.k16Seen.length - 1] !== t) window.k16Seen.push(t);
         }
         new MutationObserver(look).observe(document.body, {subtree: true, childList: true, characterData: true});
         look();",
        json!([a]),
    );
    docker_ok(&["stop", "-t", "0", &format!("{a}-web-1")]);
    let seen = |b: &Browser| -> Vec<String> {
        serde_json::from_value(b.js("return window.k16Seen;", json!([]))).unwrap()
    };
    wait_for(30, "the row to show the drift", || {
        seen(&browser).iter().any(|s| s == "drifted").then_some(())
    });
    wait_for(30, "the row to show the heal", || {
        let s = seen(&browser);
        let at = s.iter().position(|s| s == "drifted")?;
        s[at..].iter().any(|s| s == "synced").then_some(())
    });
    browser.wait_text(10, &row(&a, "td.services"), "1/1");
    assert_eq!(
        browser.js("return window.k16SamePage === true;", json!([])),
        json!(true)
    );

    // Forms without the session's CSRF token are refused; nothing deploys.
    let deployments = |repo: &str| {
        k.run(["history", "--repo", repo, "-o", "json"])
            .json()
            .as_array()
            .unwrap()
            .len()
    };
    let before = deployments(&a);
    assert_eq!(
        post_from_page(&browser, &format!("/repos/{a}/sync"), ""),
        403
    );
    assert_eq!(
        post_from_page(&browser, &format!("/repos/{a}/sync"), "csrf=forged"),
        403
    );
    assert_eq!(
        post_from_page(
            &browser,
            &format!("/repos/{a}/rollback"),
            &format!("commit={first}")
        ),
        403
    );
    assert_eq!(deployments(&a), before);

    // Sync: the manual repository's new commit waits until asked for.
    b_remote.write("compose.yaml", &sleepers(&[("web", IMAGE_2)]));
    let b_new = b_remote.commit("second: web on image two");
    wait_for(30, "the manual repository to see its new commit", || {
        let s = k.run(["status", "--repo", &b, "-o", "json"]).json();
        (s[0]["remote_head"] == b_new.as_str()).then_some(())
    });
    assert_ne!(
        k.run(["status", "--repo", &b, "-o", "json"]).json()[0]["deployed_commit"],
        b_new.as_str()
    );
    browser.goto(&api.url(&format!("/repos/{b}")));
    browser.click("p.actions a.button");
    browser.wait_text(10, "h1", &format!("Sync {b}?"));
    browser.click("form.confirm button");
    let result = browser.wait_text(60, "#result", "success");
    assert!(
        result.contains(short(&b_new)) && result.contains("(sync)"),
        "{result}"
    );
    browser.wait_text(10, "#summary", short(&b_new));

    // Rollback to the first commit of A, from its history.
    browser.goto(&api.url(&format!("/repos/{a}")));
    browser.click(&format!("#history a[href$='rollback?commit={first}']"));
    browser.wait_text(10, "h1", &format!("Roll back {a}?"));
    browser.click("form.confirm button");
    let result = browser.wait_text(60, "#result", "rolled back");
    assert!(result.contains(short(&first)), "{result}");
    browser.wait_text(10, "#summary", "Rollback pin");
    wait_for(30, "the first image to run again", || {
        let want = image_id(IMAGE_1);
        let running = a_project.running();
        running.iter().any(|c| c.image_id == want).then_some(())
    });
    assert_eq!(browser.dialog(), None);

    // The screenshots the README shows.
    let dir = screenshots_dir();
    browser.goto(&api.url("/"));
    browser.wait_text(10, "#live", "Live");
    browser.screenshot(1280, &dir.join("overview-desktop.png"));
    browser.screenshot(375, &dir.join("overview-375.png"));
    browser.goto(&api.url(&format!("/repos/{a}")));
    browser.wait_text(10, "#live", "Live");
    browser.screenshot(1280, &dir.join("repository-desktop.png"));
    browser.screenshot(375, &dir.join("repository-375.png"));
    // Usable at 375 px: nothing wider than the screen.
    assert_eq!(
        browser.js(
            "return document.documentElement.scrollWidth <= window.innerWidth;",
            json!([])
        ),
        json!(true)
    );
}

#[test]
fn a_read_token_reads_live_and_cannot_act() {
    require_docker();
    let k = Kedge::new();
    let read = k.token("k16-read", "read");
    // Registered once serve runs; its guard outlives serve (regression:
    // dropped first, it took the stack down and serve healed it back up,
    // leaving a container behind at every run).
    let a = unique_name("k16");
    let _a_project = ComposeProject::named(&a);
    let api = k.serve_api(&["--poll-interval", "500ms", "--check-interval", "1m"], &[]);

    // The headers every page carries.
    let addr: std::net::SocketAddr = api.addr.parse().unwrap();
    let login = crate::support::plain_http::get(addr, "/login");
    assert_eq!(login.status, 200);
    let csp = login.header("content-security-policy").unwrap_or_default();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert_eq!(login.header("x-frame-options"), Some("DENY"));
    let cookie = login.header("set-cookie").unwrap_or_default();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );

    let browser = Browser::new(1280, 900);
    browser.goto(&api.url("/login"));
    sign_in(&browser, &read);
    // No repository yet: the page says how to add the first one.
    browser.wait_text(10, "section.empty h2", "No repositories yet");
    browser.wait_text(10, "section.empty", "kedge repo add");
    browser.wait_text(10, "#live", "Live");

    // One added while the page is open appears, deploys and is synced.
    let a_remote = register_as(&k, &a, "");
    let first = a_remote.remote_head();
    browser.wait_text(30, &row(&a, "td.deployed > code.commit"), short(&first));
    browser.wait_text(30, &row(&a, "td[data-label=State]"), "synced");
    assert!(
        browser.find("a[href$='/sync']").is_none(),
        "Sync offered to a read token"
    );

    browser.goto(&api.url(&format!("/repos/{a}")));
    browser.wait_text(10, "#history", short(&first));
    assert!(
        browser.find("a[href*='/rollback']").is_none(),
        "Rollback offered to a read token"
    );
    assert!(browser.find("a[href$='/sync']").is_none());
    browser.wait_text(10, "#services", "running");

    // Asked anyway, with the session's own CSRF token: refused.
    let csrf = browser
        .js(
            "return document.querySelector('input[name=csrf]').value;",
            json!([]),
        )
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        post_from_page(
            &browser,
            &format!("/repos/{a}/sync"),
            &format!("csrf={csrf}")
        ),
        403
    );
    assert_eq!(
        post_from_page(
            &browser,
            &format!("/repos/{a}/rollback"),
            &format!("csrf={csrf}&commit={first}")
        ),
        403
    );
    browser.goto(&api.url(&format!("/repos/{a}/sync")));
    browser.wait_text(10, "p.error", "may only read");
    assert_eq!(
        k.run(["history", "--repo", &a, "-o", "json"])
            .json()
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // The session opens the event stream, not the API: that still wants a bearer token.
    let status = browser.js_async(
        "var done = arguments[arguments.length - 1];
         fetch('/api/v1/repos', {credentials: 'same-origin'}).then(function (r) { done(r.status); });",
        json!([]),
    );
    assert_eq!(status, json!(401));

    // Revoking the token ends the session.
    k.run(["token", "revoke", "k16-read"]).success();
    browser.goto(&api.url("/"));
    assert!(
        browser.current_url().ends_with("/login"),
        "{}",
        browser.current_url()
    );
    assert_eq!(browser.dialog(), None);
}

/// fleet.md §1: a repository's page lists its stacks, each stack has the
/// repository page of its own, and its sync runs on that stack alone.
#[test]
fn a_repository_with_stacks_lists_them_and_each_stack_has_its_page() {
    require_docker();
    let k = Kedge::new();
    let write = k.token("stk-write", "write");
    let name = unique_name("dstk");
    let remote = GitRemote::new(&name);
    remote.write(
        "kedge.yaml",
        "discover:\n  - path: \"stacks/*\"\ndefaults:\n  deploy:\n    stable_for: 0s\n",
    );
    remote.write(
        "stacks/front/compose.yaml",
        &sleepers(&[("front", IMAGE_1)]),
    );
    remote.write("stacks/back/compose.yaml", &sleepers(&[("back", IMAGE_1)]));
    let first = remote.commit("two stacks");
    let front = ComposeProject::named(&format!("{name}-front"));
    let _back = ComposeProject::named(&format!("{name}-back"));
    k.run(["repo", "add", &remote.url()]).success();
    let api = k.serve_api(&["--poll-interval", "500ms", "--check-interval", "1m"], &[]);
    // Synced, as the page will say it.
    for stack in ["front", "back"] {
        wait_for(60, &format!("{stack} synced"), || {
            let s = k.run(["status", "--repo", &format!("{name}/{stack}"), "-o", "json"]);
            (s.code == Some(0) && s.json()[0]["sync_state"] == "synced").then_some(())
        });
    }

    let browser = Browser::new(1280, 900);
    browser.goto(&api.url("/login"));
    sign_in(&browser, &write);
    // Signed in before going on: the overview sums the stacks up in one
    // line of their repository.
    browser.wait_text(30, &row(&name, "th[data-label=Repository]"), "2 stacks");
    browser.wait_text(10, &row(&name, "td[data-label=State]"), "synced");
    browser.goto(&api.url(&format!("/repos/{name}")));
    for stack in ["front", "back"] {
        browser.wait_text(
            10,
            &format!("#stacks tr[data-stack={stack}] td[data-label=State]"),
            "synced",
        );
    }
    browser.click("#stacks tr[data-stack=front] a");
    browser.wait_text(10, "h1", &format!("{name}/front"));
    browser.wait_text(10, "#history", short(&first));
    let before = front.running()[0].id.clone();
    browser.click("p.actions a.button");
    browser.wait_text(10, "h1", &format!("Sync {name}/front?"));
    browser.click("form.confirm button");
    let result = browser.wait_text(60, "#result", "success");
    assert!(result.contains("(sync)"), "{result}");
    assert!(
        browser
            .current_url()
            .contains(&format!("/repos/{name}%2Ffront?deployment=")),
        "{}",
        browser.current_url()
    );
    let back = k
        .run(["history", "--repo", &format!("{name}/back"), "-o", "json"])
        .json();
    assert_eq!(
        back.as_array().map(Vec::len),
        Some(1),
        "back untouched: {back}"
    );
    assert_eq!(
        front.running()[0].id,
        before,
        "nothing changed: nothing recreated"
    );
}
