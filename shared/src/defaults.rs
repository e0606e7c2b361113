//! Default ports, intervals and limits shared by the master, the nodes and the callers.
//!
//! Each value can be overridden in the master's, node's or router's configuration; these are the
//! figures a cluster gets when nobody says otherwise.

use std::time::Duration;

/// How often a node renews its lease. The master tells each node this value when it registers.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);

/// How often the master writes a keep-alive comment into an idle event stream (`GET
/// /v1/events`), so that a reader tells a quiet cluster from a master that stopped answering.
pub const EVENTS_KEEP_ALIVE: Duration = Duration::from_secs(5);

/// The heartbeats a second a master aims to receive at most (see `MasterConfig::heartbeat_budget`):
/// 4,000, about a quarter of a core at the 40 to 65 µs a heartbeat costs on the benchmark machine.
/// Up to 4,000 nodes the interval stays [`HEARTBEAT_INTERVAL`].
pub const HEARTBEAT_BUDGET: u32 = 4_000;

/// How many heartbeat intervals a node may miss before the master evicts it. Three, as etcd's
/// keepalive-every-TTL/3: one late heartbeat (a GC pause, a busy core) never evicts a node.
pub const TTL_INTERVALS: u32 = 3;

/// Below this share of the renewals it expects (with two nodes silent at least), a master stops
/// evicting (see `MasterConfig::self_preservation`): 85 %, Eureka's figure.
pub const SELF_PRESERVATION: f64 = 0.85;

/// The largest tarpc frame either side accepts: 16 MiB. A peer announcing a longer frame is
/// disconnected instead of making us allocate whatever it claims.
pub const MAX_FRAME_LEN: usize = 16 * 1024 * 1024;

/// The largest HTTP request body the master reads: 64 KiB (a registration is a few hundred bytes).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The longest node id the master accepts, in bytes.
pub const MAX_ID_LEN: usize = 128;

/// The most nodes one master registers; a registration beyond it gets `503`.
pub const MAX_NODES: usize = 100_000;

/// How many calls a node runs at once unless configured otherwise (the capacity it reports).
pub const NODE_CAPACITY: u32 = 1024;

/// The deadline of a routed call when the caller sets none (covers every attempt of the call).
pub const CALL_DEADLINE: Duration = Duration::from_secs(10);

/// How many nodes one routed call may try before it gives up on transport failures.
pub const CALL_ATTEMPTS: u32 = 3;

/// How long dialling a node may take before the attempt counts as failed.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a node waits for its calls in flight to finish when it shuts down.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// The furthest deadline anyone in the cluster uses: one year. A caller asking for more gets
/// this; a node clamps a request's deadline to it before tarpc sees it. tarpc's server keeps each
/// request's deadline in a timer wheel that panics on deadlines more than about 2.2 years away,
/// and `Instant::now() + Duration::MAX` overflows.
pub const MAX_DEADLINE: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// How long a connection to any listener of the cluster (registry, gateway, node) may stay
/// silent, with no request in flight and no byte either way, before it is closed: 30 s. Nodes
/// heartbeat every second and callers' blocking queries keep a request in flight, so only
/// connections that do nothing are cut.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// How many connections one peer IP may hold open at once on one listener: 512. A host with more
/// (many nodes behind one NAT, a load test from one machine) needs it raised; one host alone can
/// then take an eighth of the registry's 4096 connections, never all of them.
pub const MAX_CONNECTIONS_PER_IP: usize = 512;

/// How long a connection to a node's tarpc port may stay silent with no call running before the
/// node closes it: 5 min. Longer than [`ROUTER_IDLE_CLOSE`], so that a router always drops an idle
/// connection itself before the node does (a call never meets a connection the node just closed).
pub const NODE_IDLE_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// How long a router keeps a connection to a node that carried no call: 4 min. The next call
/// after that dials afresh (see [`NODE_IDLE_TIMEOUT`]).
pub const ROUTER_IDLE_CLOSE: Duration = Duration::from_secs(4 * 60);

/// How long one poll of a node's handler may hold its call thread before it counts as blocking
/// (`NodeConfig::blocking_threshold`): far above a well-behaved poll (microseconds), far below
/// what a stalled caller notices.
pub const BLOCKING_THRESHOLD: Duration = Duration::from_millis(100);
