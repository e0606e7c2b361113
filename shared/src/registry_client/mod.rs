//! [`RegistryClient`]: the one typed client of the master's registry HTTP API, shared by the
//! nodes (register, heartbeat, deregister) and the callers that follow the node list (the
//! blocking query of `GET /v1/nodes`, the events of `GET /v1/events`).
//!
//! It exists so that both sides agree on everything that is not the request itself:
//!
//! - **one address parser**, [`parse_address`] (in `address.rs`): `host:port` (`http`, or `https` with TLS
//!   settings), `http://host:port[/]`, `https://host:port[/]` (only with TLS settings). A path,
//!   query, fragment or user name is refused up front, since every request goes to
//!   `{base}/v1/...` and a path would get a 404 forever; so are an empty host and a bad port. A
//!   node and a caller given the same wrong address fail with the same [`AddressError`];
//! - **one builder of the HTTP client**: the connect timeout and one bound per request, names
//!   resolved in-process ([`Resolver`], works in an empty image), the cluster's TLS settings, no
//!   redirects (a registry never redirects, and a redirect would carry requests elsewhere), and
//!   pooled connections dropped before the master's idle timeout closes them (so a request is
//!   never sent on a connection the master is closing at that moment);
//! - **the secret**: held as a [`SecretString`] (its `Debug` shows no secret, it is zeroed on
//!   drop) and sent as a sensitive `Authorization: Bearer` header, so neither this client's
//!   `Debug` nor reqwest's logs show it;
//! - **typed errors**, [`RegistryError`], that keep their causes; every body read is bounded.

use std::sync::Arc;
use std::time::Duration;

use reqwest::{RequestBuilder, Response, StatusCode, Url};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use tokio_rustls::rustls;

use crate::defaults;
use crate::resolve::Resolver;
use crate::wire::{ErrorBody, Heartbeat, Lease, NodeChanges, NodeList, RegisterRequest};

mod address;

pub use address::{AddressError, parse_address, split_masters};

/// The largest answer read for anything but the node list (a lease, an error message).
const MAX_SMALL_BODY: usize = 64 * 1024;

/// Why a request to the registry failed, or the client could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// The master's address cannot be the base of its API: a configuration error, refused
    /// before any request.
    #[error("bad master address {address:?}: {problem}")]
    BadAddress {
        /// The address as configured.
        address: String,
        /// What is wrong with it.
        #[source]
        problem: AddressError,
    },
    /// The cluster secret cannot be sent in an HTTP header (it must be visible ASCII).
    #[error("the cluster secret must be visible ASCII")]
    BadSecret,
    /// The HTTP client could not be built (TLS settings, resolver).
    #[error("cannot build the registry's HTTP client: {0}")]
    Client(#[source] reqwest::Error),
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
    /// The master could not be reached, or the answer could not be read to its end in time.
    #[error("the master is unreachable: {0}")]
    Unreachable(#[from] reqwest::Error),
    /// The master took the connection and sent no answer within the request timeout (a paused
    /// or overloaded process).
    #[error("the master sent no answer within {0:?}")]
    TimedOut(Duration),
    /// The answer is larger than the caller reads.
    #[error("the master's answer is larger than {limit} bytes")]
    TooLarge {
        /// The bound, in bytes.
        limit: usize,
    },
    /// The answer is not the JSON expected.
    #[error("unreadable answer from the master: {0}")]
    Unreadable(#[source] serde_json::Error),
}
/// How a [`RegistryClient`] reaches the master. `RegistrySettings::new(timeout)` then
/// [`with_secret`](Self::with_secret) and [`with_tls`](Self::with_tls) as needed.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RegistrySettings {
    /// Bounds connecting, and each request beyond a blocking query's own wait.
    pub request_timeout: Duration,
    /// The cluster secret, sent as `Authorization: Bearer`. Never shown by `Debug`.
    pub secret: Option<SecretString>,
    /// TLS to the master (the cluster CA, and this side's certificate for mutual TLS). With it
    /// a bare `host:port` means `https://host:port`.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl RegistrySettings {
    /// No secret, no TLS, each request bounded by `request_timeout`.
    pub fn new(request_timeout: Duration) -> Self {
        Self {
            request_timeout,
            secret: None,
            tls: None,
        }
    }

    /// These settings presenting `secret` (if any) to the master.
    pub fn with_secret(mut self, secret: Option<&SecretString>) -> Self {
        self.secret = secret.cloned();
        self
    }

    /// These settings dialling the master with `tls` (if any).
    pub fn with_tls(mut self, tls: Option<Arc<rustls::ClientConfig>>) -> Self {
        self.tls = tls;
        self
    }
}

/// A blocking query: answer when the registry's index passes `index`, or after `wait`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockingQuery {
    /// The registry index last seen.
    pub index: u64,
    /// How long the master may hold the request without a change.
    pub wait: Duration,
}

/// What a follower has of one master's registry, for [`RegistryClient::changes`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FollowerView {
    /// The master process it came from ([`NodeChanges::epoch`]).
    pub epoch: u64,
    /// The registry index it has.
    pub index: u64,
    /// The load version it has.
    pub loads: u64,
}

/// A client of one master's registry API (cheap to clone: one connection pool).
#[derive(Clone, Debug)]
pub struct RegistryClient {
    http: reqwest::Client,
    base: Url,
    secret: Option<SecretString>,
    request_timeout: Duration,
}

impl RegistryClient {
    /// A client of the master at `master` (see [`parse_address`]). Fails without any request
    /// on a bad address, a secret that is not visible ASCII, or TLS settings reqwest refuses.
    pub fn new(master: &str, settings: RegistrySettings) -> Result<Self, RegistryError> {
        let base = parse_address(master, settings.tls.is_some()).map_err(|problem| {
            RegistryError::BadAddress {
                address: master.to_owned(),
                problem,
            }
        })?;
        if let Some(secret) = &settings.secret {
            reqwest::header::HeaderValue::from_str(&format!("Bearer {}", secret.expose_secret()))
                .map_err(|_| RegistryError::BadSecret)?;
        }
        let mut builder = reqwest::Client::builder()
            .connect_timeout(settings.request_timeout)
            .pool_idle_timeout(defaults::IDLE_TIMEOUT / 2)
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(Arc::new(Resolver::system()));
        if let Some(tls) = settings.tls {
            builder = builder.use_preconfigured_tls((*tls).clone());
        }
        let http = builder.build().map_err(RegistryError::Client)?;
        Ok(Self {
            http,
            base,
            secret: settings.secret,
            request_timeout: settings.request_timeout,
        })
    }

    /// The base URL of the API, `scheme://host:port/`.
    pub fn base(&self) -> &Url {
        &self.base
    }

    /// `{base}/v1/nodes`, the node list.
    pub fn nodes_url(&self) -> Url {
        self.url("v1/nodes")
    }

    /// `{base}/v1/events`, the server-sent membership events.
    pub fn events_url(&self) -> Url {
        self.url("v1/events")
    }

    /// `{base}/v1/changes`, what changed since a follower's view.
    pub fn changes_url(&self) -> Url {
        self.url("v1/changes")
    }

    /// `POST /v1/nodes`. A `404` here is not "unknown node" but "no registry at this address"
    /// (the gateway's port, another service): it is [`RegistryError::Refused`], retried like
    /// an outage, never at once.
    pub async fn register(&self, req: &RegisterRequest) -> Result<Lease, RegistryError> {
        let request = self.http.post(self.nodes_url()).json(req);
        let response = self.send(request, self.request_timeout).await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Err(RegistryError::Refused {
                status: StatusCode::NOT_FOUND,
                message: format!(
                    "no registry API at {} (is it the master's registry address?)",
                    self.base
                ),
            });
        }
        lease(response).await
    }

    /// `PUT /v1/nodes/{id}/heartbeat`; a `404` is [`RegistryError::UnknownNode`].
    pub async fn heartbeat(&self, id: &str, beat: &Heartbeat) -> Result<Lease, RegistryError> {
        let request = self.http.put(self.node_url(id, true)).json(beat);
        lease(self.send(request, self.request_timeout).await?).await
    }

    /// `DELETE /v1/nodes/{id}`. A node the master no longer knows counts as gone.
    pub async fn deregister(&self, id: &str) -> Result<(), RegistryError> {
        let request = self.http.delete(self.node_url(id, false));
        let response = self.send(request, self.request_timeout).await?;
        match response.status() {
            s if s.is_success() || s == StatusCode::NOT_FOUND => Ok(()),
            status => Err(refused(status, response).await),
        }
    }

    /// `GET /v1/nodes`, at once without `query`, else a blocking query (bounded by the
    /// request timeout plus the wait and the master's jitter of up to wait/16). An answer over
    /// `max_bytes` is [`RegistryError::TooLarge`], read no further.
    pub async fn list(
        &self,
        query: Option<BlockingQuery>,
        max_bytes: usize,
    ) -> Result<NodeList, RegistryError> {
        let params =
            query.map(|BlockingQuery { index, wait }| (vec![("index", index.to_string())], wait));
        self.blocking_get(self.nodes_url(), params, max_bytes).await
    }

    /// `GET /v1/changes`: the whole list without `view`, else what changed since it, as a
    /// blocking query of `wait` (see [`NodeChanges`]); with `service`, only that service's
    /// nodes. Bounded like [`list`](Self::list).
    pub async fn changes(
        &self,
        view: Option<FollowerView>,
        service: Option<&str>,
        wait: Duration,
        max_bytes: usize,
    ) -> Result<NodeChanges, RegistryError> {
        let mut url = self.changes_url();
        if let Some(service) = service {
            url.query_pairs_mut().append_pair("service", service);
        }
        let params = view.map(
            |FollowerView {
                 epoch,
                 index,
                 loads,
             }| {
                let view = vec![
                    ("epoch", epoch.to_string()),
                    ("index", index.to_string()),
                    ("loads", loads.to_string()),
                ];
                (view, wait)
            },
        );
        self.blocking_get(url, params, max_bytes).await
    }

    /// A `GET` of JSON at `url`, a blocking query when `params` (the query and its wait) are
    /// given: the timeout then grows by the wait and the master's jitter of up to wait/16.
    async fn blocking_get<T: DeserializeOwned>(
        &self,
        url: Url,
        params: Option<(Vec<(&str, String)>, Duration)>,
        max_bytes: usize,
    ) -> Result<T, RegistryError> {
        let mut request = self.http.get(url);
        let mut timeout = self.request_timeout;
        if let Some((mut query, wait)) = params {
            query.push(("wait", format!("{}ms", wait.as_millis())));
            request = request.query(&query);
            timeout += wait + wait / 16;
        }
        let response = self.send(request, timeout).await?;
        let status = response.status();
        if !status.is_success() {
            return Err(refused(status, response).await);
        }
        read_json(response, max_bytes).await
    }

    /// `GET /v1/events` (with `Last-Event-ID: last` to resume): the open stream of server-sent
    /// events, unbounded in time: connecting and the answer's head are bounded by the request
    /// timeout ([`RegistryError::TimedOut`]), the body is not (the reader bounds its silences).
    /// A status other than success is [`RegistryError::Refused`].
    pub async fn events(&self, last: Option<u64>) -> Result<Response, RegistryError> {
        let mut request = self.authorized(self.http.get(self.events_url()));
        if let Some(last) = last {
            request = request.header("Last-Event-ID", last.to_string());
        }
        let response = tokio::time::timeout(self.request_timeout, request.send())
            .await
            .map_err(|_| RegistryError::TimedOut(self.request_timeout))??;
        let status = response.status();
        if !status.is_success() {
            return Err(refused(status, response).await);
        }
        Ok(response)
    }

    fn url(&self, path: &str) -> Url {
        let mut url = self.base.clone();
        url.set_path(path);
        url
    }

    /// `{base}/v1/nodes/{id}[/heartbeat]`, the id percent-encoded as one path segment.
    fn node_url(&self, id: &str, heartbeat: bool) -> Url {
        let mut url = self.nodes_url();
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.push(id);
            if heartbeat {
                segments.push("heartbeat");
            }
        }
        url
    }

    fn authorized(&self, request: RequestBuilder) -> RequestBuilder {
        match &self.secret {
            // `bearer_auth` marks the header sensitive (kept out of reqwest's logs).
            Some(secret) => request.bearer_auth(secret.expose_secret()),
            None => request,
        }
    }

    async fn send(
        &self,
        request: RequestBuilder,
        timeout: Duration,
    ) -> Result<Response, RegistryError> {
        Ok(self.authorized(request).timeout(timeout).send().await?)
    }
}

async fn lease(response: Response) -> Result<Lease, RegistryError> {
    match response.status() {
        s if s.is_success() => read_json(response, MAX_SMALL_BODY).await,
        StatusCode::NOT_FOUND => Err(RegistryError::UnknownNode),
        status => Err(refused(status, response).await),
    }
}

async fn refused(status: StatusCode, response: Response) -> RegistryError {
    let message = match read_json::<ErrorBody>(response, MAX_SMALL_BODY).await {
        Ok(body) => body.error,
        Err(_) => "(no message)".into(),
    };
    RegistryError::Refused { status, message }
}

/// Reads at most `max` bytes of body and decodes them.
async fn read_json<T: DeserializeOwned>(
    mut response: Response,
    max: usize,
) -> Result<T, RegistryError> {
    let too_large = RegistryError::TooLarge { limit: max };
    if response
        .content_length()
        .is_some_and(|len| len > max as u64)
    {
        return Err(too_large);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > max {
            return Err(too_large);
        }
        body.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&body).map_err(RegistryError::Unreadable)
}

#[cfg(test)]
mod tests;
