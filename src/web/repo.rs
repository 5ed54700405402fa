//! web: a repository's page — its state and pending commit, services
//! (state, image, commit), drift in the `kedge diff` format, history with
//! messages and errors (and a rollback per entry for write tokens), recent
//! events; and the full diff page, which renders the branch head.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use maud::{Markup, html};
use serde::Deserialize;

use super::layout::{self, commit, short, state, status, time, time_text};
use super::{Session, WebError, html, redirect};
use crate::events::Event;
use crate::http::AppState;
use crate::ops::DiffReport;
use crate::ops::diff_text::diff_text;
use crate::ops::events::EventsRequest;
use crate::ops::history::HistoryRow;
use crate::ops::status::RepoStatus;
use crate::ops::updates::UpdateRow;

/// What an action's redirect says about its outcome.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Outcome {
    /// The deployment a sync or rollback started.
    deployment: Option<i64>,
    /// `sync` or `rollback` that found nothing to deploy.
    nothing: Option<String>,
    /// The action has not begun: another apply holds the repository.
    waiting: Option<String>,
}

/// Everything the repository page shows.
pub struct RepoView {
    pub status: RepoStatus,
    pub history: Vec<HistoryRow>,
    /// Newest first.
    pub events: Vec<Event>,
    /// The stack's image update findings with a candidate.
    pub updates: Vec<UpdateRow>,
}

pub async fn page(
    State(app): State<Arc<AppState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    q: Result<Query<Outcome>, QueryRejection>,
) -> Result<Response, WebError> {
    let Query(outcome) = q.map_err(|e| WebError::BadRequest(e.body_text()))?;
    let Some(session) = super::signed_in(&app, &headers)? else {
        return Ok(redirect("/login", &[]));
    };
    let (mut statuses, _) = app.ops.status(Some(&name)).await?;
    if statuses.len() > 1 {
        // A repository with several stacks: each has its page.
        return Ok(html(
            StatusCode::OK,
            stacks_page(&session, &name, &statuses),
        ));
    }
    let status = statuses
        .pop()
        .ok_or_else(|| WebError::NotFound(format!("no repository named '{name}'")))?;
    let history = app.ops.history(&name, 20)?;
    let mut events = app.ops.events(&EventsRequest {
        repo: Some(name.clone()),
        since: None,
        limit: 20,
    })?;
    events.reverse();
    // The page's name may be a stack's address (`repo/stack`): the
    // findings are asked of its repository and picked by stack.
    let stack = status.stack.clone().unwrap_or_else(|| status.name.clone());
    let updates = app
        .ops
        .updates(Some(&status.name))
        .await?
        .into_iter()
        .filter(|u| u.stack == stack && u.candidate.is_some() && u.state != "error")
        .collect();
    let view = RepoView {
        status,
        history,
        events,
        updates,
    };
    Ok(html(StatusCode::OK, render(&session, &view, &outcome)))
}

/// A repository's stacks, each linking to its own page.
fn stacks_page(session: &Session, repo: &str, stacks: &[RepoStatus]) -> Markup {
    let stream = format!("/api/v1/events/stream?repo={repo}");
    let main = html! {
        nav.crumbs aria-label="Breadcrumb" { a href="/" { "Repositories" } " / " (repo) }
        h1 { (repo) }
        section id="stacks" data-live {
            h2 { "Stacks" }
            table.stacks {
                thead { tr { th { "Stack" } th { "Host" } th { "Project" } th { "Deployed commit" } th { "State" } } }
                tbody {
                    @for s in stacks {
                        tr data-stack=(s.stack.as_deref().unwrap_or_default()) {
                            th scope="row" data-label="Stack" {
                                a href={ "/repos/" (super::segment(&s.address())) } {
                                    (s.stack.as_deref().unwrap_or(&s.name))
                                }
                            }
                            td.host data-label="Host" { (s.host) }
                            td data-label="Project" { (s.project) }
                            td.deployed data-label="Deployed commit" {
                                @match &s.deployed_commit {
                                    Some(c) => { (commit(c)) }
                                    None => { span.none { "nothing deployed" } }
                                }
                            }
                            td data-label="State" { (state(s.sync_state.as_str())) }
                        }
                    }
                }
            }
        }
    };
    layout::page(repo, Some(session), Some(&stream), main)
}

pub fn render(session: &Session, v: &RepoView, outcome: &Outcome) -> Markup {
    let s = &v.status;
    let address = s.address();
    let stream = format!("/api/v1/events/stream?repo={}", super::segment(&address));
    let main = html! {
        nav.crumbs aria-label="Breadcrumb" {
            a href="/" { "Repositories" } " / "
            @if s.stack.is_some() {
                a href={ "/repos/" (s.name) } { (s.name) } " / " (s.stack.as_deref().unwrap_or_default())
            } @else {
                (s.name)
            }
        }
        h1 { (address) }
        (result(v, outcome))
        (summary(session, v))
        section id="services" data-live {
            h2 { "Services" }
            (services(s, &v.updates))
        }
        section id="drift" data-live {
            h2 { "Drift" }
            (drift(s))
        }
        section id="history" data-live {
            h2 { "History" }
            (history(session, v))
        }
        section id="events" data-live {
            h2 { "Recent events" }
            (events(&v.events))
        }
    };
    layout::page(&address, Some(session), Some(&stream), main)
}

/// The outcome of the action that led here, updated live while it runs.
fn result(v: &RepoView, outcome: &Outcome) -> Markup {
    let found = outcome
        .deployment
        .map(|id| (id, v.history.iter().find(|d| d.id == id)));
    html! {
        @if let Some((id, d)) = found {
            section.result id="result" data-live role="status" {
                @match d {
                    Some(d) => {
                        p {
                            "Deployment #" (d.id) " (" (d.trigger) ") of " (commit(&d.commit)) ": "
                            (status(d.status.as_str()))
                            @if let Some(ms) = d.duration_ms { " in " (format!("{:.1}", ms as f64 / 1000.0)) " s" }
                        }
                        @if let Some(e) = &d.error { p.error { (e) } }
                    }
                    None => { p { "Deployment #" (id) " is not among the latest 20." } }
                }
            }
        } @else if let Some(what) = &outcome.nothing {
            section.result id="result" role="status" {
                p { (what) ": nothing to deploy — the containers already match." }
            }
        } @else if outcome.waiting.is_some() {
            section.result id="result" role="status" {
                p { "The deployment has not begun yet: another apply holds the repository. It will run when that one ends." }
            }
        }
    }
}

fn summary(session: &Session, v: &RepoView) -> Markup {
    let s = &v.status;
    let deployed_message = s.deployed_commit.as_ref().and_then(|c| {
        v.history
            .iter()
            .find(|d| &d.commit == c)
            .map(|d| d.message.as_str())
    });
    let pending = s
        .remote_head
        .as_ref()
        .filter(|h| Some(*h) != s.deployed_commit.as_ref() && Some(*h) != s.synced_commit.as_ref());
    html! {
        section id="summary" data-live {
            dl.summary {
                dt { "State" } dd.repo-state { (state(s.sync_state.as_str())) }
                @if let Some(w) = &s.window {
                    dt { "Sync window" } dd.window { (w.text) }
                }
                dt { "Branch" } dd { (s.branch) @if let Some(m) = &s.mode { " · mode " (m) } }
                @if s.host != crate::config::hosts::LOCAL {
                    dt { "Host" }
                    dd.host {
                        (s.host)
                        @if let Some(e) = &s.host_error { " " span.none { "(" (e) ")" } }
                    }
                }
                dt { "Deployed commit" }
                dd {
                    @match &s.deployed_commit {
                        Some(c) => { (commit(c)) " " span.msg { (deployed_message.unwrap_or_default()) } }
                        None => { span.none { "nothing deployed yet" } }
                    }
                }
                dt { "Pending commit" }
                dd {
                    @match pending {
                        Some(head) => {
                            (commit(head)) " (the branch head, not deployed) · "
                            a href={ "/repos/" (super::segment(&s.address())) "/diff" } { "what it would change" }
                        }
                        None => { span.none { "none" } }
                    }
                }
                @if let Some(pin) = &s.pin {
                    dt { "Rollback pin" } dd { (pin.describe()) }
                }
                @if let Some(a) = &s.auto_rollback {
                    dt { "Automatic rollback" } dd.error { (a.text) }
                }
                @if let Some(e) = &s.last_error {
                    dt { "Last error" } dd.error { (e) }
                }
                @if let Some(at) = &s.checked_at {
                    dt { "Last check" } dd { (time_text(at)) }
                }
            }
            @if session.can_write() {
                p.actions { a.button href={ "/repos/" (super::segment(&s.address())) "/sync" } { "Sync" } }
            }
        }
    }
}

fn services(s: &RepoStatus, updates: &[UpdateRow]) -> Markup {
    html! {
        @if s.services.is_empty() {
            p.none { "No services deployed yet." }
        } @else {
            div.scroll {
                table.rows {
                    thead {
                        tr {
                            th scope="col" { "Service" }
                            th scope="col" { "State" }
                            th scope="col" { "Image" }
                            th scope="col" { "Commit" }
                            th scope="col" { "Container" }
                        }
                    }
                    tbody {
                        @for svc in &s.services {
                            tr data-service=(svc.service) {
                                th scope="row" data-label="Service" { (svc.service) }
                                td data-label="State" {
                                    span class={ "state c-" (svc.state) } { (svc.state) }
                                }
                                td data-label="Image" {
                                    (svc.image.as_deref().unwrap_or("–"))
                                    @if let Some(u) = updates.iter().find(|u| u.service == svc.service) {
                                        " " (update_badge(u))
                                    }
                                }
                                td data-label="Commit" {
                                    @match &svc.commit { Some(c) => { (commit(c)) } None => { "–" } }
                                }
                                td data-label="Container" { (svc.container.as_deref().unwrap_or("–")) }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// "update available" beside a service's image: the candidate its policy
/// found, and from what.
fn update_badge(u: &UpdateRow) -> Markup {
    let candidate = u.candidate.as_deref().unwrap_or_default();
    html! {
        span.update title={ "update " (u.state) " (" (u.policy) "): " (u.current) " → " (candidate) } {
            @match u.state.as_str() {
                "applied" => { "update applied: " (candidate) }
                "failed" => { "update failed: " (candidate) }
                _ => { "update available: " (candidate) }
            }
        }
    }
}

/// The drift `serve` sees, in the `kedge diff` format.
fn drift(s: &RepoStatus) -> Markup {
    if s.drifts.is_empty() {
        return html! { p.none { "No drift: the containers match what Git says." } };
    }
    let report = DiffReport {
        repo: s.name.clone(),
        mode: s.mode,
        deployed_commit: s.deployed_commit.clone(),
        remote_head: s.remote_head.clone(),
        pinned_commit: s.pinned_commit.clone(),
        pin: None,
        drifts: s.drifts.clone(),
        pending: None,
        remote_error: None,
    };
    html! { pre.diff { (diff_text(&report)) } }
}

fn history(session: &Session, v: &RepoView) -> Markup {
    let offers = rollback_offers(&v.history, v.status.deployed_commit.as_deref());
    let writes = session.can_write();
    html! {
        @if v.history.is_empty() {
            p.none { "No deployments yet." }
        } @else {
            div.scroll {
                table.rows {
                    thead {
                        tr {
                            th scope="col" { "#" }
                            th scope="col" { "Commit" }
                            th scope="col" { "Message" }
                            th scope="col" { "Status" }
                            th scope="col" { "Trigger" }
                            th scope="col" { "When" }
                            th scope="col" { "Error" }
                            @if writes { th scope="col" { "Actions" } }
                        }
                    }
                    tbody {
                        @for (d, offer) in v.history.iter().zip(&offers) {
                            tr data-deployment=(d.id) {
                                th scope="row" data-label="#" { (d.id) }
                                td data-label="Commit" { (commit(&d.commit)) }
                                td.msg data-label="Message" { (d.message) }
                                td data-label="Status" { (status(d.status.as_str())) }
                                td data-label="Trigger" { (d.trigger) }
                                td data-label="When" { (time_text(&d.deployed_at)) }
                                td.error data-label="Error" { (d.error.as_deref().unwrap_or_default()) }
                                @if writes {
                                    td data-label="Actions" {
                                        @if *offer {
                                            a.button href={ "/repos/" (super::segment(&v.status.address())) "/rollback?commit=" (d.commit) } {
                                                "Roll back to " (short(&d.commit))
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// A deployment whose commit ran: one a rollback may return to.
fn rollback_target(d: &HistoryRow) -> bool {
    matches!(d.status.as_str(), "success" | "rolled_back")
}

/// Which rows (newest first) offer a rollback: each commit a rollback may
/// return to once, on its newest row, and never the one deployed.
fn rollback_offers(history: &[HistoryRow], deployed: Option<&str>) -> Vec<bool> {
    let mut offered = std::collections::HashSet::new();
    history
        .iter()
        .map(|d| {
            rollback_target(d)
                && Some(d.commit.as_str()) != deployed
                && offered.insert(d.commit.as_str())
        })
        .collect()
}

fn events(events: &[Event]) -> Markup {
    html! {
        @if events.is_empty() {
            p.none { "No events yet." }
        } @else {
            div.scroll {
                table.rows.events {
                    thead {
                        tr {
                            th scope="col" { "Time" }
                            th scope="col" { "Kind" }
                            th scope="col" { "Service" }
                            th scope="col" { "Message" }
                        }
                    }
                    tbody {
                        @for e in events {
                            tr class={ "sev-" (e.severity.as_str()) } {
                                td data-label="Time" { (time(e.time)) }
                                td data-label="Kind" { (e.kind.as_str()) }
                                td data-label="Service" { (e.service.as_deref().unwrap_or("–")) }
                                td.msg data-label="Message" { (e.message) }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `GET /repos/{name}/diff`: the whole `kedge diff`, the branch head
/// rendered. It waits up to 10 s for an apply in flight, then says so.
pub async fn diff_page(
    State(app): State<Arc<AppState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Response, WebError> {
    let Some(session) = super::signed_in(&app, &headers)? else {
        return Ok(redirect("/login", &[]));
    };
    let report = app.ops.diff(&name, Some(crate::http::DIFF_WAIT)).await?;
    let main = html! {
        nav.crumbs aria-label="Breadcrumb" {
            a href="/" { "Repositories" } " / " a href={ "/repos/" (super::segment(&name)) } { (name) } " / diff"
        }
        h1 { "Diff of " (name) }
        @if let Some(e) = &report.remote_error {
            p.error { "Cannot check the remote for new commits: " (e) }
        }
        pre.diff { (diff_text(&report)) }
    };
    Ok(html(
        StatusCode::OK,
        layout::page(&format!("Diff of {name}"), Some(&session), None, main),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_update_badge_says_the_candidate_as_text() {
        let row = UpdateRow {
            repo: "shop".into(),
            stack: "shop".into(),
            service: "web".into(),
            image: "registry.example/app:1.4.2".into(),
            current: "1.4.2".into(),
            candidate: Some("1.4.3<b>".into()),
            policy: "patch".into(),
            state: "available".into(),
            detail: None,
            checked_at: 0,
            running_image: None,
            candidate_image: None,
        };
        let html = update_badge(&row).into_string();
        assert!(html.contains("class=\"update\""), "{html}");
        assert!(html.contains("update available: 1.4.3&lt;b&gt;"), "{html}");
        assert!(html.contains("1.4.2 → 1.4.3&lt;b&gt;"), "{html}");
    }
}
