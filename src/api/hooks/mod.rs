//! api: git webhooks, `POST /hooks/{github,gitlab,gitea,bitbucket,generic}`
//! and the same with the repository named in the URL,
//! `POST /hooks/{provider}/{repo}`. Not behind the API's tokens: each hook
//! proves it knows a webhook secret (the global one, or a repository's
//! own), checked in constant time against the raw body before the body is
//! parsed. A request that cannot be valid (hooks off, no secret for the
//! repository it names, an unknown repository, no signature header) is
//! refused before its body is read; a body is read into one buffer within
//! the body timeout. A verified push wakes the repositories it concerns
//! for an immediate remote check. Nothing of a request — headers or body —
//! is ever logged.

mod payload;
mod providers;

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::Value;

use super::{ApiError, AppState};
use crate::ops::hooks::{HookTarget, Hooks, RepoSecret, Verified};
pub use payload::target;
pub use providers::{Event, Proof, Provider, event, proof, verifies};

pub fn routes() -> axum::Router<Arc<AppState>> {
    axum::Router::new()
        .route("/hooks/{provider}", post(hook))
        .route("/hooks/{provider}/{repo}", post(repo_hook))
}

const DISABLED: &str = "webhooks are off: no webhook secret is configured. Set `webhook.secret` \
     (or `webhook.secret_file`) in the config file or KEDGE_WEBHOOK_SECRET, or give a repository \
     its own with `kedge repo add … --webhook-secret-file FILE`";

const NO_SUCH_HOOK: &str = "no such hook: use /hooks/github, /hooks/gitlab, /hooks/gitea, \
     /hooks/bitbucket or /hooks/generic, optionally followed by /REPOSITORY";

/// A refusal, and how `kedge_webhook_requests_total` counts it.
struct Refused {
    error: ApiError,
    result: &'static str,
}

impl From<ApiError> for Refused {
    fn from(error: ApiError) -> Refused {
        let result = match error.status().as_u16() {
            400 => "bad_request",
            401 => "unauthorized",
            404 => "disabled",
            408 => "timeout",
            413 => "too_large",
            _ => "error",
        };
        Refused { error, result }
    }
}

impl From<crate::ops::OpsError> for Refused {
    fn from(e: crate::ops::OpsError) -> Refused {
        ApiError::from(e).into()
    }
}

/// `POST /hooks/{provider}`: every repository the push names may be triggered.
async fn hook(
    State(state): State<Arc<AppState>>,
    Path(provider): Path<String>,
    request: Request,
) -> Result<Response, ApiError> {
    counted(state, provider, None, request).await
}

/// `POST /hooks/{provider}/{repo}`: only that repository, and only its
/// secret is tried.
async fn repo_hook(
    State(state): State<Arc<AppState>>,
    Path((provider, repo)): Path<(String, String)>,
    request: Request,
) -> Result<Response, ApiError> {
    counted(state, provider, Some(repo), request).await
}

/// A hook, counted in `kedge_webhook_requests_total{provider,result}` by
/// what it was answered (a path that names no host is not counted: its
/// label would be whatever a stranger sent).
async fn counted(
    state: Arc<AppState>,
    provider: String,
    repo: Option<String>,
    request: Request,
) -> Result<Response, ApiError> {
    let Some(provider) = Provider::from_path(&provider) else {
        return Err(ApiError::NotFound(NO_SUCH_HOOK.into()));
    };
    let answer = handle(&state, provider, repo, request).await;
    let result = match &answer {
        Ok(r) if r.status() == StatusCode::OK => "ping",
        Ok(_) => "accepted",
        Err(refused) => refused.result,
    };
    state.metrics.webhook(provider.name(), result);
    answer.map_err(|r| r.error)
}

async fn handle(
    state: &Arc<AppState>,
    provider: Provider,
    repo: Option<String>,
    request: Request,
) -> Result<Response, Refused> {
    let (parts, body) = request.into_parts();
    let headers = parts.headers;
    let proof = proof(provider, &headers);
    let missing = || {
        tracing::debug!(provider = provider.name(), "webhook refused: no signature");
        ApiError::Unauthorized(format!(
            "missing {} header",
            provider.signature_headers().join(" or ")
        ))
    };
    // With a global secret the hooks are on: an unsigned hook is refused
    // without a look at the store, so a flood of them never contends with
    // the controller for it.
    if proof.is_none() && state.ops.global_webhook_secret().is_some() {
        return Err(missing().into());
    }
    let hooks = load(state, repo).await?;
    let Some(proof) = proof else {
        return Err(missing().into());
    };
    // Only now is the body read: into one buffer, within the body timeout
    // (see `super::body`), up to the size limit.
    let body = axum::body::to_bytes(body, super::BODY_LIMIT)
        .await
        .map_err(super::body::read_error)?;
    // An HMAC of up to 1 MiB per secret: on the blocking pool, so that a
    // flood of forged hooks never holds the runtime's threads, which the
    // controller needs.
    let (hooks, verified) = {
        let body = body.clone();
        tokio::task::spawn_blocking(move || {
            let verified = verify(&hooks, &proof, &body);
            (hooks, verified)
        })
        .await
        .map_err(|e| ApiError::Internal(format!("the webhook check stopped: {e}")))?
    };
    if !verified.any() {
        tracing::debug!(
            provider = provider.name(),
            "webhook refused: the signature matches no secret"
        );
        return Err(ApiError::Unauthorized(
            "the signature does not match the webhook secret".into(),
        )
        .into());
    }
    // Ignored: 202 with what it was ignored for (`event`, `ref`,
    // `repository`) and the reason in words.
    let ignored = |why: &'static str, reason: String| {
        tracing::info!(
            provider = provider.name(),
            "webhook ignored ({why}): {reason}"
        );
        Ok((
            StatusCode::ACCEPTED,
            Json(serde_json::json!({ "triggered": [], "ignored": why, "reason": reason })),
        )
            .into_response())
    };
    match event(provider, &headers) {
        Event::Ping => {
            tracing::info!(provider = provider.name(), "webhook ping");
            return Ok((StatusCode::OK, Json(serde_json::json!({ "pong": true }))).into_response());
        }
        Event::Other(name) => return ignored("event", format!("event {name:?} is not a push")),
        Event::Push => {}
    }
    let payload: Value = serde_json::from_slice(&body).map_err(|_| {
        ApiError::BadRequest(
            "the body is not JSON: set the webhook's content type to application/json".into(),
        )
    })?;
    let Some(target) = target(provider, &payload).map_err(ApiError::BadRequest)? else {
        return ignored("event", "not a push".into());
    };
    let addressed = hooks.addressed(&target, &verified);
    if addressed.is_empty() {
        return ignored(
            "repository",
            match &target {
                HookTarget::Repo(name) => {
                    format!("no repository named {name:?} is registered here")
                }
                HookTarget::Push { .. } => NOT_ADDRESSED.into(),
            },
        );
    }
    // A push concerns the repositories whose refs filter (or branch) the
    // pushed refs pass; the generic hook naming a repository, that one.
    let mut concerned = Vec::new();
    let mut refused = Vec::new();
    for repo in addressed {
        match &target {
            HookTarget::Repo(_) => concerned.push(repo.name),
            HookTarget::Push { refs, .. } => {
                let filter = state.ops.webhook_filter(&repo.name).await?;
                if repo.accepts(filter.as_ref(), refs) {
                    concerned.push(repo.name);
                } else {
                    refused.push(repo.refused(filter.as_ref(), refs));
                }
            }
        }
    }
    if concerned.is_empty() {
        return ignored("ref", refused.join("; "));
    }
    let triggered = state.ops.webhook_wake(&concerned)?;
    if triggered.is_empty() {
        return ignored(
            "repository",
            "no task runs here yet for the repositories it concerns".into(),
        );
    }
    tracing::info!(
        provider = provider.name(),
        repos = %triggered.join(", "),
        "webhook accepted: checking the remote now"
    );
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({ "triggered": triggered })),
    )
        .into_response())
}

/// Why a verified push that names no repository here is ignored.
const NOT_ADDRESSED: &str =
    "no repository registered here has that address and the secret that signed it";

/// The secrets a hook is checked against, read now (the store and the
/// secret files: on the blocking pool): every repository's, or only those
/// of the repository the URL names. Refuses a hook that cannot be valid:
/// hooks off, an unknown repository, no usable secret for it.
async fn load(state: &Arc<AppState>, repo: Option<String>) -> Result<Hooks, Refused> {
    let state = state.clone();
    tokio::task::spawn_blocking(move || -> Result<Hooks, Refused> {
        let Some(name) = repo else {
            let hooks = state.ops.hooks()?;
            if !hooks.enabled() {
                return Err(ApiError::NotFound(DISABLED.into()).into());
            }
            return Ok(hooks);
        };
        let Some(hooks) = state.ops.hooks_for(&name)? else {
            tracing::debug!("webhook refused: it names no registered repository");
            return Err(Refused {
                error: ApiError::NotFound(format!("no repository named {name:?}")),
                result: "unknown_repo",
            });
        };
        if !hooks.usable() {
            let why = match hooks.repos.first().map(|r| &r.secret) {
                Some(RepoSecret::Unusable) => {
                    "its own webhook secret file cannot be used now (serve's log says why)"
                }
                _ => "no webhook secret is configured for it",
            };
            return Err(ApiError::NotFound(format!(
                "webhooks are off for repository {name:?}: {why}. {DISABLED}"
            ))
            .into());
        }
        Ok(hooks)
    })
    .await
    .map_err(|e| ApiError::Internal(format!("the webhook check stopped: {e}")))?
}

/// Which of the secrets the proof verifies with. Every one is tried (each
/// in constant time): which ones verified decides which repositories the
/// hook may trigger.
fn verify(hooks: &Hooks, proof: &Proof, body: &[u8]) -> Verified {
    Verified {
        global: hooks
            .global
            .as_ref()
            .is_some_and(|s| verifies(proof, body, s)),
        repos: hooks
            .repos
            .iter()
            .filter(|r| matches!(&r.secret, RepoSecret::Own(s) if verifies(proof, body, s)))
            .map(|r| r.name.clone())
            .collect(),
    }
}
