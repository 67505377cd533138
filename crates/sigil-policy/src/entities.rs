//! The mapping from a [`DecisionRequest`] to cedar: the principal (and its agent) and resource
//! entities, the action uid, and the context record with the clock fields added.

use std::collections::{HashMap, HashSet};

use cedar_policy::{Context, Entities, Entity, EntityId, EntityUid, Request, RestrictedExpression};

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

/// Builds the cedar request and entity store for `req`, validated against the schema (a principal
/// type the action does not apply to is an error here).
pub(crate) fn to_cedar(
    loaded: &LoadedPolicies,
    action: &ActionPolicies,
    req: &DecisionRequest,
    now: i64,
) -> Result<(Request, Entities), PolicyError> {
    let names = &loaded.names;
    let mut entities = Vec::with_capacity(3);
    let principal = match &req.principal {
        Principal::Workload {
            spiffe_id,
            selectors,
            owner,
            labels,
            agent,
        } => {
            let uid = uid(&names.workload, spiffe_id.as_str());
            let segments = spiffe_id.path().split('/').filter(|s| !s.is_empty());
            let mut parents = HashSet::new();
            if let Some(agent) = agent {
                let agent = agent_entity(loaded, agent)?;
                parents.insert(agent.uid());
                entities.push(agent);
            }
            let attrs = HashMap::from([
                ("spiffe_id".to_owned(), string(spiffe_id.as_str())),
                (
                    "trust_domain".to_owned(),
                    string(spiffe_id.trust_domain_str()),
                ),
                ("path".to_owned(), set(segments)),
                ("selectors".to_owned(), set(selectors)),
                ("owner".to_owned(), string(owner)),
                ("labels".to_owned(), set(labels)),
            ]);
            entities.push(entity(uid.clone(), attrs, parents)?);
            uid
        }
        Principal::Agent(agent) => {
            let agent = agent_entity(loaded, agent)?;
            let uid = agent.uid();
            entities.push(agent);
            uid
        }
        Principal::External {
            issuer,
            subject,
            spiffe_id,
            attributes,
        } => {
            let uid = uid(&names.external, &format!("{issuer}#{subject}"));
            let mut attrs = HashMap::from([
                ("issuer".to_owned(), string(issuer)),
                ("subject".to_owned(), string(subject)),
                (
                    "attributes".to_owned(),
                    set(attributes.iter().map(|(k, v)| format!("{k}={v}"))),
                ),
            ]);
            if let Some(id) = spiffe_id {
                attrs.insert("spiffe_id".to_owned(), string(id.as_str()));
            }
            entities.push(entity(uid.clone(), attrs, HashSet::new())?);
            uid
        }
    };
    let resource = uid(&names.resource, &req.resource.id);
    let attrs = HashMap::from([
        ("id".to_owned(), string(&req.resource.id)),
        ("kind".to_owned(), string(&req.resource.kind)),
    ]);
    entities.push(entity(resource.clone(), attrs, HashSet::new())?);

    let context = context(&req.context, now)?;
    let schema = Some(&loaded.schema);
    let request =
        Request::new(principal, action.uid.clone(), resource, context, schema).map_err(|e| {
            PolicyError::Request {
                message: e.to_string(),
            }
        })?;
    let entities = loaded
        .action_entities
        .clone()
        .add_entities(entities, schema)
        .map_err(|e| PolicyError::Request {
            message: e.to_string(),
        })?;
    Ok((request, entities))
}

fn agent_entity(loaded: &LoadedPolicies, agent: &AgentRef) -> Result<Entity, PolicyError> {
    let attrs = HashMap::from([
        ("spiffe_id".to_owned(), string(agent.spiffe_id.as_str())),
        (
            "attestation_type".to_owned(),
            string(&agent.attestation_type),
        ),
        ("node_selectors".to_owned(), set(&agent.node_selectors)),
    ]);
    entity(
        uid(&loaded.names.agent, agent.spiffe_id.as_str()),
        attrs,
        HashSet::new(),
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
    attrs: HashMap<String, RestrictedExpression>,
    parents: HashSet<EntityUid>,
) -> Result<Entity, PolicyError> {
    Entity::new(uid, attrs, parents).map_err(|e| PolicyError::Request {
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
