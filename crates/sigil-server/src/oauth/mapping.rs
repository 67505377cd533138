//! Attribute mapping (claims of an external token → attributes) and SPIFFE ID templates over them.
//!
//! Both are parsed once from the server configuration, so their parse errors are configuration
//! errors for an operator; both are then applied per request to claims of an untrusted token,
//! so every value is bounded and a value can never widen the identity a template yields.
//!
//! # Claim paths
//!
//! A claim path names a value inside the token's claims object as a list of keys, at most
//! [`MAX_CLAIM_PATH_KEYS`]. Keys are separated by `.`; a key that holds `.` (or any character other
//! than ASCII letters, digits, `_`, `-`, `:` and `$`) is written in brackets as a double-quoted
//! string, with `\"` and `\\` as its only escapes:
//!
//! - `repository_owner` — the top-level claim `repository_owner`;
//! - `["kubernetes.io"].namespace` — the key `namespace` inside the object `kubernetes.io`;
//! - `["kubernetes.io"].serviceaccount.name`, or with brackets throughout,
//!   `["kubernetes.io"]["serviceaccount"]["name"]`.
//!
//! When a key along the path is missing the claim is absent (no attribute, no error); when the
//! path runs through a value that is not an object, or ends at a value of an unsupported type,
//! applying the mapping fails and the error names the claim path.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;

use serde_json::{Map, Value};
use sigil_spiffe::{SpiffeId, SpiffeIdError, TrustDomain};

use crate::naming;

/// Most attribute mappings one issuer may configure.
pub const MAX_MAPPINGS: usize = 64;
/// Most keys in one claim path.
pub const MAX_CLAIM_PATH_KEYS: usize = 8;
/// Longest claim path text, in bytes.
pub const MAX_CLAIM_PATH_BYTES: usize = 512;
/// Longest attribute name, in bytes.
pub const MAX_ATTRIBUTE_NAME_BYTES: usize = 64;
/// Longest string claim (and string item of an array claim) accepted, in bytes.
pub const MAX_CLAIM_STRING_BYTES: usize = 1024;
/// Most items of an array claim.
pub const MAX_CLAIM_LIST_ITEMS: usize = 64;
/// Longest SPIFFE ID template text, in bytes.
pub const MAX_TEMPLATE_BYTES: usize = 2048;
/// Most placeholders in one SPIFFE ID template.
pub const MAX_PLACEHOLDERS: usize = 16;
/// Longest string attribute a template placeholder accepts, in bytes.
pub const MAX_SEGMENT_VALUE_BYTES: usize = 255;

const SCHEME_PREFIX: &str = "spiffe://";
/// A segment-safe value that stands in for every placeholder when a template is checked.
const DUMMY_VALUE: &str = "x";

/// An attribute value taken from a token claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttrValue {
    /// A string claim (at most [`MAX_CLAIM_STRING_BYTES`] bytes).
    Str(String),
    /// An integer claim that fits in an `i64`.
    Int(i64),
    /// A boolean claim.
    Bool(bool),
    /// An array of strings (at most [`MAX_CLAIM_LIST_ITEMS`] items, each a bounded string).
    List(Vec<String>),
}

/// Attributes of one token, by attribute name.
pub type Attributes = BTreeMap<String, AttrValue>;

/// Maps claims of a token to named attributes: attribute name → claim path (module docs).
#[derive(Debug, Clone)]
pub struct AttributeMapping {
    /// In attribute-name order; names are unique.
    entries: Vec<(String, ClaimPath)>,
}

/// A SPIFFE ID template such as `spiffe://example.org/ci/{repository_owner_id}/{repository_id}`.
///
/// Placeholders `{name}` stand only in the path and are replaced by attribute values that are
/// always exactly one safe path segment (or part of one), so a rendered ID has as many segments
/// as the template and stays in the template's trust domain.
#[derive(Debug, Clone)]
pub struct SpiffeIdTemplate {
    source: String,
    parts: Vec<TemplatePart>,
    trust_domain: TrustDomain,
}

/// Why an attribute mapping or SPIFFE ID template is invalid, or cannot be applied to a token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MappingError {
    #[error(
        "attribute name `{name}` is invalid: expected a lowercase letter or `_`, then up to 63 lowercase letters, digits or `_`"
    )]
    InvalidAttributeName { name: String },
    #[error("attribute `{name}` is mapped more than once")]
    DuplicateAttribute { name: String },
    #[error("too many attribute mappings: at most {max} are allowed")]
    TooManyMappings { max: usize },
    #[error("claim path for attribute `{attribute}` is empty")]
    EmptyClaimPath { attribute: String },
    #[error("claim path `{path}` is longer than {max} bytes")]
    ClaimPathTooLong { path: String, max: usize },
    #[error("claim path `{path}` has more than {max} keys")]
    ClaimPathTooDeep { path: String, max: usize },
    #[error("claim path `{path}`: expected {expected} at byte {offset}")]
    ClaimPathSyntax {
        path: String,
        offset: usize,
        expected: &'static str,
    },
    #[error(
        "claim `{claim}` is {found}: expected a string, a 64-bit integer, a boolean or an array of strings"
    )]
    ClaimType { claim: String, found: &'static str },
    #[error("claim `{claim}` passes through a value that is not an object")]
    ClaimNotAnObject { claim: String },
    #[error("claim `{claim}` has a string longer than {max} bytes")]
    ClaimTooLong { claim: String, max: usize },
    #[error("claim `{claim}` has more than {max} items")]
    ClaimListTooLong { claim: String, max: usize },
    #[error("SPIFFE ID template is longer than {max} bytes")]
    TemplateTooLong { max: usize },
    #[error("SPIFFE ID template has more than {max} placeholders")]
    TooManyPlaceholders { max: usize },
    #[error("SPIFFE ID template: `{{` at byte {offset} is never closed with `}}`")]
    UnclosedPlaceholder { offset: usize },
    #[error("SPIFFE ID template: `}}` at byte {offset} has no opening `{{`")]
    UnopenedPlaceholder { offset: usize },
    #[error("SPIFFE ID template: `{{{{` and `}}}}` at byte {offset} are not supported")]
    EscapedBrace { offset: usize },
    #[error("SPIFFE ID template: placeholder at byte {offset} has an invalid name `{name}`")]
    InvalidPlaceholderName { name: String, offset: usize },
    #[error(
        "SPIFFE ID template: placeholder at byte {offset} is outside the path (only the path may have placeholders)"
    )]
    PlaceholderOutsidePath { offset: usize },
    #[error("SPIFFE ID template is not a SPIFFE ID: {source}")]
    InvalidTemplate { source: SpiffeIdError },
    #[error("SPIFFE ID template has no path: it would name the trust domain itself")]
    TemplateWithoutPath,
    #[error("SPIFFE ID is in trust domain `{got}`, expected `{expected}`")]
    WrongTrustDomain { expected: String, got: String },
    #[error("SPIFFE ID lies under the path `/sigil/` that Sigil reserves for itself")]
    ReservedId,
    #[error("attribute `{name}` is missing")]
    MissingAttribute { name: String },
    #[error("attribute `{name}` is {found}: a placeholder takes a string or an integer")]
    AttributeType { name: String, found: &'static str },
    #[error(
        "attribute `{name}` is not a safe path segment: expected 1 to {MAX_SEGMENT_VALUE_BYTES} ASCII letters, digits, `.`, `-` or `_`, and not `.` or `..`"
    )]
    UnsafeValue { name: String },
    #[error("rendered SPIFFE ID is invalid: {source}")]
    InvalidRenderedId { source: SpiffeIdError },
}

/// A parsed claim path: its keys and the text it was written as (for error messages).
#[derive(Debug, Clone, PartialEq, Eq)]
struct ClaimPath {
    text: String,
    keys: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum TemplatePart {
    Literal(String),
    Placeholder(String),
}

impl AttributeMapping {
    /// Builds a mapping from `(attribute name, claim path)` pairs.
    ///
    /// Fails when an attribute name is invalid (`[a-z_][a-z0-9_]{0,63}`) or repeated, when there
    /// are more than [`MAX_MAPPINGS`] pairs, or when a claim path is empty, too long, has more
    /// than [`MAX_CLAIM_PATH_KEYS`] keys or does not follow the claim path syntax (module docs).
    pub fn new(pairs: impl IntoIterator<Item = (String, String)>) -> Result<Self, MappingError> {
        let mut by_name = BTreeMap::new();
        for (name, path) in pairs {
            if by_name.len() == MAX_MAPPINGS {
                return Err(MappingError::TooManyMappings { max: MAX_MAPPINGS });
            }
            if !is_valid_attribute_name(&name) {
                return Err(MappingError::InvalidAttributeName { name });
            }
            let path = ClaimPath::parse(&name, &path)?;
            match by_name.entry(name) {
                Entry::Occupied(e) => {
                    return Err(MappingError::DuplicateAttribute {
                        name: e.key().clone(),
                    });
                }
                Entry::Vacant(e) => {
                    e.insert(path);
                }
            }
        }
        Ok(Self {
            entries: by_name.into_iter().collect(),
        })
    }

    /// The attribute names this mapping can produce, in sorted order.
    pub fn attribute_names(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(name, _)| name.as_str())
    }

    /// Every mapped claim present in `claims` (a JSON object) becomes an attribute.
    ///
    /// Strings (at most [`MAX_CLAIM_STRING_BYTES`] bytes), integers that fit in an `i64`, booleans
    /// and arrays of such strings (at most [`MAX_CLAIM_LIST_ITEMS`] items) are accepted. Absent
    /// claims are simply absent from the result. Any other type (`null`, fractions, objects,
    /// arrays holding anything but strings), an over-long string or array, or a path through a
    /// non-object is an error naming the claim path; no partial result is returned.
    pub fn apply(&self, claims: &Map<String, Value>) -> Result<Attributes, MappingError> {
        let mut attrs = Attributes::new();
        for (name, path) in &self.entries {
            if let Some(value) = path.lookup(claims)? {
                attrs.insert(name.clone(), path.convert(value)?);
            }
        }
        Ok(attrs)
    }
}

impl SpiffeIdTemplate {
    /// Parses a template for IDs in `trust_domain`.
    ///
    /// The text must be a SPIFFE ID of `trust_domain`, with a non-empty path outside `/sigil/`,
    /// once every placeholder is replaced by a segment-safe value. Placeholders are `{name}` with
    /// an attribute name (`[a-z_][a-z0-9_]{0,63}`), only in the path, at most
    /// [`MAX_PLACEHOLDERS`]; `{{` and `}}` are refused (no escaping), as is a text over
    /// [`MAX_TEMPLATE_BYTES`] bytes. Errors give the byte offset of a bad brace or placeholder.
    pub fn parse(text: &str, trust_domain: &TrustDomain) -> Result<Self, MappingError> {
        if text.len() > MAX_TEMPLATE_BYTES {
            return Err(MappingError::TemplateTooLong {
                max: MAX_TEMPLATE_BYTES,
            });
        }
        let (parts, placeholder_offsets) = split_template(text)?;
        let rest = text
            .strip_prefix(SCHEME_PREFIX)
            .ok_or(MappingError::InvalidTemplate {
                source: SpiffeIdError::WrongScheme,
            })?;
        let path_start = rest
            .find('/')
            .map_or(text.len(), |i| SCHEME_PREFIX.len() + i);
        if let Some(&offset) = placeholder_offsets.iter().find(|&&o| o < path_start) {
            return Err(MappingError::PlaceholderOutsidePath { offset });
        }
        let template = Self {
            source: text.to_owned(),
            parts,
            trust_domain: trust_domain.clone(),
        };
        let dummy = SpiffeId::parse(&template.fill(|_| Ok(DUMMY_VALUE.into()))?)
            .map_err(|source| MappingError::InvalidTemplate { source })?;
        if dummy.path().is_empty() {
            return Err(MappingError::TemplateWithoutPath);
        }
        template.check_placement(&dummy)?;
        Ok(template)
    }

    /// The template text as configured.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The trust domain every rendered ID belongs to.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// The placeholder names, in the order they appear (a repeated name appears again).
    pub fn placeholders(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|part| match part {
            TemplatePart::Placeholder(name) => Some(name.as_str()),
            TemplatePart::Literal(_) => None,
        })
    }

    /// Renders the template with `attrs`.
    ///
    /// Each placeholder's attribute must exist and be a `Str` or an `Int`; a `Str` must be 1 to
    /// [`MAX_SEGMENT_VALUE_BYTES`] bytes of ASCII letters, digits, `.`, `-` and `_`, and not `.`
    /// or `..`, so a value can never add a path segment or climb out of one (`acme/prod` is
    /// refused, not split). The result must parse as a SPIFFE ID (at most 2048 bytes), be in the
    /// template's trust domain and lie outside `/sigil/`; otherwise this fails and no ID is
    /// returned.
    pub fn render(&self, attrs: &Attributes) -> Result<SpiffeId, MappingError> {
        let text = self.fill(|name| match attrs.get(name) {
            None => Err(MappingError::MissingAttribute { name: name.into() }),
            Some(AttrValue::Int(i)) => Ok(i.to_string()),
            Some(AttrValue::Str(s)) if is_segment_safe(s) => Ok(s.clone()),
            Some(AttrValue::Str(_)) => Err(MappingError::UnsafeValue { name: name.into() }),
            Some(AttrValue::Bool(_)) => Err(MappingError::AttributeType {
                name: name.into(),
                found: "a boolean",
            }),
            Some(AttrValue::List(_)) => Err(MappingError::AttributeType {
                name: name.into(),
                found: "a list",
            }),
        })?;
        let id =
            SpiffeId::parse(&text).map_err(|source| MappingError::InvalidRenderedId { source })?;
        self.check_placement(&id)?;
        Ok(id)
    }

    /// Concatenates the template with each placeholder replaced by `value(name)`.
    fn fill(
        &self,
        mut value: impl FnMut(&str) -> Result<String, MappingError>,
    ) -> Result<String, MappingError> {
        let mut out = String::with_capacity(self.source.len());
        for part in &self.parts {
            match part {
                TemplatePart::Literal(text) => out.push_str(text),
                TemplatePart::Placeholder(name) => out.push_str(&value(name)?),
            }
        }
        Ok(out)
    }

    /// Refuses an ID outside the template's trust domain or under Sigil's reserved path.
    fn check_placement(&self, id: &SpiffeId) -> Result<(), MappingError> {
        if !id.is_member_of(&self.trust_domain) {
            return Err(MappingError::WrongTrustDomain {
                expected: self.trust_domain.as_str().to_owned(),
                got: id.trust_domain_str().to_owned(),
            });
        }
        if naming::is_reserved(id) {
            return Err(MappingError::ReservedId);
        }
        Ok(())
    }
}

impl ClaimPath {
    /// Parses the claim path `text` configured for `attribute` (module docs).
    fn parse(attribute: &str, text: &str) -> Result<Self, MappingError> {
        if text.is_empty() {
            return Err(MappingError::EmptyClaimPath {
                attribute: attribute.to_owned(),
            });
        }
        if text.len() > MAX_CLAIM_PATH_BYTES {
            return Err(MappingError::ClaimPathTooLong {
                path: text.to_owned(),
                max: MAX_CLAIM_PATH_BYTES,
            });
        }
        let syntax = |offset: usize, expected: &'static str| MappingError::ClaimPathSyntax {
            path: text.to_owned(),
            offset,
            expected,
        };
        let mut keys = Vec::new();
        let mut chars = text.char_indices().peekable();
        let mut first = true;
        while let Some(&(start, c)) = chars.peek() {
            let key = if c == '[' {
                chars.next();
                let key = parse_quoted_key(&mut chars, text.len())
                    .map_err(|(offset, expected)| syntax(offset, expected))?;
                match chars.next() {
                    Some((_, ']')) => key,
                    Some((offset, _)) => return Err(syntax(offset, "`]`")),
                    None => return Err(syntax(text.len(), "`]`")),
                }
            } else {
                if !first {
                    if c != '.' {
                        return Err(syntax(start, "`.` or `[`"));
                    }
                    chars.next();
                    if let Some(&(_, '[')) = chars.peek() {
                        // `a.["b"]` mixes the two forms; one separator per key.
                        return Err(syntax(start + 1, "a key after `.`"));
                    }
                }
                let key_start = chars.peek().map_or(text.len(), |&(i, _)| i);
                let mut key = String::new();
                while let Some(&(_, c)) = chars.peek() {
                    if !is_bare_key_char(c) {
                        break;
                    }
                    key.push(c);
                    chars.next();
                }
                if key.is_empty() {
                    return Err(syntax(
                        key_start,
                        "a key (letters, digits, `_`, `-`, `:`, `$`) or a bracketed `[\"key\"]`",
                    ));
                }
                key
            };
            keys.push(key);
            if keys.len() > MAX_CLAIM_PATH_KEYS {
                return Err(MappingError::ClaimPathTooDeep {
                    path: text.to_owned(),
                    max: MAX_CLAIM_PATH_KEYS,
                });
            }
            first = false;
        }
        Ok(Self {
            text: text.to_owned(),
            keys,
        })
    }

    /// The value at this path, `None` when a key along it is missing.
    fn lookup<'a>(
        &self,
        claims: &'a Map<String, Value>,
    ) -> Result<Option<&'a Value>, MappingError> {
        let mut object = claims;
        let mut keys = self.keys.iter().peekable();
        while let Some(key) = keys.next() {
            let Some(value) = object.get(key) else {
                return Ok(None);
            };
            if keys.peek().is_none() {
                return Ok(Some(value));
            }
            object = value
                .as_object()
                .ok_or_else(|| MappingError::ClaimNotAnObject {
                    claim: self.text.clone(),
                })?;
        }
        // A parsed path has at least one key, so the loop returns; an empty one finds nothing.
        Ok(None)
    }

    /// Converts the claim's JSON value to an attribute value, within the size limits.
    fn convert(&self, value: &Value) -> Result<AttrValue, MappingError> {
        let type_error = |found| MappingError::ClaimType {
            claim: self.text.clone(),
            found,
        };
        match value {
            Value::String(s) => Ok(AttrValue::Str(self.bounded_string(s)?)),
            Value::Bool(b) => Ok(AttrValue::Bool(*b)),
            Value::Number(n) => n
                .as_i64()
                .map(AttrValue::Int)
                .ok_or_else(|| type_error("a number that is not a 64-bit integer")),
            Value::Array(items) => {
                if items.len() > MAX_CLAIM_LIST_ITEMS {
                    return Err(MappingError::ClaimListTooLong {
                        claim: self.text.clone(),
                        max: MAX_CLAIM_LIST_ITEMS,
                    });
                }
                items
                    .iter()
                    .map(|item| match item {
                        Value::String(s) => self.bounded_string(s),
                        _ => Err(type_error("an array holding a value that is not a string")),
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .map(AttrValue::List)
            }
            Value::Null => Err(type_error("null")),
            Value::Object(_) => Err(type_error("an object")),
        }
    }

    fn bounded_string(&self, s: &str) -> Result<String, MappingError> {
        if s.len() > MAX_CLAIM_STRING_BYTES {
            return Err(MappingError::ClaimTooLong {
                claim: self.text.clone(),
                max: MAX_CLAIM_STRING_BYTES,
            });
        }
        Ok(s.to_owned())
    }
}

/// Whether `name` can name an attribute: `[a-z_][a-z0-9_]{0,63}`. Never a `=`, so the
/// `"name=value"` strings policies see of an external subject's attributes split at their first
/// `=` unambiguously.
pub(crate) fn is_valid_attribute_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    let Some(first) = bytes.next() else {
        return false;
    };
    name.len() <= MAX_ATTRIBUTE_NAME_BYTES
        && (first.is_ascii_lowercase() || first == b'_')
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Whether `value` can stand for a placeholder: 1 to 255 bytes of `[A-Za-z0-9._-]`, not `.`/`..`.
fn is_segment_safe(value: &str) -> bool {
    (1..=MAX_SEGMENT_VALUE_BYTES).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
        && value != "."
        && value != ".."
}

fn is_bare_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | ':' | '$')
}

/// Reads `"key"` (after a `[`), with `\"` and `\\` escapes; on error, the offset and what was
/// expected there.
fn parse_quoted_key(
    chars: &mut std::iter::Peekable<std::str::CharIndices<'_>>,
    end: usize,
) -> Result<String, (usize, &'static str)> {
    match chars.next() {
        Some((_, '"')) => {}
        Some((offset, _)) => return Err((offset, "`\"` after `[`")),
        None => return Err((end, "`\"` after `[`")),
    }
    let mut key = String::new();
    loop {
        match chars.next() {
            None => return Err((end, "a closing `\"`")),
            Some((offset, '"')) => {
                if key.is_empty() {
                    return Err((offset, "a non-empty key"));
                }
                return Ok(key);
            }
            Some((offset, '\\')) => match chars.next() {
                Some((_, c @ ('"' | '\\'))) => key.push(c),
                _ => return Err((offset, "`\\\"` or `\\\\` (the only escapes)")),
            },
            Some((_, c)) => key.push(c),
        }
    }
}

/// Splits a template into literals and placeholders; also returns each placeholder's offset.
fn split_template(text: &str) -> Result<(Vec<TemplatePart>, Vec<usize>), MappingError> {
    let mut parts = Vec::new();
    let mut offsets = Vec::new();
    let mut literal = String::new();
    let mut chars = text.char_indices().peekable();
    while let Some((offset, c)) = chars.next() {
        match c {
            '{' => {
                if let Some(&(_, '{')) = chars.peek() {
                    return Err(MappingError::EscapedBrace { offset });
                }
                let mut name = String::new();
                loop {
                    match chars.next() {
                        None => return Err(MappingError::UnclosedPlaceholder { offset }),
                        Some((_, '}')) => break,
                        Some((_, '{')) => return Err(MappingError::UnclosedPlaceholder { offset }),
                        Some((_, c)) => name.push(c),
                    }
                }
                if !is_valid_attribute_name(&name) {
                    return Err(MappingError::InvalidPlaceholderName { name, offset });
                }
                if offsets.len() == MAX_PLACEHOLDERS {
                    return Err(MappingError::TooManyPlaceholders {
                        max: MAX_PLACEHOLDERS,
                    });
                }
                if !literal.is_empty() {
                    parts.push(TemplatePart::Literal(std::mem::take(&mut literal)));
                }
                parts.push(TemplatePart::Placeholder(name));
                offsets.push(offset);
            }
            '}' => {
                if let Some(&(_, '}')) = chars.peek() {
                    return Err(MappingError::EscapedBrace { offset });
                }
                return Err(MappingError::UnopenedPlaceholder { offset });
            }
            c => literal.push(c),
        }
    }
    if !literal.is_empty() {
        parts.push(TemplatePart::Literal(literal));
    }
    Ok((parts, offsets))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    fn td() -> TrustDomain {
        TrustDomain::parse("example.org").unwrap()
    }

    fn claims(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            other => panic!("not an object: {other}"),
        }
    }

    fn mapping(pairs: &[(&str, &str)]) -> Result<AttributeMapping, MappingError> {
        AttributeMapping::new(pairs.iter().map(|(a, p)| (a.to_string(), p.to_string())))
    }

    fn attrs(pairs: &[(&str, AttrValue)]) -> Attributes {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    fn s(v: &str) -> AttrValue {
        AttrValue::Str(v.into())
    }

    fn github_claims() -> Map<String, Value> {
        claims(json!({
            "iss": "https://token.actions.githubusercontent.com",
            "sub": "repo:acme/app:ref:refs/heads/main",
            "repository": "acme/app",
            "repository_owner": "acme",
            "repository_owner_id": "1234",
            "repository_id": "5678",
            "ref": "refs/heads/main",
            "run_attempt": 1,
            "groups": ["deploy", "build"],
            "private": true,
        }))
    }

    // ---- attribute mapping ----

    #[test]
    fn maps_top_level_claims_of_each_type() {
        let m = mapping(&[
            ("owner", "repository_owner"),
            ("attempt", "run_attempt"),
            ("private", "private"),
            ("groups", "groups"),
        ])
        .unwrap();
        let a = m.apply(&github_claims()).unwrap();
        assert_eq!(
            a,
            attrs(&[
                ("owner", s("acme")),
                ("attempt", AttrValue::Int(1)),
                ("private", AttrValue::Bool(true)),
                (
                    "groups",
                    AttrValue::List(vec!["deploy".into(), "build".into()])
                ),
            ])
        );
    }

    #[test]
    fn maps_nested_path_and_bracketed_key_with_dots() {
        let m = mapping(&[
            ("namespace", r#"["kubernetes.io"].namespace"#),
            ("sa", r#"["kubernetes.io"]["serviceaccount"].name"#),
            ("pod", r#"["kubernetes.io"].pod["name"]"#),
        ])
        .unwrap();
        let c = claims(json!({
            "kubernetes.io": {
                "namespace": "prod",
                "serviceaccount": {"name": "api", "uid": "u-1"},
                "pod": {"name": "api-0"}
            },
            "kubernetes": {"io": {"namespace": "decoy"}}
        }));
        let a = m.apply(&c).unwrap();
        assert_eq!(
            a,
            attrs(&[
                ("namespace", s("prod")),
                ("sa", s("api")),
                ("pod", s("api-0"))
            ])
        );
    }

    #[test]
    fn dotted_path_walks_nested_objects_not_a_dotted_key() {
        let m = mapping(&[("ns", "kubernetes.io.namespace")]).unwrap();
        let dotted_key = claims(json!({"kubernetes.io": {"namespace": "prod"}}));
        assert_eq!(m.apply(&dotted_key).unwrap(), Attributes::new());
        let nested = claims(json!({"kubernetes": {"io": {"namespace": "prod"}}}));
        assert_eq!(m.apply(&nested).unwrap(), attrs(&[("ns", s("prod"))]));
    }

    #[test]
    fn bracketed_key_takes_escaped_quote_and_backslash() {
        let m = mapping(&[("v", r#"["a\"b\\c"]"#)]).unwrap();
        let c = claims(json!({"a\"b\\c": "yes"}));
        assert_eq!(m.apply(&c).unwrap(), attrs(&[("v", s("yes"))]));
    }

    #[test]
    fn absent_claims_are_absent_attributes() {
        let m = mapping(&[
            ("environment", "environment"),
            ("ns", r#"["kubernetes.io"].namespace"#),
            ("owner", "repository_owner"),
        ])
        .unwrap();
        let a = m.apply(&github_claims()).unwrap();
        assert_eq!(a, attrs(&[("owner", s("acme"))]));
    }

    #[test]
    fn unsupported_claim_types_are_errors_naming_the_claim() {
        let m = mapping(&[("v", "v")]).unwrap();
        for (value, found) in [
            (json!(null), "null"),
            (json!(1.5), "a number that is not a 64-bit integer"),
            (json!(u64::MAX), "a number that is not a 64-bit integer"),
            (json!({"a": 1}), "an object"),
            (
                json!(["a", 1]),
                "an array holding a value that is not a string",
            ),
        ] {
            let err = m.apply(&claims(json!({ "v": value }))).unwrap_err();
            assert_eq!(
                err,
                MappingError::ClaimType {
                    claim: "v".into(),
                    found
                }
            );
            assert!(err.to_string().starts_with("claim `v` is "), "{err}");
        }
    }

    #[test]
    fn path_through_a_non_object_is_an_error() {
        let m = mapping(&[("ns", r#"["kubernetes.io"].namespace"#)]).unwrap();
        let err = m
            .apply(&claims(json!({"kubernetes.io": "prod"})))
            .unwrap_err();
        assert_eq!(
            err,
            MappingError::ClaimNotAnObject {
                claim: r#"["kubernetes.io"].namespace"#.into()
            }
        );
    }

    #[test]
    fn oversized_strings_and_lists_are_errors() {
        let m = mapping(&[("v", "v")]).unwrap();
        let ok = "a".repeat(MAX_CLAIM_STRING_BYTES);
        assert!(m.apply(&claims(json!({ "v": ok }))).is_ok());
        let long = "a".repeat(MAX_CLAIM_STRING_BYTES + 1);
        assert!(matches!(
            m.apply(&claims(json!({ "v": long.clone() }))),
            Err(MappingError::ClaimTooLong { .. })
        ));
        assert!(matches!(
            m.apply(&claims(json!({ "v": [long] }))),
            Err(MappingError::ClaimTooLong { .. })
        ));
        let full: Vec<String> = (0..MAX_CLAIM_LIST_ITEMS).map(|i| i.to_string()).collect();
        assert!(m.apply(&claims(json!({ "v": full }))).is_ok());
        let over: Vec<String> = (0..=MAX_CLAIM_LIST_ITEMS).map(|i| i.to_string()).collect();
        assert!(matches!(
            m.apply(&claims(json!({ "v": over }))),
            Err(MappingError::ClaimListTooLong { .. })
        ));
    }

    #[test]
    fn rejects_invalid_attribute_names() {
        for name in [
            "",
            "Owner",
            "1st",
            "a-b",
            "a=b",
            "ref=refs/heads/main",
            "a".repeat(65).as_str(),
        ] {
            assert_eq!(
                mapping(&[(name, "sub")]).unwrap_err(),
                MappingError::InvalidAttributeName { name: name.into() },
                "{name}"
            );
        }
        assert!(mapping(&[(&"a".repeat(64), "sub"), ("_x9", "sub")]).is_ok());
        // Words the retired condition language reserved are ordinary names now.
        assert!(mapping(&[("in", "sub"), ("true", "iss"), ("false", "aud")]).is_ok());
    }

    #[test]
    fn rejects_duplicate_attributes_and_too_many_mappings() {
        assert_eq!(
            mapping(&[("a", "sub"), ("a", "iss")]).unwrap_err(),
            MappingError::DuplicateAttribute { name: "a".into() }
        );
        let names: Vec<String> = (0..=MAX_MAPPINGS).map(|i| format!("a{i}")).collect();
        let pairs = names.iter().map(|n| (n.clone(), "sub".to_string()));
        assert!(AttributeMapping::new(pairs.clone().take(MAX_MAPPINGS)).is_ok());
        assert_eq!(
            AttributeMapping::new(pairs).unwrap_err(),
            MappingError::TooManyMappings { max: MAX_MAPPINGS }
        );
    }

    #[test]
    fn rejects_bad_claim_paths_with_offsets() {
        let syntax = |path: &str| match mapping(&[("a", path)]).unwrap_err() {
            MappingError::ClaimPathSyntax { offset, .. } => offset,
            other => panic!("{path}: {other:?}"),
        };
        assert_eq!(syntax("a..b"), 2);
        assert_eq!(syntax(".a"), 0);
        assert_eq!(syntax("a."), 2);
        assert_eq!(syntax(r#"["a"#), 3);
        assert_eq!(syntax(r#"["a""#), 4);
        assert_eq!(syntax(r#"[a]"#), 1);
        assert_eq!(syntax(r#"[""]"#), 2);
        assert_eq!(syntax(r#"["a\n"]"#), 3);
        assert_eq!(syntax(r#"a.["b"]"#), 2);
        assert_eq!(syntax(r#"["a"]b"#), 5);
        assert_eq!(syntax("a b"), 1);
        assert_eq!(
            mapping(&[("a", "")]).unwrap_err(),
            MappingError::EmptyClaimPath {
                attribute: "a".into()
            }
        );
        let deep = ["k"; MAX_CLAIM_PATH_KEYS + 1].join(".");
        assert!(matches!(
            mapping(&[("a", &deep)]).unwrap_err(),
            MappingError::ClaimPathTooDeep { .. }
        ));
        let ok = ["k"; MAX_CLAIM_PATH_KEYS].join(".");
        assert!(mapping(&[("a", &ok)]).is_ok());
        let long = "k".repeat(MAX_CLAIM_PATH_BYTES + 1);
        assert!(matches!(
            mapping(&[("a", &long)]).unwrap_err(),
            MappingError::ClaimPathTooLong { .. }
        ));
    }

    // ---- SPIFFE ID templates ----

    fn template(text: &str) -> Result<SpiffeIdTemplate, MappingError> {
        SpiffeIdTemplate::parse(text, &td())
    }

    fn ci_template() -> SpiffeIdTemplate {
        template("spiffe://example.org/ci/{repository_owner_id}/{repository_id}").unwrap()
    }

    #[test]
    fn renders_template_with_string_and_integer_attributes() {
        let t = ci_template();
        assert_eq!(
            t.placeholders().collect::<Vec<_>>(),
            ["repository_owner_id", "repository_id"]
        );
        let id = t
            .render(&attrs(&[
                ("repository_owner_id", s("1234")),
                ("repository_id", AttrValue::Int(5678)),
                ("unused", AttrValue::Bool(true)),
            ]))
            .unwrap();
        assert_eq!(id.as_str(), "spiffe://example.org/ci/1234/5678");
        assert!(id.is_member_of(&td()));
    }

    #[test]
    fn renders_placeholders_inside_a_segment() {
        let t = template("spiffe://example.org/gh/{owner}-{repo}.v1").unwrap();
        let id = t
            .render(&attrs(&[("owner", s("acme")), ("repo", s("app"))]))
            .unwrap();
        assert_eq!(id.as_str(), "spiffe://example.org/gh/acme-app.v1");
    }

    #[test]
    fn render_refuses_values_that_would_change_the_path() {
        let t = ci_template();
        // The positive case first, so the refusals below fail for the value alone.
        let good = attrs(&[
            ("repository_owner_id", s("acme")),
            ("repository_id", s("app")),
        ]);
        assert!(t.render(&good).is_ok());
        for bad in [
            "acme/prod",
            "..",
            ".",
            "",
            "a b",
            "a%2fb",
            "é",
            "a".repeat(256).as_str(),
        ] {
            let mut a = good.clone();
            a.insert("repository_owner_id".into(), s(bad));
            assert_eq!(
                t.render(&a).unwrap_err(),
                MappingError::UnsafeValue {
                    name: "repository_owner_id".into()
                },
                "{bad:?}"
            );
        }
        let mut a = good.clone();
        a.insert("repository_owner_id".into(), s(&"a".repeat(255)));
        assert!(t.render(&a).is_ok());
        a.insert("repository_owner_id".into(), s("..."));
        assert!(t.render(&a).is_ok());
    }

    #[test]
    fn render_refuses_missing_and_non_scalar_attributes() {
        let t = ci_template();
        assert_eq!(
            t.render(&attrs(&[("repository_owner_id", s("acme"))]))
                .unwrap_err(),
            MappingError::MissingAttribute {
                name: "repository_id".into()
            }
        );
        for (value, found) in [
            (AttrValue::List(vec!["a".into()]), "a list"),
            (AttrValue::Bool(true), "a boolean"),
        ] {
            let a = attrs(&[("repository_owner_id", s("acme")), ("repository_id", value)]);
            assert_eq!(
                t.render(&a).unwrap_err(),
                MappingError::AttributeType {
                    name: "repository_id".into(),
                    found
                }
            );
        }
    }

    #[test]
    fn render_refuses_ids_over_the_length_limit() {
        let segments: Vec<String> = (0..MAX_PLACEHOLDERS).map(|i| format!("{{p{i}}}")).collect();
        let t = template(&format!("spiffe://example.org/{}", segments.join("/"))).unwrap();
        let a: Attributes = (0..MAX_PLACEHOLDERS)
            .map(|i| (format!("p{i}"), s(&"a".repeat(MAX_SEGMENT_VALUE_BYTES))))
            .collect();
        assert_eq!(
            t.render(&a).unwrap_err(),
            MappingError::InvalidRenderedId {
                source: SpiffeIdError::TooLong
            }
        );
    }

    #[test]
    fn render_refuses_the_reserved_sigil_path() {
        let t = template("spiffe://example.org/{area}/agent").unwrap();
        assert!(t.render(&attrs(&[("area", s("ci"))])).is_ok());
        assert_eq!(
            t.render(&attrs(&[("area", s("sigil"))])).unwrap_err(),
            MappingError::ReservedId
        );
        assert_eq!(
            template("spiffe://example.org/sigil/{x}").unwrap_err(),
            MappingError::ReservedId
        );
    }

    #[test]
    fn template_in_another_trust_domain_is_refused() {
        assert_eq!(
            template("spiffe://other.org/ci/{repository_id}").unwrap_err(),
            MappingError::WrongTrustDomain {
                expected: "example.org".into(),
                got: "other.org".into()
            }
        );
    }

    #[test]
    fn placeholder_in_the_trust_domain_is_refused() {
        assert_eq!(
            template("spiffe://{owner}.example.org/ci").unwrap_err(),
            MappingError::PlaceholderOutsidePath { offset: 9 }
        );
        assert_eq!(
            template("spiffe://example.{tld}").unwrap_err(),
            MappingError::PlaceholderOutsidePath { offset: 17 }
        );
        assert_eq!(
            template("{scheme}://example.org/a").unwrap_err(),
            MappingError::InvalidTemplate {
                source: SpiffeIdError::WrongScheme
            }
        );
    }

    #[test]
    fn template_syntax_errors_name_the_offset() {
        let cases = [
            (
                "spiffe://example.org/{{x}}",
                MappingError::EscapedBrace { offset: 21 },
            ),
            (
                "spiffe://example.org/a}}",
                MappingError::EscapedBrace { offset: 22 },
            ),
            (
                "spiffe://example.org/a}",
                MappingError::UnopenedPlaceholder { offset: 22 },
            ),
            (
                "spiffe://example.org/{x",
                MappingError::UnclosedPlaceholder { offset: 21 },
            ),
            (
                "spiffe://example.org/{x{y}",
                MappingError::UnclosedPlaceholder { offset: 21 },
            ),
            (
                "spiffe://example.org/{}",
                MappingError::InvalidPlaceholderName {
                    name: String::new(),
                    offset: 21,
                },
            ),
            (
                "spiffe://example.org/{Owner}",
                MappingError::InvalidPlaceholderName {
                    name: "Owner".into(),
                    offset: 21,
                },
            ),
        ];
        for (text, err) in cases {
            assert_eq!(template(text).unwrap_err(), err, "{text}");
        }
    }

    #[test]
    fn template_must_be_a_spiffe_id_with_a_path() {
        assert_eq!(
            template("spiffe://example.org").unwrap_err(),
            MappingError::TemplateWithoutPath
        );
        assert_eq!(
            template("spiffe://example.org/ci//{x}").unwrap_err(),
            MappingError::InvalidTemplate {
                source: SpiffeIdError::EmptySegment
            }
        );
        assert_eq!(
            template("spiffe://example.org/ci/{x}/").unwrap_err(),
            MappingError::InvalidTemplate {
                source: SpiffeIdError::EmptySegment
            }
        );
        assert_eq!(
            template("spiffe://example.org/ci?{x}").unwrap_err(),
            MappingError::InvalidTemplate {
                source: SpiffeIdError::BadPathChar('?')
            }
        );
    }

    #[test]
    fn template_size_and_placeholder_limits() {
        let many = |n: usize| {
            let segs: Vec<String> = (0..n).map(|i| format!("{{p{i}}}")).collect();
            format!("spiffe://example.org/{}", segs.join("/"))
        };
        assert!(template(&many(MAX_PLACEHOLDERS)).is_ok());
        assert_eq!(
            template(&many(MAX_PLACEHOLDERS + 1)).unwrap_err(),
            MappingError::TooManyPlaceholders {
                max: MAX_PLACEHOLDERS
            }
        );
        let long = format!("spiffe://example.org/{}", "a".repeat(MAX_TEMPLATE_BYTES));
        assert_eq!(
            template(&long).unwrap_err(),
            MappingError::TemplateTooLong {
                max: MAX_TEMPLATE_BYTES
            }
        );
    }

    proptest! {
        #[test]
        fn render_never_adds_or_removes_segments(
            value in "\\PC{0,40}|[A-Za-z0-9._/-]{0,12}",
            extra in 0usize..3,
        ) {
            let mut text = "spiffe://example.org/ci/{owner}".to_string();
            for _ in 0..extra {
                text.push_str("/x{owner}");
            }
            let t = template(&text).unwrap();
            let segments = 2 + extra;
            if let Ok(id) = t.render(&attrs(&[("owner", s(&value))])) {
                prop_assert_eq!(id.path().split('/').skip(1).count(), segments);
                prop_assert!(id.is_member_of(&td()));
                prop_assert!(!value.contains('/'));
            }
        }

        #[test]
        fn template_parse_never_panics(text in "\\PC{0,80}") {
            let _ = template(&text);
        }

        #[test]
        fn claim_path_parse_never_panics(path in "\\PC{0,60}") {
            let _ = mapping(&[("a", &path)]);
        }
    }
}
