//! api: `kedge serve`'s HTTP face — health, metrics, the JSON API under
//! `/api/v1` (the same operations and the same JSON as the CLI), the event
//! stream, and the git webhooks (signed with a webhook secret, not a
//! token). `http` serves it beside the dashboard (`web`), which it never
//! imports. It calls `ops` only; a bad request is a 4xx with a JSON reason.
//! Requests never take a repository's lock unless they apply (sync,
//! rollback, remove).

mod hooks;
pub mod metrics;
mod openapi;
mod routes;
mod stacks;
mod stream;

use std::sync::Arc;

use crate::http::{ApiError, AppState, BODY_LIMIT, DIFF_WAIT, ErrorBody, auth, body};

pub use openapi::document as openapi_document;

/// The API's routes: the public ones (health, metrics), the webhooks and,
/// under `/api/v1`, the token-protected ones.
pub fn routes(state: Arc<AppState>) -> axum::Router<Arc<AppState>> {
    axum::Router::new()
        .merge(routes::public())
        .merge(hooks::routes())
        .nest("/api/v1", routes::api(state))
}

#[cfg(test)]
mod tests {
    /// The API is a face: it answers with what the operations report, and
    /// knows nothing of the dashboard beside it.
    #[test]
    fn no_route_reaches_past_the_operations() {
        crate::ops::assert_face_stays_above_ops("api", 8);
    }
}
