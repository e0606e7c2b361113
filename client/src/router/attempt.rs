//! One call's attempts, one node at a time: the failover loop of [`CallRouter::call_with`] and a
//! single attempt on one node (connect, call, and what its outcome means for the node).
//!
//! Kept apart from `mod.rs` (configuration and the router's shape) and from `hedge.rs` (backup
//! requests, which run two of these attempts at once): the outcome rules here are shared by both.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use distribution_shared::ServiceClient;
use distribution_shared::wire::{ALL_THREADS_HELD, AT_CAPACITY, THROTTLED};
use tarpc::client::RpcError;
use tarpc::context::Context;
use tracing::Instrument;

use super::endpoint::{Conn, Endpoint};
use super::error::TransportCause;
use super::{CallError, CallRouter, Reply};

pub(super) enum Attempt {
    /// The attempt failed in a way another node may not: try one.
    Retry(CallError),
    /// The node left the cluster during the attempt: try another one, without counting it
    /// against the attempts (a node leaving is not a failure; when several leave at once, as
    /// when a service is scaled down, a call could otherwise run out of attempts).
    Gone(CallError),
    /// The call is over.
    Fail(CallError),
}

/// The failed attempts of a call so far, for the plain and the hedged attempt loops alike.
#[derive(Default)]
pub(super) struct Failures {
    /// Failures that count against the call's attempts (a node leaving does not).
    pub(super) counted: u32,
    last: Option<CallError>,
}

impl Failures {
    /// Records a failed attempt; the call's final error when the failure ends it.
    pub(super) fn record(&mut self, failure: Attempt) -> Result<(), CallError> {
        match failure {
            Attempt::Fail(err) => return Err(err),
            Attempt::Retry(err) => {
                tracing::debug!(error = %err, "attempt failed, trying another node");
                self.counted += 1;
                self.last = Some(err);
            }
            Attempt::Gone(err) => {
                tracing::debug!(error = %err, "the node left, trying another one");
                self.last = Some(err);
            }
        }
        Ok(())
    }

    /// The error a call ends with after trying `tried` nodes without an answer.
    pub(super) fn into_error(self, tried: usize) -> CallError {
        match self.last {
            Some(CallError::Transport {
                node,
                reason,
                source,
                ..
            }) => CallError::Transport {
                node,
                attempts: tried as u32,
                reason,
                source,
            },
            Some(other) => other,
            None => CallError::NoNodeAvailable,
        }
    }
}

/// What one call may do, resolved from the router's config and the call's options.
pub(super) struct Plan {
    pub(super) deadline: Instant,
    pub(super) budget: Duration,
    pub(super) attempt_timeout: Option<Duration>,
    pub(super) idempotent: bool,
    /// The call's trace id, sent with every attempt: the node logs it too.
    pub(super) trace: tarpc::trace::TraceId,
}

impl<C: ServiceClient> CallRouter<C> {
    /// Runs a call's attempts one after another: a failed attempt moves the call to another
    /// node, up to `attempts` failures, all within the plan's deadline.
    pub(super) async fn sequential<T, F, Fut>(
        &self,
        plan: &Plan,
        attempts: u32,
        f: &F,
    ) -> Result<Reply<T>, CallError>
    where
        F: Fn(Conn<C>, Context) -> Fut,
        Fut: Future<Output = Result<T, RpcError>>,
    {
        let mut tried: Vec<Arc<str>> = Vec::new();
        // Attempts on nodes that left do not count. Bounded anyway: each node is tried once, and
        // the deadline spans every attempt.
        let mut failures = Failures::default();
        while failures.counted < attempts {
            let Some(in_flight) = self.shared.pick(&tried) else {
                break;
            };
            let endpoint = in_flight.endpoint().clone();
            tried.push(endpoint.node.id.clone());
            let attempt = tried.len() as u32;
            crate::observe::attempt(attempt);
            let span = tracing::debug_span!("call", node = %endpoint.node, attempt);
            let result = self.attempt(&endpoint, plan, f).instrument(span).await;
            match result {
                Ok(value) => {
                    in_flight.served();
                    endpoint.mark_ok();
                    return Ok(Reply {
                        value,
                        node: endpoint.node.clone(),
                        attempts: attempt,
                        hedged: false,
                    });
                }
                Err(failure) => failures.record(failure)?,
            }
        }
        Err(failures.into_error(tried.len()))
    }

    pub(super) async fn attempt<T, F, Fut>(
        &self,
        endpoint: &Arc<Endpoint<C>>,
        plan: &Plan,
        f: &F,
    ) -> Result<T, Attempt>
    where
        F: Fn(Conn<C>, Context) -> Fut,
        Fut: Future<Output = Result<T, RpcError>>,
    {
        let config = &self.shared.config;
        let backoff = &self.shared.eject_backoff;
        let node = &endpoint.node;
        let exceeded = || {
            Attempt::Fail(CallError::DeadlineExceeded {
                node: Some(node.clone()),
                deadline: plan.budget,
            })
        };
        let transport = |reason: String, source: Option<TransportCause>| {
            Attempt::Retry(CallError::Transport {
                node: node.clone(),
                attempts: 1,
                reason,
                source,
            })
        };
        // An idempotent call with an attempt timeout waits for a connection at most that long
        // too, then moves on (the dial goes on for the calls that still wait on it).
        let left = plan.deadline.saturating_duration_since(Instant::now());
        let (connect_limit, connect_by_attempt) = match plan.attempt_timeout {
            Some(per_attempt) if plan.idempotent && per_attempt < left => (per_attempt, true),
            _ => (left, false),
        };
        let connect = tokio::time::timeout(
            connect_limit,
            endpoint.client(
                config.connect_timeout,
                config.max_frame_len,
                config.tls.as_ref(),
                self.shared.key.as_ref(),
            ),
        );
        let (generation, client) = match connect.await {
            Err(_) if connect_by_attempt => {
                endpoint.mark_failed(None, backoff);
                return Err(transport(
                    format!("no connection within {connect_limit:?}"),
                    None,
                ));
            }
            Err(_) => return Err(exceeded()),
            Ok(Err(err)) => {
                endpoint.mark_failed(None, backoff);
                return Err(transport("connect".into(), Some(Arc::new(err))));
            }
            Ok(Ok(found)) => found,
        };
        let mut ctx = tarpc::context::current();
        ctx.deadline = plan.deadline;
        ctx.trace_context.trace_id = plan.trace;
        let left = plan.deadline.saturating_duration_since(Instant::now());
        let (limit, limited_by_attempt) = match plan.attempt_timeout {
            Some(per_attempt) if plan.idempotent && per_attempt < left => (per_attempt, true),
            _ => (left, false),
        };
        let call = tokio::time::timeout(limit, f(client, ctx));
        let outcome = if plan.idempotent {
            tokio::select! {
                outcome = call => outcome,
                _ = endpoint.removed() => {
                    return Err(Attempt::Gone(CallError::Transport {
                        node: node.clone(),
                        attempts: 1,
                        reason: "the node left the cluster during the call".into(),
                        source: None,
                    }));
                }
            }
        } else {
            call.await
        };
        match outcome {
            Err(_) if limited_by_attempt => {
                // A node that does not answer in time is as good as gone for this call, and its
                // connection may be stuck: drop it, eject the node, try another one.
                endpoint.mark_failed(Some(generation), backoff);
                Err(transport(format!("no answer within {limit:?}"), None))
            }
            Err(_) | Ok(Err(RpcError::DeadlineExceeded)) => Err(exceeded()),
            Ok(Ok(value)) => Ok(value),
            Ok(Err(RpcError::Server(err)))
                if err.detail == AT_CAPACITY
                    || err.detail == THROTTLED
                    || err.detail == ALL_THREADS_HELD =>
            {
                // The node refused the call before doing any work (at capacity): another node
                // may take it, and this one is healthy, so it is not ejected.
                Err(transport(format!("refused: {}", err.detail), None))
            }
            Ok(Err(RpcError::Server(err))) => {
                endpoint.record_error(config.eject_after_errors, backoff);
                let err = CallError::Remote {
                    node: node.clone(),
                    kind: err.kind,
                    detail: err.detail,
                };
                Err(if plan.idempotent {
                    Attempt::Retry(err)
                } else {
                    Attempt::Fail(err)
                })
            }
            Ok(Err(err)) => {
                endpoint.mark_failed(Some(generation), backoff);
                Err(transport("call".into(), Some(Arc::new(err))))
            }
        }
    }
}
