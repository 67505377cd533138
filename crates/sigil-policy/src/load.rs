//! Loading a policy directory: schema fragments merged with the built-in schema, policies parsed,
//! renamed and validated in strict mode, then indexed by action.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use cedar_policy::{
    ActionConstraint, Entities, EntityTypeName, EntityUid, Policy, PolicyId, PolicySet, Schema,
    SchemaFragment, ValidationMode, Validator,
};
use miette::Diagnostic;

use crate::cache::EntityCache;
use crate::entities::ShapeProof;
use crate::error::{PolicyError, SourceLocation};
use crate::index::ScopeIndex;

/// The schema every policy is validated against, shipped in `schema/sigil.cedarschema`.
pub const BUILTIN_SCHEMA: &str = include_str!("../schema/sigil.cedarschema");

/// The policies in force when the directory holds no `*.cedar` file: plain SPIFFE behaviour.
///
/// Issuance is permitted to every principal (the registration entry decides who gets which SVID)
/// and so is token exchange (the token-exchange configuration decides what may be exchanged).
/// Operator-defined actions have no permit, so they are denied.
pub const DEFAULT_POLICIES: &str = r#"@id("default:issue")
permit (
  principal,
  action in [Sigil::Action::"IssueX509Svid", Sigil::Action::"IssueJwtSvid"],
  resource
);

@id("default:exchange")
permit (principal, action == Sigil::Action::"Exchange", resource);
"#;

/// The hash of the built-in default set (a directory with no `*.cedar` and no `*.cedarschema`).
pub const DEFAULT_POLICY_HASH: &str = "default";

/// The largest policy or schema file read, in bytes (1 MiB).
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;
/// The most policies a directory may hold, all files together.
pub const MAX_POLICIES: usize = 10_000;
/// The most `*.cedar` and `*.cedarschema` files a directory may hold.
pub const MAX_FILES: usize = 1_000;

const POLICY_EXT: &str = "cedar";
const SCHEMA_EXT: &str = "cedarschema";
const NAMESPACE: &str = "Sigil";

/// A validated policy set with its schema, ready for decisions. Immutable once built.
pub struct LoadedPolicies {
    hash: String,
    ids: Vec<String>,
    all: PolicySet,
    pub(crate) schema: Schema,
    /// The policies that can apply to each action (action scope `any`, `==` it, or `in` one of its
    /// groups), keyed by the action's id (`IssueX509Svid`, `db:read`), and within an action
    /// indexed by principal and resource scope: a decision evaluates only the policies whose
    /// scope can match, which gives the same answer as the whole set.
    pub(crate) actions: HashMap<String, ActionPolicies>,
    /// The schema's action entities, put in every decision's entity store, or `None` when no
    /// action is in a group. Then they are not needed: cedar answers `action in X` for an action
    /// missing from the store by equality, which is the answer an action without groups gives,
    /// and actions have no attributes; leaving them out saves copying them and closing their
    /// ancestry in every decision.
    pub(crate) action_entities: Option<Entities>,
    pub(crate) names: EntityNames,
    /// Entity stores of recent decisions (see [`EntityCache`]).
    pub(crate) entity_cache: EntityCache,
}

/// One action's entity uid, the policies that can apply to it, and the request shapes proven to
/// validate against the schema for it.
pub(crate) struct ActionPolicies {
    pub(crate) uid: EntityUid,
    pub(crate) index: ScopeIndex,
    pub(crate) shapes: ShapeProof,
}

/// The schema's entity type names, parsed once.
pub(crate) struct EntityNames {
    pub(crate) workload: EntityTypeName,
    pub(crate) agent: EntityTypeName,
    pub(crate) external: EntityTypeName,
    pub(crate) resource: EntityTypeName,
}

impl std::fmt::Debug for LoadedPolicies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPolicies")
            .field("hash", &self.hash)
            .field("policies", &self.ids.len())
            .finish_non_exhaustive()
    }
}

impl LoadedPolicies {
    /// The built-in default set (see [`DEFAULT_POLICIES`]) with the built-in schema; its hash is
    /// [`DEFAULT_POLICY_HASH`]. Fails only if the shipped data is broken.
    pub fn builtin_default() -> Result<Self, PolicyError> {
        let schema = merged_schema(Path::new("."), &[])?;
        let policies = default_policies()?;
        build(
            DEFAULT_POLICY_HASH.to_owned(),
            schema,
            policies,
            &HashMap::new(),
        )
    }

    /// The hash that identifies this set in logs, `/readyz` and decisions: SHA-256 hex over the
    /// sorted file names and contents (schema fragments included), or [`DEFAULT_POLICY_HASH`].
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// The number of policies.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether the set has no policy (never true for a loaded directory or the default).
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The policy ids, in file order.
    pub fn ids(&self) -> &[String] {
        &self.ids
    }

    /// The whole validated policy set, with the ids decisions report.
    pub fn policy_set(&self) -> &PolicySet {
        &self.all
    }

    /// The merged schema the policies were validated against.
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// The ids of the actions requests may name (`IssueX509Svid`, operator actions ...), sorted.
    pub fn action_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.actions.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }
}

/// Loads every `*.cedar` file of `dir` (not recursive, sorted by name) and every `*.cedarschema`
/// fragment, and validates the policies strictly against the merged schema.
///
/// Policy ids are the `@id("...")` annotation when present, otherwise `<file stem>:<index>` (index
/// from 0 in file order). A directory without `*.cedar` files gets [`DEFAULT_POLICIES`].
/// Any error (unreadable file, over a limit, syntax, schema, validation, duplicate id) fails the
/// whole load; located errors display as `file:line:column: message`.
pub fn load_dir(dir: &Path) -> Result<LoadedPolicies, PolicyError> {
    let files = read_policy_files(dir)?;
    let hash = if files.is_empty() {
        DEFAULT_POLICY_HASH.to_owned()
    } else {
        files_hash(&files)
    };
    let fragments: Vec<&SourceFile> = files
        .iter()
        .filter(|f| f.kind == FileKind::Schema)
        .collect();
    let schema = merged_schema(dir, &fragments)?;
    let policy_files: Vec<&SourceFile> = files
        .iter()
        .filter(|f| f.kind == FileKind::Policy)
        .collect();
    if policy_files.is_empty() {
        return build(hash, schema, default_policies()?, &HashMap::new());
    }

    let mut named: Vec<Policy> = Vec::new();
    // Policy id -> the file it came from, to locate validation errors.
    let mut origin: HashMap<String, &SourceFile> = HashMap::new();
    for file in policy_files {
        let parsed = PolicySet::from_str(&file.text).map_err(|errs| {
            let first = errs.iter().next();
            let (offset, message) = first.map_or((0, errs.to_string()), |e| {
                (first_label_offset(e).unwrap_or(0), message_with_help(e))
            });
            PolicyError::Syntax {
                location: file.location(offset),
                message,
                more: errs.iter().count().saturating_sub(1),
            }
        })?;
        if let Some(template) = parsed.templates().next() {
            let offset = file.text.find('?').unwrap_or(0);
            return Err(PolicyError::Template {
                location: file.location(offset),
                id: template.id().to_string(),
            });
        }
        // cedar names the policies of one text `policy0`, `policy1`, ... in source order.
        let mut in_file: Vec<(usize, &Policy)> = parsed
            .policies()
            .map(|p| (source_index(p.id()), p))
            .collect();
        in_file.sort_by_key(|(index, _)| *index);
        for (index, policy) in in_file {
            if named.len() >= MAX_POLICIES {
                return Err(PolicyError::TooManyPolicies {
                    location: file.location(0),
                    max: MAX_POLICIES,
                });
            }
            let id = match policy.annotation("id") {
                Some(id) => id.to_owned(),
                None => format!("{}:{index}", file.stem),
            };
            if origin.contains_key(&id) {
                let offset = file.text.find(&format!("\"{id}\"")).unwrap_or(0);
                return Err(PolicyError::DuplicatePolicyId {
                    location: file.location(offset),
                    id,
                });
            }
            origin.insert(id.clone(), file);
            named.push(policy.new_id(PolicyId::new(&id)));
        }
    }
    build(hash, schema, named, &origin)
}

/// A file read from the policy directory.
#[derive(Debug)]
struct SourceFile {
    path: PathBuf,
    name: String,
    stem: String,
    kind: FileKind,
    text: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FileKind {
    Policy,
    Schema,
}

impl SourceFile {
    fn location(&self, offset: usize) -> SourceLocation {
        SourceLocation::from_offset(self.path.clone(), &self.text, offset)
    }
}

fn read_policy_files(dir: &Path) -> Result<Vec<SourceFile>, PolicyError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| PolicyError::Io { path, source }
    };
    let mut found: BTreeMap<String, (PathBuf, FileKind)> = BTreeMap::new();
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        let path = entry.path();
        // Names that are not UTF-8 cannot be `*.cedar`; they are not policy files.
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let kind = match path.extension().and_then(|e| e.to_str()) {
            Some(POLICY_EXT) => FileKind::Policy,
            Some(SCHEMA_EXT) => FileKind::Schema,
            _ => continue,
        };
        if found.len() >= MAX_FILES {
            return Err(PolicyError::TooManyFiles {
                dir: dir.to_path_buf(),
                max: MAX_FILES,
            });
        }
        found.insert(name, (path, kind));
    }
    let mut files = Vec::with_capacity(found.len());
    for (name, (path, kind)) in found {
        let file = std::fs::File::open(&path).map_err(io(&path))?;
        let size = file.metadata().map_err(io(&path))?.len();
        if size > MAX_FILE_BYTES {
            return Err(PolicyError::FileTooLarge {
                path,
                size,
                max: MAX_FILE_BYTES,
            });
        }
        let mut bytes = Vec::new();
        // The file may grow between the size check and the read: never read past the limit.
        file.take(MAX_FILE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(io(&path))?;
        let read = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
        if read > MAX_FILE_BYTES {
            return Err(PolicyError::FileTooLarge {
                path,
                size: read,
                max: MAX_FILE_BYTES,
            });
        }
        let text =
            String::from_utf8(bytes).map_err(|_| PolicyError::NotUtf8 { path: path.clone() })?;
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_owned();
        files.push(SourceFile {
            path,
            name,
            stem,
            kind,
            text,
        });
    }
    Ok(files)
}

/// SHA-256 hex over each file's name and contents, in name order, each length-prefixed so that
/// no two different directories hash the same.
fn files_hash(files: &[SourceFile]) -> String {
    let mut buf = Vec::new();
    for file in files {
        for part in [file.name.as_bytes(), file.text.as_bytes()] {
            buf.extend_from_slice(part.len().to_string().as_bytes());
            buf.push(b':');
            buf.extend_from_slice(part);
        }
    }
    sigil_keys::sha256_hex(&buf)
}

fn merged_schema(dir: &Path, fragments: &[&SourceFile]) -> Result<Schema, PolicyError> {
    let builtin = SchemaFragment::from_cedarschema_str(BUILTIN_SCHEMA)
        .map_err(|e| PolicyError::BuiltIn {
            message: e.to_string(),
        })?
        .0;
    let mut all = vec![builtin];
    for file in fragments {
        let (fragment, _warnings) =
            SchemaFragment::from_cedarschema_str(&file.text).map_err(|e| {
                PolicyError::SchemaSyntax {
                    location: file.location(first_label_offset(&e).unwrap_or(0)),
                    message: message_with_help(&e),
                }
            })?;
        all.push(fragment);
    }
    Schema::from_schema_fragments(all).map_err(|e| PolicyError::Schema {
        dir: dir.to_path_buf(),
        message: message_with_help(&e),
    })
}

fn default_policies() -> Result<Vec<Policy>, PolicyError> {
    let set = PolicySet::from_str(DEFAULT_POLICIES).map_err(|e| PolicyError::BuiltIn {
        message: e.to_string(),
    })?;
    let mut policies: Vec<Policy> = set
        .policies()
        .map(|p| {
            let id = p.annotation("id").unwrap_or_default().to_owned();
            p.new_id(PolicyId::new(id))
        })
        .collect();
    policies.sort_by_key(|p| p.id().to_string());
    Ok(policies)
}

/// Validates `policies` strictly and indexes them by action.
fn build(
    hash: String,
    schema: Schema,
    policies: Vec<Policy>,
    origin: &HashMap<String, &SourceFile>,
) -> Result<LoadedPolicies, PolicyError> {
    let ids: Vec<String> = policies.iter().map(|p| p.id().to_string()).collect();
    let mut set = PolicySet::new();
    for policy in &policies {
        set.add(policy.clone()).map_err(|e| PolicyError::BuiltIn {
            message: e.to_string(),
        })?;
    }
    validate(&schema, &set, origin, &ids)?;

    let action_entities = schema.action_entities().map_err(|e| PolicyError::BuiltIn {
        message: e.to_string(),
    })?;
    let action_type = format!("{NAMESPACE}::Action");
    let mut actions = HashMap::new();
    for uid in schema.actions() {
        if uid.type_name().to_string() != action_type {
            continue;
        }
        let mut groups: HashSet<&EntityUid> = action_entities
            .ancestors(uid)
            .map(|a| a.collect())
            .unwrap_or_default();
        groups.insert(uid);
        let applying = policies
            .iter()
            .filter(|policy| match policy.action_constraint() {
                ActionConstraint::Any => true,
                ActionConstraint::Eq(a) => &a == uid,
                ActionConstraint::In(list) => list.iter().any(|a| groups.contains(a)),
            });
        actions.insert(
            uid.id().unescaped().to_owned(),
            ActionPolicies {
                uid: uid.clone(),
                index: ScopeIndex::new(applying)?,
                shapes: ShapeProof::default(),
            },
        );
    }
    let grouped = schema.actions().any(|uid| {
        action_entities
            .ancestors(uid)
            .is_some_and(|mut a| a.next().is_some())
    });
    let mut loaded = LoadedPolicies {
        hash,
        ids,
        all: set,
        schema,
        actions,
        action_entities: grouped.then_some(action_entities),
        names: EntityNames::new()?,
        entity_cache: EntityCache::default(),
    };
    let proofs: Vec<(String, ShapeProof)> = loaded
        .actions
        .iter()
        .map(|(name, action)| (name.clone(), ShapeProof::prove(&loaded, action, name)))
        .collect();
    for (name, proof) in proofs {
        if let Some(action) = loaded.actions.get_mut(&name) {
            action.shapes = proof;
        }
    }
    Ok(loaded)
}

fn validate(
    schema: &Schema,
    set: &PolicySet,
    origin: &HashMap<String, &SourceFile>,
    ids: &[String],
) -> Result<(), PolicyError> {
    let result = Validator::new(schema.clone()).validate(set, ValidationMode::Strict);
    // Report the first error in file order, so the message does not depend on hash-map order.
    let position = |id: &str| ids.iter().position(|i| i == id).unwrap_or(usize::MAX);
    let mut errors: Vec<(usize, usize, PolicyError)> = result
        .validation_errors()
        .map(|e| {
            let id = e.policy_id().to_string();
            let message = message_with_help(e);
            let offset = first_label_offset(e);
            let error = match (origin.get(&id), offset) {
                (Some(file), Some(offset)) => PolicyError::Validation {
                    location: file.location(offset),
                    message,
                    more: 0,
                },
                _ => PolicyError::ValidationUnlocated {
                    id: id.clone(),
                    message,
                },
            };
            (position(&id), offset.unwrap_or(0), error)
        })
        .collect();
    errors.sort_by_key(|(pos, offset, _)| (*pos, *offset));
    let more = errors.len().saturating_sub(1);
    match errors.into_iter().next() {
        None => Ok(()),
        Some((
            _,
            _,
            PolicyError::Validation {
                location, message, ..
            },
        )) => Err(PolicyError::Validation {
            location,
            message,
            more,
        }),
        Some((_, _, other)) => Err(other),
    }
}

impl EntityNames {
    fn new() -> Result<Self, PolicyError> {
        let name = |n: &str| {
            EntityTypeName::from_str(&format!("{NAMESPACE}::{n}")).map_err(|e| {
                PolicyError::BuiltIn {
                    message: e.to_string(),
                }
            })
        };
        Ok(Self {
            workload: name("Workload")?,
            agent: name("Agent")?,
            external: name("ExternalSubject")?,
            resource: name("Resource")?,
        })
    }
}

/// The index cedar gave a policy of a parsed text (`policy3` -> 3).
fn source_index(id: &PolicyId) -> usize {
    id.to_string()
        .strip_prefix("policy")
        .and_then(|n| n.parse().ok())
        .unwrap_or(usize::MAX)
}

/// The byte offset of the first labelled span of a cedar diagnostic.
fn first_label_offset(d: &dyn Diagnostic) -> Option<usize> {
    d.labels()
        .and_then(|mut labels| labels.next())
        .map(|l| l.offset())
}

/// A diagnostic's message, followed by its help when it has one.
fn message_with_help(d: &dyn Diagnostic) -> String {
    match d.help() {
        Some(help) => format!("{d} (help: {help})"),
        None => d.to_string(),
    }
}
