//! [`ApiError`]: how the registry's HTTP API says no. Every refusal is a 4xx or 5xx with a JSON
//! body `{"error": "..."}` that says what was wrong.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use distribution_shared::wire::ErrorBody;

use crate::registry::RegistryError;
use crate::watch::WatchError;

/// An HTTP API error: a status and a message for the client.
#[derive(Debug, thiserror::Error)]
#[error("{status}: {message}")]
pub struct ApiError {
    /// The HTTP status of the answer.
    pub status: StatusCode,
    /// What was wrong, for a human.
    pub message: String,
}

impl ApiError {
    /// A `400 Bad Request` with `message`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::warn!(status = %self.status, error = %self.message, "request failed");
        } else {
            tracing::debug!(status = %self.status, error = %self.message, "request refused");
        }
        (
            self.status,
            Json(ErrorBody {
                error: self.message,
            }),
        )
            .into_response()
    }
}

impl From<RegistryError> for ApiError {
    fn from(err: RegistryError) -> Self {
        let status = match err {
            RegistryError::UnknownNode(_) => StatusCode::NOT_FOUND,
            RegistryError::Full(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        Self {
            status,
            message: err.to_string(),
        }
    }
}

impl From<WatchError> for ApiError {
    fn from(err: WatchError) -> Self {
        let status = match err {
            WatchError::BadIndex(_) | WatchError::BadWait(_) => StatusCode::BAD_REQUEST,
            WatchError::TooManyWaiting => StatusCode::SERVICE_UNAVAILABLE,
        };
        Self {
            status,
            message: err.to_string(),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        Self {
            status: rejection.status(),
            message: rejection.body_text(),
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        Self {
            status: rejection.status(),
            message: rejection.body_text(),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        Self {
            status: rejection.status(),
            message: rejection.body_text(),
        }
    }
}
