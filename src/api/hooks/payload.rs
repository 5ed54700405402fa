//! api/hooks: what a verified push's payload asks for, in each host's
//! format — the repository's addresses and the full refs it moved, or for
//! the generic hook a repository by name. Pure: no I/O.

use serde_json::Value;

use super::providers::Provider;
use crate::ops::hooks::HookTarget;

/// The longest ref name a hook may name: far beyond any real one, and
/// short enough that matching it against `webhooks.refs` globs is cheap.
const MAX_REF: usize = 1024;

/// A full ref name (`refs/heads/main`, `refs/tags/v1`), if `r` is one.
fn full_ref(r: &str) -> Option<String> {
    r.strip_prefix("refs/")
        .filter(|rest| rest.contains('/') && !rest.ends_with('/') && r.len() <= MAX_REF)
        .map(|_| r.to_string())
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
        refs: payload
            .get("ref")
            .and_then(Value::as_str)
            .and_then(full_ref)
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
    let refs = payload
        .pointer("/push/changes")
        .and_then(Value::as_array)
        .map(|changes| {
            changes
                .iter()
                .filter_map(|c| {
                    let new = c.get("new")?;
                    let kind = match new.get("type")?.as_str()? {
                        "branch" => "heads",
                        "tag" | "annotated_tag" => "tags",
                        _ => return None,
                    };
                    let name = new.get("name")?.as_str().filter(|n| !n.is_empty())?;
                    Some(format!("refs/{kind}/{name}"))
                })
                .collect()
        })
        .unwrap_or_default();
    HookTarget::Push { urls, refs }
}

/// `{"repo": NAME}` or `{"url": URL, "ref": "refs/heads/BRANCH"}`.
fn generic(payload: &Value) -> Result<HookTarget, String> {
    let field = |k: &str| payload.get(k).and_then(Value::as_str);
    match (field("repo"), field("url"), field("ref")) {
        (Some(repo), None, None) => Ok(HookTarget::Repo(repo.to_string())),
        (None, Some(url), Some(r)) => Ok(HookTarget::Push {
            urls: vec![url.to_string()],
            refs: full_ref(r).into_iter().collect(),
        }),
        _ => Err(
            r#"the generic hook takes {"repo": NAME} or {"url": URL, "ref": "refs/heads/BRANCH"}"#
                .into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push(urls: &[&str], refs: &[&str]) -> Option<HookTarget> {
        Some(HookTarget::Push {
            urls: urls.iter().map(|s| s.to_string()).collect(),
            refs: refs.iter().map(|s| s.to_string()).collect(),
        })
    }

    #[test]
    fn full_refs_are_bounded() {
        assert_eq!(
            full_ref("refs/heads/main").as_deref(),
            Some("refs/heads/main")
        );
        for bad in ["main", "refs/main", "refs/heads/", "heads/main"] {
            assert_eq!(full_ref(bad), None, "{bad}");
        }
        let long = format!("refs/heads/{}", "a".repeat(MAX_REF));
        assert_eq!(full_ref(&long), None);
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
                    &["refs/heads/main"],
                ),
            ),
            (
                GitHub,
                serde_json::json!({"ref": "refs/tags/v1", "repository": {"clone_url": "https://h/a.git"}}),
                push(&["https://h/a.git"], &["refs/tags/v1"]),
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
                    &["refs/heads/release/1.2"],
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
                    &["refs/heads/main"],
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
                    &["refs/heads/main", "refs/tags/v1", "refs/heads/dev"],
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
                push(&["file:///srv/app.git"], &["refs/heads/main"]),
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
}
