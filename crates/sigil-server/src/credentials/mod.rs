//! Just-in-time database credentials: short-lived users created in target databases (PostgreSQL,
//! MariaDB) for workloads proven by their SVIDs, decided by Cedar policy (action
//! `RequestCredential` on the role), held as leases in the datastore and revoked at expiry, on
//! demand, or when the workload's entry or agent goes.
//!
//! - [`leases::Credentials`]: the one place credentials are created, renewed and revoked, and the
//!   expiry task; [`targets`]: targets and roles; [`database`]: the target databases;
//!   [`template`] and [`password`]: statements and generated secrets; [`rotation`]: the password
//!   file side of a root rotation.
//! - [`http`]: `POST /creds/v1/credentials` and the lease endpoints on the public listener.

pub mod caller;
pub mod database;
pub mod http;
pub mod leases;
pub mod password;
pub mod rotation;
pub mod targets;
pub mod template;

pub use leases::{Credentials, CredentialsConfig, Issued, Requester, Via};

/// What went wrong with a credential request, a lease or a target.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("no credential target `{0}`")]
    UnknownTarget(String),
    #[error("credential target `{target}` has no role `{role}`")]
    UnknownRole { target: String, role: String },
    #[error("no lease `{0}`")]
    UnknownLease(String),
    #[error("lease `{id}` is {state}")]
    LeaseNotActive { id: String, state: &'static str },
    #[error("requested TTL {requested} s is longer than the role's maximum ({max} s)")]
    TtlTooLong { requested: u64, max: u64 },
    #[error("denied by policy: `RequestCredential` on `{target}/{role}` is not permitted{}", policy_suffix(.policies, .errors))]
    Denied {
        target: String,
        role: String,
        policies: Vec<String>,
        errors: Vec<String>,
    },
    #[error("credential target `{target}`: invalid {field}: {reason}")]
    InvalidTarget {
        target: String,
        field: String,
        reason: String,
    },
    #[error("credential target `{target}`: administrative password: {reason}")]
    AdminPassword { target: String, reason: String },
    #[error("credential target `{target}`: {source}")]
    Database {
        target: String,
        #[source]
        source: database::DatabaseError,
    },
    #[error(
        "credential target `{0}` takes its password from an environment variable; a root rotation needs `password_file`, where the new password is written"
    )]
    RotateNeedsFile(String),
    #[error("credential target `{0}` is defined in the configuration file; change it there")]
    ConfiguredTarget(String),
    #[error("the audit log cannot record the credential: {0}")]
    Audit(String),
    #[error("cannot generate a secret: {0}")]
    Random(sigil_keys::KeyError),
    #[error(transparent)]
    Store(#[from] sigil_store::StoreError),
}

fn policy_suffix(policies: &[String], errors: &[String]) -> String {
    let mut out = String::new();
    if !policies.is_empty() {
        out.push_str(&format!(" (denied by [{}])", policies.join(", ")));
    }
    if !errors.is_empty() {
        out.push_str(&format!(" (errors: {})", errors.join("; ")));
    }
    out
}
