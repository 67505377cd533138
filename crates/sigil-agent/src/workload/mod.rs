//! The SPIFFE Workload API served on a Unix socket: [`WorkloadApi`] answers the five RPCs of the
//! standard from the agent's [`IdentitySnapshot`](crate::snapshot::IdentitySnapshot) for whoever
//! is calling (attested per call from the connection's peer credentials), and [`serve`] runs it
//! on a socket every local user may reach, behind the [`AuthorityRewrite`] adapter that lets
//! grpcio-based clients in.

pub mod authority;
mod claims;
mod responses;
pub mod server;
pub mod service;
mod stream;

pub use authority::{AuthorityRewrite, HeaderRewriteError};
pub use server::{
    ServeOptions, WorkloadServerError, bind, serve, serve_listener, serve_with_options,
};
pub use service::WorkloadApi;
