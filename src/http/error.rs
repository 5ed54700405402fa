//! http: errors as JSON, `{"error": "..."}`, with the status that fits. Bad
//! input is a 4xx naming the problem; only Kedge's own failures are 5xx.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::controller::commands::CommandError;
use crate::error_chain;
use crate::ops::OpsError;
use crate::record::StoreError;

/// Every error answer's body: `{"error": "..."}`.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What went wrong, for a person to read.
    pub error: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Timeout(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    Unprocessable(String),
    #[error("{0}")]
    TooManyRequests(String),
    #[error("{0}")]
    Internal(String),
    /// Too busy, or no answer in time: worth asking again later.
    #[error("{0}")]
    Unavailable(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(e) = &self {
            tracing::error!("HTTP request failed: {e}");
        }
        let status = self.status();
        let body = ErrorBody {
            error: self.to_string(),
        };
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

impl From<OpsError> for ApiError {
    fn from(e: OpsError) -> ApiError {
        let text = error_chain(&e);
        match &e {
            OpsError::UnknownRepo(_)
            | OpsError::UnknownToken(_)
            | OpsError::UnknownStack { .. } => ApiError::NotFound(text),
            OpsError::TokenExists(_)
            | OpsError::SeveralStacks { .. }
            | OpsError::StackInGit { .. } => ApiError::Conflict(text),
            OpsError::Store(StoreError::DuplicateName(_) | StoreError::DuplicateUrl { .. }) => {
                ApiError::Conflict(text)
            }
            OpsError::Url(_)
            | OpsError::Name(_)
            | OpsError::Branch(_)
            | OpsError::SecretFile(_)
            | OpsError::Credentials(_) => ApiError::Unprocessable(text),
            OpsError::Host(_) => ApiError::Unavailable(text),
            OpsError::Command(c) => match c {
                CommandError::UnknownCommit { .. } => ApiError::NotFound(text),
                CommandError::AmbiguousCommit { .. }
                | CommandError::Busy { .. }
                | CommandError::Stopping { .. }
                | CommandError::Window { .. } => ApiError::Conflict(text),
                CommandError::ShortPrefix(_) | CommandError::Refused { .. } => {
                    ApiError::Unprocessable(text)
                }
                CommandError::Reconcile(crate::controller::task::ReconcileError::Host(_)) => {
                    ApiError::Unavailable(text)
                }
                CommandError::Reconcile(_) => ApiError::Internal(text),
            },
            _ => ApiError::Internal(text),
        }
    }
}
