//! [`MasterClient`]: the node's side of the master's HTTP API (register, heartbeat, leave).

use std::sync::Arc;
use std::time::Duration;

use distribution_shared::defaults;
use distribution_shared::resolve::Resolver;
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
    /// The master's address cannot be the base of its API (not a URL, or a URL with a path,
    /// query or fragment): a configuration error, refused before any request.
    #[error("bad master address {address:?}: {reason}")]
    BadAddress {
        /// The address as configured.
        address: String,
        /// What is wrong with it.
        reason: String,
    },
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
        check_base(&base)?;
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
            // Drop a pooled connection before the master's idle timeout closes it, so that a
            // heartbeat is never sent on a connection the master is closing at that moment.
            .pool_idle_timeout(defaults::IDLE_TIMEOUT / 2)
            .default_headers(headers)
            // Names resolved in-process at each new connection (works in an empty image).
            .dns_resolver(Arc::new(Resolver::system()));
        if let Some(tls) = tls {
            builder = builder.use_preconfigured_tls((*tls).clone());
        }
        let http = builder.build()?;
        Ok(Self { http, base })
    }

    /// `POST /v1/nodes`. A `404` here is not "unknown node" but "no registry at this address"
    /// (the gateway's port, another service): it is [`MasterError::Refused`], retried like an
    /// outage, never at once.
    pub async fn register(&self, req: &RegisterRequest) -> Result<Lease, MasterError> {
        let url = format!("{}/v1/nodes", self.base);
        let response = self.http.post(url).json(req).send().await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Err(MasterError::Refused {
                status: StatusCode::NOT_FOUND,
                message: format!(
                    "no registry API at {} (is it the master's registry address?)",
                    self.base
                ),
            });
        }
        read(response).await
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

/// Refuses a base URL that is not `scheme://host[:port]` (a trailing `/` is fine): requests go to
/// `{base}/v1/...`, so a path would send them elsewhere and get a 404 forever.
fn check_base(base: &str) -> Result<(), MasterError> {
    let bad = |reason: &str| MasterError::BadAddress {
        address: base.to_owned(),
        reason: reason.to_owned(),
    };
    let url = reqwest::Url::parse(base).map_err(|e| bad(&format!("not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad("the scheme must be http or https"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("no host"));
    }
    if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
        return Err(bad(
            "give the registry as host:port or http(s)://host:port, without a path",
        ));
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::check_base;

    #[test]
    fn a_base_with_a_path_query_or_bad_scheme_is_refused() {
        for good in [
            "http://m:3000",
            "https://10.0.0.1:3000",
            "http://[::1]:3000/",
        ] {
            assert!(check_base(good).is_ok(), "{good}");
        }
        for bad in [
            "http://m:3000/v1",
            "http://m:3000/registry/",
            "http://m:3000?x=1",
            "http://m:3000#top",
            "ftp://m:3000",
            "http://",
            "m 3000",
        ] {
            let err = check_base(bad).expect_err(bad).to_string();
            assert!(err.contains("bad master address"), "{bad}: {err}");
        }
    }
}
