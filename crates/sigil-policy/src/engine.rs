//! The policy engine: the current policy set behind an `ArcSwap`, swapped whole on reload, and
//! decisions that name the policies that decided them.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwap;
use cedar_policy::Authorizer;
use serde::{Deserialize, Serialize};

use crate::entities::to_cedar;
use crate::error::PolicyError;
use crate::load::{LoadedPolicies, load_dir};
use crate::request::DecisionRequest;

/// The answer to a [`DecisionRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// Whether the request is allowed: some permit applies and no forbid does.
    pub allowed: bool,
    /// The ids of the policies that determined the decision (the applying forbids for a denial,
    /// the applying permits for an allow), sorted; empty for a default deny.
    pub policies: Vec<String>,
    /// Errors met while deciding: a request refused before evaluation (over a bound, unknown
    /// action, not matching the schema), or policies that failed to evaluate (those are skipped).
    pub errors: Vec<String>,
    /// The hash of the policy set that made the decision.
    pub policy_hash: String,
}

/// Holds the policy set in force. Readers never wait: a decision takes one snapshot of the set
/// and uses it throughout, so it never sees a half-loaded or mixed set.
pub struct PolicyEngine {
    current: ArcSwap<LoadedPolicies>,
}

impl std::fmt::Debug for PolicyEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyEngine")
            .field("current", &self.current.load())
            .finish()
    }
}

impl PolicyEngine {
    /// An engine deciding with `initial`.
    pub fn new(initial: impl Into<Arc<LoadedPolicies>>) -> Self {
        Self {
            current: ArcSwap::new(initial.into()),
        }
    }

    /// The set in force now.
    pub fn current(&self) -> Arc<LoadedPolicies> {
        self.current.load_full()
    }

    /// Puts `new` in force atomically and returns the set it replaced.
    pub fn swap(&self, new: impl Into<Arc<LoadedPolicies>>) -> Arc<LoadedPolicies> {
        self.current.swap(new.into())
    }

    /// Loads `dir` (see [`load_dir`]) and, if it is valid, puts it in force; returns the new hash.
    /// On error the set in force is left as it was.
    pub fn reload_from(&self, dir: &Path) -> Result<String, PolicyError> {
        let loaded = load_dir(dir)?;
        let hash = loaded.hash().to_owned();
        self.swap(loaded);
        Ok(hash)
    }

    /// Decides `req` at Unix time `now` (seconds) against the set in force.
    pub fn decide(&self, req: &DecisionRequest, now: i64) -> Decision {
        self.current.load().decide(req, now)
    }
}

impl LoadedPolicies {
    /// Decides `req` at Unix time `now` against this set. Never fails: a request that cannot be
    /// evaluated is denied, with the reason in [`Decision::errors`].
    pub fn decide(&self, req: &DecisionRequest, now: i64) -> Decision {
        match self.evaluate(req, now) {
            Ok(decision) => decision,
            Err(error) => Decision {
                allowed: false,
                policies: Vec::new(),
                errors: vec![error.to_string()],
                policy_hash: self.hash().to_owned(),
            },
        }
    }

    fn evaluate(&self, req: &DecisionRequest, now: i64) -> Result<Decision, PolicyError> {
        req.check_bounds()?;
        let action = self
            .actions
            .get(&req.action)
            .ok_or_else(|| PolicyError::UnknownAction {
                action: req.action.clone(),
            })?;
        let (request, entities) = to_cedar(self, action, req, now)?;
        let response = authorizer().is_authorized(&request, &action.policies, &entities);
        let diagnostics = response.diagnostics();
        let mut policies: Vec<String> = diagnostics.reason().map(ToString::to_string).collect();
        policies.sort_unstable();
        Ok(Decision {
            allowed: response.decision() == cedar_policy::Decision::Allow,
            policies,
            errors: diagnostics.errors().map(ToString::to_string).collect(),
            policy_hash: self.hash().to_owned(),
        })
    }
}

fn authorizer() -> &'static Authorizer {
    static AUTHORIZER: OnceLock<Authorizer> = OnceLock::new();
    AUTHORIZER.get_or_init(Authorizer::new)
}
