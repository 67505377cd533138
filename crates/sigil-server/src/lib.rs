//! The Sigil server: certificate authorities, the agent API (gRPC over mutual TLS), the admin
//! API (REST on a local Unix socket), and the in-memory entry index that the datastore's change
//! feed keeps current.
//!
//! Architecture invariant: the server reads registration state for agents only from
//! [`entry_index::EntryIndex`], which follows the change feed; no code path rescans the store
//! periodically.

#![forbid(unsafe_code)]

pub mod admin;
pub mod agent_api;
pub mod agent_listener;
pub mod ca;
pub mod entry_index;
pub mod join_token;
pub mod naming;
mod server;

pub use server::{ServerConfig, ServerError, ServerHandle, start};
