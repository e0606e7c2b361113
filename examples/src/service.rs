//! The demo's tarpc service, `Calc`, and the node-side implementation.
//!
//! The Go original registered `Arith.Sum` on its nodes and counted palindromes in the gateway's
//! scatter. Here both computations are methods of one service, because a node serves one tarpc
//! service on its port: `Calc::sum` (the original's `Arith.Sum`) and `Calc::palindromes`
//! (a chunk of the `/palindrom` count). `Calc::spin` is there for the tests only: the
//! anti-pattern of CPU work inside an `async fn`, which the node must survive.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tarpc::context::Context;

use crate::palindrome;
use distribution_node::work::{self, Stopped};
use tarpc::client::RpcError;

/// Why a sum has no answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum SumError {
    /// The exact sum does not fit in an `i64`.
    #[error("the sum overflows a 64-bit integer")]
    Overflow,
}

/// The demo's computations.
#[tarpc::service]
pub trait Calc {
    /// Adds `values` exactly (checked arithmetic), after the node's simulated delay.
    async fn sum(values: Vec<i64>) -> Result<i64, SumError>;
    /// Counts the binary palindromes in `start..=end`. `Stopped` only when the call's deadline
    /// passed ([`palindromes_answer`] turns it into a deadline exceeded).
    async fn palindromes(start: u64, end: u64) -> Result<u64, Stopped>;
    /// Busy-loops for `millis` milliseconds (at most [`MAX_SPIN`]) inside the async handler,
    /// without ever yielding, and answers how long it spun, in milliseconds.
    ///
    /// **The anti-pattern, on purpose**: CPU work in an `async fn` holds a worker of the node's
    /// runtime until it returns (no deadline or cancel can stop it), so that runtime's other
    /// calls wait. The node's own lifecycle runs on its own thread, so such calls cannot get it
    /// evicted (`examples/tests/cpu_starvation.rs` checks that); real CPU work belongs in
    /// [`work::run_blocking`], as `palindromes` does. Bounded so that no caller can make a node
    /// spin for long.
    async fn spin(millis: u64) -> u64;
}

/// The longest one [`Calc::spin`] call spins: 60 s.
pub const MAX_SPIN: Duration = Duration::from_secs(60);

distribution_shared::service_client!(CalcClient, "calc");

/// The node-side implementation of [`Calc`].
#[derive(Debug, Clone, Default)]
pub struct CalcServer {
    /// How long `sum` sleeps before answering, to simulate a slow computation (the Go example
    /// slept one second).
    pub sum_delay: Duration,
}

impl Calc for CalcServer {
    async fn sum(self, _: Context, values: Vec<i64>) -> Result<i64, SumError> {
        if !self.sum_delay.is_zero() {
            tokio::time::sleep(self.sum_delay).await;
        }
        checked_sum(&values)
    }

    async fn palindromes(self, ctx: Context, start: u64, end: u64) -> Result<u64, Stopped> {
        // CPU-bound: off the async workers (the node keeps answering heartbeats), on the node's
        // bounded pool, and stopped within a slice when the call is cancelled or times out.
        work::run_blocking(&ctx, move |stop| {
            palindrome::count_range_until(start, end, || stop.requested())
        })
        .await?
        .ok_or(Stopped)
    }

    async fn spin(self, _: Context, millis: u64) -> u64 {
        let spin = Duration::from_millis(millis).min(MAX_SPIN);
        let started = Instant::now();
        // No `.await` in the loop: the worker is held until the time is up.
        while started.elapsed() < spin {
            std::hint::black_box(started);
        }
        u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

/// The answer of a `palindromes` call as a caller sees it: a node that stopped the count because
/// the call's deadline passed reports it as that, a deadline exceeded.
pub fn palindromes_answer(answer: Result<Result<u64, Stopped>, RpcError>) -> Result<u64, RpcError> {
    answer.and_then(|count| count.map_err(|Stopped| RpcError::DeadlineExceeded))
}

/// The exact sum of `values`, or [`SumError::Overflow`] when it does not fit in an `i64`
/// (partial sums may leave the range and come back: only the result counts).
pub fn checked_sum(values: &[i64]) -> Result<i64, SumError> {
    let exact: i128 = values.iter().map(|&v| i128::from(v)).sum();
    i64::try_from(exact).map_err(|_| SumError::Overflow)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sum_is_exact_or_refused() {
        assert_eq!(checked_sum(&[2, 4, 6]), Ok(12));
        assert_eq!(checked_sum(&[]), Ok(0));
        assert_eq!(checked_sum(&[i64::MAX, 1]), Err(SumError::Overflow));
        assert_eq!(checked_sum(&[i64::MIN, -1]), Err(SumError::Overflow));
        assert_eq!(checked_sum(&[i64::MAX, 1, -1]), Ok(i64::MAX));
    }
}
