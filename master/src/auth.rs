//! The cluster secret: who may join the cluster and read its membership.
//!
//! When the master has a secret, every `/v1/...` request must carry
//! `Authorization: Bearer <secret>`; otherwise it gets `401` and changes nothing. `/health` stays
//! open for load balancers and probes. The comparison takes the same time whatever the secret's
//! content, so timing does not reveal how much of a guess was right.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use distribution_shared::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

use crate::error::ApiError;

/// The secret the master expects. Cheap to clone; `Debug` shows no secret.
#[derive(Clone, Debug)]
pub(crate) struct Secret(Arc<SecretString>);

impl Secret {
    /// The secret to expect.
    pub(crate) fn new(secret: SecretString) -> Self {
        Self(Arc::new(secret))
    }

    /// Whether `candidate` is the secret, in constant time for equal lengths.
    pub(crate) fn matches(&self, candidate: &[u8]) -> bool {
        bool::from(self.0.expose_secret().as_bytes().ct_eq(candidate))
    }
}

/// Middleware: refuses requests without the right bearer token.
pub(crate) async fn require_secret(
    State(secret): State<Secret>,
    request: Request,
    next: Next,
) -> Response {
    if !request.uri().path().starts_with("/v1/") {
        return next.run(request).await;
    }
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "));
    match presented {
        Some(token) if secret.matches(token) => next.run(request).await,
        Some(_) => unauthorized("wrong cluster secret"),
        None => unauthorized("this cluster needs a secret: send Authorization: Bearer <secret>"),
    }
}

fn unauthorized(message: &str) -> Response {
    let mut response = ApiError {
        status: StatusCode::UNAUTHORIZED,
        message: message.into(),
    }
    .into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_only_the_exact_secret() {
        let secret = Secret::new("s3cret".into());
        assert!(secret.matches(b"s3cret"));
        assert!(!secret.matches(b"s3cre"));
        assert!(!secret.matches(b"s3cret!"));
        assert!(!secret.matches(b""));
        assert!(!format!("{secret:?}").contains("s3cret"));
    }
}
