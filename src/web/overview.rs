//! web: the overview at `/` — one row per repository (branch, deployed
//! commit and message, sync state, services up, drift, last deploy), or,
//! with none registered, how to add the first one.

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

fn table(session: &Session, rows: &[OverviewRow]) -> Markup {
    let writes = session.can_write();
    html! {
        div.scroll id="repos" data-live {
            table.rows {
                caption {
                    (rows.len()) " " (if rows.len() == 1 { "repository" } else { "repositories" })
                    ", " (rows.iter().filter(|r| r.sync_state == SyncState::Synced).count()) " synced"
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
                    @for r in rows {
                        (row(r, writes))
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
    fn no_repository_says_how_to_add_the_first() {
        let html = render(&Session::for_test("ci", Role::Read), &[]).into_string();
        assert!(html.contains("No repositories yet"));
        assert!(html.contains("kedge repo add"));
        assert!(!html.contains("<table"));
    }
}
