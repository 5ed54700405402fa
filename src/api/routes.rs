//! api: the routes. Each parses its input, calls one operation and answers
//! with the operation's report as JSON — the CLI's `-o json` documents.
//! Each handler's `#[utoipa::path]` describes it for the OpenAPI document
//! (`openapi.rs`); what every token-protected route may answer besides
//! (401, 403, 413, 500) is added there, from the same rules as `auth.rs`.

use std::path::PathBuf;
use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{ApiError, AppState, ErrorBody};
use crate::events::Event;
use crate::ops::DiffReport;
use crate::ops::command::Progress;
use crate::ops::credentials::CredentialArgs;
use crate::ops::events::EventsRequest;
use crate::ops::history::HistoryRow;
use crate::ops::repos::{AddRepo, RepoRow};
use crate::ops::status::RepoStatus;

type ApiResult = Result<Response, ApiError>;

/// What needs no token: liveness, readiness and metrics.
pub fn public() -> axum::Router<Arc<AppState>> {
    axum::Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(super::metrics::scrape))
}

pub fn api(state: Arc<AppState>) -> axum::Router<Arc<AppState>> {
    axum::Router::new()
        .route("/repos", get(list_repos).post(add_repo))
        .route("/repos/{name}", get(repo_status).delete(remove_repo))
        .route("/repos/{name}/history", get(history))
        .route("/repos/{name}/stacks", get(list_stacks))
        .route("/stacks/{repo}/{stack}/status", get(super::stacks::status))
        .route(
            "/stacks/{repo}/{stack}/history",
            get(super::stacks::history),
        )
        .route("/stacks/{repo}/{stack}/diff", get(super::stacks::diff))
        .route("/stacks/{repo}/{stack}/sync", post(super::stacks::sync))
        .route(
            "/stacks/{repo}/{stack}/rollback",
            post(super::stacks::rollback),
        )
        .route("/repos/{name}/diff", get(diff))
        .route("/repos/{name}/sync", post(sync))
        .route("/repos/{name}/rollback", post(rollback))
        .route("/events", get(events))
        .route("/updates", get(updates))
        .route("/openapi.json", get(super::openapi::serve_document))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            super::auth::require_token,
        ))
        // The dashboard's script follows the stream with its session cookie
        // (EventSource cannot send a header); a bearer token works as ever.
        .merge(
            axum::Router::new()
                .route("/events/stream", get(super::stream::events_stream))
                .route_layer(axum::middleware::from_fn_with_state(
                    state,
                    super::auth::require_token_or_session,
                )),
        )
}

fn json<T: serde::Serialize>(status: StatusCode, body: &T) -> ApiResult {
    Ok((status, Json(body)).into_response())
}

/// A JSON body, or a 400 saying what is wrong with it; 413 for a body
/// that grew past the limit while it was read (one sent without a length).
fn body<T>(parsed: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    parsed.map(|Json(v)| v).map_err(|e| match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::TooLarge(format!(
            "the body is larger than {} bytes",
            super::BODY_LIMIT
        )),
        _ => ApiError::BadRequest(e.body_text()),
    })
}

fn query<T>(parsed: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    parsed
        .map(|Query(v)| v)
        .map_err(|e| ApiError::BadRequest(e.body_text()))
}

/// `/healthz`: the process runs.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// Always `ok`.
    #[schema(example = "ok")]
    pub status: String,
}

/// `/readyz`: `ready`, or `not_ready` with the reasons.
#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    /// `ready` or `not_ready`
    #[schema(example = "ready")]
    pub status: String,
    /// Why it is not ready (only when it is not).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasons: Option<Vec<String>>,
}

/// Liveness: 200 while the process runs.
#[utoipa::path(get, path = "/healthz", tag = "health",
    responses((status = 200, description = "Kedge runs", body = Health)))]
pub async fn healthz() -> ApiResult {
    json(
        StatusCode::OK,
        &Health {
            status: "ok".into(),
        },
    )
}

/// Readiness: the store is open, the engine answers and every repository
/// has finished its first pass (the store is open: this process holds it).
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses(
        (status = 200, description = "ready", body = Readiness),
        (status = 503, description = "not ready, and why", body = Readiness),
    ))]
pub async fn readyz(State(state): State<Arc<AppState>>) -> ApiResult {
    let mut reasons = Vec::new();
    if !state.ops.engine_answers().await.unwrap_or(false) {
        reasons.push("the Docker engine does not answer".to_string());
    }
    match state.ops.repo_list() {
        Ok(repos) => {
            let waiting: Vec<String> = repos
                .into_iter()
                .filter(|r| !state.ops.first_pass_done(&r.name).unwrap_or(false))
                .map(|r| r.name)
                .collect();
            if !waiting.is_empty() {
                reasons.push(format!("first pass not finished: {}", waiting.join(", ")));
            }
        }
        Err(e) => reasons.push(format!("cannot read the repositories: {e}")),
    }
    if reasons.is_empty() {
        json(
            StatusCode::OK,
            &Readiness {
                status: "ready".into(),
                reasons: None,
            },
        )
    } else {
        json(
            StatusCode::SERVICE_UNAVAILABLE,
            &Readiness {
                status: "not_ready".into(),
                reasons: Some(reasons),
            },
        )
    }
}

/// The registered repositories (`kedge repo list -o json`).
#[utoipa::path(get, path = "/api/v1/repos", tag = "repos",
    responses((status = 200, description = "every registered repository", body = Vec<RepoRow>)))]
pub async fn list_repos(State(state): State<Arc<AppState>>) -> ApiResult {
    json(StatusCode::OK, &state.ops.repo_list()?)
}

/// What `POST /api/v1/repos` takes: `kedge repo add`'s arguments, with
/// credentials by name only. Nothing here names a file, an environment
/// variable or a local path of the host.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRepoBody {
    /// https://, http:// (a token only to loopback), ssh://, git:// or
    /// git@host:path, without credentials in it; never a local path
    #[schema(min_length = 1)]
    url: String,
    /// The branch to follow
    #[serde(default = "main_branch")]
    #[schema(default = "main", min_length = 1)]
    branch: String,
    /// The repository's name (default: from the URL)
    #[schema(pattern = "^[a-z0-9][a-z0-9_-]{0,62}$")]
    name: Option<String>,
    /// A token or ssh-key credential of the global config's `credentials:`,
    /// by name
    #[schema(pattern = "^[a-z0-9][a-z0-9_-]{0,62}$")]
    credential: Option<String>,
    /// A webhook-secret credential of the global config's `credentials:`,
    /// by name: then only that secret triggers the repository
    #[schema(pattern = "^[a-z0-9][a-z0-9_-]{0,62}$")]
    webhook_secret: Option<String>,
}

/// A repository just registered (`kedge repo add -o json`; the keys in
/// that document's order).
#[derive(Debug, Serialize, ToSchema)]
pub struct AddedRepo {
    pub branch: String,
    pub created_at: String,
    pub name: String,
    /// Credentials redacted
    pub url: String,
    /// `ssh-key`, `token` or `none`
    pub auth: String,
    /// The credential it authenticates with, by name
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

fn main_branch() -> String {
    "main".into()
}

/// Registers a repository; the same checks and refusals as `kedge repo add`.
#[utoipa::path(post, path = "/api/v1/repos", tag = "repos",
    request_body = NewRepoBody,
    responses(
        (status = 201, description = "registered", body = AddedRepo),
        (status = 400, description = "not a JSON object of this form", body = ErrorBody),
        (status = 409, description = "the name or the URL is registered already", body = ErrorBody),
        (status = 422, description = "an invalid URL, name or branch; a local path, credentials in the URL, or a credential that is not in the global config or does not fit the URL", body = ErrorBody),
    ))]
pub async fn add_repo(
    State(state): State<Arc<AppState>>,
    parsed: Result<Json<NewRepoBody>, JsonRejection>,
) -> ApiResult {
    let req = body(parsed)?;
    // No local path is accepted: the directory is never looked at.
    let added = state
        .ops
        .repo_add(&AddRepo {
            url: req.url,
            branch: req.branch,
            name: req.name,
            webhook_secret_file: None,
            webhook_secret: req.webhook_secret,
            credentials: CredentialArgs {
                credential: req.credential,
                ..CredentialArgs::default()
            },
            cwd: PathBuf::from("/"),
            host_paths: false,
        })
        .await?;
    let repo = added.repo;
    json(
        StatusCode::CREATED,
        &AddedRepo {
            branch: repo.branch,
            created_at: repo.created_at,
            name: repo.name,
            url: repo.url.to_string(),
            auth: repo.auth,
            credential: repo.credential,
        },
    )
}

/// One repository's status (`kedge status --repo NAME -o json`, the object
/// rather than a list of one).
#[utoipa::path(get, path = "/api/v1/repos/{name}", tag = "repos",
    params(("name" = String, Path, description = "the repository's name")),
    responses(
        (status = 200, description = "its status", body = RepoStatus),
        (status = 404, description = "no repository of that name", body = ErrorBody),
    ))]
pub async fn repo_status(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> ApiResult {
    status_of(&state, &name).await
}

/// One stack's status; a repository with several is a 409 naming them.
pub(super) async fn status_of(state: &AppState, address: &str) -> ApiResult {
    state.ops.unit(address)?;
    let (mut statuses, _) = state.ops.status(Some(address)).await?;
    match statuses.pop() {
        Some(status) => json(StatusCode::OK, &status),
        None => Err(ApiError::NotFound(format!(
            "no repository named '{address}'"
        ))),
    }
}

/// A repository's stacks (`kedge stack list --repo NAME -o json`).
#[utoipa::path(get, path = "/api/v1/repos/{name}/stacks", tag = "repos",
    params(("name" = String, Path, description = "the repository's name")),
    responses(
        (status = 200, description = "its stacks, the root stack first", body = Vec<crate::ops::stacks::StackRow>),
        (status = 404, description = "no repository of that name", body = ErrorBody),
    ))]
pub async fn list_stacks(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> ApiResult {
    json(StatusCode::OK, &state.ops.stack_list(Some(&name)).await?)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RemoveQuery {
    /// Also take the stack down (`repo remove --down`)
    #[serde(default)]
    #[param(default = false)]
    down: bool,
}

/// Unregisters a repository, deleting its clone and history
/// (`kedge repo remove`); `down=true` also takes its stack down.
#[utoipa::path(delete, path = "/api/v1/repos/{name}", tag = "repos",
    params(("name" = String, Path, description = "the repository's name"), RemoveQuery),
    responses(
        (status = 204, description = "unregistered"),
        (status = 400, description = "a query parameter is not valid", body = ErrorBody),
        (status = 404, description = "no repository of that name", body = ErrorBody),
    ))]
pub async fn remove_repo(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    q: Result<Query<RemoveQuery>, QueryRejection>,
) -> ApiResult {
    let q = query(q)?;
    state.ops.repo_remove(&name, q.down).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// At most this many deployments (more than 10,000 give 10,000)
    #[serde(default = "twenty")]
    #[param(value_type = i64, default = 20, minimum = 0, maximum = 4294967295_u32)]
    limit: u32,
}

fn twenty() -> u32 {
    20
}

/// A repository's deployments, newest first (`kedge history -o json`).
#[utoipa::path(get, path = "/api/v1/repos/{name}/history", tag = "repos",
    params(("name" = String, Path, description = "the repository's name"), HistoryQuery),
    responses(
        (status = 200, description = "its deployments, newest first", body = Vec<HistoryRow>),
        (status = 400, description = "a query parameter is not valid", body = ErrorBody),
        (status = 404, description = "no repository of that name", body = ErrorBody),
    ))]
pub async fn history(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    q: Result<Query<HistoryQuery>, QueryRejection>,
) -> ApiResult {
    history_of(&state, &name, q).await
}

pub(super) async fn history_of(
    state: &AppState,
    address: &str,
    q: Result<Query<HistoryQuery>, QueryRejection>,
) -> ApiResult {
    let q = query(q)?;
    state.ops.unit(address)?;
    json(
        StatusCode::OK,
        &state.ops.history(address, q.limit as usize)?,
    )
}

/// `kedge diff -o json`: the report and whether Git and the containers agree.
#[derive(Debug, Serialize, ToSchema)]
pub struct DiffDocument {
    #[serde(flatten)]
    pub report: DiffReport,
    /// Nothing drifted and nothing is pending.
    pub in_sync: bool,
}

/// What differs between Git and the containers, and what the branch head
/// would change (`kedge diff -o json`).
#[utoipa::path(get, path = "/api/v1/repos/{name}/diff", tag = "repos",
    params(("name" = String, Path, description = "the repository's name")),
    responses(
        (status = 200, description = "the differences", body = DiffDocument),
        (status = 404, description = "no repository of that name", body = ErrorBody),
        (status = 409, description = "an apply on the repository is still in progress after 10 s", body = ErrorBody),
    ))]
pub async fn diff(State(state): State<Arc<AppState>>, Path(name): Path<String>) -> ApiResult {
    diff_of(&state, &name).await
}

pub(super) async fn diff_of(state: &AppState, address: &str) -> ApiResult {
    let report = state.ops.diff(address, Some(super::DIFF_WAIT)).await?;
    let in_sync = report.in_sync();
    // Through a JSON value, as the CLI prints it: the same keys in the same order.
    let doc = serde_json::to_value(DiffDocument { report, in_sync })
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    json(StatusCode::OK, &doc)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WaitQuery {
    /// Answer once the deployment has finished, with its history row
    #[serde(default)]
    #[param(default = false)]
    wait: bool,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SyncQuery {
    /// Answer once the deployment has finished, with its history row
    #[serde(default)]
    #[param(default = false)]
    wait: bool,
    /// Deploy even while the stack's sync windows are closed (`kedge sync --force`)
    #[serde(default)]
    #[param(default = false)]
    force: bool,
}

/// What `POST /api/v1/repos/{name}/rollback` takes.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RollbackBody {
    /// A successfully deployed commit: its full hash or a unique prefix of
    /// at least 4 characters
    commit: String,
}

/// A deployment has begun: follow it in the history or the event stream.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeploymentStarted {
    /// Its id (as in `history`)
    pub deployment: i64,
}

/// There was nothing to deploy: no deployment was recorded.
#[derive(Debug, Serialize, ToSchema)]
pub struct NothingToDeploy {
    /// Always null
    #[schema(schema_with = null_schema, required = true)]
    pub deployment: (),
    pub message: String,
}

fn null_schema() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::Null)
        .build()
}

/// A 200 answer of sync or rollback: the finished deployment (`wait=true`),
/// or nothing deployed.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum Finished {
    Deployment(Box<HistoryRow>),
    Nothing(NothingToDeploy),
}

/// Deploys the branch head now and heals all drift (`kedge sync`).
#[utoipa::path(post, path = "/api/v1/repos/{name}/sync", tag = "deployments",
    params(("name" = String, Path, description = "the repository's name"), SyncQuery),
    responses(
        (status = 202, description = "the deployment has begun", body = DeploymentStarted),
        (status = 200, description = "the finished deployment (`wait=true`), or nothing to deploy", body = Finished),
        (status = 400, description = "a query parameter is not valid", body = ErrorBody),
        (status = 404, description = "no repository of that name", body = ErrorBody),
        (status = 409, description = "another apply holds the repository, or its sync window is closed (`force=true` deploys anyway)", body = ErrorBody),
        (status = 422, description = "the branch head cannot be deployed", body = ErrorBody),
    ))]
pub async fn sync(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    q: Result<Query<SyncQuery>, QueryRejection>,
) -> ApiResult {
    sync_of(&state, &name, q).await
}

pub(super) async fn sync_of(
    state: &AppState,
    address: &str,
    q: Result<Query<SyncQuery>, QueryRejection>,
) -> ApiResult {
    let q = query(q)?;
    let how = crate::ops::command::SyncHow {
        force: q.force,
        ..Default::default()
    };
    let running = state
        .ops
        .start_sync(address, how, Some(state.ops.settings().command_wait))
        .await?;
    answer_deployment(state, address, q.wait, running).await
}

/// Re-applies a deployed commit and pins the repository to it
/// (`kedge rollback`).
#[utoipa::path(post, path = "/api/v1/repos/{name}/rollback", tag = "deployments",
    params(("name" = String, Path, description = "the repository's name"), WaitQuery),
    request_body = RollbackBody,
    responses(
        (status = 202, description = "the deployment has begun", body = DeploymentStarted),
        (status = 200, description = "the finished deployment (`wait=true`), or nothing to deploy", body = Finished),
        (status = 400, description = "not a JSON object of this form, or a query parameter is not valid", body = ErrorBody),
        (status = 404, description = "no repository of that name, or no deployed commit of that hash", body = ErrorBody),
        (status = 409, description = "the prefix names several commits, or another apply holds the repository", body = ErrorBody),
        (status = 422, description = "a prefix too short, or a commit that cannot be deployed", body = ErrorBody),
    ))]
pub async fn rollback(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    q: Result<Query<WaitQuery>, QueryRejection>,
    parsed: Result<Json<RollbackBody>, JsonRejection>,
) -> ApiResult {
    rollback_of(&state, &name, q, parsed).await
}

pub(super) async fn rollback_of(
    state: &AppState,
    address: &str,
    q: Result<Query<WaitQuery>, QueryRejection>,
    parsed: Result<Json<RollbackBody>, JsonRejection>,
) -> ApiResult {
    let q = query(q)?;
    let req = body(parsed)?;
    let running = state
        .ops
        .start_rollback(
            address,
            &req.commit,
            Some(state.ops.settings().command_wait),
        )
        .await?;
    answer_deployment(state, address, q.wait, running).await
}

/// A sync or rollback the repository's task has taken up (a client that
/// goes away does not cancel it): 202 with the deployment's id once it has
/// begun, or, with `wait`, 200 with the finished deployment.
async fn answer_deployment(
    state: &AppState,
    name: &str,
    wait: bool,
    mut running: crate::ops::command::Running,
) -> ApiResult {
    let (deployment, result) = if wait {
        let (deployment, answer) = running.finish().await;
        (deployment, answer.map(drop))
    } else {
        match running.progress().await {
            Progress::Begun(id) => {
                return json(StatusCode::ACCEPTED, &DeploymentStarted { deployment: id });
            }
            Progress::Ended { deployment, result } => (deployment, result),
        }
    };
    // A failed deployment is a finished deployment: its row says so.
    match (deployment, result) {
        (Some(id), _) if wait => {
            let row = state
                .ops
                .deployments_after(name, id - 1)?
                .into_iter()
                .find(|d| d.id == id)
                .ok_or_else(|| ApiError::Internal(format!("deployment {id} is not recorded")))?;
            json(StatusCode::OK, &Finished::Deployment(Box::new(row)))
        }
        (Some(id), _) => json(StatusCode::ACCEPTED, &DeploymentStarted { deployment: id }),
        (None, Err(e)) => Err(e.into()),
        (None, Ok(())) => json(
            StatusCode::OK,
            &Finished::Nothing(NothingToDeploy {
                deployment: (),
                message: "nothing to deploy".into(),
            }),
        ),
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Only this repository's events
    repo: Option<String>,
    /// Only events after this id, oldest first (without it: the newest)
    #[param(minimum = -9223372036854775808_i64, maximum = 9223372036854775807_i64)]
    since_id: Option<i64>,
    /// At most this many (more than 10,000 give 10,000)
    #[serde(default = "hundred")]
    #[param(value_type = i64, default = 100, minimum = 0, maximum = 4294967295_u32)]
    limit: u32,
}

fn hundred() -> u32 {
    100
}

/// A page of the event log, oldest first (`kedge events -o json`).
#[utoipa::path(get, path = "/api/v1/events", tag = "events",
    params(EventsQuery),
    responses(
        (status = 200, description = "the events, oldest first", body = Vec<Event>),
        (status = 400, description = "a query parameter is not valid", body = ErrorBody),
        (status = 404, description = "no repository of that name", body = ErrorBody),
    ))]
pub async fn events(
    State(state): State<Arc<AppState>>,
    q: Result<Query<EventsQuery>, QueryRejection>,
) -> ApiResult {
    let q = query(q)?;
    let limit = (q.limit as usize).min(crate::ops::events::MAX_LIMIT);
    let events = match q.since_id {
        Some(after) => state.ops.events_after(q.repo.as_deref(), after, limit)?,
        None => state.ops.events(&EventsRequest {
            repo: q.repo,
            since: None,
            limit,
        })?,
    };
    json(StatusCode::OK, &events)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UpdatesQuery {
    /// Only this repository's stacks
    repo: Option<String>,
}

/// The image update findings of the last check (`kedge updates -o json`).
#[utoipa::path(get, path = "/api/v1/updates", tag = "updates",
    params(UpdatesQuery),
    responses(
        (status = 200, description = "one row per checked service", body = Vec<crate::model::updates::UpdateRow>),
        (status = 400, description = "a query parameter is not valid", body = ErrorBody),
        (status = 404, description = "no repository of that name", body = ErrorBody),
    ))]
pub async fn updates(
    State(state): State<Arc<AppState>>,
    q: Result<Query<UpdatesQuery>, QueryRejection>,
) -> ApiResult {
    let q = query(q)?;
    let rows = state.ops.updates(q.repo.as_deref()).await?;
    json(StatusCode::OK, &rows)
}
