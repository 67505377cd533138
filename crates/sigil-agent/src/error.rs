//! `AgentError`: why the agent cannot start or stops on its own.

use std::path::PathBuf;

use crate::server_client::ConnectError;
use crate::state::StateError;
use crate::workload::WorkloadServerError;

/// What stops the agent.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("cannot generate a key: {0}")]
    Keys(#[from] sigil_keys::KeyError),
    #[error("TLS: {0}")]
    Tls(#[from] sigil_tls::TlsError),
    #[error("the configuration names no server address")]
    NoServerAddress,
    /// Every server address failed (unreachable, TLS refused, a failure on the server's side)
    /// during attestation: one failure per address, in the order tried.
    #[error("no server address could attest the agent: {}", describe(.0))]
    NoServerAnswered(Vec<AttemptError>),
    #[error("the agent has never attested and no join token is configured")]
    NoJoinToken,
    #[error("the agent SVID expired at {0}; attest again with a new join token")]
    SvidExpired(i64),
    #[error("the server refused attestation: {0}")]
    AttestationRefused(String),
    #[error("the server answered with an invalid {0}")]
    BadResponse(&'static str),
    /// The server refused the agent itself (banned, evicted, its SVID replaced): the agent
    /// stopped serving and deleted its stored identity.
    #[error(
        "the server refused this agent ({0}); its stored identity was deleted and it stopped \
         serving workloads: attest it again with a new join token"
    )]
    Rejected(String),
    /// Like [`AgentError::Rejected`], but deleting the stored identity failed: it must be deleted
    /// by hand, and the agent will not start on it (the server refuses it anyway).
    #[error(
        "the server refused this agent ({reason}) and it stopped serving workloads, but its \
         stored identity could not be deleted: {source}"
    )]
    RejectedIdentityKept {
        reason: String,
        #[source]
        source: StateError,
    },
    #[error("cannot create directory `{path}`: {source}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot lock the agent data directory `{path}`: {source}")]
    Lock {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("another agent is running on the data directory `{path}` (it holds `{lock}`)")]
    AlreadyRunning { path: PathBuf, lock: PathBuf },
    #[error("cannot serve the Workload API: {0}")]
    WorkloadSocket(#[from] sigil_keys::unix_socket::StaleSocketError),
    #[error("workload API: {0}")]
    WorkloadApi(#[from] WorkloadServerError),
    #[error("an agent task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Why one server address could not be used (the agent moved on to the next one).
#[derive(Debug, thiserror::Error)]
pub enum AttemptError {
    #[error(transparent)]
    Connect(ConnectError),
    #[error("the server at `{addr}` failed: {code:?}: {message}")]
    Status {
        addr: String,
        code: tonic::Code,
        message: String,
    },
}

/// `errors` on one line, each with its causes, separated by `; `.
fn describe(errors: &[AttemptError]) -> String {
    let described: Vec<String> = errors.iter().map(|e| with_causes(e)).collect();
    described.join("; ")
}

/// `error` and its chain of causes on one line, separated by `: `.
pub(crate) fn with_causes(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        // Some messages already end with their cause's.
        if !out.ends_with(&cause_text) {
            out.push_str(": ");
            out.push_str(&cause_text);
        }
        source = cause.source();
    }
    out
}
