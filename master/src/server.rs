//! [`Master`]: the registry's HTTP server and lease reaper, running on an already-bound listener.

use std::future::Future;
use std::net::SocketAddr;

use distribution_shared::{SecretString, ServiceClient};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::auth::{self, Secret};
use crate::config::MasterConfig;
use crate::registry::Registry;
use crate::{api, events, http, lease};
use distribution_client::{CallRouter, RouterConfig};
use distribution_shared::wire::MembershipEvent;
use futures::{Stream, StreamExt};

/// A running master: the registry API on its listener, the lease reaper, and a handle to the
/// registry for in-process routers.
///
/// ```no_run
/// # async fn demo() -> std::io::Result<()> {
/// use distribution_master::{Master, MasterConfig};
/// let listener = tokio::net::TcpListener::bind("0.0.0.0:3000").await?;
/// let master = Master::start(listener, MasterConfig::default())?;
/// // ... master.router::<MyServiceClient>() routes calls to the registered nodes ...
/// master.shutdown().await;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Master {
    registry: Registry,
    local_addr: SocketAddr,
    shutdown: CancellationToken,
    server: JoinHandle<std::io::Result<()>>,
    /// The cluster secret, handed to in-process routers (they prove it to the nodes).
    secret: Option<SecretString>,
}

impl Master {
    /// Starts serving the registry API on `listener` and evicting expired leases.
    pub fn start(listener: TcpListener, config: MasterConfig) -> std::io::Result<Self> {
        let local_addr = listener.local_addr()?;
        let registry = Registry::new(&config);
        let shutdown = CancellationToken::new();
        tokio::spawn(lease::run_reaper(registry.clone(), shutdown.clone()));
        tokio::spawn(registry.clone().run_publisher(shutdown.clone()));
        let mut app = api::routes(registry.clone(), &config, shutdown.clone());
        match &config.secret {
            Some(secret) => {
                app = app.layer(axum::middleware::from_fn_with_state(
                    Secret::new(secret.clone()),
                    auth::require_secret,
                ));
                tracing::info!(
                    "cluster secret set: the registry requires it, and this master's routers \
                     prove it to the nodes"
                );
            }
            None if config.http.tls.is_none() => tracing::warn!(
                "no cluster secret and no TLS: the registry is open, anyone who reaches it can \
                 join the cluster or read its node list; node calls are open too"
            ),
            None => tracing::warn!(
                "no cluster secret: the registry is open to anyone who reaches it unless its TLS \
                 settings require client certificates (mutual TLS)"
            ),
        }
        let server = tokio::spawn(http::serve(
            listener,
            app,
            config.http.clone(),
            shutdown.clone(),
        ));
        tracing::info!(addr = %local_addr, interval_ms = config.heartbeat_interval.as_millis() as u64,
            ttl_ms = config.ttl.as_millis() as u64, "master listening");
        Ok(Self {
            registry,
            local_addr,
            shutdown,
            server,
            secret: config.secret.clone(),
        })
    }

    /// The address the registry API listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The registry, for in-process use.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The membership events from now on (join, leave, eviction, replacement, moved, late,
    /// back), as a stream that ends when the master shuts down. See [`crate::events`].
    pub fn events(&self) -> impl Stream<Item = MembershipEvent> + Send + 'static {
        self.events_after(self.registry.index())
    }

    /// The membership events after index `after` that the bounded history still holds
    /// ([`crate::events::HISTORY`]), then the new ones; `0`: the whole history.
    pub fn events_after(&self, after: u64) -> impl Stream<Item = MembershipEvent> + Send + 'static {
        events::stream(self.registry.clone(), after)
            .map(|event| MembershipEvent::clone(&event))
            .take_until(self.shutdown.clone().cancelled_owned())
    }

    /// A router over this master's nodes with the default [`RouterConfig`].
    pub fn router<C: ServiceClient>(&self) -> CallRouter<C> {
        self.router_with(RouterConfig::default())
    }

    /// A router over this master's nodes with `config`. When `config` has no
    /// [`secret`](RouterConfig::secret), the router uses the master's own
    /// ([`MasterConfig::secret`]): nodes that joined with it require it of every caller.
    pub fn router_with<C: ServiceClient>(&self, mut config: RouterConfig) -> CallRouter<C> {
        if config.secret.is_none() {
            config.secret = self.secret.clone();
        }
        CallRouter::new(self.registry.subscribe(), config)
    }

    /// Stops the API and the reaper, and waits for the server to finish its open requests.
    pub async fn shutdown(mut self) {
        self.shutdown.cancel();
        match (&mut self.server).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => tracing::warn!(error = %err, "master server failed"),
            Err(err) => tracing::warn!(error = %err, "master server task failed"),
        }
    }

    /// Runs until `signal` completes, then shuts down.
    pub async fn run_until(self, signal: impl Future<Output = ()>) {
        tokio::select! {
            _ = signal => {}
            _ = self.shutdown.cancelled() => {}
        }
        self.shutdown().await;
    }
}

impl Drop for Master {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
