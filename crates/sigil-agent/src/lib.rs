//! The Sigil node agent: attests its node to the server, keeps the SVIDs of the workloads it is
//! authorized to serve (keys generated here, never sent), rotates them, and serves them over the
//! SPIFFE Workload API on a Unix socket.
//!
//! Architecture invariant: the agent talks to the server only through `sigil-proto`; it never
//! depends on `sigil-ca`, `sigil-store` or `sigil-server`.

#![forbid(unsafe_code)]

pub mod attestor;
pub mod config;
pub mod jwt;
pub mod manager;
pub mod server_client;
pub mod snapshot;
pub mod state;
pub mod workload;

pub use config::AgentConfig;
pub use manager::{Agent, AgentError};
