//! Table tests of the commit status mapping and each provider's request.

use super::*;

fn event(kind: EventKind, trigger: &str, stack: Option<&str>) -> Event {
    let mut fields = serde_json::Map::new();
    fields.insert("trigger".into(), json!(trigger));
    fields.insert("duration_ms".into(), json!(4200));
    Event {
        id: 1,
        time: 0,
        repo: "shop".into(),
        kind,
        severity: kind.severity(),
        service: None,
        commit: Some("0123456789abcdef0123456789abcdef01234567".into()),
        message: "health gate failed after 2.1 s: web exited (3)\nmore".into(),
        fields,
        origin: None,
        stack: stack.map(String::from),
    }
}

#[test]
fn deployments_map_to_statuses_and_restores_to_none() {
    let state =
        |kind, trigger| update_of(&event(kind, trigger, None)).map(|u| (u.state, u.description));
    assert_eq!(
        state(EventKind::DeployStarted, "new_commit"),
        Some((State::Pending, "deploying".into()))
    );
    assert_eq!(
        state(EventKind::DeploySucceeded, "sync"),
        Some((State::Success, "deployed in 4.2 s".into()))
    );
    assert_eq!(
        state(EventKind::DeployFailed, "new_commit"),
        Some((
            State::Failure,
            "health gate failed after 2.1 s: web exited (3)".into()
        ))
    );
    assert_eq!(
        state(EventKind::RolledBack, "rollback"),
        Some((State::Success, "deployed again by kedge rollback".into()))
    );
    assert_eq!(state(EventKind::RolledBack, "auto_rollback"), None);
    assert_eq!(state(EventKind::DeployFailed, "auto_rollback"), None);
    assert_eq!(state(EventKind::DeployStarted, "image_update"), None);
    assert_eq!(state(EventKind::DriftHealed, "new_commit"), None);
    let mut no_commit = event(EventKind::DeployStarted, "sync", None);
    no_commit.commit = None;
    assert_eq!(update_of(&no_commit), None);
    // The stack names the context; a long reason is cut at 140.
    let mut long = event(EventKind::DeployFailed, "new_commit", Some("web@b"));
    long.message = "x".repeat(300);
    let u = update_of(&long).unwrap();
    assert_eq!(u.context(), "kedge/web@b");
    assert_eq!(u.description.chars().count(), 140);
    assert_eq!(
        update_of(&event(EventKind::DeployStarted, "sync", None))
            .unwrap()
            .context(),
        "kedge/shop"
    );
}

#[test]
fn the_repository_path_comes_from_its_address() {
    for (provider, address, want) in [
        (
            Provider::GitHub,
            "https://github.com/acme/shop.git",
            Some("acme/shop"),
        ),
        (
            Provider::GitHub,
            "git@github.com:acme/shop.git",
            Some("acme/shop"),
        ),
        (
            Provider::Gitea,
            "ssh://git@code.example:2222/acme/shop",
            Some("acme/shop"),
        ),
        (
            Provider::GitLab,
            "https://gitlab.com/acme/infra/shop.git",
            Some("acme/infra/shop"),
        ),
        (
            Provider::GitLab,
            "git@gitlab.com:acme/infra/shop.git",
            Some("acme/infra/shop"),
        ),
        (
            Provider::Bitbucket,
            "https://bitbucket.org/acme/shop.git",
            Some("acme/shop"),
        ),
        (
            Provider::GitHub,
            "file:///srv/git/acme/shop.git",
            Some("acme/shop"),
        ),
        (Provider::GitHub, "https://github.com/shop.git", None),
    ] {
        assert_eq!(repo_path(provider, address).as_deref(), want, "{address}");
    }
}

fn target(provider: Provider, api: &str) -> StatusTarget {
    StatusTarget {
        name: provider.as_str().into(),
        provider,
        api_url: api.into(),
        token_file: "/t".into(),
        repos: Vec::new(),
        except: Vec::new(),
        line: 1,
    }
}

#[test]
fn each_provider_gets_its_documented_request() {
    let sha = "0123456789abcdef0123456789abcdef01234567";
    let u = |state| Update {
        repo: "shop".into(),
        stack: Some("web".into()),
        commit: sha.into(),
        state,
        description: "deploying".into(),
    };
    let page = "https://kedge.example/repos/shop%2Fweb";
    let link = Some(page);

    let gh = request(
        &target(Provider::GitHub, "https://api.github.com"),
        "acme/shop",
        &u(State::Pending),
        link,
    );
    assert_eq!(
        gh.url,
        format!("https://api.github.com/repos/acme/shop/statuses/{sha}")
    );
    assert!(
        gh.headers
            .contains(&("X-GitHub-Api-Version", "2022-11-28".into()))
    );
    assert!(
        gh.headers
            .contains(&("Accept", "application/vnd.github+json".into()))
    );
    assert_eq!(
        gh.body,
        json!({"state": "pending", "context": "kedge/web", "description": "deploying", "target_url": page})
    );

    let gl = request(
        &target(Provider::GitLab, "https://gitlab.com/api/v4"),
        "acme/infra/shop",
        &u(State::Failure),
        None,
    );
    assert_eq!(
        gl.url,
        format!("https://gitlab.com/api/v4/projects/acme%2Finfra%2Fshop/statuses/{sha}")
    );
    assert_eq!(
        gl.body,
        json!({"state": "failed", "name": "kedge/web", "description": "deploying"})
    );

    let gt = request(
        &target(Provider::Gitea, "https://code.example/api/v1"),
        "acme/shop",
        &u(State::Success),
        link,
    );
    assert_eq!(
        gt.url,
        format!("https://code.example/api/v1/repos/acme/shop/statuses/{sha}")
    );
    assert_eq!(gt.body["state"], "success");
    assert_eq!(gt.body["context"], "kedge/web");

    let bb = request(
        &target(Provider::Bitbucket, "https://api.bitbucket.org/2.0"),
        "acme/shop",
        &u(State::Success),
        None,
    );
    assert_eq!(
        bb.url,
        format!("https://api.bitbucket.org/2.0/repositories/acme/shop/commit/{sha}/statuses/build")
    );
    assert_eq!(
        bb.body,
        json!({
            "key": "kedge-web",
            "state": "SUCCESSFUL",
            "name": "kedge/web",
            "url": format!("https://bitbucket.org/acme/shop/commits/{sha}"),
            "description": "deploying"
        })
    );
    assert_eq!(
        request(
            &target(Provider::Bitbucket, "x"),
            "a/b",
            &u(State::Pending),
            None
        )
        .body["state"],
        "INPROGRESS"
    );
    assert_eq!(
        request(
            &target(Provider::Bitbucket, "x"),
            "a/b",
            &u(State::Failure),
            None
        )
        .body["state"],
        "FAILED"
    );
    // Keys stay within Bitbucket's 40 characters, one per stack.
    let long = bitbucket_key(&format!("kedge/{}", "s".repeat(60)));
    assert_eq!(long.len(), 40);
    assert_ne!(long, bitbucket_key(&format!("kedge/{}t", "s".repeat(60))));
}

#[test]
fn each_provider_authenticates_as_documented() {
    assert_eq!(
        auth(Provider::GitHub, "tk"),
        ("Authorization", "Bearer tk".into())
    );
    assert_eq!(auth(Provider::GitLab, "tk"), ("PRIVATE-TOKEN", "tk".into()));
    assert_eq!(
        auth(Provider::Gitea, "tk"),
        ("Authorization", "token tk".into())
    );
    assert_eq!(
        auth(Provider::Bitbucket, "tk"),
        ("Authorization", "Bearer tk".into())
    );
}

/// Regression: a declared stack's link was `/repos/shop/web`, a page the
/// dashboard does not have (it names a stack `shop%2Fweb`).
#[test]
fn the_link_is_the_stacks_dashboard_page() {
    let u = |stack: Option<&str>| Update {
        repo: "shop".into(),
        stack: stack.map(String::from),
        commit: "0123456789abcdef0123456789abcdef01234567".into(),
        state: State::Success,
        description: "deployed".into(),
    };
    let base = Some("https://kedge.example");
    assert_eq!(
        dashboard_link(base, &u(Some("web"))).as_deref(),
        Some("https://kedge.example/repos/shop%2Fweb")
    );
    assert_eq!(
        dashboard_link(base, &u(None)).as_deref(),
        Some("https://kedge.example/repos/shop")
    );
    assert_eq!(dashboard_link(None, &u(Some("web"))), None);
}
