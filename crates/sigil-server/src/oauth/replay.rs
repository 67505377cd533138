//! One-time use of RFC 7523 client assertions (§3, item 7): the `jti` of every accepted
//! assertion is remembered until the assertion expires, and a second use is refused. Bounded:
//! expired ids are dropped as new ones arrive, and when [`MAX_REMEMBERED`] unexpired ids are held
//! new assertions are refused (fail closed) rather than forgetting ids that could be replayed.
//!
//! Held per server: replicas do not share it, so an assertion could be used once at each replica.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

/// Most unexpired assertion ids held.
pub const MAX_REMEMBERED: usize = 200_000;

/// Why an assertion id was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayRefusal {
    /// The id was used before and has not expired.
    Replayed,
    /// [`MAX_REMEMBERED`] unexpired ids are held.
    Full,
}

#[derive(Debug, Default)]
struct Seen {
    /// Id → expiry.
    ids: HashMap<String, i64>,
    /// Expiry → ids, for pruning in expiry order.
    by_expiry: BTreeMap<i64, Vec<String>>,
}

/// The ids of accepted assertions, until they expire.
#[derive(Debug, Default)]
pub struct ReplayCache {
    seen: Mutex<Seen>,
}

impl ReplayCache {
    /// Records `id` (whose assertion expires at `expires_at`) as used at `now`, or refuses it.
    pub fn first_use(&self, id: &str, expires_at: i64, now: i64) -> Result<(), ReplayRefusal> {
        let Ok(mut seen) = self.seen.lock() else {
            return Err(ReplayRefusal::Full);
        };
        // Drop what expired.
        let live = seen.by_expiry.split_off(&now);
        let expired = std::mem::replace(&mut seen.by_expiry, live);
        for id in expired.into_values().flatten() {
            seen.ids.remove(&id);
        }
        if seen.ids.get(id).is_some_and(|at| *at >= now) {
            return Err(ReplayRefusal::Replayed);
        }
        if seen.ids.len() >= MAX_REMEMBERED {
            return Err(ReplayRefusal::Full);
        }
        seen.ids.insert(id.to_owned(), expires_at);
        seen.by_expiry
            .entry(expires_at)
            .or_default()
            .push(id.to_owned());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_use_before_expiry_is_refused() {
        let cache = ReplayCache::default();
        assert_eq!(cache.first_use("a", 100, 10), Ok(()));
        assert_eq!(cache.first_use("b", 100, 10), Ok(()));
        assert_eq!(cache.first_use("a", 100, 50), Err(ReplayRefusal::Replayed));
    }

    #[test]
    fn expired_ids_are_forgotten() {
        let cache = ReplayCache::default();
        cache.first_use("a", 100, 10).unwrap();
        // Past its expiry the assertion itself is refused as expired; the id may go.
        assert_eq!(cache.first_use("a", 300, 101), Ok(()));
        assert_eq!(cache.seen.lock().unwrap().ids.len(), 1);
    }
}
