//! Policy test cases: a JSON list of requests with expected decisions, run against an engine,
//! with a readable line per mismatch (`sigil policy test`, the shipped examples).

use std::fmt;

use serde::Deserialize;

use crate::engine::{Decision, PolicyEngine};
use crate::error::PolicyError;
use crate::request::DecisionRequest;

/// The largest cases file read, in bytes (16 MiB).
pub const MAX_CASES_BYTES: usize = 16 * 1024 * 1024;

/// The outcome of [`run_cases`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseReport {
    /// How many cases ran.
    pub total: usize,
    /// The cases whose decision was not the expected one, in file order.
    pub failures: Vec<CaseFailure>,
}

/// One case whose decision differs from its expectation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseFailure {
    /// The case's name.
    pub name: String,
    /// Whether it was expected to be allowed.
    pub expected_allow: bool,
    /// What the engine decided.
    pub decision: Decision,
}

impl CaseReport {
    /// Whether every case got its expected decision.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

impl fmt::Display for CaseFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let word = |allow: bool| if allow { "allow" } else { "deny" };
        write!(
            f,
            "case \"{}\": expected {}, got {} (policies: {:?}, errors: {:?})",
            self.name,
            word(self.expected_allow),
            word(self.decision.allowed),
            self.decision.policies,
            self.decision.errors
        )
    }
}

impl fmt::Display for CaseReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for failure in &self.failures {
            writeln!(f, "{failure}")?;
        }
        let passed = self.total.saturating_sub(self.failures.len());
        write!(f, "{passed} of {} cases passed", self.total)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    request: DecisionRequest,
    now: i64,
    expect: Expect,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum Expect {
    Allow,
    Deny,
}

/// Runs every case of `cases_json` (a JSON list of `{ "name", "request": { principal, action,
/// resource, context }, "now": <unix seconds>, "expect": "allow" | "deny" }`) against `engine`.
///
/// Fails only when the file is too large or not a valid list of cases; mismatches are in the
/// report.
pub fn run_cases(engine: &PolicyEngine, cases_json: &[u8]) -> Result<CaseReport, PolicyError> {
    if cases_json.len() > MAX_CASES_BYTES {
        return Err(PolicyError::CasesTooLarge {
            size: cases_json.len(),
            max: MAX_CASES_BYTES,
        });
    }
    let cases: Vec<Case> =
        serde_json::from_slice(cases_json).map_err(|e| PolicyError::InvalidJson {
            what: "cases",
            message: e.to_string(),
        })?;
    let mut failures = Vec::new();
    for case in &cases {
        let decision = engine.decide(&case.request, case.now);
        let expected_allow = matches!(case.expect, Expect::Allow);
        if decision.allowed != expected_allow {
            failures.push(CaseFailure {
                name: case.name.clone(),
                expected_allow,
                decision,
            });
        }
    }
    Ok(CaseReport {
        total: cases.len(),
        failures,
    })
}
