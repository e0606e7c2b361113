//! [`MasterClient`]: the node's side of the master's HTTP API (register, heartbeat, leave).

use std::sync::Arc;
use std::time::Duration;

use distribution_shared::tokio_rustls::rustls;

use distribution_shared::wire::{ErrorBody, Heartbeat, Lease, RegisterRequest};
use reqwest::StatusCode;

/// Why a request to the master failed.
#[derive(Debug, thiserror::Error)]
pub enum MasterError {
    /// The master does not know this node (evicted, or the master restarted): register again.
    #[error("the master does not know this node")]
    UnknownNode,
    /// The master refused the request.
    #[error("the master refused ({status}): {message}")]
    Refused {
        /// The HTTP status.
        status: StatusCode,
        /// The master's message.
        message: String,
    },
    /// The master could not be reached, or answered something unreadable.
    #[error("the master is unreachable: {0}")]
    Unreachable(#[from] reqwest::Error),
}

/// A client of one master's registry API.
#[derive(Debug, Clone)]
pub struct MasterClient {
    http: reqwest::Client,
    base: String,
}

impl MasterClient {
    /// A client of the master at `base` (`http://host:port` or `https://…`), each request
    /// bounded by `timeout`, presenting `secret` as a bearer token when there is one and dialling
    /// HTTPS with `tls` (the cluster CA, and this node's certificate for mutual TLS).
    pub fn new(
        base: String,
        timeout: Duration,
        secret: Option<&str>,
        tls: Option<Arc<rustls::ClientConfig>>,
    ) -> Result<Self, MasterError> {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(secret) = secret {
            let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {secret}"))
                .map_err(|_| MasterError::Refused {
                    status: StatusCode::BAD_REQUEST,
                    message: "the cluster secret must be visible ASCII".into(),
                })?;
            value.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        let mut builder = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .default_headers(headers);
        if let Some(tls) = tls {
            builder = builder.use_preconfigured_tls((*tls).clone());
        }
        let http = builder.build()?;
        Ok(Self { http, base })
    }

    /// `POST /v1/nodes`.
    pub async fn register(&self, req: &RegisterRequest) -> Result<Lease, MasterError> {
        let url = format!("{}/v1/nodes", self.base);
        read(self.http.post(url).json(req).send().await?).await
    }

    /// `PUT /v1/nodes/{id}/heartbeat`.
    pub async fn heartbeat(&self, id: &str, beat: &Heartbeat) -> Result<Lease, MasterError> {
        let url = format!("{}/v1/nodes/{id}/heartbeat", self.base);
        read(self.http.put(url).json(beat).send().await?).await
    }

    /// `DELETE /v1/nodes/{id}`. A node the master no longer knows counts as gone.
    pub async fn deregister(&self, id: &str) -> Result<(), MasterError> {
        let url = format!("{}/v1/nodes/{id}", self.base);
        let response = self.http.delete(url).send().await?;
        match response.status() {
            s if s.is_success() || s == StatusCode::NOT_FOUND => Ok(()),
            status => Err(refused(status, response).await),
        }
    }
}

async fn read(response: reqwest::Response) -> Result<Lease, MasterError> {
    match response.status() {
        s if s.is_success() => Ok(response.json().await?),
        StatusCode::NOT_FOUND => Err(MasterError::UnknownNode),
        status => Err(refused(status, response).await),
    }
}

async fn refused(status: StatusCode, response: reqwest::Response) -> MasterError {
    let message = match response.json::<ErrorBody>().await {
        Ok(body) => body.error,
        Err(_) => "(no message)".into(),
    };
    MasterError::Refused { status, message }
}
