//! The admin API: REST + JSON under `/api/v1` on a local Unix socket whose filesystem
//! permissions (directory 0700, socket 0600) are the access control. Wire types and the OpenAPI
//! document live in `sigil-api`; this module validates requests into the parsed types of
//! `sigil-spiffe`, calls the datastore (or the CA, for operator commands on authorities), and
//! maps failures to the documented error bodies.

mod agents;
mod api_error;
mod audit;
mod audit_layer;
mod authorities;
mod body;
mod bundle;
mod credentials;
mod entries;
mod entry_fields;
mod federations;
mod inventory;
mod join_tokens;
mod paging;
mod policy;
mod revocations;
mod routes;
mod socket;
#[cfg(test)]
mod test_support;

use std::sync::Arc;

use sigil_spiffe::{Clock, TrustDomain};
use sigil_store::Datastore;

use crate::agent_index::AgentIndex;
use crate::ca::CaManager;
use crate::federation::refresher::RefreshHandle;

pub use audit_layer::AdminPeer;
pub use routes::router;
pub use socket::{BoundSocket, bind, serve, serve_bound};

/// What the admin handlers share: the datastore, the server's trust domain, the clock, and the
/// CA (the only way the admin API changes authorities: through its operator commands).
#[derive(Clone)]
pub struct AdminState {
    pub store: Arc<dyn Datastore>,
    pub trust_domain: TrustDomain,
    pub clock: Arc<dyn Clock>,
    /// The agent index the server's agent API authenticates with. When given, a ban or an
    /// eviction is answered only once this index has applied it (waiting a bounded time), so the
    /// agent's next call to this server is refused. `None` answers as soon as the store has it.
    pub agents: Option<Arc<AgentIndex>>,
    /// Whether this server's revocation task publishes what is revoked (the running server:
    /// yes). Then a revocation is answered only once the CA publishes it (deny-list and CRLs
    /// signed), so agents of this server are being sent it. `false` answers as soon as the store
    /// has it.
    pub publishes_revocations: bool,
    pub ca: Arc<CaManager>,
    /// The running federation refresher, asked by `POST /api/v1/federations/{td}/refresh`.
    /// `None` answers that route 503.
    pub federation: Option<RefreshHandle>,
    /// The policy set in force (`GET /api/v1/policy`, `POST /api/v1/policy/decide`). `None`
    /// answers those routes 503.
    pub policies: Option<Arc<crate::policy::Policies>>,
    /// The audit log: admin changes are recorded through it before they are answered.
    pub audit: crate::audit::AuditLog,
    /// What the inventory routes read: thresholds, external issuers, federation refreshes.
    pub governance: Arc<crate::governance::GovernanceContext>,
    /// Brokered database credentials: targets and leases (`/api/v1/credential-targets`,
    /// `/api/v1/leases`); deleting an entry or banning an agent revokes its leases. `None`
    /// answers those routes 503.
    pub credentials: Option<Arc<crate::credentials::Credentials>>,
}

/// Why the admin API could not be served.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("cannot create the admin socket directory `{path}`: {source}")]
    CreateDir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{path}` exists and is not a socket: refusing to replace it with the admin socket")]
    NotASocket { path: String },
    #[error("admin socket `{path}` is in use by a running server")]
    InUse { path: String },
    #[error("cannot remove the stale admin socket `{path}`: {source}")]
    RemoveStale {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot bind the admin socket `{path}`: {source}")]
    Bind {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("admin API server failed: {0}")]
    Serve(#[source] std::io::Error),
}
