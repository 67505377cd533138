//! What a caller asks: the principal, action, resource and context of a decision, their JSON
//! form, and the bounds every request is held to before cedar sees it.

use serde::{Deserialize, Serialize};
use sigil_spiffe::SpiffeId;

use crate::error::PolicyError;

/// The largest context accepted, serialized as JSON, in bytes (64 KiB).
pub const MAX_CONTEXT_BYTES: usize = 64 * 1024;
/// The most items in any list of a request (selectors, labels, scopes, actors, claims ...).
pub const MAX_LIST_ITEMS: usize = 256;
/// The longest string accepted anywhere in a request, in bytes (4 KiB).
pub const MAX_STRING_BYTES: usize = 4 * 1024;
/// The deepest nesting of a raw JSON context (the context object itself is level 1).
pub const MAX_CONTEXT_DEPTH: usize = 8;

/// One decision to make: may `principal` do `action` on `resource` in `context`?
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionRequest {
    /// Who asks.
    pub principal: Principal,
    /// The action's id in the schema: `IssueX509Svid`, `IssueJwtSvid`, `Exchange`, or an
    /// operator-defined action such as `db:read`.
    pub action: String,
    /// What the decision is about.
    pub resource: ResourceRef,
    /// Request-time facts; the clock fields are added from the decision time.
    #[serde(default)]
    pub context: ContextInput,
}

/// The principal of a decision. JSON: an object with `"type": "workload" | "agent" | "external"`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Principal {
    /// A workload, as attested (entity `Sigil::Workload`, child of its agent).
    Workload {
        /// Its SPIFFE ID (the entity id).
        spiffe_id: SpiffeId,
        /// Attested selectors, `type:value`.
        #[serde(default)]
        selectors: Vec<String>,
        /// The registration entry's owner.
        #[serde(default)]
        owner: String,
        /// The registration entry's labels.
        #[serde(default)]
        labels: Vec<String>,
        /// The agent that attested it, when known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        agent: Option<AgentRef>,
    },
    /// A node agent (entity `Sigil::Agent`).
    Agent(AgentRef),
    /// A subject from an external token at exchange (entity `Sigil::ExternalSubject`).
    External {
        /// The token's issuer.
        issuer: String,
        /// The token's subject.
        subject: String,
        /// The SPIFFE ID the exchange configuration maps it to, when it does.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        spiffe_id: Option<SpiffeId>,
        /// Mapped attributes; JSON: an object of string values.
        #[serde(default, with = "string_pairs")]
        attributes: Vec<(String, String)>,
    },
}

/// A node agent as a principal or as a workload's parent.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentRef {
    /// The agent's SPIFFE ID (the entity id).
    pub spiffe_id: SpiffeId,
    /// The node attestor that admitted it.
    #[serde(default)]
    pub attestation_type: String,
    /// Node selectors, `type:value`.
    #[serde(default)]
    pub node_selectors: Vec<String>,
}

/// The resource of a decision (entity `Sigil::Resource`, id = `id`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceRef {
    /// What it is called: a SPIFFE ID, a URL, a database name.
    pub id: String,
    /// What kind of thing it is: `svid`, `database`, `endpoint` ...
    pub kind: String,
}

/// The caller-supplied part of the context. `now`, `hour_utc` and `weekday_utc` are never taken
/// from the caller: they come from the decision time.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ContextInput {
    /// The audience of the credential asked for or presented.
    pub audience: Vec<String>,
    /// OAuth scopes asked for.
    pub scopes: Vec<String>,
    /// The caller's network address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_address: Option<String>,
    /// The declared intent, e.g. `ledger:write`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub intent: Option<String>,
    /// The actor chain (delegation), SPIFFE IDs, outermost first.
    pub actors: Vec<String>,
    /// String claims of the presented token; JSON: an object (non-string claim values are
    /// ignored, since the schema holds `name=value` strings).
    #[serde(with = "claims")]
    pub claims: Vec<(String, String)>,
}

impl ContextInput {
    /// Reads a raw JSON context (the `context` member of a decision call).
    ///
    /// Refuses, before interpreting it, a value nesting deeper than [`MAX_CONTEXT_DEPTH`] or
    /// larger than [`MAX_CONTEXT_BYTES`] serialized; then unknown members, wrong types and any
    /// list or string over [`MAX_LIST_ITEMS`] / [`MAX_STRING_BYTES`].
    pub fn from_json(value: &serde_json::Value) -> Result<Self, PolicyError> {
        if json_depth(value) > MAX_CONTEXT_DEPTH {
            return Err(PolicyError::ContextTooDeep {
                max: MAX_CONTEXT_DEPTH,
            });
        }
        let size = serde_json::to_vec(value)
            .map_err(|e| PolicyError::InvalidJson {
                what: "context",
                message: e.to_string(),
            })?
            .len();
        if size > MAX_CONTEXT_BYTES {
            return Err(PolicyError::ContextTooLarge {
                size,
                max: MAX_CONTEXT_BYTES,
            });
        }
        let context = Self::deserialize(value).map_err(|e| PolicyError::InvalidJson {
            what: "context",
            message: e.to_string(),
        })?;
        context.check_bounds()?;
        Ok(context)
    }

    /// Checks every list, string and the serialized size against the limits.
    pub fn check_bounds(&self) -> Result<(), PolicyError> {
        check_list("context.audience", &self.audience)?;
        check_list("context.scopes", &self.scopes)?;
        check_list("context.actors", &self.actors)?;
        check_pairs("context.claims", &self.claims)?;
        check_option("context.source_address", self.source_address.as_deref())?;
        check_option("context.intent", self.intent.as_deref())?;
        let size = self.serialized_len();
        if size > MAX_CONTEXT_BYTES {
            return Err(PolicyError::ContextTooLarge {
                size,
                max: MAX_CONTEXT_BYTES,
            });
        }
        Ok(())
    }

    /// The length of this context's JSON form, counting each string with its quotes and
    /// separator (escapes are not counted, so this is a lower bound of the real encoding).
    pub fn serialized_len(&self) -> usize {
        let list = |items: &[String]| items.iter().map(|s| s.len() + 3).sum::<usize>() + 16;
        let option = |s: &Option<String>| s.as_ref().map_or(0, |s| s.len() + 24);
        let pairs = self
            .claims
            .iter()
            .map(|(k, v)| k.len() + v.len() + 6)
            .sum::<usize>()
            + 16;
        2 + list(&self.audience)
            + list(&self.scopes)
            + list(&self.actors)
            + option(&self.source_address)
            + option(&self.intent)
            + pairs
    }
}

impl DecisionRequest {
    /// Checks every list and string of the request (principal, action, resource, context)
    /// against the limits; a request over them is denied without evaluation.
    pub fn check_bounds(&self) -> Result<(), PolicyError> {
        check_string("action", &self.action)?;
        check_string("resource.id", &self.resource.id)?;
        check_string("resource.kind", &self.resource.kind)?;
        match &self.principal {
            Principal::Workload {
                selectors,
                owner,
                labels,
                agent,
                ..
            } => {
                check_list("principal.selectors", selectors)?;
                check_string("principal.owner", owner)?;
                check_list("principal.labels", labels)?;
                if let Some(agent) = agent {
                    check_agent(agent)?;
                }
            }
            Principal::Agent(agent) => check_agent(agent)?,
            Principal::External {
                issuer,
                subject,
                attributes,
                ..
            } => {
                check_string("principal.issuer", issuer)?;
                check_string("principal.subject", subject)?;
                check_pairs("principal.attributes", attributes)?;
            }
        }
        self.context.check_bounds()
    }
}

fn check_agent(agent: &AgentRef) -> Result<(), PolicyError> {
    check_string("agent.attestation_type", &agent.attestation_type)?;
    check_list("agent.node_selectors", &agent.node_selectors)
}

fn check_string(field: &'static str, s: &str) -> Result<(), PolicyError> {
    if s.len() > MAX_STRING_BYTES {
        return Err(PolicyError::StringTooLong {
            field,
            len: s.len(),
            max: MAX_STRING_BYTES,
        });
    }
    Ok(())
}

fn check_option(field: &'static str, s: Option<&str>) -> Result<(), PolicyError> {
    s.map_or(Ok(()), |s| check_string(field, s))
}

fn check_list(field: &'static str, items: &[String]) -> Result<(), PolicyError> {
    if items.len() > MAX_LIST_ITEMS {
        return Err(PolicyError::ListTooLong {
            field,
            len: items.len(),
            max: MAX_LIST_ITEMS,
        });
    }
    items.iter().try_for_each(|s| check_string(field, s))
}

fn check_pairs(field: &'static str, pairs: &[(String, String)]) -> Result<(), PolicyError> {
    if pairs.len() > MAX_LIST_ITEMS {
        return Err(PolicyError::ListTooLong {
            field,
            len: pairs.len(),
            max: MAX_LIST_ITEMS,
        });
    }
    pairs.iter().try_for_each(|(k, v)| {
        check_string(field, k)?;
        check_string(field, v)
    })
}

/// Nesting depth of a JSON value: scalars 0, an array or object 1 + its deepest member.
/// Iterative, so a hostile value cannot exhaust the stack here.
fn json_depth(value: &serde_json::Value) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(value, 0usize)];
    while let Some((v, depth)) = stack.pop() {
        match v {
            serde_json::Value::Array(items) => {
                deepest = deepest.max(depth + 1);
                stack.extend(items.iter().map(|i| (i, depth + 1)));
            }
            serde_json::Value::Object(members) => {
                deepest = deepest.max(depth + 1);
                stack.extend(members.values().map(|i| (i, depth + 1)));
            }
            _ => {}
        }
    }
    deepest
}

/// `Vec<(String, String)>` as a JSON object of string values, in order.
mod string_pairs {
    use serde::de::{MapAccess, Visitor};
    use serde::ser::SerializeMap;
    use serde::{Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(
        pairs: &[(String, String)],
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(pairs.len()))?;
        for (k, v) in pairs {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Vec<(String, String)>, D::Error> {
        struct Pairs;
        impl<'de> Visitor<'de> for Pairs {
            type Value = Vec<(String, String)>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object of string values")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, String>()? {
                    out.push((k, v));
                }
                Ok(out)
            }
        }
        d.deserialize_map(Pairs)
    }
}

/// Token claims: a JSON object; string values are kept, other values ignored.
mod claims {
    use serde::de::{MapAccess, Visitor};
    use serde::{Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(
        pairs: &[(String, String)],
        s: S,
    ) -> Result<S::Ok, S::Error> {
        super::string_pairs::serialize(pairs, s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Vec<(String, String)>, D::Error> {
        struct Claims;
        impl<'de> Visitor<'de> for Claims {
            type Value = Vec<(String, String)>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object of claims")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, serde_json::Value>()? {
                    if let serde_json::Value::String(v) = v {
                        out.push((k, v));
                    }
                }
                Ok(out)
            }
        }
        d.deserialize_map(Claims)
    }
}
