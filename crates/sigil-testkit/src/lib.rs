//! Test support shared by Sigil's crates, kept out of production code: [`FakeClock`], a
//! [`Clock`] that moves only when a test says so, so rotation, renewal and expiry are tested
//! without sleeping. Only ever a dev-dependency (deny.toml refuses it anywhere else).

#![forbid(unsafe_code)]

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use sigil_spiffe::Clock;

/// A clock that only moves when told to; clones share one time.
#[derive(Debug, Clone)]
pub struct FakeClock(Arc<Mutex<SystemTime>>);

impl FakeClock {
    /// A fake clock set to `start`.
    pub fn new(start: SystemTime) -> Self {
        Self(Arc::new(Mutex::new(start)))
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) += by;
    }

    /// Sets the clock to `to`.
    pub fn set(&self, to: SystemTime) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = to;
    }
}

impl Clock for FakeClock {
    fn now(&self) -> SystemTime {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_the_time_and_it_moves_only_when_told() {
        let start = sigil_spiffe::time::from_unix_secs(1_700_000_000);
        let clock = FakeClock::new(start);
        let other = clock.clone();
        assert_eq!(other.now(), start);
        clock.advance(Duration::from_secs(90));
        assert_eq!(other.unix_secs(), 1_700_000_090);
        other.set(start);
        assert_eq!(clock.now(), start);
    }
}
