//! http: who a request speaks for — a bearer token or a dashboard session.
//! Every route under `/api/v1` needs a token; a `read` token may GET, a
//! `deploy` token may also sync and roll back, an `admin` token may also
//! add and remove repositories. The event stream also takes the
//! dashboard's session cookie instead.

use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::Response;

use super::{ApiError, AppState};
use crate::ops::Role;

pub async fn require_token(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let Some(presented) = presented else {
        return Err(ApiError::Unauthorized(
            "missing `Authorization: Bearer TOKEN` (create one with `kedge token create NAME`)"
                .into(),
        ));
    };
    let token = state
        .ops
        .authenticate(presented)?
        .ok_or_else(|| ApiError::Unauthorized("unknown or revoked token".into()))?;
    let needed = needed_role(&request);
    if token.role < needed {
        return Err(ApiError::Forbidden(format!(
            "token '{}' has the role {}; this needs {} (kedge token create NAME --role {})",
            token.name,
            token.role.as_str(),
            needed.as_str(),
            needed.as_str()
        )));
    }
    Ok(next.run(request).await)
}

/// The least role a request needs: reading is `read`; a sync or a
/// rollback is `deploy`; anything else that changes (adding and removing
/// repositories, and any route yet to come) is `admin`.
pub fn needed_role(request: &Request) -> Role {
    role_for(
        request.method(),
        request
            .extensions()
            .get::<MatchedPath>()
            .map_or(request.uri().path(), MatchedPath::as_str),
    )
}

/// `needed_role` by method and route.
pub fn role_for(method: &Method, route: &str) -> Role {
    if matches!(*method, Method::GET | Method::HEAD) {
        Role::Read
    } else if *method == Method::POST && (route.ends_with("/sync") || route.ends_with("/rollback"))
    {
        Role::Deploy
    } else {
        Role::Admin
    }
}

/// The event stream: a bearer token as on every route, or, for a request
/// that sends no `Authorization` header, a dashboard session (the page's
/// EventSource cannot send a header; the cookie is HttpOnly and
/// SameSite=Strict, and the stream only reads).
pub async fn require_token_or_session(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    if !request.headers().contains_key(header::AUTHORIZATION)
        && matches!(*request.method(), Method::GET | Method::HEAD)
        && super::session::current(&state, request.headers())
            .ok()
            .flatten()
            .is_some()
    {
        return Ok(next.run(request).await);
    }
    require_token(State(state), request, next).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_by_route() {
        for (method, route, want) in [
            (Method::GET, "/api/v1/repos", Role::Read),
            (Method::HEAD, "/api/v1/repos/{name}", Role::Read),
            (Method::GET, "/api/v1/events/stream", Role::Read),
            (Method::POST, "/api/v1/repos/{name}/sync", Role::Deploy),
            (Method::POST, "/api/v1/repos/{name}/rollback", Role::Deploy),
            (Method::POST, "/api/v1/repos", Role::Admin),
            (Method::DELETE, "/api/v1/repos/{name}", Role::Admin),
            (Method::PUT, "/api/v1/repos/{name}/sync", Role::Admin),
            (Method::PATCH, "/api/v1/anything", Role::Admin),
        ] {
            assert_eq!(role_for(&method, route), want, "{method} {route}");
        }
        assert!(Role::Read < Role::Deploy && Role::Deploy < Role::Admin);
    }
}
