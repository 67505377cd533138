//! The mapping from a [`DecisionRequest`] to cedar: the principal (and its agent) and resource
//! entities, the action uid, and the context record with the clock fields added.

use cedar_policy::{Context, Entities, Entity, EntityId, EntityUid, Request, RestrictedExpression};
use sigil_spiffe::SpiffeId;

use crate::error::PolicyError;
use crate::load::{ActionPolicies, LoadedPolicies};
use crate::request::{AgentRef, ContextInput, DecisionRequest, Principal};

const SECONDS_PER_DAY: i64 = 86_400;
/// 1970-01-01 was a Thursday; weekday 0 is Sunday.
const EPOCH_WEEKDAY: i64 = 4;

/// The hour of the day (0-23, UTC) at Unix time `now`.
pub fn hour_utc(now: i64) -> i64 {
    now.rem_euclid(SECONDS_PER_DAY) / 3_600
}

/// The day of the week (0 = Sunday .. 6 = Saturday, UTC) at Unix time `now`.
pub fn weekday_utc(now: i64) -> i64 {
    (now.div_euclid(SECONDS_PER_DAY) + EPOCH_WEEKDAY).rem_euclid(7)
}

/// The cedar request and entity store of one decision.
pub(crate) struct CedarRequest {
    pub(crate) request: Request,
    pub(crate) entities: Entities,
}

/// How a request is built: whether it is checked against the schema while it is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Checking {
    /// Validate the request and its entities against the schema (a principal type the action
    /// does not apply to is an error here).
    Validated,
    /// Skip the schema checks: only for a request whose [`RequestShape`] the loaded set proved
    /// valid for its action (see [`ShapeProof`]), so the checks could not fail.
    ProvenShape,
}

/// Everything about a request that schema validation can depend on: the principal's entity type
/// and which optional attributes it carries, and which optional context attributes are present.
///
/// Every other part of what [`to_cedar`] builds is fixed by the code: the attribute names, their
/// types (strings, longs, sets of strings), the resource's type and the workload's parent type.
/// Cedar schemas constrain types, never values, so two requests of one shape either both validate
/// or both fail, and a shape validated once at load time needs no check per decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RequestShape {
    principal: PrincipalShape,
    source_address: bool,
    intent: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PrincipalShape {
    Workload { agent: bool },
    Agent,
    External { spiffe_id: bool },
}

/// Which [`RequestShape`]s validate against the schema, for one action. Built at load time by
/// building a request of every shape through the validated path.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ShapeProof {
    /// Bit [`RequestShape::index`] is set when that shape validates.
    valid: u32,
}

impl RequestShape {
    const PRINCIPALS: [PrincipalShape; 5] = [
        PrincipalShape::Workload { agent: false },
        PrincipalShape::Workload { agent: true },
        PrincipalShape::Agent,
        PrincipalShape::External { spiffe_id: false },
        PrincipalShape::External { spiffe_id: true },
    ];

    /// The shape of `req`.
    pub(crate) fn of(req: &DecisionRequest) -> Self {
        let principal = match &req.principal {
            Principal::Workload { agent, .. } => PrincipalShape::Workload {
                agent: agent.is_some(),
            },
            Principal::Agent(_) => PrincipalShape::Agent,
            Principal::External { spiffe_id, .. } => PrincipalShape::External {
                spiffe_id: spiffe_id.is_some(),
            },
        };
        Self {
            principal,
            source_address: req.context.source_address.is_some(),
            intent: req.context.intent.is_some(),
        }
    }

    /// Every shape a [`DecisionRequest`] can have.
    pub(crate) fn all() -> impl Iterator<Item = Self> {
        Self::PRINCIPALS.into_iter().flat_map(|principal| {
            [(false, false), (false, true), (true, false), (true, true)]
                .into_iter()
                .map(move |(source_address, intent)| Self {
                    principal,
                    source_address,
                    intent,
                })
        })
    }

    fn index(self) -> u32 {
        let principal = match self.principal {
            PrincipalShape::Workload { agent: false } => 0,
            PrincipalShape::Workload { agent: true } => 1,
            PrincipalShape::Agent => 2,
            PrincipalShape::External { spiffe_id: false } => 3,
            PrincipalShape::External { spiffe_id: true } => 4,
        };
        principal * 4 + u32::from(self.source_address) * 2 + u32::from(self.intent)
    }

    /// A request of this shape, with every list non-empty so that element types are checked.
    pub(crate) fn example(self, action: &str) -> Option<DecisionRequest> {
        let id = |path: &str| SpiffeId::parse(&format!("spiffe://shape.invalid/{path}")).ok();
        let agent = || -> Option<AgentRef> {
            Some(AgentRef {
                spiffe_id: id("agent")?,
                attestation_type: "join_token".to_owned(),
                node_selectors: vec!["join_token:n".to_owned()],
            })
        };
        let principal = match self.principal {
            PrincipalShape::Workload { agent: with_agent } => Principal::Workload {
                spiffe_id: id("workload")?,
                selectors: vec!["unix:uid:0".to_owned()],
                owner: "owner".to_owned(),
                labels: vec!["label".to_owned()],
                agent: if with_agent { Some(agent()?) } else { None },
            },
            PrincipalShape::Agent => Principal::Agent(agent()?),
            PrincipalShape::External { spiffe_id } => Principal::External {
                issuer: "https://issuer.invalid".to_owned(),
                subject: "subject".to_owned(),
                spiffe_id: if spiffe_id { Some(id("mapped")?) } else { None },
                attributes: vec![("name".to_owned(), "value".to_owned())],
            },
        };
        Some(DecisionRequest {
            principal,
            action: action.to_owned(),
            resource: crate::request::ResourceRef {
                id: "resource".to_owned(),
                kind: "kind".to_owned(),
            },
            context: ContextInput {
                audience: vec!["audience".to_owned()],
                scopes: vec!["scope".to_owned()],
                source_address: self.source_address.then(|| "192.0.2.1".to_owned()),
                intent: self.intent.then(|| "intent".to_owned()),
                actors: vec!["spiffe://shape.invalid/actor".to_owned()],
                claims: vec![("claim".to_owned(), "value".to_owned())],
            },
        })
    }
}

impl ShapeProof {
    /// Builds a request of every shape for `action` through the validated path and records which
    /// succeed.
    pub(crate) fn prove(loaded: &LoadedPolicies, action: &ActionPolicies, name: &str) -> Self {
        let mut valid = 0;
        for shape in RequestShape::all() {
            let Some(example) = shape.example(name) else {
                continue;
            };
            if to_cedar(loaded, action, &example, 0, Checking::Validated).is_ok() {
                valid |= 1 << shape.index();
            }
        }
        Self { valid }
    }

    /// Whether requests of `shape` are known to validate.
    pub(crate) fn covers(self, shape: RequestShape) -> bool {
        self.valid & (1 << shape.index()) != 0
    }
}

/// Builds the cedar request and entity store for `req`; with [`Checking::Validated`], checked
/// against the schema (a principal type the action does not apply to is an error here). A
/// request of a proven shape takes its entity store from the set's [`EntityCache`] when the same
/// principal and resource were decided before.
///
/// [`EntityCache`]: crate::cache::EntityCache
pub(crate) fn to_cedar(
    loaded: &LoadedPolicies,
    action: &ActionPolicies,
    req: &DecisionRequest,
    now: i64,
    checking: Checking,
) -> Result<CedarRequest, PolicyError> {
    let schema = match checking {
        Checking::Validated => Some(&loaded.schema),
        Checking::ProvenShape => None,
    };
    let principal = principal_uid(loaded, &req.principal);
    let resource = uid(&loaded.names.resource, &req.resource.id);
    let context = context(&req.context, now)?;
    let request =
        Request::new(principal, action.uid.clone(), resource, context, schema).map_err(|e| {
            PolicyError::Request {
                message: e.to_string(),
            }
        })?;
    let entities = match checking {
        Checking::Validated => entities(loaded, req, schema)?,
        Checking::ProvenShape => {
            loaded
                .entity_cache
                .get_or_build(&req.principal, &req.resource, || {
                    entities(loaded, req, None)
                })?
        }
    };
    Ok(CedarRequest { request, entities })
}

/// The entity uid of a request's principal.
fn principal_uid(loaded: &LoadedPolicies, principal: &Principal) -> EntityUid {
    let names = &loaded.names;
    match principal {
        Principal::Workload { spiffe_id, .. } => uid(&names.workload, spiffe_id.as_str()),
        Principal::Agent(agent) => uid(&names.agent, agent.spiffe_id.as_str()),
        Principal::External {
            issuer, subject, ..
        } => uid(&names.external, &format!("{issuer}#{subject}")),
    }
}

/// The entity store of `req`: its principal (with its agent) and its resource, and the action
/// entities when actions have groups; checked against `schema` when one is given.
fn entities(
    loaded: &LoadedPolicies,
    req: &DecisionRequest,
    schema: Option<&cedar_policy::Schema>,
) -> Result<Entities, PolicyError> {
    let mut entities = Vec::with_capacity(3);
    let principal = principal_uid(loaded, &req.principal);
    match &req.principal {
        Principal::Workload {
            spiffe_id,
            selectors,
            owner,
            labels,
            agent,
        } => {
            let segments = spiffe_id.path().split('/').filter(|s| !s.is_empty());
            let parent = match agent {
                Some(agent) => {
                    let agent = agent_entity(loaded, agent)?;
                    let parent = agent.uid();
                    entities.push(agent);
                    Some(parent)
                }
                None => None,
            };
            let attrs = [
                ("spiffe_id", string(spiffe_id.as_str())),
                ("trust_domain", string(spiffe_id.trust_domain_str())),
                ("path", set(segments)),
                ("selectors", set(selectors)),
                ("owner", string(owner)),
                ("labels", set(labels)),
            ];
            entities.push(entity(principal, attrs, parent)?);
        }
        Principal::Agent(agent) => entities.push(agent_entity(loaded, agent)?),
        Principal::External {
            issuer,
            subject,
            spiffe_id,
            attributes,
        } => {
            let attrs = [
                ("issuer", string(issuer)),
                ("subject", string(subject)),
                (
                    "attributes",
                    set(attributes.iter().map(|(k, v)| format!("{k}={v}"))),
                ),
            ];
            let mapped = spiffe_id
                .as_ref()
                .map(|id| ("spiffe_id", string(id.as_str())));
            entities.push(entity(principal, attrs.into_iter().chain(mapped), None)?);
        }
    }
    let attrs = [
        ("id", string(&req.resource.id)),
        ("kind", string(&req.resource.kind)),
    ];
    entities.push(entity(
        uid(&loaded.names.resource, &req.resource.id),
        attrs,
        None,
    )?);
    match &loaded.action_entities {
        Some(actions) => actions.clone().add_entities(entities, schema),
        None => Entities::from_entities(entities, schema),
    }
    .map_err(|e| PolicyError::Request {
        message: e.to_string(),
    })
}

fn agent_entity(loaded: &LoadedPolicies, agent: &AgentRef) -> Result<Entity, PolicyError> {
    let attrs = [
        ("spiffe_id", string(agent.spiffe_id.as_str())),
        ("attestation_type", string(&agent.attestation_type)),
        ("node_selectors", set(&agent.node_selectors)),
    ];
    entity(
        uid(&loaded.names.agent, agent.spiffe_id.as_str()),
        attrs,
        None,
    )
}

fn context(input: &ContextInput, now: i64) -> Result<Context, PolicyError> {
    let mut pairs = vec![
        ("now".to_owned(), RestrictedExpression::new_long(now)),
        (
            "hour_utc".to_owned(),
            RestrictedExpression::new_long(hour_utc(now)),
        ),
        (
            "weekday_utc".to_owned(),
            RestrictedExpression::new_long(weekday_utc(now)),
        ),
        ("audience".to_owned(), set(&input.audience)),
        ("scopes".to_owned(), set(&input.scopes)),
        ("actors".to_owned(), set(&input.actors)),
        (
            "claims".to_owned(),
            set(input.claims.iter().map(|(k, v)| format!("{k}={v}"))),
        ),
    ];
    if let Some(address) = &input.source_address {
        pairs.push(("source_address".to_owned(), string(address)));
    }
    if let Some(intent) = &input.intent {
        pairs.push(("intent".to_owned(), string(intent)));
    }
    Context::from_pairs(pairs).map_err(|e| PolicyError::Request {
        message: e.to_string(),
    })
}

fn uid(type_name: &cedar_policy::EntityTypeName, id: &str) -> EntityUid {
    EntityUid::from_type_name_and_id(type_name.clone(), EntityId::new(id))
}

fn entity(
    uid: EntityUid,
    attrs: impl IntoIterator<Item = (&'static str, RestrictedExpression)>,
    parent: Option<EntityUid>,
) -> Result<Entity, PolicyError> {
    let attrs = attrs
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value));
    Entity::new_with_tags(uid, attrs, parent, []).map_err(|e| PolicyError::Request {
        message: e.to_string(),
    })
}

fn string(s: &str) -> RestrictedExpression {
    RestrictedExpression::new_string(s.to_owned())
}

fn set<S: AsRef<str>>(items: impl IntoIterator<Item = S>) -> RestrictedExpression {
    RestrictedExpression::new_set(items.into_iter().map(|s| string(s.as_ref())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_fields_follow_utc() {
        // 2024-01-01T00:00:00Z was a Monday.
        let monday = 1_704_067_200;
        assert_eq!(weekday_utc(monday), 1);
        assert_eq!(hour_utc(monday), 0);
        assert_eq!(hour_utc(monday + 3 * 3_600 - 1), 2);
        assert_eq!(weekday_utc(0), 4);
        // Before the epoch: 1969-12-31T23:00:00Z, a Wednesday.
        assert_eq!(hour_utc(-3_600), 23);
        assert_eq!(weekday_utc(-3_600), 3);
    }
}
