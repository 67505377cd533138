//! The entity stores of recent decisions, reused while the principal and resource are the same.
//!
//! Building a decision's entities (cedar evaluates every attribute into its value types and
//! closes the ancestry) is about half of a decision's cost, and the principals and resources
//! repeat: a workload renews the same SVIDs, a service asks about the same endpoints. The store is
//! a function of the request's principal and resource alone (the context and the clock are not
//! in it), so a store built once answers every later decision about the same pair exactly.
//!
//! The cache belongs to one loaded policy set (a reload starts empty), holds at most
//! [`ENTITY_CACHE_CAPACITY`] stores and is emptied when full: bounded memory, no eviction order
//! to keep. Only requests of a shape proven against the schema use it, so a cached store never
//! skips a check the request needed.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::RwLock;

use cedar_policy::Entities;

use crate::error::PolicyError;
use crate::request::{Principal, ResourceRef};

/// The most entity stores one policy set keeps (each a few hundred bytes to a few KiB).
pub(crate) const ENTITY_CACHE_CAPACITY: usize = 4096;

/// Entity stores keyed by the hash of (principal, resource), with the pair kept to rule out a
/// collision.
#[derive(Debug, Default)]
pub(crate) struct EntityCache {
    hasher: RandomState,
    stores: RwLock<HashMap<u64, Cached>>,
}

#[derive(Debug)]
struct Cached {
    principal: Principal,
    resource: ResourceRef,
    entities: Entities,
}

impl EntityCache {
    /// The store for `principal` and `resource`: the cached one, or `build`'s, which is then
    /// cached.
    pub(crate) fn get_or_build(
        &self,
        principal: &Principal,
        resource: &ResourceRef,
        build: impl FnOnce() -> Result<Entities, PolicyError>,
    ) -> Result<Entities, PolicyError> {
        let key = self.hasher.hash_one((principal, resource));
        // A poisoned lock only means another decision panicked mid-insert; the map is still a
        // valid map of complete stores.
        {
            let stores = self
                .stores
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(hit) = stores.get(&key)
                && hit.principal == *principal
                && hit.resource == *resource
            {
                return Ok(hit.entities.clone());
            }
        }
        let entities = build()?;
        let mut stores = self
            .stores
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if stores.len() >= ENTITY_CACHE_CAPACITY {
            stores.clear();
        }
        stores.insert(
            key,
            Cached {
                principal: principal.clone(),
                resource: resource.clone(),
                entities: entities.clone(),
            },
        );
        Ok(entities)
    }

    /// How many stores are held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.stores
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use sigil_spiffe::SpiffeId;

    use super::*;

    fn workload(i: usize, owner: &str) -> Principal {
        Principal::Workload {
            spiffe_id: SpiffeId::parse(&format!("spiffe://acme.org/w{i}")).unwrap(),
            selectors: vec![],
            owner: owner.to_owned(),
            labels: vec![],
            agent: None,
        }
    }

    fn resource(id: &str) -> ResourceRef {
        ResourceRef {
            id: id.to_owned(),
            kind: "svid".to_owned(),
        }
    }

    #[test]
    fn a_pair_is_built_once_and_any_difference_builds_again() {
        let cache = EntityCache::default();
        let builds = Cell::new(0);
        let build = || {
            builds.set(builds.get() + 1);
            Ok(Entities::empty())
        };
        cache
            .get_or_build(&workload(1, "a"), &resource("r"), build)
            .unwrap();
        cache
            .get_or_build(&workload(1, "a"), &resource("r"), build)
            .unwrap();
        assert_eq!(builds.get(), 1);
        // Another owner, another resource kind or id: each is another store.
        cache
            .get_or_build(&workload(1, "b"), &resource("r"), build)
            .unwrap();
        let mut other_kind = resource("r");
        other_kind.kind = "database".to_owned();
        cache
            .get_or_build(&workload(1, "a"), &other_kind, build)
            .unwrap();
        cache
            .get_or_build(&workload(1, "a"), &resource("s"), build)
            .unwrap();
        assert_eq!(builds.get(), 4);
        // A failed build caches nothing.
        let failed = cache.get_or_build(&workload(2, "a"), &resource("r"), || {
            Err(PolicyError::Request {
                message: "no".to_owned(),
            })
        });
        assert!(failed.is_err());
        assert_eq!(cache.len(), 4);
    }

    #[test]
    fn the_cache_never_holds_more_than_its_capacity() {
        let cache = EntityCache::default();
        for i in 0..ENTITY_CACHE_CAPACITY + 10 {
            cache
                .get_or_build(&workload(i, "a"), &resource("r"), || Ok(Entities::empty()))
                .unwrap();
            assert!(cache.len() <= ENTITY_CACHE_CAPACITY);
        }
        assert_eq!(cache.len(), 10);
    }
}
