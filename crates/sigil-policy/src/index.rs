//! The scope index of one action's policies: each policy filed under the principal or resource
//! its scope names, so a decision evaluates only the policies whose scope can match the request.
//!
//! Why this gives the decision of the whole set: cedar evaluates a policy as `scope && body`, and
//! the scope (`==`, `in`, `is`) never errors, so a policy whose scope does not match the request
//! is false without error: it neither decides nor reports anything, and leaving it out changes
//! nothing. The index may hand out policies whose scope does not match (cedar then evaluates
//! them to false); it never leaves out one whose scope matches.

use std::collections::HashMap;

use cedar_policy::{
    Entities, EntityTypeName, EntityUid, Policy, PolicySet, PrincipalConstraint, Request,
    ResourceConstraint,
};

use crate::error::PolicyError;

/// One action's policies, partitioned by scope: every policy is in exactly one bucket.
#[derive(Debug, Default)]
pub(crate) struct ScopeIndex {
    /// `principal == X`, `principal in X`, `principal is T in X`, keyed by `X`: they can match
    /// only when `X` is the principal or one of its ancestors.
    by_principal: HashMap<EntityUid, PolicySet>,
    /// Principal unconstrained by an entity; `resource == X`, `in X`, `is T in X`, keyed by `X`.
    by_resource: HashMap<EntityUid, PolicySet>,
    /// Neither names an entity; `principal is T`, keyed by `T`.
    by_principal_type: HashMap<EntityTypeName, PolicySet>,
    /// Principal unconstrained; `resource is T`, keyed by `T`.
    by_resource_type: HashMap<EntityTypeName, PolicySet>,
    /// Principal and resource unconstrained (`when` conditions only).
    unscoped: PolicySet,
}

impl ScopeIndex {
    /// Files each of `policies` under its most selective scope.
    pub(crate) fn new<'a>(
        policies: impl IntoIterator<Item = &'a Policy>,
    ) -> Result<Self, PolicyError> {
        let mut index = Self::default();
        for policy in policies {
            let bucket = match (policy.principal_constraint(), policy.resource_constraint()) {
                (
                    PrincipalConstraint::Eq(x)
                    | PrincipalConstraint::In(x)
                    | PrincipalConstraint::IsIn(_, x),
                    _,
                ) => index.by_principal.entry(x).or_default(),
                (
                    _,
                    ResourceConstraint::Eq(x)
                    | ResourceConstraint::In(x)
                    | ResourceConstraint::IsIn(_, x),
                ) => index.by_resource.entry(x).or_default(),
                (PrincipalConstraint::Is(t), _) => index.by_principal_type.entry(t).or_default(),
                (PrincipalConstraint::Any, ResourceConstraint::Is(t)) => {
                    index.by_resource_type.entry(t).or_default()
                }
                (PrincipalConstraint::Any, ResourceConstraint::Any) => &mut index.unscoped,
            };
            bucket
                .add(policy.clone())
                .map_err(|e| PolicyError::BuiltIn {
                    message: e.to_string(),
                })?;
        }
        Ok(index)
    }

    /// The buckets whose policies can match `request` (its principal and resource, their
    /// ancestors in `entities`, and their types); every other policy's scope is false for it.
    /// No policy is in two of the returned sets.
    pub(crate) fn candidates<'a>(
        &'a self,
        request: &Request,
        entities: &Entities,
    ) -> Vec<&'a PolicySet> {
        let mut sets = Vec::with_capacity(6);
        let mut take = |set: Option<&'a PolicySet>| {
            if let Some(set) = set.filter(|s| !s.is_empty()) {
                sets.push(set);
            }
        };
        // `in` is reflexive: the entity itself, then its ancestors (distinct uids, so distinct
        // buckets).
        if let Some(principal) = request.principal() {
            for uid in std::iter::once(principal)
                .chain(entities.ancestors(principal).into_iter().flatten())
            {
                take(self.by_principal.get(uid));
            }
            take(self.by_principal_type.get(principal.type_name()));
        }
        if let Some(resource) = request.resource() {
            for uid in
                std::iter::once(resource).chain(entities.ancestors(resource).into_iter().flatten())
            {
                take(self.by_resource.get(uid));
            }
            take(self.by_resource_type.get(resource.type_name()));
        }
        take(Some(&self.unscoped));
        sets
    }
}
