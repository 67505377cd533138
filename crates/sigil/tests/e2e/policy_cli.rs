//! `sigil policy` end to end: `check` and `test` on the shipped examples and on broken input
//! (one `file:line:column` line; the failing case named), `decide` locally, and against a real
//! `sigil server run` with a policy directory: `show`, `decide` (allow and deny), and `reload`
//! refusing an invalid file (one line, the hash kept) and then taking the fixed set.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::harness::*;

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies/examples")
}

fn json(o: &std::process::Output) -> Value {
    assert!(o.status.success(), "failed: {}", stderr(o));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(o)))
}

/// A `http:POST` request of `spiffe_id` to the ledger, with `intent` when given.
fn ledger_request(spiffe_id: &str, intent: Option<&str>) -> Value {
    let mut context = json!({});
    if let Some(intent) = intent {
        context["intent"] = json!(intent);
    }
    json!({
        "principal": {"type": "workload", "spiffe_id": spiffe_id},
        "action": "http:POST",
        "resource": {"id": "https://ledger.acme.internal/ledger", "kind": "endpoint"},
        "context": context,
    })
}

fn write_json(path: &Path, value: &Value) -> String {
    std::fs::write(path, serde_json::to_vec_pretty(value).unwrap()).unwrap();
    path.to_str().unwrap().to_owned()
}

#[test]
fn check_and_test_the_shipped_examples_and_refuse_broken_input() {
    let mut seen = 0;
    for entry in std::fs::read_dir(examples()).unwrap() {
        let dir = entry.unwrap().path();
        let o = sigil(&["policy", "check", dir.to_str().unwrap()]);
        assert!(o.status.success(), "{}: {}", dir.display(), stderr(&o));
        assert!(stdout(&o).starts_with("ok: "), "{}", stdout(&o));
        assert!(stdout(&o).contains(", hash "), "{}", stdout(&o));
        let cases = dir.join("cases.json");
        let o = sigil(&["policy", "test", cases.to_str().unwrap()]);
        assert!(o.status.success(), "{}: {}", cases.display(), stderr(&o));
        assert!(stdout(&o).starts_with("ok: "), "{}", stdout(&o));
        assert!(stdout(&o).ends_with(" cases\n"), "{}", stdout(&o));
        seen += 1;
    }
    assert!(seen >= 5, "only {seen} examples");

    // A syntax error: one line, located.
    let tmp = tempfile::tempdir().unwrap();
    let broken = tmp.path().join("broken");
    std::fs::create_dir(&broken).unwrap();
    std::fs::write(
        broken.join("bad.cedar"),
        "permit (\n  principal,\n  action,\n  resource\n)\nwhen { principal.nope == };\n",
    )
    .unwrap();
    let o = sigil(&["policy", "check", broken.to_str().unwrap()]);
    assert_one_line_error(&o, "bad.cedar:6:");
    assert_eq!(o.status.code(), Some(1));

    // A case whose expectation is wrong: named, and the run fails.
    let window = examples().join("batch-db-window");
    let mut cases: Vec<Value> =
        serde_json::from_slice(&std::fs::read(window.join("cases.json")).unwrap()).unwrap();
    cases[0]["expect"] = json!("deny");
    let name = cases[0]["name"].as_str().unwrap().to_owned();
    let wrong = write_json(&tmp.path().join("wrong.json"), &Value::Array(cases));
    let o = sigil(&["policy", "test", &wrong, "--dir", window.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(
        stdout(&o).contains(&format!("case \"{name}\": expected deny, got allow")),
        "{}",
        stdout(&o)
    );
    assert_one_line_error(&o, "1 of 9 cases failed");

    // Decided locally, at a given time, against the given entities.
    let request = cases_request(&window, 0);
    let request = write_json(&tmp.path().join("request.json"), &request);
    let dir = window.to_str().unwrap();
    let o = sigil(&[
        "policy",
        "decide",
        "--request",
        &request,
        "--dir",
        dir,
        "--now",
        "1704072600",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).starts_with("allow\n"), "{}", stdout(&o));
    assert!(
        stdout(&o).contains("nightly-report-reads-orders-at-night"),
        "{}",
        stdout(&o)
    );
    let o = sigil(&[
        "policy",
        "decide",
        "--request",
        &request,
        "--dir",
        dir,
        "--now",
        "1704117600",
        "--output",
        "json",
    ]);
    let denied = json(&o);
    assert_eq!(denied["decision"], "deny");
    assert_eq!(denied["allowed"], false);

    // A request that is not one: one line, non-zero.
    let bad = write_json(
        &tmp.path().join("bad-request.json"),
        &json!({"principal": {"type": "robot"}, "action": "db:read", "resource": {"id": "x", "kind": "y"}}),
    );
    let o = sigil(&["policy", "decide", "--request", &bad, "--dir", dir]);
    assert_one_line_error(&o, "robot");
}

/// The request of case `index` of `dir`'s cases.json.
fn cases_request(dir: &Path, index: usize) -> Value {
    let cases: Vec<Value> =
        serde_json::from_slice(&std::fs::read(dir.join("cases.json")).unwrap()).unwrap();
    cases[index]["request"].clone()
}

#[test]
fn the_running_servers_policy_is_shown_decided_and_reloaded() {
    let tmp = tempfile::tempdir().unwrap();
    let policies = tmp.path().join("policies");
    std::fs::create_dir(&policies).unwrap();
    let ledger = examples().join("ledger-intent");
    for file in ["policy.cedar", "actions.cedarschema"] {
        std::fs::copy(ledger.join(file), policies.join(file)).unwrap();
    }
    let server = TestServer::start_with(
        &tmp.path().join("srv"),
        &format!("[policy]\ndir = \"{}\"\n", policies.display()),
    );

    let shown = json(&server.admin(&["policy", "show", "--output", "json"]));
    let hash = shown["hash"].as_str().unwrap().to_owned();
    assert_eq!(hash.len(), 64, "{shown}");
    assert_eq!(shown["ids"], json!(["payments-posts-ledger-with-intent"]));
    assert_eq!(shown["dir"], policies.display().to_string());
    let o = server.admin(&["policy", "show"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains(&hash), "{}", stdout(&o));

    // Two requests, decided by the server against the entities they give.
    let allow = write_json(
        &tmp.path().join("allow.json"),
        &ledger_request("spiffe://acme.org/payments", Some("ledger:write")),
    );
    let o = server.admin(&["policy", "decide", "--request", &allow]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).starts_with("allow\n"), "{}", stdout(&o));
    assert!(
        stdout(&o).contains("payments-posts-ledger-with-intent"),
        "{}",
        stdout(&o)
    );
    let deny = write_json(
        &tmp.path().join("deny.json"),
        &ledger_request("spiffe://acme.org/payments", None),
    );
    let o = server.admin(&["policy", "decide", "--request", &deny, "--output", "json"]);
    let denied = json(&o);
    assert_eq!(denied["decision"], "deny");
    assert_eq!(denied["policy_hash"], hash.as_str());

    // An invalid file: the reload is refused in one line naming it, and the set stays.
    std::fs::write(
        policies.join("broken.cedar"),
        "permit (principal, action, resource)\nwhen { context.nope };\n",
    )
    .unwrap();
    let o = server.admin(&["policy", "reload"]);
    assert_one_line_error(&o, "broken.cedar:2:");
    assert!(stderr(&o).contains(&hash), "{}", stderr(&o));
    let shown = json(&server.admin(&["policy", "show", "--output", "json"]));
    assert_eq!(shown["hash"], hash.as_str());

    // Fixed: the new set is in force, and decides.
    std::fs::write(
        policies.join("broken.cedar"),
        "@id(\"audit-posts-ledger\")\npermit (\n  principal == Sigil::Workload::\"spiffe://acme.org/audit\",\n  action == Sigil::Action::\"http:POST\",\n  resource\n);\n",
    )
    .unwrap();
    let o = server.admin(&["policy", "reload", "--output", "json"]);
    let reloaded = json(&o);
    let new_hash = reloaded["hash"].as_str().unwrap();
    assert_ne!(new_hash, hash);
    let shown = json(&server.admin(&["policy", "show", "--output", "json"]));
    assert_eq!(shown["hash"], new_hash);
    assert_eq!(shown["policies"], 2);
    let audit = write_json(
        &tmp.path().join("audit.json"),
        &ledger_request("spiffe://acme.org/audit", None),
    );
    let o = server.admin(&["policy", "decide", "--request", &audit]);
    assert!(stdout(&o).starts_with("allow\n"), "{}", stdout(&o));
}
