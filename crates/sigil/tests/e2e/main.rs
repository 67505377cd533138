//! End-to-end tests: the real `sigil` binary as separate processes (server, agent, CLI and
//! workloads), and third-party SPIFFE clients against the agent. One test binary, so the
//! workspace builds it once.

mod core_path;
mod harness;
mod interop;
