//! [`Masters`]: the masters a remote caller may follow, in the order given, which one it follows
//! now, and how long to pause before the next try when the one followed fails.
//!
//! A caller follows **one** master at a time (its node list, or its events) and stays with it
//! while it answers: masters do not share their registry indices, so following two at once
//! would only merge two views that the router must then reconcile. When the one followed fails
//! (connection refused, a timeout, a `5xx`, an answer it cannot read), the caller moves to the
//! next in the list **at once**, without a pause: a master that is down should cost one failed
//! request, not a backoff. Only when every master of the list has failed in a row does it pause,
//! with the one backoff of the workspace ([`Backoff`]: `retry_base` doubling to `retry_max`,
//! jittered), and then go round again. A success resets both: the next failure starts a new
//! round from the master that failed. There is no return to the first master when it comes back:
//! any master that answers is as good as another, and staying avoids flapping between them.
//!
//! Each master has its own `epoch`, so the first answer of the next master is the whole list
//! (the follower asks without a view after a failure) and the follower's restart grace keeps
//! the nodes that master has not relisted yet: the view is not lost on the way.

use std::time::Duration;

use distribution_shared::backoff::Backoff;

/// The masters of a remote caller, in order, and the one it follows now.
#[derive(Debug)]
pub(crate) struct Masters<T> {
    all: Vec<T>,
    current: usize,
    /// Failures in a row since the last success, over every master.
    failures: usize,
    backoff: Backoff,
}

impl<T> Masters<T> {
    /// Follows the first of `all` (at least one: the address parser turns an empty list into
    /// an error before this), pausing with `backoff` after each round of failures.
    pub(crate) fn new(all: Vec<T>, backoff: Backoff) -> Self {
        debug_assert!(!all.is_empty(), "at least one master");
        Self {
            all,
            current: 0,
            failures: 0,
            backoff,
        }
    }

    /// The master followed now.
    pub(crate) fn current(&self) -> &T {
        &self.all[self.current]
    }

    /// How many masters there are to fail over to, the one followed included.
    pub(crate) fn len(&self) -> usize {
        self.all.len()
    }

    /// All of them, in order.
    pub(crate) fn all(&self) -> &[T] {
        &self.all
    }

    /// The master followed answered: the next failure starts a new round, from the first pause.
    pub(crate) fn succeeded(&mut self) {
        self.failures = 0;
        self.backoff.reset();
    }

    /// The master followed failed: moves to the next one, and returns the pause before asking
    /// it: none while this round has masters left to try, the backoff's next pause once every
    /// master has failed in a row (with one master: after every failure, as before failover).
    pub(crate) fn failed(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        self.current = (self.current + 1) % self.all.len();
        if self.failures % self.all.len() == 0 {
            self.backoff.next_pause()
        } else {
            Duration::ZERO
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: Duration = Duration::from_millis(100);

    fn masters(n: usize) -> Masters<usize> {
        Masters::new((1..=n).collect(), Backoff::new(BASE, BASE * 8))
    }

    /// The master asked at each try, and the pause taken before it, while every try fails.
    fn tries(masters: &mut Masters<usize>, n: usize) -> Vec<(usize, u64)> {
        let mut seen = vec![(*masters.current(), 0)];
        for _ in 1..n {
            let pause = masters.failed().as_millis() as u64;
            seen.push((*masters.current(), pause));
        }
        seen
    }

    #[test]
    fn fails_over_in_order_at_once_and_pauses_only_after_a_whole_round() {
        let mut three = masters(3);
        assert_eq!(
            tries(&mut three, 8),
            [
                (1, 0),
                (2, 0),
                (3, 0),
                (1, 100),
                (2, 0),
                (3, 0),
                (1, 200),
                (2, 0)
            ]
        );
    }

    #[test]
    fn stays_with_the_master_that_answers_and_starts_a_new_round_from_it() {
        let mut two = masters(2);
        assert_eq!(two.failed(), Duration::ZERO); // 1 down: on to 2 at once
        assert_eq!(*two.current(), 2);
        assert_eq!(two.failed(), BASE); // 2 down too: back to 1 after a pause
        assert_eq!(two.failed(), Duration::ZERO);
        assert_eq!(*two.current(), 2);
        two.succeeded(); // 2 answers: followed from now on
        assert_eq!(*two.current(), 2);
        assert_eq!(two.failed(), Duration::ZERO); // 2 dies: on to 1 at once
        assert_eq!(*two.current(), 1);
        assert_eq!(two.failed(), BASE); // the backoff started again from its base
    }

    #[test]
    fn one_master_backs_off_after_every_failure_as_without_failover() {
        let mut one = masters(1);
        assert_eq!(
            tries(&mut one, 5),
            [(1, 0), (1, 100), (1, 200), (1, 400), (1, 800)]
        );
    }
}
