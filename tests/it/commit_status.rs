//! Commit statuses (`commit_status:`, fleet.md §5) against a stand-in of
//! each provider's API on loopback, one `serve` reporting four
//! repositories, one per provider: `pending` then `success` for a good
//! commit, each delivered once although serve is killed (-9) between the
//! two; `pending` then `failure` for a commit that fails its gate, while
//! the API answers 500 for two minutes — the deployments are not delayed,
//! and the statuses arrive once it answers. Every request is checked
//! against the provider's documented method, path, headers and body.

use std::time::{Duration, Instant};

use crate::support::docker::{ComposeProject, IMAGE_1};
use crate::support::git::GitRemote;
use crate::support::receiver::{Mode, Receiver, Request};
use crate::support::*;

fn compose(round: u32, broken: bool) -> String {
    let command = match broken {
        true => "[sh, -c, 'exit 3']",
        false => "[sleep, '3600']",
    };
    format!(
        "services:\n  app:\n    image: {IMAGE_1}\n    command: {command}\n    stop_signal: SIGKILL\n    environment:\n      ROUND: '{round}'\n"
    )
}

const PROVIDERS: [(&str, &str); 4] = [
    ("github", "/gh"),
    ("gitlab", "/gl/api/v4"),
    ("gitea", "/gt/api/v1"),
    ("bitbucket", "/bb/2.0"),
];

struct Repo {
    provider: &'static str,
    name: String,
    remote: GitRemote,
    _project: ComposeProject,
}

impl Repo {
    /// The repository's path as the provider's API names it.
    fn path(&self) -> String {
        let url = self.remote.url();
        let trimmed = url.trim_start_matches("file://").trim_end_matches(".git");
        let parts: Vec<&str> = trimmed.split('/').filter(|p| !p.is_empty()).collect();
        match self.provider {
            "gitlab" => parts.join("/"),
            _ => parts[parts.len() - 2..].join("/"),
        }
    }
}

/// The statuses a provider's stand-in took (2xx), as (state, commit),
/// each request checked against the provider's API.
fn taken(receiver: &Receiver, repo: &Repo, token: &str) -> Vec<(String, String)> {
    let prefix = PROVIDERS
        .iter()
        .find(|(p, _)| *p == repo.provider)
        .unwrap()
        .1;
    receiver
        .delivered()
        .into_iter()
        .filter(|r| r.path.starts_with(&format!("{prefix}/")))
        .map(|r| checked(&r, repo, prefix, token))
        .collect()
}

/// The request as the provider documents it; its state and commit.
#[track_caller]
fn checked(r: &Request, repo: &Repo, prefix: &str, token: &str) -> (String, String) {
    assert_eq!(r.method, "POST", "{r:?}");
    assert_eq!(r.header("content-type"), Some("application/json"), "{r:?}");
    assert!(
        r.header("user-agent").unwrap().starts_with("kedge/"),
        "{r:?}"
    );
    let body = r.json();
    let context = format!("kedge/{}", repo.name);
    let link = format!("https://kedge.example/repos/{}", repo.name);
    let path = repo.path();
    let tail = |rest: &str| -> String {
        r.path
            .strip_prefix(rest)
            .unwrap_or_else(|| panic!("{} is not under {rest}", r.path))
            .to_string()
    };
    let (state, sha) = match repo.provider {
        "github" => {
            assert_eq!(
                r.header("authorization"),
                Some(format!("Bearer {token}").as_str())
            );
            assert_eq!(r.header("accept"), Some("application/vnd.github+json"));
            assert_eq!(r.header("x-github-api-version"), Some("2022-11-28"));
            let sha = tail(&format!("{prefix}/repos/{path}/statuses/"));
            assert_eq!(body["context"], context.as_str(), "{body}");
            assert_eq!(body["target_url"], link.as_str(), "{body}");
            (body["state"].as_str().unwrap().to_string(), sha)
        }
        "gitlab" => {
            assert_eq!(r.header("private-token"), Some(token));
            let id = path.replace('/', "%2F");
            let sha = tail(&format!("{prefix}/projects/{id}/statuses/"));
            assert_eq!(body["name"], context.as_str(), "{body}");
            assert_eq!(body["target_url"], link.as_str(), "{body}");
            (body["state"].as_str().unwrap().to_string(), sha)
        }
        "gitea" => {
            assert_eq!(
                r.header("authorization"),
                Some(format!("token {token}").as_str())
            );
            let sha = tail(&format!("{prefix}/repos/{path}/statuses/"));
            assert_eq!(body["context"], context.as_str(), "{body}");
            assert_eq!(body["target_url"], link.as_str(), "{body}");
            (body["state"].as_str().unwrap().to_string(), sha)
        }
        "bitbucket" => {
            assert_eq!(
                r.header("authorization"),
                Some(format!("Bearer {token}").as_str())
            );
            let sha = tail(&format!("{prefix}/repositories/{path}/commit/"));
            let sha = sha.strip_suffix("/statuses/build").unwrap().to_string();
            assert_eq!(body["key"], format!("kedge-{}", repo.name), "{body}");
            assert_eq!(body["name"], context.as_str(), "{body}");
            assert_eq!(body["url"], link.as_str(), "{body}");
            (body["state"].as_str().unwrap().to_string(), sha)
        }
        other => panic!("{other}"),
    };
    assert_eq!(sha.len(), 40, "{}", r.path);
    assert!(
        body["description"].as_str().is_some_and(|d| !d.is_empty()),
        "{body}"
    );
    (state, sha)
}

/// The provider's words for pending, success and failure.
fn words(provider: &str) -> [&'static str; 3] {
    match provider {
        "bitbucket" => ["INPROGRESS", "SUCCESSFUL", "FAILED"],
        "gitlab" => ["pending", "success", "failed"],
        _ => ["pending", "success", "failure"],
    }
}

#[test]
fn each_provider_gets_each_status_once_across_a_kill_and_after_an_outage() {
    let receiver = Receiver::start(Mode::Status(201));
    let dir = tempfile::tempdir().unwrap();
    let token = "kt-status-token-5d21";
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    std::fs::set_permissions(
        &token_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();

    let repos: Vec<Repo> = PROVIDERS
        .iter()
        .map(|(provider, _)| {
            let name = unique_name(&format!("cs{provider}"));
            let remote = GitRemote::new(&name);
            remote.write("compose.yaml", &compose(0, false));
            remote.write("kedge.yaml", "deploy:\n  stable_for: 0s\n  timeout: 20s\n");
            remote.commit("first");
            Repo {
                provider,
                _project: ComposeProject::named(&name),
                name,
                remote,
            }
        })
        .collect();
    let mut config = String::from("http:\n  public_url: https://kedge.example\ncommit_status:\n");
    for (repo, (provider, prefix)) in repos.iter().zip(PROVIDERS) {
        config.push_str(&format!(
            "  - provider: {provider}\n    api_url: {}\n    token_file: {}\n    repos: [{}]\n",
            receiver.url(prefix),
            token_file.display(),
            repo.name
        ));
    }
    std::fs::write(dir.path().join("config.yaml"), config).unwrap();
    let kedge = Kedge::new().env(
        "KEDGE_CONFIG",
        dir.path().join("config.yaml").to_str().unwrap(),
    );
    for repo in &repos {
        kedge.run(["repo", "add", &repo.remote.url()]).success();
        kedge.run(["sync", "--repo", &repo.name]).success();
    }
    let mut serve = kedge.serve_with(&["serve", "--poll-interval", "1s"]);

    // A good commit: pending is taken; success is refused (500) until
    // serve has been killed and started again.
    receiver.set_mode(Mode::Refuse(
        vec![
            r#""state":"success""#.into(),
            r#""state":"SUCCESSFUL""#.into(),
        ],
        500,
        201,
    ));
    let good: Vec<String> = repos
        .iter()
        .map(|r| {
            r.remote.write("compose.yaml", &compose(1, false));
            r.remote.commit("good")
        })
        .collect();
    wait_for(90, "each success tried and refused", || {
        let refused = receiver
            .requests()
            .iter()
            .filter(|r| r.answered == Some(500))
            .map(|r| r.path.split('/').nth(1).unwrap_or_default().to_string())
            .collect::<std::collections::BTreeSet<_>>();
        (refused.len() == 4).then_some(())
    });
    serve.kill9();
    receiver.set_mode(Mode::Status(201));
    let mut serve = kedge.serve_with(&["serve", "--poll-interval", "1s"]);
    for (repo, commit) in repos.iter().zip(&good) {
        let [pending, success, _] = words(repo.provider);
        wait_for(60, "the success taken after the restart", || {
            (taken(&receiver, repo, token).len() == 2).then_some(())
        });
        assert_eq!(
            taken(&receiver, repo, token),
            [
                (pending.to_string(), commit.clone()),
                (success.to_string(), commit.clone())
            ],
            "{}",
            repo.provider
        );
    }

    // The API answers 500 for two minutes: a commit that fails its gate
    // is deployed, failed and rolled back meanwhile, undelayed.
    receiver.set_mode(Mode::Status(500));
    let outage = Instant::now();
    let bad: Vec<String> = repos
        .iter()
        .map(|r| {
            r.remote.write("compose.yaml", &compose(2, true));
            r.remote.commit("broken")
        })
        .collect();
    for (repo, commit) in repos.iter().zip(&bad) {
        wait_for(90, "the broken commit failed and rolled back", || {
            let h = kedge
                .run(["history", "--repo", &repo.name, "-o", "json"])
                .json();
            let rows = h.as_array()?;
            (rows.len() >= 2
                && rows[0]["trigger"] == "auto_rollback"
                && rows[1]["commit"] == commit.as_str()
                && rows[1]["status"] == "failed")
                .then_some(())
        });
    }
    assert!(
        outage.elapsed() < Duration::from_secs(120),
        "the deployments waited for the API"
    );
    while outage.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(500));
    }
    let refused = receiver
        .requests()
        .iter()
        .filter(|r| r.answered == Some(500))
        .count();
    receiver.set_mode(Mode::Status(201));
    for (repo, (commit, before)) in repos.iter().zip(bad.iter().zip(&good)) {
        let [pending, success, failure] = words(repo.provider);
        wait_for(90, "the statuses taken after the outage", || {
            (taken(&receiver, repo, token).len() == 4).then_some(())
        });
        assert_eq!(
            taken(&receiver, repo, token),
            [
                (pending.to_string(), before.clone()),
                (success.to_string(), before.clone()),
                (pending.to_string(), commit.clone()),
                (failure.to_string(), commit.clone()),
            ],
            "{}",
            repo.provider
        );
    }
    assert!(
        refused > 8,
        "retried through the outage: {refused} refusals"
    );
    // Said once per outage, not at every retry; the token never.
    let log = serve.log();
    let said = log
        .lines()
        .filter(|l| l.contains("does not take statuses now"))
        .count();
    // Each target's two outages (the refused successes, the two minutes
    // of 500s), once each.
    assert_eq!(said, 8, "{log}");
    assert!(!log.contains(token), "{log}");
    serve.kill9();
}
