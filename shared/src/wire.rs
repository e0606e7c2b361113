//! The JSON bodies of the master's HTTP API (`/v1/nodes...`), shared by the master that answers
//! and the nodes and callers that ask.
//!
//! Request bodies reject unknown fields: a misspelt field is an error the sender sees, not a
//! setting silently ignored.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The service of a registration that names none, and of a client declared without a name
/// (`service_client!(EchoClient)`): one anonymous kind of node, as before services existed.
pub const DEFAULT_SERVICE: &str = "default";

fn default_service() -> String {
    DEFAULT_SERVICE.to_owned()
}

fn is_default_service(service: &str) -> bool {
    service == DEFAULT_SERVICE
}

/// `POST /v1/nodes`: a node announces itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    /// The node's id, chosen by the node (a UUID by default). Registering again with the same id
    /// is idempotent.
    pub id: String,
    /// The port the node's tarpc server listens on (1 to 65535). With no `addr`, the master
    /// pairs it with the IP address the registration came from, as the Go original did.
    pub port: u16,
    /// The full `host:port` callers should dial, when the connection's peer address is not it
    /// (NAT, a proxy, a container with a published port).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addr: Option<String>,
    /// How many calls the node runs at once (its capacity), if it sets one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<u32>,
    /// The tarpc service the node serves (`"calc"`); [`DEFAULT_SERVICE`] when absent. Routers
    /// of one service never call nodes of another.
    #[serde(
        default = "default_service",
        skip_serializing_if = "is_default_service"
    )]
    pub service: String,
    /// Short labels routers may filter on (`"gpu"`, `"zone=eu-1"`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Free-form details for operators (`"version": "1.4.2"`); routing ignores them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub meta: BTreeMap<String, String>,
    /// Set when the node itself is in maintenance (see [`Heartbeat::maintenance`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maintenance: Option<String>,
}

impl RegisterRequest {
    /// A registration of `id` on `port` with every optional field unset.
    pub fn new(id: impl Into<String>, port: u16) -> Self {
        Self {
            id: id.into(),
            port,
            addr: None,
            capacity: None,
            service: default_service(),
            tags: Vec::new(),
            meta: BTreeMap::new(),
            maintenance: None,
        }
    }
}

/// The master's answer to a registration or a heartbeat: the terms of the node's lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The node's id, as registered.
    pub id: String,
    /// The address the master will hand to callers.
    pub addr: String,
    /// How often the node must heartbeat, in milliseconds.
    pub heartbeat_interval_ms: u64,
    /// How long after its last heartbeat the node is evicted, in milliseconds.
    pub ttl_ms: u64,
}

/// `PUT /v1/nodes/{id}/heartbeat`: a node renews its lease and reports its load.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Heartbeat {
    /// Calls the node is running right now, from every caller.
    #[serde(default)]
    pub in_flight: u32,
    /// How many calls the node runs at once.
    #[serde(default)]
    pub capacity: Option<u32>,
    /// Calls the node has finished since it started.
    #[serde(default)]
    pub served: u64,
    /// `Some(reason)` while the node has put itself in maintenance (`NodeHandle::set_maintenance`):
    /// it stays registered but routers send it no new call. Every heartbeat carries it, so a
    /// restarted master learns it again within an interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maintenance: Option<String>,
}

/// `PUT /v1/nodes/{id}/maintenance`: an operator puts a node in maintenance or takes it out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceRequest {
    /// Whether the node is in maintenance (no new calls) from now on.
    pub enabled: bool,
    /// Why, for a human (shown in the node list and the change feed).
    #[serde(default)]
    pub reason: String,
}

/// Whether a registered node is renewing its lease on time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum NodeState {
    /// Its last heartbeat came within one and a half intervals.
    Up,
    /// It has missed a heartbeat but its lease has not run out yet.
    Late,
}

/// One node as `GET /v1/nodes` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// The node's id.
    pub id: String,
    /// The `host:port` its tarpc server answers on.
    pub addr: String,
    /// Whether its heartbeats arrive on time.
    pub state: NodeState,
    /// Calls in flight on the node, as of its last heartbeat.
    pub in_flight: u32,
    /// The node's capacity (calls at once).
    pub capacity: u32,
    /// Calls the node has served since it started, as of its last heartbeat.
    pub served: u64,
    /// Milliseconds since the node's last heartbeat (or its registration).
    pub last_heartbeat_ms: u64,
    /// The service it serves.
    #[serde(default = "default_service")]
    pub service: String,
    /// Its tags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Its metadata.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub meta: BTreeMap<String, String>,
    /// `Some(reason)` while it is in maintenance (set by an operator or by the node): it stays
    /// registered and heartbeating, and routers send it no new call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maintenance: Option<String>,
}

/// One service as `GET /v1/services` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceInfo {
    /// The service's name.
    pub name: String,
    /// How many nodes of it are registered.
    pub nodes: usize,
    /// How many of those are in maintenance.
    pub maintenance: usize,
}

/// `GET /v1/services`: every service with registered nodes, sorted by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceList {
    /// The registry's index (every service's).
    pub index: u64,
    /// The services.
    pub services: Vec<ServiceInfo>,
}

/// `GET /v1/nodes`: the registry's contents (or one service's, with `?service=`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeList {
    /// The registry's version: it grows by one at every join, leave, eviction or address change.
    /// With `?service=`, the index of the last change of that service (what a blocking query
    /// on that service waits on).
    pub index: u64,
    /// The registered nodes, sorted by id.
    pub nodes: Vec<NodeInfo>,
    /// Set while the master has stopped evicting because most renewals are missing
    /// (self-preservation): why. Silent nodes are then still listed, as `late`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub degraded: Option<String>,
    /// With `?limit=N`: the figures of every node the query admits, while `nodes` holds only the
    /// first `N` by id (what a status page of a large cluster shows).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<NodeTotals>,
}

/// The sums over every node of a [`NodeList`] asked with `?limit=`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeTotals {
    /// How many nodes.
    pub nodes: usize,
    /// How many of them are `up` (the others are `late`).
    pub up: usize,
    /// How many are in maintenance.
    pub maintenance: usize,
    /// Their calls in flight, as last reported.
    pub in_flight: u64,
    /// Their capacities.
    pub capacity: u64,
    /// The calls they have served.
    pub served: u64,
}

/// One node's load figures, in a [`NodeChanges`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeLoad {
    /// The node's id.
    pub id: String,
    /// Calls in flight on the node, as of its last heartbeat.
    pub in_flight: u32,
    /// The node's capacity.
    pub capacity: u32,
}

/// `GET /v1/changes`: what changed since a follower's view (`epoch`, `index`, `loads`), so that
/// following a cluster costs what changes, not its size.
///
/// - `full` is the whole node list when the follower has no view yet, followed another master
///   process (its `epoch` differs), or missed an event that changes the node set and is gone
///   from the master's history; `events` is then empty.
/// - Otherwise `events` are the membership events after `index` that change the node set,
///   oldest first: `join`, `leave`, `eviction`, `replacement`, `moved`, `maintenance`,
///   `resumed`. `late` and `back`, which change nothing a follower routes on, are left out.
/// - `loads` are the figures of the nodes whose load changed after the follower's `loads`
///   version (every node's when that version is too old or from another process).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeChanges {
    /// This master process's random id: indexes and load versions only compare within one.
    pub epoch: u64,
    /// The registry's index after these changes (the newest event's).
    pub index: u64,
    /// The load version after these changes: it grows by one at each change of a node's load.
    pub loads_index: u64,
    /// The whole list, sorted by id, instead of `events` (see above).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full: Option<Vec<NodeInfo>>,
    /// The membership events after the follower's index.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<MembershipEvent>,
    /// The nodes whose load changed after the follower's load version.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub loads: Vec<NodeLoad>,
}

/// What happened to a node, in a [`MembershipEvent`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum EventKind {
    /// It registered.
    Join,
    /// It deregistered (a graceful stop).
    Leave,
    /// Its lease ran out: no heartbeat for the TTL.
    Eviction,
    /// A node with another id registered on its address (the same process, restarted).
    Replacement,
    /// It registered again from another address.
    Moved,
    /// It missed a heartbeat (one and a half intervals overdue); its lease still runs.
    Late,
    /// A heartbeat arrived after it was late.
    Back,
    /// It went into maintenance (by an operator or by itself): no new calls.
    Maintenance,
    /// It came out of maintenance: it takes calls again.
    Resumed,
}

/// One change of the node set, as `GET /v1/events` sends it (one server-sent event each, its
/// `id` the same `index`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembershipEvent {
    /// The registry's index after this change: it grows by one per event, and is the index
    /// blocking queries see. It starts from zero in every master process.
    pub index: u64,
    /// When it happened, in milliseconds since the Unix epoch (the master's clock).
    pub time_ms: u64,
    /// What happened.
    pub kind: EventKind,
    /// The node's id.
    pub node: String,
    /// The node's address (for `moved`, the new one).
    pub addr: String,
    /// The node's service.
    #[serde(default = "default_service")]
    pub service: String,
    /// The node's tags (on `join` and `moved`, which bring a node into a follower's view).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Why, for a human: "deregistered", "no heartbeat for 3012 ms", ...
    pub reason: String,
}

/// The body of every 4xx/5xx answer of the master's HTTP API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What was wrong, for a human.
    pub error: String,
}

/// The detail of the tarpc `ServerError` a node at capacity answers with. The router matches on
/// this text, not on the error's `kind`: tarpc 0.38 with the bincode transport does not carry
/// `io::ErrorKind` across intact (it encodes the kind as a signed and decodes it as an unsigned
/// integer), so the kind that arrives is not the kind that was sent.
pub const AT_CAPACITY: &str = "node at capacity";

/// The detail of the `ServerError` a node answers when every one of its call threads is held by
/// a handler that has not yielded for longer than its blocking threshold (a CPU loop in an
/// `async fn`): the call would wait behind work that does not yield. The node did no work: the
/// router treats it like [`AT_CAPACITY`].
pub const ALL_THREADS_HELD: &str =
    "node busy: every call thread is held by a handler that does not yield";

/// The detail of the `ServerError` tarpc answers when one connection has more requests unanswered
/// than the node allows per connection (tarpc's `MaxRequests`). The node did no work: the router
/// treats it like [`AT_CAPACITY`].
pub const THROTTLED: &str = "server throttled the request.";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_request_rejects_unknown_fields_and_keeps_optional_ones_optional() {
        let ok: RegisterRequest = serde_json::from_str(r#"{"id":"a","port":7}"#).unwrap();
        assert_eq!(ok.addr, None);
        assert_eq!(ok.port, 7);
        assert_eq!(
            ok,
            RegisterRequest::new("a", 7),
            "no service is the default service"
        );
        assert!(serde_json::from_str::<RegisterRequest>(r#"{"id":"a","port":7,"x":1}"#).is_err());
        assert!(serde_json::from_str::<RegisterRequest>(r#"{"id":"a","port":70000}"#).is_err());
    }
}
