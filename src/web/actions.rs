//! web: the dashboard's forms — sign in with an API token, sign out, and
//! the write actions (sync, rollback to a history entry), each behind a
//! confirmation page. Every form carries a CSRF token: the session's, or
//! for signing in (no session yet) one doubled in a cookie. Failed
//! sign-ins back off per address (`throttle`).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::{Extension, Form};
use maud::{Markup, html};
use serde::Deserialize;

use super::layout::{self, commit};
use super::{Session, WebError, html, redirect};
use crate::http::AppState;
use crate::http::session::{self, COOKIE, LIFETIME, LOGIN_COOKIE, csrf_matches};

/// How long a sync or rollback form waits for its deployment to finish
/// before it shows the repository page with the deployment in progress.
const WAIT_FOR_RESULT: Duration = Duration::from_secs(30);

#[derive(Debug, Deserialize)]
pub struct LoginForm {
    token: Option<String>,
    csrf: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct ActionForm {
    csrf: Option<String>,
    commit: Option<String>,
    /// `true`: a sync deploys though the stack's sync windows are closed
    /// (the confirm page offers it only while a commit waits for one).
    force: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommitQuery {
    commit: String,
}

fn form<T>(parsed: Result<Form<T>, FormRejection>) -> Result<T, WebError> {
    parsed
        .map(|Form(v)| v)
        .map_err(|e| WebError::BadRequest(e.body_text()))
}

/// An action's form. One that is not a form at all (no body, another
/// content type) has no CSRF token either: refused as such, 403.
fn action_form(parsed: Result<Form<ActionForm>, FormRejection>) -> Result<ActionForm, WebError> {
    match parsed {
        Ok(Form(f)) => Ok(f),
        Err(FormRejection::InvalidFormContentType(_)) => Ok(ActionForm {
            csrf: None,
            commit: None,
            force: None,
        }),
        Err(e) => Err(WebError::BadRequest(e.body_text())),
    }
}

pub async fn login_page(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Response, WebError> {
    if super::signed_in(&app, &headers)?.is_some() {
        return Ok(redirect("/", &[]));
    }
    Ok(login_form(&app, &headers, StatusCode::OK, None))
}

/// The sign-in form with a fresh CSRF token, also set as its cookie.
fn login_form(
    app: &AppState,
    headers: &HeaderMap,
    code: StatusCode,
    error: Option<&str>,
) -> Response {
    let csrf = session::random_hex();
    let main = html! {
        h1 { "Sign in" }
        @if let Some(e) = error { p.error role="alert" { (e) } }
        form.login method="post" action="/login" {
            input type="hidden" name="csrf" value=(csrf);
            label for="token" { "API token" }
            input #token type="password" name="token" autocomplete="off" required autofocus;
            button type="submit" { "Sign in" }
        }
        p.hint {
            "Create a token on the host that runs " code { "kedge serve" } ": "
            code { "kedge token create NAME --role read" } " (or " code { "--role deploy" }
            " to sync and roll back from here)."
        }
    };
    let cookie = session::set_cookie(
        LOGIN_COOKIE,
        &csrf,
        "/login",
        Duration::from_secs(3600),
        session::secure(app, headers),
    );
    let mut response = html(code, layout::page("Sign in", None, None, main));
    if let Ok(v) = cookie.parse() {
        response
            .headers_mut()
            .append(axum::http::header::SET_COOKIE, v);
    }
    response
}

pub async fn login(
    State(app): State<Arc<AppState>>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    parsed: Result<Form<LoginForm>, FormRejection>,
) -> Result<Response, WebError> {
    let f = form(parsed)?;
    let expected = session::cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    if !csrf_matches(expected, f.csrf.as_deref()) {
        return Err(WebError::Forbidden(
            "the sign-in form was not sent from this dashboard's page (its CSRF token is missing or wrong): reload the page and sign in again".into(),
        ));
    }
    // The TCP peer (see `throttle` on proxies); none only in unit tests.
    let peer = peer.map_or(
        IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        |Extension(ConnectInfo(a))| a.ip(),
    );
    if let Err(wait) = app.sessions.sign_ins.begin(peer) {
        let secs = (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1);
        let mut response = login_form(
            &app,
            &headers,
            StatusCode::TOO_MANY_REQUESTS,
            Some(&format!(
                "Too many failed sign-ins from your address: try again in {secs} s."
            )),
        );
        response
            .headers_mut()
            .insert(axum::http::header::RETRY_AFTER, secs.into());
        return Ok(response);
    }
    let token = f.token.as_deref().unwrap_or_default().trim();
    let Some(_) = app.ops.authenticate(token)? else {
        return Ok(login_form(
            &app,
            &headers,
            StatusCode::UNAUTHORIZED,
            Some("Unknown or revoked token."),
        ));
    };
    app.sessions.sign_ins.succeeded(peer);
    let id = app.sessions.open(crate::ops::tokens::token_hash(token));
    let secure = session::secure(&app, &headers);
    Ok(redirect(
        "/",
        &[
            session::set_cookie(COOKIE, &id, "/", LIFETIME, secure),
            session::set_cookie(LOGIN_COOKIE, "", "/login", Duration::ZERO, secure),
        ],
    ))
}

pub async fn logout(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    parsed: Result<Form<ActionForm>, FormRejection>,
) -> Result<Response, WebError> {
    let f = action_form(parsed)?;
    if let Some(s) = super::signed_in(&app, &headers)? {
        checked(&s, &f)?;
        app.sessions.close(s.id());
    }
    let secure = session::secure(&app, &headers);
    Ok(redirect(
        "/login",
        &[session::set_cookie(COOKIE, "", "/", Duration::ZERO, secure)],
    ))
}

/// The session of a sync or rollback: signed in with a `deploy` (or
/// `admin`) token.
fn writer(app: &AppState, headers: &HeaderMap) -> Result<Session, WebError> {
    let s = super::signed_in(app, headers)?.ok_or_else(|| {
        WebError::Unauthorized("not signed in: sign in with a token first".into())
    })?;
    if !s.can_write() {
        return Err(WebError::Forbidden(format!(
            "token '{}' may only read; this needs a deploy token",
            s.token_name
        )));
    }
    Ok(s)
}

/// A form of this session: its CSRF token must be the session's.
fn checked(s: &Session, f: &ActionForm) -> Result<(), WebError> {
    if csrf_matches(&s.csrf, f.csrf.as_deref()) {
        Ok(())
    } else {
        Err(WebError::Forbidden(
            "this form's CSRF token is missing or wrong: it was not sent from this dashboard's page".into(),
        ))
    }
}

fn confirm_page(
    s: &Session,
    repo: &str,
    title: &str,
    action: &str,
    body: Markup,
    hidden: &[(&str, &str)],
    button: &str,
) -> Markup {
    let main = html! {
        nav.crumbs aria-label="Breadcrumb" {
            a href="/" { "Repositories" } " / " a href={ "/repos/" (super::segment(repo)) } { (repo) }
        }
        h1 { (title) }
        (body)
        form.confirm method="post" action=(action) {
            input type="hidden" name="csrf" value=(s.csrf);
            @for (name, value) in hidden { input type="hidden" name=(name) value=(value); }
            button.danger type="submit" { (button) }
            " "
            a href={ "/repos/" (super::segment(repo)) } { "Cancel" }
        }
    };
    layout::page(title, Some(s), None, main)
}

pub async fn sync_confirm(
    State(app): State<Arc<AppState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Response, WebError> {
    if super::signed_in(&app, &headers)?.is_none() {
        return Ok(redirect("/login", &[]));
    }
    let s = writer(&app, &headers)?;
    let (repo, _) = app.ops.unit(&name)?;
    // A commit held back by closed sync windows: syncing now overrides
    // them, and the page says so before the button does it.
    let waiting: Vec<String> = app
        .ops
        .window_waits(&name)?
        .into_iter()
        .map(|w| w.text)
        .collect();
    let body = html! {
        p {
            "Deploy the head of branch " strong { (repo.branch) } " of " strong { (name) }
            " now, wait for its health gate, and heal all drift?"
        }
        @if !waiting.is_empty() {
            p.window role="note" {
                @for w in &waiting { (w) ". " }
                "Syncing now deploys it outside its sync window, as "
                code { "kedge sync --force" } " does."
            }
        }
    };
    let action = format!("/repos/{}/sync", super::segment(&name));
    let (hidden, button): (&[(&str, &str)], &str) = match waiting.is_empty() {
        true => (&[], "Sync now"),
        false => (&[("force", "true")], "Sync anyway"),
    };
    Ok(html(
        StatusCode::OK,
        confirm_page(
            &s,
            &name,
            &format!("Sync {name}?"),
            &action,
            body,
            hidden,
            button,
        ),
    ))
}

pub async fn rollback_confirm(
    State(app): State<Arc<AppState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    q: Result<Query<CommitQuery>, QueryRejection>,
) -> Result<Response, WebError> {
    if super::signed_in(&app, &headers)?.is_none() {
        return Ok(redirect("/login", &[]));
    }
    let s = writer(&app, &headers)?;
    let Query(q) = q.map_err(|e| WebError::BadRequest(e.body_text()))?;
    let message = app
        .ops
        .history(&name, 100)?
        .into_iter()
        .find(|d| d.commit.starts_with(&q.commit))
        .map(|d| d.message);
    let body = html! {
        p {
            "Re-apply commit " (commit(&q.commit))
            @if let Some(m) = &message { " “" span.msg { (m) } "”" }
            " to " strong { (name) } "?"
        }
        p {
            "Only the services that differ are changed. The repository stays pinned to "
            "this commit until its branch moves on or you sync."
        }
    };
    let action = format!("/repos/{}/rollback", super::segment(&name));
    Ok(html(
        StatusCode::OK,
        confirm_page(
            &s,
            &name,
            &format!("Roll back {name}?"),
            &action,
            body,
            &[("commit", q.commit.as_str())],
            "Roll back",
        ),
    ))
}

pub async fn sync(
    State(app): State<Arc<AppState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    parsed: Result<Form<ActionForm>, FormRejection>,
) -> Result<Response, WebError> {
    let s = writer(&app, &headers)?;
    let f = action_form(parsed)?;
    checked(&s, &f)?;
    let how = crate::ops::command::SyncHow {
        force: f.force.as_deref() == Some("true"),
        ..Default::default()
    };
    let running = app
        .ops
        .start_sync(&name, how, Some(app.ops.settings().command_wait))
        .await?;
    deploy(&name, "sync", running).await
}

pub async fn rollback(
    State(app): State<Arc<AppState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    parsed: Result<Form<ActionForm>, FormRejection>,
) -> Result<Response, WebError> {
    let s = writer(&app, &headers)?;
    let f = action_form(parsed)?;
    checked(&s, &f)?;
    let target = f
        .commit
        .filter(|c| !c.trim().is_empty())
        .ok_or_else(|| WebError::BadRequest("which commit? the form has no `commit`".into()))?;
    let running = app
        .ops
        .start_rollback(&name, &target, Some(app.ops.settings().command_wait))
        .await?;
    deploy(&name, "rollback", running).await
}

/// A sync or rollback the repository's task has taken up (a browser that
/// goes away does not cancel it): waits a while for it to finish, then
/// shows the repository page with the outcome, which updates live while it
/// runs.
async fn deploy(
    name: &str,
    what: &str,
    mut running: crate::ops::command::Running,
) -> Result<Response, WebError> {
    let page = format!("/repos/{}", super::segment(name));
    match tokio::time::timeout(WAIT_FOR_RESULT, running.finish()).await {
        Ok((Some(id), _)) => Ok(redirect(&format!("{page}?deployment={id}"), &[])),
        Ok((None, Ok(_))) => Ok(redirect(&format!("{page}?nothing={what}"), &[])),
        Ok((None, Err(e))) => Err(e.into()),
        // Still running: the page follows it.
        Err(_) => Ok(match running.progress_now() {
            Some(id) => redirect(&format!("{page}?deployment={id}"), &[]),
            None => redirect(&format!("{page}?waiting={what}"), &[]),
        }),
    }
}
