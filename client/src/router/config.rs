//! [`RouterConfig`] and [`CallOptions`]: how a router calls nodes, and what one call overrides.

use std::time::Duration;

use distribution_shared::tls::ClientTls;
use distribution_shared::{SecretString, defaults};

use super::hedge::{HedgeDelay, HedgePolicy};

/// How a router calls nodes. `RouterConfig::default()` gives the documented defaults.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RouterConfig {
    /// The deadline of a call when [`CallOptions`] sets none; it spans every attempt. 10 s.
    pub deadline: Duration,
    /// How many different nodes a call may try when connections fail. 3. Idempotent calls
    /// moved off a node because it left the cluster do not count against it.
    pub attempts: u32,
    /// How long dialling a node may take. 2 s.
    pub connect_timeout: Duration,
    /// The largest frame read or written on a node connection. 16 MiB.
    pub max_frame_len: usize,
    /// The first ejection after a failure; it doubles with each consecutive failure. 1 s.
    pub eject_base: Duration,
    /// The longest ejection. 30 s.
    pub eject_max: Duration,
    /// How long one attempt of an **idempotent** call may go unanswered before the router gives
    /// up on that node and tries another (within the call's deadline). It has no effect on other
    /// calls, which must not run twice. `None` (the default): an attempt may use the whole
    /// deadline, right for long computations. Set it for short calls, so that a hung node (alive
    /// TCP, no answers) costs a retry instead of a failed call.
    pub attempt_timeout: Option<Duration>,
    /// Whether calls are idempotent: then a call the node aborted (`CallError::Remote`) or that
    /// timed out an attempt is retried on another node too. Default `false`: only calls that
    /// failed in transport are retried.
    pub idempotent: bool,
    /// Consecutive aborted calls after which a node is ejected, as Finagle's failure accrual. 5.
    pub eject_after_errors: u32,
    /// TLS to the nodes: the cluster CA (and this caller's certificate, for mutual TLS).
    /// `None`: plain TCP.
    pub tls: Option<ClientTls>,
    /// How long a connection to a node may go without a call before this router drops it and
    /// dials afresh at the next call. 4 min, shorter than the node's idle timeout (5 min), so
    /// that a node never closes a connection a router still means to use.
    pub idle_close: Duration,
    /// Seeds the tie-breaking RNG, for reproducible routing in tests. Random when `None`.
    pub seed: Option<u64>,
    /// The cluster secret, proved to each node when the connection opens (the cluster
    /// handshake, [`distribution_shared::handshake`]); required by nodes that have one. `None`:
    /// no handshake. `distribution_master::Master::router_with` and [`crate::remote`] fill it in from the
    /// master's or the remote caller's secret when it is `None`. Never logged.
    pub secret: Option<SecretString>,
    /// Up to this many nodes every call compares them all (exact least-used); above, it draws
    /// two at random and takes the less used (power of two choices). Default
    /// 16; `usize::MAX`: always exact (a call then
    /// costs in proportion to the cluster).
    pub exact_pick_up_to: usize,
    /// Above this many nodes the router calls only a window of them sized by its load (the
    /// aperture: see [`RouterConfig::aperture_min`]). Default 2, the smallest window (256
    /// before issue #32, which cost a busy caller a quarter of its throughput at 100 nodes);
    /// up to 256 nodes the window slides over the whole cluster; `usize::MAX`: never (every
    /// call may go to any node, and the router may hold a connection to each).
    pub aperture_above: usize,
    /// The fewest nodes in the window, the router's own random subset of the cluster (the
    /// routers of a cluster together use every node). Default 2: a light caller still compares
    /// two nodes, so one slow node does not take all its calls.
    pub aperture_min: usize,
    /// The most calls in flight of this router per window node. The window holds its calls in
    /// flight at `aperture_budget / mean call time` calls per node, between 1 and this: long
    /// calls get a node each (as without an aperture), short ones share connections, which
    /// costs less per call. Default 16; 1: one node per call in flight.
    pub aperture_load: u32,
    /// How long calls may queue behind each other on a window node: calls per node =
    /// this / the mean call time (see [`RouterConfig::aperture_load`]). Default 2 ms: a
    /// short call (tens to hundreds of microseconds) then shares its node with a few others,
    /// a call of 2 ms or more has a node of its own.
    pub aperture_budget: Duration,
    /// Backup requests for idempotent calls (see [`HedgePolicy`]). `None` (the default): no
    /// call is hedged unless its [`CallOptions::hedge`] asks.
    pub hedge: Option<HedgePolicy>,
    /// Only nodes that carry every one of these tags (e.g. `["gpu"]`); empty (the default):
    /// every node of the router's service. The service itself comes from the client type
    /// ([`ServiceClient::SERVICE`](distribution_shared::ServiceClient::SERVICE)).
    pub tags: Vec<String>,
}

impl Default for RouterConfig {
    fn default() -> Self {
        Self {
            deadline: defaults::CALL_DEADLINE,
            attempts: defaults::CALL_ATTEMPTS,
            connect_timeout: defaults::CONNECT_TIMEOUT,
            max_frame_len: defaults::MAX_FRAME_LEN,
            eject_base: Duration::from_secs(1),
            eject_max: Duration::from_secs(30),
            attempt_timeout: None,
            idempotent: false,
            eject_after_errors: 5,
            tls: None,
            idle_close: defaults::ROUTER_IDLE_CLOSE,
            seed: None,
            secret: None,
            hedge: None,
            tags: Vec::new(),
            exact_pick_up_to: super::pick::EXACT_UP_TO,
            aperture_above: super::aperture::ABOVE,
            aperture_min: super::aperture::MIN,
            aperture_load: super::aperture::LOAD,
            aperture_budget: super::aperture::BUDGET,
        }
    }
}

/// Per-call settings that override the router's.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
#[non_exhaustive]
pub struct CallOptions {
    /// The call's deadline, counted from now, across every attempt.
    pub deadline: Option<Duration>,
    /// How many nodes the call may try.
    pub attempts: Option<u32>,
    /// Overrides [`RouterConfig::attempt_timeout`].
    pub attempt_timeout: Option<Duration>,
    /// Overrides [`RouterConfig::idempotent`].
    pub idempotent: Option<bool>,
    /// Overrides the hedge delay of [`RouterConfig::hedge`] (`Some(HedgeDelay::Off)`: this call
    /// is not hedged). Only idempotent calls are hedged.
    pub hedge: Option<HedgeDelay>,
}

impl CallOptions {
    /// Options with `deadline`.
    pub fn deadline(deadline: Duration) -> Self {
        Self {
            deadline: Some(deadline),
            ..Self::default()
        }
    }

    /// These options, marked idempotent (retried on aborted and timed-out attempts too).
    pub fn idempotent(self) -> Self {
        Self {
            idempotent: Some(true),
            ..self
        }
    }
}

// `RouterConfig` is `#[non_exhaustive]`: other crates build it from `Default` (or its constructor)
// with these `with_…` methods, or set its public fields.
distribution_shared::with_setters!(RouterConfig {
    with_deadline => deadline: Duration,
    with_attempts => attempts: u32,
    with_connect_timeout => connect_timeout: Duration,
    with_max_frame_len => max_frame_len: usize,
    with_eject_base => eject_base: Duration,
    with_eject_max => eject_max: Duration,
    with_attempt_timeout => attempt_timeout: Option<Duration>,
    with_idempotent => idempotent: bool,
    with_eject_after_errors => eject_after_errors: u32,
    with_tls => tls: Option<ClientTls>,
    with_idle_close => idle_close: Duration,
    with_seed => seed: Option<u64>,
    with_secret => secret: Option<SecretString>,
    with_hedge => hedge: Option<HedgePolicy>,
    with_exact_pick_up_to => exact_pick_up_to: usize,
    with_tags => tags: Vec<String>,
    with_aperture_above => aperture_above: usize,
    with_aperture_min => aperture_min: usize,
    with_aperture_load => aperture_load: u32,
    with_aperture_budget => aperture_budget: Duration,
});

// `CallOptions` is `#[non_exhaustive]`: other crates build it from `Default` (or its constructor)
// with these `with_…` methods, or set its public fields.
distribution_shared::with_setters!(CallOptions {

    ;options:
    with_deadline => deadline: Duration,
    with_attempts => attempts: u32,
    with_attempt_timeout => attempt_timeout: Duration,
    with_idempotent => idempotent: bool,
    with_hedge => hedge: HedgeDelay,
});
