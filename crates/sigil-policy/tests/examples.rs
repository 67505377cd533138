//! Runs the cases of every example under `policies/examples/` and checks a wrong expectation is
//! reported with a readable diff.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a broken assumption must fail the test loudly"
)]

use std::path::PathBuf;

use sigil_policy::{PolicyEngine, load_dir, run_cases};

fn examples_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../policies/examples")
}

fn example_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(examples_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

#[test]
fn every_example_passes_its_cases() {
    let dirs = example_dirs();
    assert_eq!(dirs.len(), 5, "examples: {dirs:?}");
    for dir in dirs {
        let loaded = load_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        assert_ne!(loaded.hash(), "default");
        let engine = PolicyEngine::new(loaded);
        let cases = std::fs::read(dir.join("cases.json")).unwrap();
        let report = run_cases(&engine, &cases).unwrap();
        assert!(
            report.total >= 5,
            "{}: only {} cases",
            dir.display(),
            report.total
        );
        assert!(report.passed(), "{}:\n{report}", dir.display());
        // Every example has both outcomes, so none passes by allowing or denying everything.
        let text = String::from_utf8(cases).unwrap();
        assert!(
            text.contains("\"allow\"") && text.contains("\"deny\""),
            "{}",
            dir.display()
        );
    }
}

#[test]
fn a_wrong_expectation_is_reported_with_the_deciding_policies() {
    let dir = examples_dir().join("batch-db-window");
    let engine = PolicyEngine::new(load_dir(&dir).unwrap());
    let text = std::fs::read_to_string(dir.join("cases.json")).unwrap();
    let mut cases: serde_json::Value = serde_json::from_str(&text).unwrap();
    // The first case is "reads at 01:30", an allow: flip it.
    assert_eq!(cases[0]["expect"], "allow");
    cases[0]["expect"] = "deny".into();
    let report = run_cases(&engine, &serde_json::to_vec(&cases).unwrap()).unwrap();
    assert!(!report.passed());
    assert_eq!(report.failures.len(), 1);
    let line = report.failures[0].to_string();
    assert_eq!(
        line,
        "case \"reads at 01:30\": expected deny, got allow \
         (policies: [\"nightly-report-reads-orders-at-night\"], errors: [])"
    );
    let total = report.total;
    assert!(
        report
            .to_string()
            .ends_with(&format!("{} of {total} cases passed", total - 1))
    );
}

#[test]
fn a_cases_file_that_is_not_a_list_of_cases_is_an_error() {
    let engine = PolicyEngine::new(sigil_policy::LoadedPolicies::builtin_default().unwrap());
    let err = run_cases(&engine, br#"[{"name": "x"}]"#).unwrap_err();
    assert!(
        err.to_string().starts_with("invalid cases: missing field"),
        "{err}"
    );
}
