//! Which server address the session connects to next, and whether it waits first: a pure state
//! machine over the outcomes of its connections (no sockets, no clock), driven by `session`.
//!
//! The addresses are tried in order, starting from the last one that worked. A failed
//! connection (unreachable, refused TLS, a stream that ended) moves to the next address at once;
//! only a full round of failures in a row (every address failed once since the last connection
//! that opened a sync stream) waits, with the capped exponential backoff. The backoff starts
//! again from its first step once a server has served the agent (a sync message, a renewal), not
//! merely accepted its stream, so a replica that accepts and then fails at once cannot make a
//! fleet reconnect in a tight loop.

use std::time::Duration;

/// When to make the next connection attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NextAttempt {
    /// At once, on the next address.
    Now,
    /// After waiting about this long (the caller adds jitter), starting a new round.
    After(Duration),
}

/// The agent's server addresses and where it stands among them.
#[derive(Debug, Clone)]
pub(crate) struct ServerFailover {
    /// Never empty.
    addresses: Vec<String>,
    current: usize,
    /// Failed attempts in a row since a sync stream last opened (or since the last wait).
    failures_in_round: usize,
    first_backoff: Duration,
    backoff: Duration,
    max_backoff: Duration,
}

impl ServerFailover {
    /// Failover over `addresses`, starting with the one at index `start` (wrapped into range),
    /// waiting `first_backoff` after the first full round of failures, doubling up to
    /// `max_backoff`. `None` when `addresses` is empty.
    pub(crate) fn new(
        addresses: Vec<String>,
        start: usize,
        first_backoff: Duration,
        max_backoff: Duration,
    ) -> Option<Self> {
        let current = start.checked_rem(addresses.len())?;
        Some(Self {
            addresses,
            current,
            failures_in_round: 0,
            first_backoff,
            backoff: first_backoff.min(max_backoff),
            max_backoff,
        })
    }

    /// The address to connect to now.
    pub(crate) fn address(&self) -> &str {
        self.addresses.get(self.current).map_or("", String::as_str)
    }

    /// A sync stream opened on the current address: it is the last one that worked, and a new
    /// round of failures starts from it.
    pub(crate) fn connected(&mut self) {
        self.failures_in_round = 0;
    }

    /// The current server answered (a sync message, a renewal): the next full round of failures
    /// waits the first backoff step again.
    pub(crate) fn served(&mut self) {
        self.failures_in_round = 0;
        self.backoff = self.first_backoff.min(self.max_backoff);
    }

    /// The attempt on the current address failed, or its connection ended: moves to the next
    /// address and says whether to try it at once or after a wait (when every address has
    /// failed in a row; the wait after that doubles, up to the maximum).
    pub(crate) fn failed(&mut self) -> NextAttempt {
        self.current = self
            .current
            .checked_add(1)
            .and_then(|i| i.checked_rem(self.addresses.len()))
            .unwrap_or(0);
        self.failures_in_round = self.failures_in_round.saturating_add(1);
        if self.failures_in_round < self.addresses.len() {
            return NextAttempt::Now;
        }
        self.failures_in_round = 0;
        let wait = self.backoff;
        self.backoff = self.backoff.saturating_mul(2).min(self.max_backoff);
        NextAttempt::After(wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIRST: Duration = Duration::from_millis(250);
    const MAX: Duration = Duration::from_secs(2);

    fn failover(addresses: &[&str], start: usize) -> ServerFailover {
        let addresses = addresses.iter().map(|a| (*a).to_owned()).collect();
        ServerFailover::new(addresses, start, FIRST, MAX).unwrap()
    }

    /// Fails the current address and returns (the address failed, what comes next).
    fn fail(f: &mut ServerFailover) -> (String, NextAttempt) {
        let addr = f.address().to_owned();
        (addr, f.failed())
    }

    #[test]
    fn an_empty_address_list_is_refused() {
        assert!(ServerFailover::new(Vec::new(), 0, FIRST, MAX).is_none());
    }

    #[test]
    fn the_start_index_wraps_into_range() {
        assert_eq!(failover(&["a:1", "b:1"], 3).address(), "b:1");
    }

    #[test]
    fn unreachable_addresses_are_tried_in_order_at_once_then_the_round_waits() {
        let mut f = failover(&["a:1", "b:1", "c:1"], 0);
        assert_eq!(fail(&mut f), ("a:1".into(), NextAttempt::Now));
        assert_eq!(fail(&mut f), ("b:1".into(), NextAttempt::Now));
        assert_eq!(fail(&mut f), ("c:1".into(), NextAttempt::After(FIRST)));
        // The next round starts from the first address again, and waits twice as long.
        assert_eq!(fail(&mut f), ("a:1".into(), NextAttempt::Now));
        assert_eq!(fail(&mut f), ("b:1".into(), NextAttempt::Now));
        assert_eq!(fail(&mut f), ("c:1".into(), NextAttempt::After(FIRST * 2)));
    }

    #[test]
    fn the_wait_doubles_up_to_the_maximum() {
        let mut f = failover(&["a:1"], 0);
        let waits: Vec<NextAttempt> = (0..6).map(|_| f.failed()).collect();
        let ms = |m| NextAttempt::After(Duration::from_millis(m));
        assert_eq!(
            waits,
            [ms(250), ms(500), ms(1_000), ms(2_000), ms(2_000), ms(2_000)]
        );
    }

    #[test]
    fn a_dead_first_address_is_skipped_and_the_working_one_is_kept() {
        let mut f = failover(&["dead:1", "live:1"], 0);
        assert_eq!(fail(&mut f), ("dead:1".into(), NextAttempt::Now));
        assert_eq!(f.address(), "live:1");
        f.connected();
        f.served();
        // A reconnection (after renewing the agent SVID) stays where it is.
        assert_eq!(f.address(), "live:1");
    }

    #[test]
    fn when_the_working_server_goes_away_the_next_address_is_tried_at_once() {
        let mut f = failover(&["a:1", "b:1"], 0);
        f.connected();
        f.served();
        // a's stream ends: b at once, then (a full round failed) a again after the first step.
        assert_eq!(fail(&mut f), ("a:1".into(), NextAttempt::Now));
        assert_eq!(fail(&mut f), ("b:1".into(), NextAttempt::After(FIRST)));
        assert_eq!(f.address(), "a:1");
    }

    #[test]
    fn rounds_start_from_the_last_address_that_worked() {
        let mut f = failover(&["a:1", "b:1", "c:1"], 0);
        assert_eq!(fail(&mut f), ("a:1".into(), NextAttempt::Now));
        f.connected();
        f.served();
        assert_eq!(f.address(), "b:1");
        assert_eq!(fail(&mut f), ("b:1".into(), NextAttempt::Now));
        assert_eq!(fail(&mut f), ("c:1".into(), NextAttempt::Now));
        assert_eq!(fail(&mut f), ("a:1".into(), NextAttempt::After(FIRST)));
        assert_eq!(
            f.address(),
            "b:1",
            "the next round starts from b, which worked"
        );
    }

    #[test]
    fn a_server_that_accepts_streams_and_serves_nothing_still_backs_off_more_each_round() {
        let mut f = failover(&["a:1"], 0);
        let mut waits = Vec::new();
        for _ in 0..3 {
            f.connected();
            waits.push(f.failed());
        }
        assert_eq!(
            waits,
            [
                NextAttempt::After(FIRST),
                NextAttempt::After(FIRST * 2),
                NextAttempt::After(FIRST * 4)
            ]
        );
    }

    #[test]
    fn serving_resets_the_backoff() {
        let mut f = failover(&["a:1", "b:1"], 0);
        for _ in 0..4 {
            f.failed();
        }
        f.connected();
        f.served();
        assert_eq!(fail(&mut f), ("a:1".into(), NextAttempt::Now));
        assert_eq!(fail(&mut f), ("b:1".into(), NextAttempt::After(FIRST)));
    }

    #[test]
    fn a_first_backoff_above_the_maximum_is_capped() {
        let mut f = ServerFailover::new(vec!["a:1".into()], 0, MAX * 4, MAX).unwrap();
        assert_eq!(f.failed(), NextAttempt::After(MAX));
    }
}
