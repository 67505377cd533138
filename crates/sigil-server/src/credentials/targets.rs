//! Credential targets as the server uses them: a [`TargetSpec`] (from `[[credentials.targets]]`
//! or the admin API) checked into a [`Target`] with parsed statements and TTLs, and
//! [`TargetRegistry`], which finds a target by name with its open [`TargetDatabase`]: targets
//! of the configuration file are opened once at start, stored ones are read from the datastore
//! on each use (so every replica sees a change at once) and their database handle is kept while
//! their revision stays the same.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use sigil_api::{DatabaseAddress, RoleSpec, TargetSpec, TtlValue};
use sigil_spiffe::Ttl;
use sigil_store::Datastore;
use zeroize::Zeroizing;

use super::CredentialsError;
use super::database::{
    AdminConnection, DatabaseKind, TargetDatabase, default_renewal_statements,
    default_revocation_statements,
};
use super::template::Template;

/// Lifetime of a credential when neither the request, the role nor the target names one.
pub const DEFAULT_TTL_SECS: u64 = 3600;
/// Longest lifetime when neither the role nor the target names one.
pub const DEFAULT_MAX_TTL_SECS: u64 = 24 * 3600;
/// Most roles one target has.
pub const MAX_ROLES: usize = 64;
/// Most statements in one list.
pub const MAX_STATEMENTS: usize = 32;
/// Longest password file read, in bytes.
const MAX_PASSWORD_FILE_BYTES: u64 = 4096;

/// Where a target's administrative password comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordSource {
    File(PathBuf),
    Env(String),
}

/// Where a target is defined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetSource {
    Config,
    Api,
}

impl TargetSource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Config => "config",
            Self::Api => "api",
        }
    }
}

/// A checked role.
#[derive(Debug)]
pub struct Role {
    pub name: String,
    pub creation: Vec<Template>,
    pub revocation: Vec<Template>,
    pub renewal: Vec<Template>,
    pub default_ttl: u64,
    pub max_ttl: u64,
}

/// A checked target.
#[derive(Debug)]
pub struct Target {
    pub spec: TargetSpec,
    pub kind: DatabaseKind,
    pub password: PasswordSource,
    pub address: DatabaseAddress,
    pub roles: BTreeMap<String, Role>,
    pub source: TargetSource,
    pub revision: i64,
}

impl Target {
    /// Checks `spec`: name, type, URL (no password in it), exactly one password source, owner,
    /// TTLs (role maximum at most the target's, defaults at most the maximum), and every
    /// statement template. The error names the field.
    pub fn from_spec(
        spec: TargetSpec,
        source: TargetSource,
        revision: i64,
    ) -> Result<Self, CredentialsError> {
        let invalid = |field: &str, reason: String| CredentialsError::InvalidTarget {
            target: spec.name.clone(),
            field: field.to_owned(),
            reason,
        };
        check_name(&spec.name).map_err(|r| invalid("name", r))?;
        let kind = DatabaseKind::parse(&spec.kind).map_err(|e| invalid("type", e.to_string()))?;
        let address = address_of(kind, &spec.url).map_err(|r| invalid("url", r))?;
        let password = match (&spec.password_file, &spec.password_env) {
            (Some(file), None) if !file.is_empty() => PasswordSource::File(PathBuf::from(file)),
            (None, Some(env)) if !env.is_empty() => PasswordSource::Env(env.clone()),
            _ => {
                return Err(invalid(
                    "password_file",
                    "give exactly one of `password_file` and `password_env`".to_owned(),
                ));
            }
        };
        let owner = spec.owner.trim();
        if owner.is_empty() || owner.len() > sigil_store::MAX_OWNER_BYTES {
            return Err(invalid(
                "owner",
                format!(
                    "must be 1 to {} bytes (who answers for this target)",
                    sigil_store::MAX_OWNER_BYTES
                ),
            ));
        }
        let max_ttl = ttl_secs(spec.max_ttl.as_ref(), DEFAULT_MAX_TTL_SECS)
            .map_err(|r| invalid("max_ttl", r))?;
        let default_ttl = ttl_secs(spec.default_ttl.as_ref(), DEFAULT_TTL_SECS.min(max_ttl))
            .map_err(|r| invalid("default_ttl", r))?;
        if default_ttl > max_ttl {
            return Err(invalid(
                "default_ttl",
                format!("{default_ttl} s is longer than max_ttl ({max_ttl} s)"),
            ));
        }
        if spec.roles.is_empty() || spec.roles.len() > MAX_ROLES {
            return Err(invalid("roles", format!("give 1 to {MAX_ROLES} roles")));
        }
        let mut roles = BTreeMap::new();
        for (i, role) in spec.roles.iter().enumerate() {
            let checked = check_role(kind, role, default_ttl, max_ttl)
                .map_err(|(field, reason)| invalid(&format!("roles[{i}].{field}"), reason))?;
            if roles.insert(checked.name.clone(), checked).is_some() {
                return Err(invalid(
                    &format!("roles[{i}].name"),
                    format!("role `{}` is defined twice", role.name),
                ));
            }
        }
        Ok(Self {
            spec,
            kind,
            password,
            address,
            roles,
            source,
            revision,
        })
    }

    pub fn name(&self) -> &str {
        &self.spec.name
    }

    pub fn owner(&self) -> &str {
        &self.spec.owner
    }

    /// Reads the administrative password from its file or environment variable.
    pub fn read_password(&self) -> Result<Zeroizing<String>, CredentialsError> {
        let unreadable = |reason: String| CredentialsError::AdminPassword {
            target: self.name().to_owned(),
            reason,
        };
        let raw =
            match &self.password {
                PasswordSource::File(path) => {
                    let meta = std::fs::metadata(path).map_err(|e| {
                        unreadable(format!("cannot read `{}`: {e}", path.display()))
                    })?;
                    if meta.len() > MAX_PASSWORD_FILE_BYTES {
                        return Err(unreadable(format!(
                            "`{}` is larger than {MAX_PASSWORD_FILE_BYTES} bytes",
                            path.display()
                        )));
                    }
                    Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
                        unreadable(format!("cannot read `{}`: {e}", path.display()))
                    })?)
                }
                PasswordSource::Env(name) => Zeroizing::new(std::env::var(name).map_err(|_| {
                    unreadable(format!("environment variable `{name}` is not set"))
                })?),
            };
        Ok(Zeroizing::new(
            raw.trim_end_matches(['\n', '\r']).to_owned(),
        ))
    }

    /// Opens the target's database (lazily: nothing connects yet).
    pub fn open(&self) -> Result<Arc<dyn TargetDatabase>, CredentialsError> {
        let password = self.read_password()?;
        super::database::open(AdminConnection {
            kind: self.kind,
            url: self.spec.url.clone(),
            password,
        })
        .map_err(|e| CredentialsError::Database {
            target: self.name().to_owned(),
            source: e,
        })
    }
}

/// A target with its database handle.
pub struct LiveTarget {
    pub target: Target,
    pub database: Arc<dyn TargetDatabase>,
}

impl std::fmt::Debug for LiveTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveTarget")
            .field("target", &self.target.name())
            .finish_non_exhaustive()
    }
}

/// Finds targets by name: the configuration file's first, then the datastore's.
pub struct TargetRegistry {
    configured: BTreeMap<String, Arc<LiveTarget>>,
    store: Arc<dyn Datastore>,
    /// Stored targets opened, by name, with the revision they were opened at.
    opened: Mutex<HashMap<String, Arc<LiveTarget>>>,
}

impl std::fmt::Debug for TargetRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TargetRegistry")
            .field("configured", &self.configured.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl TargetRegistry {
    /// Checks and opens the configured targets. Fails on the first invalid one, or one whose
    /// password cannot be read.
    pub fn new(
        specs: Vec<TargetSpec>,
        store: Arc<dyn Datastore>,
    ) -> Result<Self, CredentialsError> {
        let mut configured = BTreeMap::new();
        for spec in specs {
            let target = Target::from_spec(spec, TargetSource::Config, 0)?;
            let name = target.name().to_owned();
            let database = target.open()?;
            let live = Arc::new(LiveTarget { target, database });
            if configured.insert(name.clone(), live).is_some() {
                return Err(CredentialsError::InvalidTarget {
                    target: name,
                    field: "name".to_owned(),
                    reason: "two targets have this name".to_owned(),
                });
            }
        }
        Ok(Self {
            configured,
            store,
            opened: Mutex::new(HashMap::new()),
        })
    }

    /// Whether `name` is a target of the configuration file.
    pub fn is_configured(&self, name: &str) -> bool {
        self.configured.contains_key(name)
    }

    /// The configuration file's targets.
    pub fn configured(&self) -> impl Iterator<Item = &Arc<LiveTarget>> {
        self.configured.values()
    }

    /// The target `name`, `UnknownTarget` if there is none.
    pub async fn get(&self, name: &str) -> Result<Arc<LiveTarget>, CredentialsError> {
        if let Some(live) = self.configured.get(name) {
            return Ok(live.clone());
        }
        let stored = self
            .store
            .get_credential_target(name)
            .await?
            .ok_or_else(|| CredentialsError::UnknownTarget(name.to_owned()))?;
        if let Ok(opened) = self.opened.lock()
            && let Some(live) = opened.get(name)
            && live.target.revision == stored.revision
        {
            return Ok(live.clone());
        }
        let spec: TargetSpec =
            serde_json::from_str(&stored.spec).map_err(|e| CredentialsError::InvalidTarget {
                target: name.to_owned(),
                field: "spec".to_owned(),
                reason: format!("stored definition is unreadable: {e}"),
            })?;
        let target = Target::from_spec(spec, TargetSource::Api, stored.revision)?;
        let database = target.open()?;
        let live = Arc::new(LiveTarget { target, database });
        if let Ok(mut opened) = self.opened.lock() {
            opened.insert(name.to_owned(), live.clone());
        }
        Ok(live)
    }

    /// Forgets the open handle of stored target `name` (after it was changed or deleted).
    pub fn forget(&self, name: &str) {
        if let Ok(mut opened) = self.opened.lock() {
            opened.remove(name);
        }
    }
}

/// The name rule of targets and roles, as the admin API document states it
/// ([`sigil_api::credentials::is_valid_name`]).
fn check_name(name: &str) -> Result<(), String> {
    if sigil_api::credentials::is_valid_name(name) {
        Ok(())
    } else {
        Err(format!(
            "`{}` must be 1 to 64 of a-z 0-9 - _, starting with a letter",
            name.chars().take(80).collect::<String>()
        ))
    }
}

/// Whole seconds of `raw`, or `default` when absent.
fn ttl_secs(raw: Option<&TtlValue>, default: u64) -> Result<u64, String> {
    match raw {
        None => Ok(default),
        Some(TtlValue::Seconds(0)) => Err("must be longer than 0 s".to_owned()),
        Some(TtlValue::Seconds(n)) => Ttl::from_secs(*n)
            .map(Ttl::as_secs)
            .map_err(|e| e.to_string()),
        Some(TtlValue::Text(text)) => Ttl::parse(text)
            .map(Ttl::as_secs)
            .map_err(|e| format!("`{text}`: {e}")),
    }
}

fn templates(statements: &[String]) -> Result<Vec<Template>, String> {
    if statements.len() > MAX_STATEMENTS {
        return Err(format!("at most {MAX_STATEMENTS} statements"));
    }
    statements
        .iter()
        .enumerate()
        .map(|(i, s)| Template::parse(s).map_err(|e| format!("statement {}: {e}", i + 1)))
        .collect()
}

fn defaults(statements: &[&str]) -> Result<Vec<Template>, String> {
    statements
        .iter()
        .map(|s| Template::parse(s).map_err(|e| e.to_string()))
        .collect()
}

fn check_role(
    kind: DatabaseKind,
    role: &RoleSpec,
    target_default: u64,
    target_max: u64,
) -> Result<Role, (&'static str, String)> {
    check_name(&role.name).map_err(|r| ("name", r))?;
    if role.creation_statements.is_empty() {
        return Err((
            "creation_statements",
            "give at least one statement".to_owned(),
        ));
    }
    let creation = templates(&role.creation_statements).map_err(|r| ("creation_statements", r))?;
    let revocation = match &role.revocation_statements {
        Some(s) if !s.is_empty() => templates(s),
        _ => defaults(default_revocation_statements(kind)),
    }
    .map_err(|r| ("revocation_statements", r))?;
    let renewal = match &role.renewal_statements {
        Some(s) => templates(s),
        None => defaults(default_renewal_statements(kind)),
    }
    .map_err(|r| ("renewal_statements", r))?;
    let max_ttl = ttl_secs(role.max_ttl.as_ref(), target_max).map_err(|r| ("max_ttl", r))?;
    if max_ttl > target_max {
        return Err((
            "max_ttl",
            format!("{max_ttl} s is longer than the target's max_ttl ({target_max} s)"),
        ));
    }
    let default_ttl = ttl_secs(role.default_ttl.as_ref(), target_default.min(max_ttl))
        .map_err(|r| ("default_ttl", r))?;
    if default_ttl > max_ttl {
        return Err((
            "default_ttl",
            format!("{default_ttl} s is longer than max_ttl ({max_ttl} s)"),
        ));
    }
    Ok(Role {
        name: role.name.clone(),
        creation,
        revocation,
        renewal,
        default_ttl,
        max_ttl,
    })
}

/// Host, port and database of a connection URL (`scheme://user@host[:port][/database]`).
fn address_of(kind: DatabaseKind, url: &str) -> Result<DatabaseAddress, String> {
    let rest = url
        .split_once("://")
        .map(|(_, rest)| rest)
        .ok_or_else(|| "expected `scheme://user@host:port/database`".to_owned())?;
    let (authority, path) = match rest.find(['/', '?']) {
        Some(end) => rest.split_at(end),
        None => (rest, ""),
    };
    let hostport = authority
        .rsplit_once('@')
        .map_or(authority, |(_, hostport)| hostport);
    let default_port = match kind {
        DatabaseKind::Postgresql => 5432,
        DatabaseKind::Mariadb => 3306,
    };
    let (host, port) = match hostport.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') || hostport.starts_with('[') => (
            host,
            port.parse::<u16>()
                .map_err(|_| format!("port `{port}` is not a number from 0 to 65535"))?,
        ),
        _ => (hostport, default_port),
    };
    if host.is_empty() {
        return Err("the URL names no host".to_owned());
    }
    let database = path
        .strip_prefix('/')
        .map(|p| p.split('?').next().unwrap_or_default())
        .filter(|d| !d.is_empty())
        .map(str::to_owned);
    super::database::check_url(kind, url).map_err(|e| e.to_string())?;
    Ok(DatabaseAddress {
        kind: kind.as_str().to_owned(),
        host: host.to_owned(),
        port,
        database,
    })
}
