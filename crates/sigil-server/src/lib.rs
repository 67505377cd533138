//! The Sigil server: certificate authorities, the agent API (gRPC over mutual TLS), the admin
//! API (REST on a local Unix socket), and the in-memory entry index that the datastore's change
//! feed keeps current.
//!
//! Architecture invariant: the server reads registration state for agents only from
//! [`entry_index::EntryIndex`] and agent state only from [`agent_index::AgentIndex`], both kept
//! current by [`feed::follow`], and revoked credentials only from
//! [`revocation::RevocationIndex`] (through the CA, which publishes them with its CRLs); no code
//! path rescans the store periodically.
//!
//! Architecture invariant: every credential the server issues passes through
//! [`issuer::Issuer`].

#![forbid(unsafe_code)]

pub mod admin;
pub mod agent_api;
pub mod agent_index;
pub mod agent_listener;
pub mod applied;
pub mod audit;
pub mod ca;
pub mod credentials;
pub mod entry_index;
pub mod federation;
pub mod feed;
pub mod governance;
mod inventory;
pub mod issuer;
pub mod join_token;
pub mod metrics;
pub mod naming;
pub mod oauth;
pub mod policy;
pub mod public;
pub mod revocation;
mod server;
pub mod usage;

pub use server::{ServerConfig, ServerError, ServerHandle, start};
