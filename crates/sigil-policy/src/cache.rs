//! The entity stores of recent decisions, reused while the principal and resource are the same.
//!
//! Building a decision's entities (cedar evaluates every attribute into its value types and
//! closes the ancestry) is about half of a decision's cost, and the principals and resources
//! repeat: a workload renews the same SVIDs, a service asks about the same endpoints. The store is
//! a function of the request's principal and resource alone (the context and the clock are not
//! in it), so a store built once answers every later decision about the same pair exactly.
//!
//! The cache belongs to one loaded policy set (a reload starts empty), holds at most
//! [`ENTITY_CACHE_CAPACITY`] stores built from at most [`ENTITY_CACHE_BUDGET_BYTES`] of request
//! text, and is emptied when either is reached: bounded memory, no eviction order to keep. A
//! principal and resource of more than [`MAX_CACHED_REQUEST_BYTES`] of text (a caller of
//! `/authz/v1/decide` may describe a principal with long lists) are decided without it. Only
//! requests of a shape proven against the schema use it, so a cached store never skips a check the
//! request needed.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::RwLock;

use cedar_policy::Entities;

use crate::error::PolicyError;
use crate::request::{AgentRef, Principal, ResourceRef};

/// The most entity stores one policy set keeps (each a few hundred bytes to a few KiB).
pub(crate) const ENTITY_CACHE_CAPACITY: usize = 4096;
/// The most request text (principal and resource strings) the stores of one set are built from.
pub(crate) const ENTITY_CACHE_BUDGET_BYTES: usize = 4 * 1024 * 1024;
/// A principal and resource with more text than this are not cached.
pub(crate) const MAX_CACHED_REQUEST_BYTES: usize = 16 * 1024;

/// Entity stores keyed by the hash of (principal, resource), with the pair kept to rule out a
/// collision.
#[derive(Debug, Default)]
pub(crate) struct EntityCache {
    hasher: RandomState,
    stores: RwLock<Stores>,
}

#[derive(Debug, Default)]
struct Stores {
    by_key: HashMap<u64, Cached>,
    /// The request text of the stores held, in bytes.
    bytes: usize,
}

#[derive(Debug)]
struct Cached {
    principal: Principal,
    resource: ResourceRef,
    entities: Entities,
    bytes: usize,
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
        let bytes = text_bytes(principal, resource);
        if bytes > MAX_CACHED_REQUEST_BYTES {
            return build();
        }
        let key = self.hasher.hash_one((principal, resource));
        // A poisoned lock only means another decision panicked mid-insert; the map is still a
        // valid map of complete stores.
        {
            let stores = self
                .stores
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(hit) = stores.by_key.get(&key)
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
        if stores.by_key.len() >= ENTITY_CACHE_CAPACITY
            || stores.bytes.saturating_add(bytes) > ENTITY_CACHE_BUDGET_BYTES
        {
            stores.by_key.clear();
            stores.bytes = 0;
        }
        let replaced = stores.by_key.insert(
            key,
            Cached {
                principal: principal.clone(),
                resource: resource.clone(),
                entities: entities.clone(),
                bytes,
            },
        );
        stores.bytes = stores
            .bytes
            .saturating_add(bytes)
            .saturating_sub(replaced.map_or(0, |old| old.bytes));
        Ok(entities)
    }

    /// How many stores are held, and the request text they were built from.
    #[cfg(test)]
    pub(crate) fn size(&self) -> (usize, usize) {
        let stores = self
            .stores
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        (stores.by_key.len(), stores.bytes)
    }
}

/// The text a principal and resource carry, in bytes: what their entity store grows with.
fn text_bytes(principal: &Principal, resource: &ResourceRef) -> usize {
    let strings = |list: &[String]| list.iter().map(String::len).sum::<usize>();
    let agent = |agent: &AgentRef| {
        agent.spiffe_id.as_str().len()
            + agent.attestation_type.len()
            + strings(&agent.node_selectors)
    };
    let principal = match principal {
        Principal::Workload {
            spiffe_id,
            selectors,
            owner,
            labels,
            agent: parent,
        } => {
            spiffe_id.as_str().len()
                + strings(selectors)
                + owner.len()
                + strings(labels)
                + parent.as_ref().map_or(0, agent)
        }
        Principal::Agent(a) => agent(a),
        Principal::External {
            issuer,
            subject,
            spiffe_id,
            attributes,
        } => {
            issuer.len()
                + subject.len()
                + spiffe_id.as_ref().map_or(0, |id| id.as_str().len())
                + attributes
                    .iter()
                    .map(|(k, v)| k.len() + v.len())
                    .sum::<usize>()
        }
    };
    principal + resource.id.len() + resource.kind.len()
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
        assert_eq!(cache.size().0, 4);
    }

    #[test]
    fn the_cache_never_holds_more_than_its_capacity() {
        let cache = EntityCache::default();
        for i in 0..ENTITY_CACHE_CAPACITY + 10 {
            cache
                .get_or_build(&workload(i, "a"), &resource("r"), || Ok(Entities::empty()))
                .unwrap();
            assert!(cache.size().0 <= ENTITY_CACHE_CAPACITY);
        }
        assert_eq!(cache.size().0, 10);
    }

    fn with_selectors(i: usize, bytes: usize) -> Principal {
        let mut principal = workload(i, "a");
        if let Principal::Workload { selectors, .. } = &mut principal {
            selectors.push(format!("k8s:ann:{}", "x".repeat(bytes)));
        }
        principal
    }

    #[test]
    fn long_principals_are_not_cached_and_the_text_held_is_bounded() {
        let cache = EntityCache::default();
        let builds = Cell::new(0);
        let build = || {
            builds.set(builds.get() + 1);
            Ok(Entities::empty())
        };
        // Over the per-request bound: built every time, never held.
        let long = with_selectors(0, MAX_CACHED_REQUEST_BYTES);
        cache.get_or_build(&long, &resource("r"), build).unwrap();
        cache.get_or_build(&long, &resource("r"), build).unwrap();
        assert_eq!(builds.get(), 2);
        assert_eq!(cache.size(), (0, 0));
        // Just under it: held, and the budget empties the cache before it is exceeded.
        let each = MAX_CACHED_REQUEST_BYTES - 1024;
        for i in 0..2 * ENTITY_CACHE_BUDGET_BYTES / each {
            cache
                .get_or_build(&with_selectors(i, each), &resource("r"), build)
                .unwrap();
            let (held, bytes) = cache.size();
            assert!(
                held >= 1 && bytes <= ENTITY_CACHE_BUDGET_BYTES,
                "{held} {bytes}"
            );
        }
    }
}
