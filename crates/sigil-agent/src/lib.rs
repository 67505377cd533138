//! The Sigil node agent: attests its node to the server, keeps the SVIDs of the workloads it is
//! authorized to serve (keys generated here, never sent), rotates them, and serves them over the
//! SPIFFE Workload API on a Unix socket. [`start`] runs it all.
//!
//! Architecture invariant: the agent talks to the server only through `sigil-proto`; it never
//! depends on `sigil-ca`, `sigil-store` or `sigil-server`.

#![forbid(unsafe_code)]

mod agent;
pub mod attestor;
pub mod config;
mod data_dir_lock;
mod error;
mod failover;
#[cfg(test)]
mod fake_server;
pub mod jwt;
mod node_attestation;
mod publish;
pub mod revocation;
pub mod server_client;
mod session;
pub mod snapshot;
pub mod state;
pub mod svid_cache;
pub mod usage;
mod wire;
pub mod workload;

pub use agent::{AgentHandle, start};
pub use config::AgentConfig;
pub use data_dir_lock::DataDirLock;
pub use error::{AgentError, AttemptError};
