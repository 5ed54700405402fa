//! web: `kedge serve`'s dashboard, the third face beside `cli` and `api`,
//! served by `http` beside the API, which it never imports.
//! Server-rendered pages (maud templates, checked at compile time and
//! escaped by default) over the same operations; a session opened by
//! signing in with an API token; CSRF-checked forms for the write actions
//! (sync, rollback); styles and the small script that follows the event
//! stream embedded in the binary. It calls `ops` only.

mod actions;
mod assets;
mod layout;
mod overview;
mod repo;

use std::sync::Arc;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::http::session::{self, Session};
use crate::http::{ApiError, AppState};
use crate::ops::OpsError;

/// The dashboard's pages, forms and assets, mounted at `/`.
pub fn routes() -> axum::Router<Arc<AppState>> {
    axum::Router::new()
        .route("/", get(overview::page))
        .route("/login", get(actions::login_page).post(actions::login))
        .route("/logout", post(actions::logout))
        .route("/repos/{name}", get(repo::page))
        .route("/repos/{name}/diff", get(repo::diff_page))
        .route(
            "/repos/{name}/sync",
            get(actions::sync_confirm).post(actions::sync),
        )
        .route(
            "/repos/{name}/rollback",
            get(actions::rollback_confirm).post(actions::rollback),
        )
        .route("/assets/{file}", get(assets::serve))
        .layer(axum::middleware::map_response(security_headers))
}

/// The session a request carries, if it is one that still holds (the
/// token it was opened with not revoked).
fn signed_in(
    state: &AppState,
    headers: &axum::http::HeaderMap,
) -> Result<Option<Session>, WebError> {
    Ok(session::current(state, headers)?)
}

/// What every dashboard answer carries: scripts and styles from this
/// origin only (no inline script), no framing, no referrer, no sniffing.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; \
    frame-ancestors 'none'; base-uri 'none'";

async fn security_headers(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// A page: HTML with its status.
/// A stack's address as one path segment: `repo/stack` as `repo%2Fstack`,
/// so that `/repos/{name}` and the pages below it serve a stack too.
fn segment(address: &str) -> String {
    crate::model::address::path_segment(address)
}

fn html(status: StatusCode, markup: maud::Markup) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        markup.into_string(),
    )
        .into_response()
}

/// See-other to `to`, with extra headers (cookies).
fn redirect(to: &str, cookies: &[String]) -> Response {
    let mut response =
        (StatusCode::SEE_OTHER, [(header::LOCATION, to.to_string())]).into_response();
    for c in cookies {
        if let Ok(v) = HeaderValue::from_str(c) {
            response.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    response
}

/// Why a dashboard request was refused: an HTML page with the status that
/// fits and the reason. Bad input is a 4xx, never a 500.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    /// An operation's refusal, with the status the API gives it.
    #[error("{message}")]
    Refused { status: StatusCode, message: String },
}

impl From<OpsError> for WebError {
    fn from(e: OpsError) -> WebError {
        let api = ApiError::from(e);
        WebError::Refused {
            status: api.status(),
            message: api.to_string(),
        }
    }
}

impl WebError {
    fn status(&self) -> StatusCode {
        match self {
            WebError::BadRequest(_) => StatusCode::BAD_REQUEST,
            WebError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            WebError::Forbidden(_) => StatusCode::FORBIDDEN,
            WebError::NotFound(_) => StatusCode::NOT_FOUND,
            WebError::Refused { status, .. } => *status,
        }
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!("dashboard request failed: {self}");
        }
        let title = status.canonical_reason().unwrap_or("Error");
        html(
            status,
            layout::error_page(status.as_u16(), title, &self.to_string()),
        )
    }
}

#[cfg(test)]
mod tests {
    /// The dashboard is a face: it renders what the operations report.
    /// The store, the engine, git and compose are the operations' business;
    /// the API beside it is none of its business.
    #[test]
    fn no_page_reaches_past_the_operations() {
        crate::ops::assert_face_stays_above_ops("web", 6);
    }
}
