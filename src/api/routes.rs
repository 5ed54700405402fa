//! api: the routes. Each parses its input, calls one operation and answers
//! with the operation's report as JSON — the CLI's `-o json` documents.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::{ApiError, AppState};
use crate::ops::events::EventsRequest;
use crate::ops::repos::AddRepo;

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
        .route("/repos/{name}/diff", get(diff))
        .route("/repos/{name}/sync", post(sync))
        .route("/repos/{name}/rollback", post(rollback))
        .route("/events", get(events))
        .route("/events/stream", get(super::stream::events_stream))
        .route_layer(axum::middleware::from_fn_with_state(
            state,
            super::auth::require_token,
        ))
}

fn json<T: serde::Serialize>(status: StatusCode, body: &T) -> ApiResult {
    Ok((status, Json(body)).into_response())
}

/// A JSON body, or a 400/415 saying what is wrong with it.
fn body<T>(parsed: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    parsed
        .map(|Json(v)| v)
        .map_err(|e| ApiError::BadRequest(e.body_text()))
}

fn query<T>(parsed: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    parsed
        .map(|Query(v)| v)
        .map_err(|e| ApiError::BadRequest(e.body_text()))
}

async fn healthz() -> ApiResult {
    json(StatusCode::OK, &serde_json::json!({ "status": "ok" }))
}

/// Ready once the engine answers and every repository has finished its
/// first pass (the store is open: this process holds it).
async fn readyz(State(state): State<Arc<AppState>>) -> ApiResult {
    let mut reasons = Vec::new();
    if !state.shared.engine.ping().await {
        reasons.push("the Docker engine does not answer".to_string());
    }
    match state.ops.repo_list() {
        Ok(repos) => {
            let waiting: Vec<String> = repos
                .into_iter()
                .filter(|r| state.shared.hub.snapshot(&r.name).is_none())
                .map(|r| r.name)
                .collect();
            if !waiting.is_empty() {
                reasons.push(format!("first pass not finished: {}", waiting.join(", ")));
            }
        }
        Err(e) => reasons.push(format!("cannot read the repositories: {e}")),
    }
    if reasons.is_empty() {
        json(StatusCode::OK, &serde_json::json!({ "status": "ready" }))
    } else {
        json(
            StatusCode::SERVICE_UNAVAILABLE,
            &serde_json::json!({ "status": "not_ready", "reasons": reasons }),
        )
    }
}

async fn list_repos(State(state): State<Arc<AppState>>) -> ApiResult {
    json(StatusCode::OK, &state.ops.repo_list()?)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewRepoBody {
    url: String,
    #[serde(default = "main_branch")]
    branch: String,
    name: Option<String>,
}

fn main_branch() -> String {
    "main".into()
}

async fn add_repo(
    State(state): State<Arc<AppState>>,
    parsed: Result<Json<NewRepoBody>, JsonRejection>,
) -> ApiResult {
    let req = body(parsed)?;
    // A relative local path means relative to where `serve` runs.
    let cwd = std::env::current_dir().map_err(|e| ApiError::Internal(e.to_string()))?;
    let added = state.ops.repo_add(&AddRepo {
        url: req.url,
        branch: req.branch,
        name: req.name,
        cwd,
    })?;
    let repo = &added.repo;
    json(
        StatusCode::CREATED,
        &serde_json::json!({
            "name": repo.name,
            "url": repo.url,
            "branch": repo.branch,
            "created_at": repo.created_at,
        }),
    )
}

async fn repo_status(State(state): State<Arc<AppState>>, Path(name): Path<String>) -> ApiResult {
    let (mut statuses, _) = state.ops.status(Some(&name)).await?;
    match statuses.pop() {
        Some(status) => json(StatusCode::OK, &status),
        None => Err(ApiError::NotFound(format!("no repository named '{name}'"))),
    }
}

#[derive(Debug, Deserialize)]
struct RemoveQuery {
    #[serde(default)]
    down: bool,
}

async fn remove_repo(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    q: Result<Query<RemoveQuery>, QueryRejection>,
) -> ApiResult {
    let q = query(q)?;
    state.ops.repo_remove(&name, q.down).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Debug, Deserialize)]
struct HistoryQuery {
    #[serde(default = "twenty")]
    limit: usize,
}

fn twenty() -> usize {
    20
}

async fn history(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    q: Result<Query<HistoryQuery>, QueryRejection>,
) -> ApiResult {
    let q = query(q)?;
    json(StatusCode::OK, &state.ops.history(&name, q.limit)?)
}

async fn diff(State(state): State<Arc<AppState>>, Path(name): Path<String>) -> ApiResult {
    let report = state.ops.diff(&name).await?;
    let mut doc = serde_json::to_value(&report).map_err(|e| ApiError::Internal(e.to_string()))?;
    doc["in_sync"] = report.in_sync().into();
    json(StatusCode::OK, &doc)
}

#[derive(Debug, Deserialize)]
struct WaitQuery {
    #[serde(default)]
    wait: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RollbackBody {
    commit: String,
}

/// How long an asynchronous sync or rollback may take to begin its
/// deployment (waiting for an apply in flight) before the answer says so.
const BEGIN_WITHIN: Duration = Duration::from_secs(60);

async fn sync(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    q: Result<Query<WaitQuery>, QueryRejection>,
) -> ApiResult {
    let q = query(q)?;
    let worker = state.clone();
    let repo = name.clone();
    start_deployment(state, &name, q.wait, async move {
        worker.ops.sync(&repo, false).await.map(drop)
    })
    .await
}

async fn rollback(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    q: Result<Query<WaitQuery>, QueryRejection>,
    parsed: Result<Json<RollbackBody>, JsonRejection>,
) -> ApiResult {
    let q = query(q)?;
    let req = body(parsed)?;
    let worker = state.clone();
    let repo = name.clone();
    start_deployment(state, &name, q.wait, async move {
        worker.ops.rollback(&repo, &req.commit).await.map(drop)
    })
    .await
}

/// Runs a sync or rollback in its own task (a client that goes away does
/// not cancel a deployment). Answers 202 with the deployment's id once it
/// has begun, or, with `wait`, 200 with the finished deployment.
async fn start_deployment(
    state: Arc<AppState>,
    name: &str,
    wait: bool,
    work: impl std::future::Future<Output = Result<(), crate::ops::OpsError>> + Send + 'static,
) -> ApiResult {
    let before = state.ops.last_deployment_id(name)?;
    let mut task = tokio::spawn(work);
    let started = std::time::Instant::now();
    loop {
        let finished = tokio::select! {
            done = &mut task => Some(done),
            _ = tokio::time::sleep(Duration::from_millis(50)) => None,
        };
        let new = state.ops.deployments_after(name, before)?;
        match finished {
            Some(done) => {
                let outcome = done.map_err(|e| ApiError::Internal(e.to_string()))?;
                // A failed deployment is a finished deployment: its row says so.
                return match (new.last(), outcome) {
                    (Some(d), _) if wait => json(StatusCode::OK, d),
                    (Some(d), _) => json(
                        StatusCode::ACCEPTED,
                        &serde_json::json!({ "deployment": d.id }),
                    ),
                    (None, Err(e)) => Err(e.into()),
                    (None, Ok(())) => json(
                        StatusCode::OK,
                        &serde_json::json!({ "deployment": null, "message": "nothing to deploy" }),
                    ),
                };
            }
            None if !wait => {
                if let Some(d) = new.first() {
                    return json(
                        StatusCode::ACCEPTED,
                        &serde_json::json!({ "deployment": d.id }),
                    );
                }
                if started.elapsed() > BEGIN_WITHIN {
                    return Err(ApiError::Conflict(
                        "the deployment has not begun yet: another apply holds the repository"
                            .into(),
                    ));
                }
            }
            None => {}
        }
    }
}

#[derive(Debug, Deserialize)]
struct EventsQuery {
    repo: Option<String>,
    since_id: Option<i64>,
    #[serde(default = "hundred")]
    limit: usize,
}

fn hundred() -> usize {
    100
}

async fn events(
    State(state): State<Arc<AppState>>,
    q: Result<Query<EventsQuery>, QueryRejection>,
) -> ApiResult {
    let q = query(q)?;
    let limit = q.limit.min(10_000);
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
