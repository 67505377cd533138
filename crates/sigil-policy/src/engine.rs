//! The policy engine: the current policy set behind an `ArcSwap`, swapped whole on reload, and
//! decisions that name the policies that decided them.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwap;
use cedar_policy::{Authorizer, Response};
use serde::{Deserialize, Serialize};

use crate::entities::{CedarRequest, Checking, RequestShape, to_cedar};
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
    /// action, not matching the schema), or policies that failed to evaluate (those are skipped),
    /// sorted.
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
        // A shape proven at load time cannot fail validation, so it skips it; any other shape is
        // validated, which reports why it does not match the schema.
        let checking = if action.shapes.covers(RequestShape::of(req)) {
            Checking::ProvenShape
        } else {
            Checking::Validated
        };
        let CedarRequest { request, entities } = to_cedar(self, action, req, now, checking)?;
        let mut outcome = Outcome::default();
        for set in action.index.candidates(&request, &entities) {
            outcome.add(&authorizer().is_authorized(&request, set, &entities));
        }
        Ok(outcome.decision(self.hash()))
    }
}

/// The responses of disjoint parts of a policy set, combined as cedar combines policies: any
/// satisfied forbid denies and is the reason; otherwise any satisfied permit allows and the
/// satisfied permits are the reason; otherwise the default deny, with no reason.
#[derive(Debug, Default)]
struct Outcome {
    permits: Vec<String>,
    forbids: Vec<String>,
    errors: Vec<String>,
}

impl Outcome {
    fn add(&mut self, response: &Response) {
        let diagnostics = response.diagnostics();
        // cedar's reasons are the satisfied forbids for a denial (none for a default deny) and
        // the satisfied permits for an allow.
        let reasons = diagnostics.reason().map(ToString::to_string);
        match response.decision() {
            cedar_policy::Decision::Allow => self.permits.extend(reasons),
            cedar_policy::Decision::Deny => self.forbids.extend(reasons),
        }
        self.errors
            .extend(diagnostics.errors().map(ToString::to_string));
    }

    fn decision(self, policy_hash: &str) -> Decision {
        let allowed = self.forbids.is_empty() && !self.permits.is_empty();
        let mut policies = if allowed { self.permits } else { self.forbids };
        policies.sort_unstable();
        let mut errors = self.errors;
        errors.sort_unstable();
        Decision {
            allowed,
            policies,
            errors,
            policy_hash: policy_hash.to_owned(),
        }
    }
}

fn authorizer() -> &'static Authorizer {
    static AUTHORIZER: OnceLock<Authorizer> = OnceLock::new();
    AUTHORIZER.get_or_init(Authorizer::new)
}

#[cfg(test)]
mod tests {
    //! The index and the proven-shape path against the reference: every policy of the set, with
    //! a request and entities validated against the schema.

    use std::collections::HashMap;

    use sigil_spiffe::SpiffeId;

    use super::*;
    use crate::request::{AgentRef, ContextInput, Principal, ResourceRef};

    /// A small deterministic generator (splitmix64), so a failure reproduces from its seed.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
        fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
            items[self.below(items.len())]
        }
        fn chance(&mut self, percent: usize) -> bool {
            self.below(100) < percent
        }
    }

    const SCHEMA: &str = r#"namespace Sigil {
  action "app:group";
  action "app:read", "app:write" in ["app:group"]
    appliesTo { principal: Workload, resource: Resource, context: Context };
}"#;
    /// The same actions without the group: a set whose action entities are left out of the
    /// decisions' entity stores.
    const FLAT_SCHEMA: &str = r#"namespace Sigil {
  action "app:read", "app:write"
    appliesTo { principal: Workload, resource: Resource, context: Context };
}"#;
    const ACTIONS: [&str; 6] = [
        "IssueX509Svid",
        "IssueJwtSvid",
        "Exchange",
        "app:read",
        "app:write",
        "app:group",
    ];
    const K: usize = 4;

    fn workload(i: usize) -> String {
        format!("spiffe://acme.org/ns/prod/w{i}")
    }
    fn agent(i: usize) -> String {
        format!("spiffe://acme.org/sigil/agent/a{i}")
    }

    fn random_policy(rng: &mut Rng, n: usize, grouped: bool) -> String {
        let k = rng.below(K);
        let principal = match rng.below(11) {
            0..=2 => "principal".to_owned(),
            3 => format!("principal == Sigil::Workload::\"{}\"", workload(k)),
            4 => format!("principal in Sigil::Agent::\"{}\"", agent(k)),
            5 => format!("principal == Sigil::Agent::\"{}\"", agent(k)),
            6 => format!(
                "principal is Sigil::Workload in Sigil::Agent::\"{}\"",
                agent(k)
            ),
            7 => format!("principal in Sigil::Workload::\"{}\"", workload(k)),
            8 => "principal is Sigil::Workload".to_owned(),
            9 => "principal is Sigil::Agent".to_owned(),
            _ => format!("principal == Sigil::ExternalSubject::\"https://ci.example#sub-{k}\""),
        };
        let action = match rng.below(6) {
            0 | 1 => "action".to_owned(),
            2 => "action == Sigil::Action::\"IssueX509Svid\"".to_owned(),
            3 => "action in [Sigil::Action::\"IssueJwtSvid\", Sigil::Action::\"app:read\"]"
                .to_owned(),
            4 if grouped => "action in Sigil::Action::\"app:group\"".to_owned(),
            4 => "action in [Sigil::Action::\"app:read\", Sigil::Action::\"app:write\"]".to_owned(),
            _ => "action == Sigil::Action::\"Exchange\"".to_owned(),
        };
        let r = rng.below(K);
        let resource = match rng.below(6) {
            0..=1 => "resource".to_owned(),
            2 => format!("resource == Sigil::Resource::\"res-{r}\""),
            3 => format!("resource in Sigil::Resource::\"res-{r}\""),
            4 => "resource is Sigil::Resource".to_owned(),
            _ => format!("resource is Sigil::Resource in Sigil::Resource::\"res-{r}\""),
        };
        let condition = |rng: &mut Rng| {
            let k = rng.below(K);
            match rng.below(11) {
                0 => "true".to_owned(),
                1 => format!("principal has owner && principal.owner == \"team-{k}\""),
                2 => format!("context.hour_utc >= {}", k * 6),
                3 => format!("context has intent && context.intent == \"op-{k}\""),
                4 => format!("resource.kind == \"kind-{k}\""),
                5 => format!("principal in Sigil::Agent::\"{}\"", agent(k)),
                6 => format!("context has scopes && context.scopes.contains(\"s-{k}\")"),
                // Overflows for most clock values: an evaluation error, so the policy is skipped.
                7 => "context.now * 9223372036854775807 > 0".to_owned(),
                8 => format!(
                    "principal has selectors && principal.selectors.contains(\"unix:uid:{k}\")"
                ),
                9 => {
                    "principal has attestation_type && principal.attestation_type == \"join_token\""
                        .to_owned()
                }
                _ => format!("action == Sigil::Action::\"{}\"", ACTIONS[k]),
            }
        };
        let when = match rng.below(4) {
            0 => String::new(),
            1 => format!(" when {{ {} }}", condition(rng)),
            2 => format!(" when {{ {} && {} }}", condition(rng), condition(rng)),
            _ => format!(
                " when {{ {} }} unless {{ {} }}",
                condition(rng),
                condition(rng)
            ),
        };
        let effect = if rng.chance(25) { "forbid" } else { "permit" };
        format!("@id(\"p{n}\")\n{effect} ({principal}, {action}, {resource}){when};\n")
    }

    fn random_request(rng: &mut Rng) -> DecisionRequest {
        let id = |s: String| SpiffeId::parse(&s).unwrap();
        let agent_ref = |rng: &mut Rng| AgentRef {
            spiffe_id: id(agent(rng.below(K))),
            attestation_type: rng.pick(&["join_token", "k8s_psat"]).to_owned(),
            node_selectors: vec![],
        };
        let principal = match rng.below(4) {
            0 | 1 => Principal::Workload {
                spiffe_id: id(workload(rng.below(K))),
                selectors: (0..rng.below(3))
                    .map(|_| format!("unix:uid:{}", rng.below(K)))
                    .collect(),
                owner: format!("team-{}", rng.below(K)),
                labels: vec![],
                agent: rng.chance(70).then(|| agent_ref(rng)),
            },
            2 => Principal::Agent(agent_ref(rng)),
            _ => Principal::External {
                issuer: "https://ci.example".to_owned(),
                subject: format!("sub-{}", rng.below(K)),
                spiffe_id: rng.chance(50).then(|| id(workload(rng.below(K)))),
                attributes: vec![("ref".to_owned(), "main".to_owned())],
            },
        };
        DecisionRequest {
            principal,
            action: rng.pick(&ACTIONS).to_owned(),
            resource: ResourceRef {
                id: format!("res-{}", rng.below(K)),
                kind: format!("kind-{}", rng.below(K)),
            },
            context: ContextInput {
                scopes: (0..rng.below(3))
                    .map(|_| format!("s-{}", rng.below(K)))
                    .collect(),
                intent: rng.chance(50).then(|| format!("op-{}", rng.below(K))),
                source_address: rng.chance(30).then(|| "192.0.2.7".to_owned()),
                ..ContextInput::default()
            },
        }
    }

    /// The decision of the whole set, with the request and entities validated.
    fn reference(loaded: &LoadedPolicies, req: &DecisionRequest, now: i64) -> Decision {
        let refused = |error: PolicyError| Decision {
            allowed: false,
            policies: Vec::new(),
            errors: vec![error.to_string()],
            policy_hash: loaded.hash().to_owned(),
        };
        if let Err(e) = req.check_bounds() {
            return refused(e);
        }
        let Some(action) = loaded.actions.get(&req.action) else {
            return refused(PolicyError::UnknownAction {
                action: req.action.clone(),
            });
        };
        let cedar = match to_cedar(loaded, action, req, now, Checking::Validated) {
            Ok(cedar) => cedar,
            Err(e) => return refused(e),
        };
        let response =
            Authorizer::new().is_authorized(&cedar.request, loaded.policy_set(), &cedar.entities);
        let mut policies: Vec<String> = response
            .diagnostics()
            .reason()
            .map(ToString::to_string)
            .collect();
        policies.sort_unstable();
        let mut errors: Vec<String> = response
            .diagnostics()
            .errors()
            .map(ToString::to_string)
            .collect();
        errors.sort_unstable();
        Decision {
            allowed: response.decision() == cedar_policy::Decision::Allow,
            policies,
            errors,
            policy_hash: loaded.hash().to_owned(),
        }
    }

    #[test]
    fn indexed_decisions_equal_the_whole_set_validated() {
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for seed in 0..40 {
            let mut rng = Rng(seed);
            let dir = tempfile::tempdir().unwrap();
            // Odd seeds: no action groups, so no action entities in the decisions.
            let grouped = seed % 2 == 0;
            let schema = if grouped { SCHEMA } else { FLAT_SCHEMA };
            std::fs::write(dir.path().join("app.cedarschema"), schema).unwrap();
            let n = 5 + rng.below(60);
            let text: String = (0..n)
                .map(|i| random_policy(&mut rng, i, grouped))
                .collect();
            std::fs::write(dir.path().join("p.cedar"), &text).unwrap();
            let loaded = load_dir(dir.path()).unwrap_or_else(|e| panic!("{e}\n{text}"));
            assert_eq!(loaded.action_entities.is_some(), grouped, "seed {seed}");
            for _ in 0..150 {
                let mut req = random_request(&mut rng);
                if !grouped && req.action == "app:group" {
                    req.action = "app:read".to_owned();
                }
                // Any time of day, and now = 0 (where the overflowing condition does not error).
                let now = if rng.chance(10) {
                    0
                } else {
                    1_704_067_200 + rng.below(86_400) as i64
                };
                let action = loaded.actions.get(&req.action).unwrap();
                let proven = action.shapes.covers(RequestShape::of(&req));
                let got = loaded.decide(&req, now);
                let want = reference(&loaded, &req, now);
                assert_eq!(got, want, "seed {seed}: {req:?} at {now}\n{text}");
                *seen
                    .entry(if proven { "proven" } else { "validated" })
                    .or_default() += 1;
                let kind = match (
                    &want.allowed,
                    want.policies.is_empty(),
                    want.errors.is_empty(),
                ) {
                    (true, _, _) => "allow",
                    (false, false, _) => "forbid",
                    (false, true, true) => "default deny",
                    (false, true, false) => "refused or erred",
                };
                *seen.entry(kind).or_default() += 1;
                if want.errors.iter().any(|e| e.contains("overflow")) {
                    *seen.entry("evaluation error").or_default() += 1;
                }
            }
        }
        // The comparison covered every kind of outcome and both ways of building a request.
        for kind in [
            "proven",
            "validated",
            "allow",
            "forbid",
            "default deny",
            "refused or erred",
            "evaluation error",
        ] {
            assert!(
                seen.get(kind).copied().unwrap_or(0) >= 20,
                "{kind}: {seen:?}"
            );
        }
    }

    #[test]
    fn builtin_actions_prove_exactly_the_shapes_they_apply_to() {
        let loaded = LoadedPolicies::builtin_default().unwrap();
        for (action, principals) in [
            ("IssueX509Svid", ["workload", "agent"]),
            ("IssueJwtSvid", ["workload", "agent"]),
            ("Exchange", ["workload", "external"]),
            ("RequestCredential", ["workload", "workload"]),
        ] {
            let proof = loaded.actions.get(action).unwrap().shapes;
            for shape in RequestShape::all() {
                let example = shape.example(action).unwrap();
                let kind = match example.principal {
                    Principal::Workload { .. } => "workload",
                    Principal::Agent(_) => "agent",
                    Principal::External { .. } => "external",
                };
                assert_eq!(
                    proof.covers(shape),
                    principals.contains(&kind),
                    "{action} {shape:?}"
                );
                // Proven or not, the validated path agrees, with empty lists as well.
                let validated = to_cedar(
                    &loaded,
                    loaded.actions.get(action).unwrap(),
                    &example,
                    0,
                    Checking::Validated,
                );
                assert_eq!(validated.is_ok(), proof.covers(shape), "{action} {shape:?}");
                let mut empty = example.clone();
                empty.context = ContextInput {
                    source_address: example.context.source_address.clone(),
                    intent: example.context.intent.clone(),
                    ..ContextInput::default()
                };
                if let Principal::Workload {
                    selectors, labels, ..
                } = &mut empty.principal
                {
                    selectors.clear();
                    labels.clear();
                }
                let validated = to_cedar(
                    &loaded,
                    loaded.actions.get(action).unwrap(),
                    &empty,
                    0,
                    Checking::Validated,
                );
                assert_eq!(
                    validated.is_ok(),
                    proof.covers(shape),
                    "{action} {shape:?} empty lists"
                );
            }
        }
    }
}
