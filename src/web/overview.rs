//! web: the overview at `/` — one row per repository (branch, deployed
//! commit and message, sync state, services up, drift, last deploy; a
//! repository of several stacks summed up, its page lists them), or, with
//! none registered, how to add the first one.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use maud::{Markup, html};

use super::layout::{self, commit, state, time};
use super::{Session, WebError, html, redirect};
use crate::http::AppState;
use crate::ops::dashboard::OverviewRow;
use crate::ops::status::SyncState;

pub async fn page(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Response, WebError> {
    let Some(session) = super::signed_in(&app, &headers)? else {
        return Ok(redirect("/login", &[]));
    };
    let rows = app.ops.overview()?;
    Ok(html(StatusCode::OK, render(&session, &rows)))
}

/// The whole overview page for these rows.
pub fn render(session: &Session, rows: &[OverviewRow]) -> Markup {
    let main = html! {
        h1 { "Repositories" }
        @if rows.is_empty() {
            (empty_state())
        } @else {
            (table(session, rows))
        }
    };
    layout::page(
        "Repositories",
        Some(session),
        Some("/api/v1/events/stream"),
        main,
    )
}

/// The rows of one repository: its single stack as it always was, or its
/// several stacks, which the overview sums up in one line (a thousand
/// stacks would otherwise make a page of a megabyte).
fn by_repository(rows: &[OverviewRow]) -> Vec<Vec<&OverviewRow>> {
    let mut lines: Vec<Vec<&OverviewRow>> = Vec::new();
    for r in rows {
        match lines.iter_mut().find(|l| l[0].repo == r.repo) {
            Some(line) => line.push(r),
            None => lines.push(vec![r]),
        }
    }
    lines
}

fn table(session: &Session, rows: &[OverviewRow]) -> Markup {
    let writes = session.can_write();
    let lines = by_repository(rows);
    let synced = rows
        .iter()
        .filter(|r| r.sync_state == SyncState::Synced)
        .count();
    html! {
        div.scroll id="repos" data-live {
            table.rows {
                caption {
                    (lines.len()) " " (if lines.len() == 1 { "repository" } else { "repositories" })
                    @if rows.len() != lines.len() { ", " (rows.len()) " stacks" }
                    ", " (synced) " synced"
                }
                thead {
                    tr {
                        th scope="col" { "Repository" }
                        th scope="col" { "Branch" }
                        th scope="col" { "Deployed commit" }
                        th scope="col" { "State" }
                        th scope="col" { "Services up" }
                        th scope="col" { "Drift" }
                        th scope="col" { "Last deploy" }
                        @if writes { th scope="col" { "Actions" } }
                    }
                }
                tbody {
                    @for line in &lines {
                        @if line.len() == 1 && line[0].name == line[0].repo {
                            (row(line[0], writes))
                        } @else {
                            (stacks_row(line, writes))
                        }
                    }
                }
            }
        }
    }
}

fn row(r: &OverviewRow, writes: bool) -> Markup {
    html! {
        tr id={ "repo-" (r.name) } data-repo=(r.name) {
            th scope="row" data-label="Repository" {
                a href={ "/repos/" (super::segment(&r.name)) } { (r.name) }
            }
            td data-label="Branch" { (r.branch) }
            td.deployed data-label="Deployed commit" {
                @match &r.deployed_commit {
                    Some(c) => {
                        (commit(c)) " "
                        span.msg { (r.deployed_message.as_deref().unwrap_or_default()) }
                    }
                    None => { span.none { "nothing deployed" } }
                }
                @if let Some(head) = r.remote_head.as_ref().filter(|h| Some(*h) != r.deployed_commit.as_ref() && Some(*h) != r.synced_commit.as_ref()) {
                    br;
                    small.pending { "head " (commit(head)) }
                }
            }
            td data-label="State" {
                (state(r.sync_state.as_str()))
                @if let Some(e) = &r.last_error {
                    br; small.error title=(e) { "error: " (e) }
                }
            }
            td.services data-label="Services up" {
                @match r.services {
                    Some((up, total)) => { (up) "/" (total) }
                    None => { span.none { "unknown" } }
                }
            }
            td.drift data-label="Drift" { (r.drift_count) }
            td data-label="Last deploy" {
                @match r.last_deployed_at {
                    Some(at) => { (time(at)) }
                    None => { span.none { "never" } }
                }
            }
            @if writes {
                td data-label="Actions" {
                    a.button href={ "/repos/" (super::segment(&r.name)) "/sync" } { "Sync" }
                }
            }
        }
    }
}

/// How bad a state is, for the one a repository of several stacks shows.
fn rank(s: SyncState) -> u8 {
    match s {
        SyncState::Synced => 0,
        SyncState::Pinned => 1,
        SyncState::Unknown => 2,
        SyncState::Orphaned => 3,
        SyncState::WaitingForWindow => 4,
        SyncState::OutOfSync => 4,
        SyncState::Drifted => 5,
        SyncState::Failed => 6,
    }
}

/// Stacks named beside a state other than synced, at most.
const NAMED: usize = 5;

/// A repository of several stacks in one line: its worst state with the
/// stacks in each, the services and drift of all, the newest deployment.
fn stacks_row(stacks: &[&OverviewRow], writes: bool) -> Markup {
    let first = stacks[0];
    let worst = stacks
        .iter()
        .map(|r| r.sync_state)
        .max_by_key(|s| rank(*s))
        .unwrap_or_default();
    let mut counts: Vec<(SyncState, Vec<&str>)> = Vec::new();
    for r in stacks {
        let stack = r.name.rsplit('/').next().unwrap_or(&r.name);
        match counts.iter_mut().find(|(s, _)| *s == r.sync_state) {
            Some((_, names)) => names.push(stack),
            None => counts.push((r.sync_state, vec![stack])),
        }
    }
    counts.sort_by_key(|(s, _)| rank(*s));
    let newest = stacks
        .iter()
        .filter(|r| r.deployed_commit.is_some())
        .max_by_key(|r| r.last_deployed_at);
    let mut commits: Vec<&str> = stacks
        .iter()
        .filter_map(|r| r.deployed_commit.as_deref())
        .collect();
    commits.sort_unstable();
    commits.dedup();
    let known: Vec<(usize, usize)> = stacks.iter().filter_map(|r| r.services).collect();
    let drift: usize = stacks.iter().map(|r| r.drift_count).sum();
    html! {
        tr id={ "repo-" (first.repo) } data-repo=(first.repo) {
            th scope="row" data-label="Repository" {
                a href={ "/repos/" (super::segment(&first.repo)) } { (first.repo) }
                br; small { (stacks.len()) " stacks" }
            }
            td data-label="Branch" { (first.branch) }
            td.deployed data-label="Deployed commit" {
                @match newest.and_then(|r| r.deployed_commit.as_ref().map(|c| (r, c))) {
                    Some((r, c)) => {
                        (commit(c)) " "
                        span.msg { (r.deployed_message.as_deref().unwrap_or_default()) }
                        @if commits.len() > 1 {
                            br; small.pending { "stacks on " (commits.len()) " commits" }
                        }
                    }
                    None => { span.none { "nothing deployed" } }
                }
            }
            td data-label="State" {
                (state(worst.as_str()))
                @if counts.len() > 1 {
                    br;
                    small {
                        @for (i, (s, names)) in counts.iter().enumerate() {
                            @if i > 0 { " · " }
                            (names.len()) " " (s.as_str())
                            @if *s != SyncState::Synced {
                                ": " (names.iter().take(NAMED).copied().collect::<Vec<_>>().join(", "))
                                @if names.len() > NAMED { ", …" }
                            }
                        }
                    }
                }
            }
            td.services data-label="Services up" {
                @if known.is_empty() {
                    span.none { "unknown" }
                } @else {
                    (known.iter().map(|k| k.0).sum::<usize>()) "/" (known.iter().map(|k| k.1).sum::<usize>())
                }
            }
            td.drift data-label="Drift" { (drift) }
            td data-label="Last deploy" {
                @match stacks.iter().filter_map(|r| r.last_deployed_at).max() {
                    Some(at) => { (time(at)) }
                    None => { span.none { "never" } }
                }
            }
            @if writes {
                td data-label="Actions" {
                    a.button href={ "/repos/" (super::segment(&first.repo)) "/sync" } { "Sync" }
                }
            }
        }
    }
}

/// What a new user sees: how to register the first repository.
fn empty_state() -> Markup {
    html! {
        section.empty id="repos" data-live {
            h2 { "No repositories yet" }
            p {
                "Kedge deploys the compose stacks of the Git repositories you register. "
                "Add the first one on the host that runs " code { "kedge serve" } ":"
            }
            pre { code { "kedge repo add https://github.com/acme/app --branch main" } }
            p {
                "or through the API with an " em { "admin" } " token:"
            }
            pre {
                code {
                    "curl -X POST -H \"Authorization: Bearer $TOKEN\" -H 'Content-Type: application/json' \\\n"
                    "     -d '{\"url\": \"https://github.com/acme/app\", \"branch\": \"main\"}' \\\n"
                    "     http://127.0.0.1:9470/api/v1/repos"
                }
            }
            p {
                "The repository needs a compose file at its root (" code { "compose.yaml" }
                "). " code { "serve" } " picks it up within one poll interval, deploys it, "
                "and this page shows it as it happens."
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::Role;

    fn row(name: &str, message: &str) -> OverviewRow {
        OverviewRow {
            name: name.into(),
            repo: name.split('/').next().unwrap().into(),
            branch: "main".into(),
            deployed_commit: Some("0123456789abcdef0123456789abcdef01234567".into()),
            deployed_message: Some(message.into()),
            sync_state: SyncState::Drifted,
            services: Some((1, 2)),
            drift_count: 1,
            last_deployed_at: Some(1_795_834_800_000),
            ..Default::default()
        }
    }

    #[test]
    fn what_comes_from_git_is_text_and_state_is_a_word() {
        let html = render(
            &Session::for_test("ci", Role::Read),
            &[row("app", "<script>alert(1)</script> & \"quotes\"")],
        )
        .into_string();
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;quotes&quot;"));
        assert_eq!(
            html.matches("<script").count(),
            1,
            "only the page's own script"
        );
        assert!(html.contains(">drifted<"), "the state as a word");
        assert!(html.contains(">0123456<") && html.contains("1/2"));
        assert!(html.contains("2026-11-28 03:00:00 UTC"));
        // A read token is offered no action.
        assert!(!html.contains("/sync"));
        let write =
            render(&Session::for_test("ops", Role::Deploy), &[row("app", "m")]).into_string();
        assert!(write.contains("href=\"/repos/app/sync\""));
    }

    #[test]
    fn a_repository_of_several_stacks_is_one_line_with_its_worst_state() {
        let stack = |name: &str, state: SyncState, at: i64| OverviewRow {
            sync_state: state,
            last_deployed_at: Some(at),
            ..row(name, &format!("message of {name}"))
        };
        let rows = [
            row("solo", "m"),
            stack("mono/a", SyncState::Synced, 1),
            stack("mono/b", SyncState::Failed, 3),
            stack("mono/c", SyncState::Synced, 2),
        ];
        let html = render(&Session::for_test("ci", Role::Read), &rows).into_string();
        assert_eq!(html.matches("<tr id=\"repo-").count(), 2, "{html}");
        assert!(
            html.contains("2 repositories, 4 stacks, 2 synced"),
            "{html}"
        );
        assert!(html.contains("data-repo=\"mono\""));
        assert!(html.contains("href=\"/repos/mono\""));
        assert!(html.contains("3 stacks"));
        assert!(html.contains(">failed<"), "the worst state: {html}");
        assert!(html.contains("2 synced · 1 failed: b"), "{html}");
        assert!(html.contains("message of mono/b"), "the newest deployment");
        assert!(html.contains("3/6"), "services of all stacks");
        assert!(!html.contains("repo-mono/a"));
    }

    #[test]
    fn no_repository_says_how_to_add_the_first() {
        let html = render(&Session::for_test("ci", Role::Read), &[]).into_string();
        assert!(html.contains("No repositories yet"));
        assert!(html.contains("kedge repo add"));
        assert!(!html.contains("<table"));
    }
}
