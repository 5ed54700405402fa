//! api: `/api/v1/stacks/{repo}/{stack}/…`, one stack of a repository
//! (fleet.md §1): the per-repository routes' answers, for the stack.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};

use super::routes::{
    DiffDocument, Finished, HistoryQuery, RollbackBody, SyncQuery, WaitQuery, diff_of, history_of,
    rollback_of, status_of, sync_of,
};
use super::{ApiError, AppState, ErrorBody};
use crate::ops::history::HistoryRow;
use crate::ops::status::RepoStatus;

type ApiResult = Result<axum::response::Response, ApiError>;

fn address(repo: &str, stack: &str) -> String {
    format!("{repo}/{stack}")
}

/// One stack's status (`kedge status --repo REPO/STACK -o json`).
#[utoipa::path(get, path = "/api/v1/stacks/{repo}/{stack}/status", tag = "stacks",
    params(("repo" = String, Path, description = "the repository's name"),
           ("stack" = String, Path, description = "the stack's name")),
    responses(
        (status = 200, description = "its status", body = RepoStatus),
        (status = 404, description = "no such repository or stack", body = ErrorBody),
    ))]
pub async fn status(
    State(state): State<Arc<AppState>>,
    Path((repo, stack)): Path<(String, String)>,
) -> ApiResult {
    status_of(&state, &address(&repo, &stack)).await
}

/// One stack's deployments, newest first.
#[utoipa::path(get, path = "/api/v1/stacks/{repo}/{stack}/history", tag = "stacks",
    params(("repo" = String, Path, description = "the repository's name"),
           ("stack" = String, Path, description = "the stack's name"), HistoryQuery),
    responses(
        (status = 200, description = "its deployments, newest first", body = Vec<HistoryRow>),
        (status = 400, description = "a query parameter is not valid", body = ErrorBody),
        (status = 404, description = "no such repository or stack", body = ErrorBody),
    ))]
pub async fn history(
    State(state): State<Arc<AppState>>,
    Path((repo, stack)): Path<(String, String)>,
    q: Result<Query<HistoryQuery>, QueryRejection>,
) -> ApiResult {
    history_of(&state, &address(&repo, &stack), q).await
}

/// What differs for one stack (`kedge diff --repo REPO/STACK -o json`).
#[utoipa::path(get, path = "/api/v1/stacks/{repo}/{stack}/diff", tag = "stacks",
    params(("repo" = String, Path, description = "the repository's name"),
           ("stack" = String, Path, description = "the stack's name")),
    responses(
        (status = 200, description = "the differences", body = DiffDocument),
        (status = 404, description = "no such repository or stack", body = ErrorBody),
        (status = 409, description = "an apply on the stack is still in progress after 10 s", body = ErrorBody),
    ))]
pub async fn diff(
    State(state): State<Arc<AppState>>,
    Path((repo, stack)): Path<(String, String)>,
) -> ApiResult {
    diff_of(&state, &address(&repo, &stack)).await
}

/// Deploys the branch head to one stack now and heals its drift.
#[utoipa::path(post, path = "/api/v1/stacks/{repo}/{stack}/sync", tag = "stacks",
    params(("repo" = String, Path, description = "the repository's name"),
           ("stack" = String, Path, description = "the stack's name"), SyncQuery),
    responses(
        (status = 202, description = "the deployment has begun", body = super::routes::DeploymentStarted),
        (status = 200, description = "the finished deployment (`wait=true`), or nothing to deploy", body = Finished),
        (status = 400, description = "a query parameter is not valid", body = ErrorBody),
        (status = 404, description = "no such repository or stack", body = ErrorBody),
        (status = 409, description = "another apply holds the stack", body = ErrorBody),
        (status = 422, description = "the branch head cannot be deployed", body = ErrorBody),
    ))]
pub async fn sync(
    State(state): State<Arc<AppState>>,
    Path((repo, stack)): Path<(String, String)>,
    q: Result<Query<SyncQuery>, QueryRejection>,
) -> ApiResult {
    sync_of(&state, &address(&repo, &stack), q).await
}

/// Re-applies one stack's deployed commit and pins the stack to it.
#[utoipa::path(post, path = "/api/v1/stacks/{repo}/{stack}/rollback", tag = "stacks",
    params(("repo" = String, Path, description = "the repository's name"),
           ("stack" = String, Path, description = "the stack's name"), WaitQuery),
    request_body = RollbackBody,
    responses(
        (status = 202, description = "the deployment has begun", body = super::routes::DeploymentStarted),
        (status = 200, description = "the finished deployment (`wait=true`), or nothing to deploy", body = Finished),
        (status = 400, description = "not a JSON object of this form, or a query parameter is not valid", body = ErrorBody),
        (status = 404, description = "no such repository, stack or deployed commit", body = ErrorBody),
        (status = 409, description = "the prefix names several commits, or another apply holds the stack", body = ErrorBody),
        (status = 422, description = "a prefix too short, or a commit that cannot be deployed", body = ErrorBody),
    ))]
pub async fn rollback(
    State(state): State<Arc<AppState>>,
    Path((repo, stack)): Path<(String, String)>,
    q: Result<Query<WaitQuery>, QueryRejection>,
    parsed: Result<Json<RollbackBody>, JsonRejection>,
) -> ApiResult {
    rollback_of(&state, &address(&repo, &stack), q, parsed).await
}
