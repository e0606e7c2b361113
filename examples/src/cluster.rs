//! Starting the demo's processes on already-bound listeners: the master with its gateway, and a
//! node. The binary and the tests both go through here.

use std::net::SocketAddr;
use std::time::Duration;

use distribution_client::RouterConfig;
use distribution_master::http;
use distribution_master::{Master, MasterConfig};
use distribution_node::{NodeConfig, NodeHandle, handler};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::gateway;
use crate::service::{Calc, CalcClient, CalcServer};

/// A running master and its HTTP gateway.
#[derive(Debug)]
pub struct DemoMaster {
    /// The registry and router.
    pub master: Master,
    /// The gateway's address.
    pub gateway_addr: SocketAddr,
    gateway: JoinHandle<std::io::Result<()>>,
    stop_gateway: CancellationToken,
}

impl DemoMaster {
    /// Starts the registry on `registry` and the gateway on `gateway`. The gateway is served in
    /// the clear with the registry's connection limits (`config.http`: connections, per-IP
    /// limit, idle and header timeouts). Its router proves the master's cluster secret to the
    /// nodes (unless `router.secret` names another); the gateway's own HTTP routes stay public.
    /// With `config.metrics`, both the registry and the gateway serve `GET /metrics`.
    pub fn start(
        registry: TcpListener,
        gateway: TcpListener,
        config: MasterConfig,
        router: RouterConfig,
    ) -> std::io::Result<Self> {
        let limits = config.http.clone().with_tls(None);
        let metrics = config.metrics.clone();
        let master = Master::start(registry, config)?;
        let routers = gateway::Routers {
            calc: master.router_with(router.clone()),
            text: master.router_with(router),
        };
        let gateway_addr = gateway.local_addr()?;
        let mut app = gateway::routes(routers);
        if let Some(render) = metrics {
            app = app.route(
                "/metrics",
                axum::routing::get(move || async move { render() }),
            );
        }
        let stop_gateway = CancellationToken::new();
        let gateway = tokio::spawn(http::serve(gateway, app, limits, stop_gateway.clone()));
        tracing::info!(addr = %gateway_addr, "gateway listening");
        Ok(Self {
            master,
            gateway_addr,
            gateway,
            stop_gateway,
        })
    }

    /// Stops the gateway (its requests in flight finish, within the drain timeout) and the
    /// master.
    pub async fn shutdown(self) {
        self.stop_gateway.cancel();
        let _ = self.gateway.await;
        self.master.shutdown().await;
    }
}

/// Starts a demo node on `listener` serving `Calc` (registered as service `calc`), whose `sum`
/// sleeps `sum_delay` before answering.
pub fn start_node(
    listener: TcpListener,
    config: NodeConfig,
    sum_delay: Duration,
) -> Result<NodeHandle, distribution_node::StartError> {
    let server = CalcServer { sum_delay };
    let config = config.serving::<CalcClient>();
    distribution_node::start(listener, config, handler!(server.serve()))
}

/// Starts a node whose every call fails: it aborts each call with an error instead of computing.
/// For fault-injection tests (`distribution-demo node --faulty`): the router must route around it.
pub fn start_faulty_node(
    listener: TcpListener,
    config: NodeConfig,
) -> Result<NodeHandle, distribution_node::StartError> {
    distribution_node::start(
        listener,
        config.serving::<CalcClient>(),
        |_ctx, _req: crate::service::CalcRequest| async move {
            Err::<crate::service::CalcResponse, _>(tarpc::ServerError::new(
                std::io::ErrorKind::Other,
                FAULTY.into(),
            ))
        },
    )
}

/// What a `--faulty` node answers to every call.
pub const FAULTY: &str = "injected fault: this node fails every call";
