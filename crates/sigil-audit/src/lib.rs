//! The audit log's data and its proofs: records and their canonical hash chain ([`record`]),
//! checkpoints signed by a server replica's audit key ([`checkpoint`]), the verifier that names
//! where a chain breaks ([`verify`]) and the JSON-lines export it also reads offline
//! ([`export`]).
//!
//! No I/O but reading an export: the server appends records through its datastore (which
//! computes each hash inside the transaction that fixes its sequence) and the CLI verifies.

#![forbid(unsafe_code)]

pub mod checkpoint;
pub mod export;
pub mod record;
pub mod verify;

pub use checkpoint::{AuditKey, Checkpoint, TrustedKeys};
pub use record::{AuditEvent, AuditRecord, GENESIS_HASH, Outcome};
pub use verify::{Break, ChainVerifier, Problem, Summary};

/// What went wrong with an audit record, key or checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuditError {
    #[error("invalid {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("audit key `{key_id}` is unusable: {reason}")]
    BadKey { key_id: String, reason: String },
    #[error("signed by key `{key_id}`, which is not a trusted audit key")]
    UnknownKey { key_id: String },
    #[error("the signature of the checkpoint at seq {seq} does not verify")]
    BadSignature { seq: u64 },
    #[error("cannot sign the checkpoint")]
    Sign,
}
