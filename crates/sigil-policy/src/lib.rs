//! Cedar policy for Sigil: the shipped schema, strictly validated policy directories, atomic
//! reload, and decisions with the ids of the policies that made them.
//!
//! The schema is `schema/sigil.cedarschema` (namespace `Sigil`), extended by the `*.cedarschema`
//! fragments of the policy directory (operator-defined actions). [`load_dir`] reads a directory,
//! [`PolicyEngine`] holds the set in force and decides; [`run_cases`] checks a file of expected
//! decisions (the `sigil policy test` command and the shipped examples use it).

#![forbid(unsafe_code)]

mod cache;
mod cases;
mod engine;
mod entities;
mod error;
mod index;
mod load;
mod request;

pub use cases::{CaseFailure, CaseReport, MAX_CASES_BYTES, run_cases};
pub use engine::{Decision, PolicyEngine};
pub use entities::{hour_utc, weekday_utc};
pub use error::{PolicyError, SourceLocation};
pub use load::{
    BUILTIN_SCHEMA, DEFAULT_POLICIES, DEFAULT_POLICY_HASH, LoadedPolicies, MAX_FILE_BYTES,
    MAX_FILES, MAX_POLICIES, load_dir,
};
pub use request::{
    AgentRef, ContextInput, DecisionRequest, MAX_CONTEXT_BYTES, MAX_CONTEXT_DEPTH, MAX_LIST_ITEMS,
    MAX_STRING_BYTES, Principal, ResourceRef,
};
