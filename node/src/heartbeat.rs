//! The heartbeat loop: register, renew the lease every interval with the node's load, and
//! register again whenever the master forgot the node (404) or could not be reached.
//!
//! Registering is idempotent on the master's side, so "register again" is always safe. While the
//! master is unreachable, or refuses the registration (a `404` from something that is not a
//! registry, a `5xx`), the loop retries every interval and logs the outage once, not every try.
//! Only a `404` on a *heartbeat* ("forgotten") registers again at once, and only once in a row:
//! if that registration fails too, it is an outage. `stop` is honoured in every branch, requests
//! to the master included, so a node stops promptly whatever the master answers.
//!
//! A node with several masters runs one loop per master, each with its own lease, its own
//! interval (from that master's answers) and its own outage log; [`Leases`] counts how many of
//! them hold the lease, and the node counts as registered while at least one does.

use std::sync::Arc;
use std::time::Duration;

use distribution_shared::wire::{Heartbeat, Lease, RegisterRequest};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::load::Load;
use crate::master_client::{MasterClient, MasterError};

/// How many of the node's masters hold its lease now, shared by the heartbeat loops (one per
/// master) and read by `NodeHandle` (registered while it is above zero).
#[derive(Debug, Clone)]
pub(crate) struct Leases(Arc<watch::Sender<usize>>);

impl Leases {
    /// No lease held yet, and the receiver the node's handle reads.
    pub(crate) fn new() -> (Self, watch::Receiver<usize>) {
        let (tx, rx) = watch::channel(0);
        (Self(Arc::new(tx)), rx)
    }

    /// Records that one loop's master now holds (`now`) or no longer holds its lease; `held`
    /// is that loop's own state, so each loop counts once at most.
    fn set(&self, held: &mut bool, now: bool) {
        if *held != now {
            *held = now;
            self.0.send_modify(|n| {
                *n = if now {
                    n.saturating_add(1)
                } else {
                    n.saturating_sub(1)
                }
            });
        }
    }
}

/// Keeps the node registered with `master` until `stop` is cancelled, counting its lease in
/// `leases` while that master holds it.
pub(crate) async fn run(
    master: MasterClient,
    request: RegisterRequest,
    load: Arc<Load>,
    mut interval: Duration,
    leases: Leases,
    stop: CancellationToken,
) {
    let mut lease: Option<Lease> = None;
    let mut outage = false;
    let mut maintenance = load.watch_maintenance();
    let mut held = false;
    let base = master.base().clone();
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
            leases.set(&mut held, false);
            return;
        };
        match result {
            Ok(granted) => {
                if lease.is_none() {
                    info!(node = %request.id, addr = %granted.addr, master = %base, "registered with the master");
                }
                if outage {
                    info!(node = %request.id, master = %base, "master reachable again");
                    outage = false;
                }
                interval = Duration::from_millis(granted.heartbeat_interval_ms.max(10));
                lease = Some(granted);
                leases.set(&mut held, true);
            }
            Err(MasterError::UnknownNode) if lease.is_some() => {
                warn!(node = %request.id, master = %base, "the master forgot this node; registering again");
                metrics::counter!(crate::observe::REREGISTRATIONS).increment(1);
                lease = None;
                leases.set(&mut held, false);
                continue;
            }
            Err(err) => {
                metrics::counter!(crate::observe::HEARTBEAT_FAILURES).increment(1);
                if !outage {
                    warn!(node = %request.id, master = %base, error = %err, "no lease from the master (unreachable or refusing); retrying every interval");
                    outage = true;
                }
                lease = None;
                leases.set(&mut held, false);
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
            leases.set(&mut held, false);
            return;
        }
    }
}
