//! web: the dashboard's stylesheet, script and icon, embedded in the binary
//! (no CDN, no web fonts). Served with an ETag of their content, so a
//! browser revalidates them cheaply and never runs a stale script.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::WebError;

pub const CSS_PATH: &str = "/assets/kedge.css";
pub const JS_PATH: &str = "/assets/kedge.js";
pub const ICON_PATH: &str = "/assets/kedge.svg";

pub const CSS: &str = include_str!("assets/kedge.css");
pub const JS: &str = include_str!("assets/kedge.js");
pub const ICON: &str = include_str!("assets/kedge.svg");

/// (file name, content type, content, its ETag)
type Asset = (&'static str, &'static str, &'static str, String);

static ASSETS: LazyLock<[Asset; 3]> = LazyLock::new(|| {
    let etag = |s: &str| {
        use sha2::Digest;
        format!(
            "\"{}\"",
            &hex::encode(sha2::Sha256::digest(s.as_bytes()))[..16]
        )
    };
    [
        ("kedge.css", "text/css; charset=utf-8", CSS, etag(CSS)),
        ("kedge.js", "text/javascript; charset=utf-8", JS, etag(JS)),
        ("kedge.svg", "image/svg+xml", ICON, etag(ICON)),
    ]
});

pub async fn serve(Path(file): Path<String>, headers: HeaderMap) -> Result<Response, WebError> {
    let (_, content_type, body, etag) = ASSETS
        .iter()
        .find(|(name, ..)| *name == file)
        .ok_or_else(|| WebError::NotFound(format!("no asset named '{file}'")))?;
    let etag_value = HeaderValue::from_str(etag).unwrap_or(HeaderValue::from_static("\"\""));
    let cache = HeaderValue::from_static("no-cache");
    if headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == etag.as_bytes())
    {
        return Ok((
            StatusCode::NOT_MODIFIED,
            [(header::ETAG, etag_value), (header::CACHE_CONTROL, cache)],
        )
            .into_response());
    }
    Ok((
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::ETAG, etag_value),
            (header::CACHE_CONTROL, cache),
        ],
        *body,
    )
        .into_response())
}
