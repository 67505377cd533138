//! The SPIFFE Workload API served on a Unix socket: [`WorkloadApi`] answers the five RPCs of the
//! standard from the agent's [`IdentitySnapshot`](crate::snapshot::IdentitySnapshot) for whoever
//! is calling (the connection's peer, pinned at accept and attested once per connection), and
//! [`serve`] runs it on a socket every local user may reach, behind the [`AuthorityRewrite`]
//! adapter that lets grpcio-based clients in, with bounded connections and attestations.
//! [`CredentialsApi`] (Sigil's credentials service) may be served on the same socket.

pub mod authority;
mod claims;
pub mod credentials;
pub mod peer;
mod responses;
pub mod server;
pub mod service;
mod stream;

pub use authority::{AuthorityRewrite, HeaderRewriteError};
pub use credentials::{CredentialForwarder, CredentialsApi, ServerCredentialForwarder};
pub use peer::ConnectionPeer;
pub use server::{
    DEFAULT_MAX_CONNECTIONS, ServeOptions, WorkloadServerError, bind, serve, serve_listener,
    serve_listener_with_credentials, serve_with_options,
};
pub use service::{DEFAULT_MAX_CONCURRENT_ATTESTATIONS, WorkloadApi};
