//! End-to-end tests: the real `sigil` binary as separate processes (server, agent, CLI and
//! workloads), and third-party SPIFFE clients against the agent. One test binary, so the
//! workspace builds it once.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::disallowed_methods,
    reason = "test code: a failed expectation should panic, and tests read the real clock"
)]

mod agent_lock;
mod audit;
mod authority_rotation;
mod ban_evict;
mod cli_admin;
mod core_path;
mod creds;
mod creds_agent;
mod expiry;
mod failover;
mod federation;
mod federation_cli;
mod forced_rotation;
mod harness;
mod interop;
mod oidc;
mod policy;
mod policy_cli;
mod postgres;
mod replicas;
mod revocation;
mod rotation;
mod schemathesis;
mod soak;
mod svid_write;
mod tidy;
mod tls;
mod token_exchange;
mod upstream;
