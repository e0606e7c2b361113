//! The heartbeat loop: register, renew the lease every interval with the node's load, and
//! register again whenever the master forgot the node (404) or could not be reached.
//!
//! Registering is idempotent on the master's side, so "register again" is always safe. While the
//! master is unreachable, or refuses the registration (a `404` from something that is not a
//! registry, a `5xx`), the loop retries every interval and logs the outage once, not every try.
//! Only a `404` on a *heartbeat* ("forgotten") registers again at once, and only once in a row:
//! if that registration fails too, it is an outage. `stop` is honoured in every branch, requests
//! to the master included, so a node stops promptly whatever the master answers.

use std::sync::Arc;
use std::time::Duration;

use distribution_shared::wire::{Heartbeat, Lease, RegisterRequest};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::load::Load;
use crate::master_client::{MasterClient, MasterError};

/// Keeps the node registered until `stop` is cancelled. `registered` tells the rest of the node
/// whether the master currently holds its lease.
pub(crate) async fn run(
    master: MasterClient,
    request: RegisterRequest,
    load: Arc<Load>,
    mut interval: Duration,
    registered: watch::Sender<bool>,
    stop: CancellationToken,
) {
    let mut lease: Option<Lease> = None;
    let mut outage = false;
    let mut maintenance = load.watch_maintenance();
    loop {
        crate::observe::refresh(&load);
        maintenance.borrow_and_update();
        let exchange = async {
            match &lease {
                None => {
                    let request = RegisterRequest {
                        maintenance: load.maintenance(),
                        ..request.clone()
                    };
                    master.register(&request).await
                }
                Some(_) => {
                    let beat = Heartbeat {
                        in_flight: load.busy(),
                        capacity: Some(load.capacity()),
                        served: load.served(),
                        maintenance: load.maintenance(),
                    };
                    master.heartbeat(&request.id, &beat).await
                }
            }
        };
        let Some(result) = stop.run_until_cancelled(exchange).await else {
            return;
        };
        match result {
            Ok(granted) => {
                if lease.is_none() {
                    info!(node = %request.id, addr = %granted.addr, "registered with the master");
                }
                if outage {
                    info!(node = %request.id, "master reachable again");
                    outage = false;
                }
                interval = Duration::from_millis(granted.heartbeat_interval_ms.max(10));
                lease = Some(granted);
                registered.send_replace(true);
            }
            Err(MasterError::UnknownNode) if lease.is_some() => {
                warn!(node = %request.id, "the master forgot this node; registering again");
                metrics::counter!(crate::observe::REREGISTRATIONS).increment(1);
                lease = None;
                registered.send_replace(false);
                continue;
            }
            Err(err) => {
                metrics::counter!(crate::observe::HEARTBEAT_FAILURES).increment(1);
                if !outage {
                    warn!(node = %request.id, error = %err, "no lease from the master (unreachable or refusing); retrying every interval");
                    outage = true;
                }
                lease = None;
                registered.send_replace(false);
            }
        }
        // The next beat after the interval, or at once when the node goes into maintenance or
        // out of it (routers learn it within one exchange with the master).
        let pause = async {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = maintenance.changed() => {}
            }
        };
        if stop.run_until_cancelled(pause).await.is_none() {
            return;
        }
    }
}
