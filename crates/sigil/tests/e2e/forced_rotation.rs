//! Forced rotation end to end: the real `sigil server run`, driven only by the `sigil authority`
//! CLI, walks a leaked JWT key through prepare, activate, taint and revoke, after which
//! `sigil bundle show` no longer lists it; a step out of order is refused with one line on stderr
//! and exit code 1, and changes nothing.

use std::process::Output;
use std::time::Duration;

use serde_json::Value;

use crate::harness::*;

/// What `activate` answers in the second its authority was prepared.
const NOT_YET_PUBLISHED: &str = "is not yet published; try again in a second";

fn json(o: &Output) -> Value {
    assert!(o.status.success(), "failed: {}", stderr(o));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(o)))
}

/// `sigil authority list --output json`.
fn authorities(server: &TestServer) -> Value {
    json(&server.admin(&["authority", "list", "--output", "json"]))
}

/// The one authority of `kind` in `state`, by id.
fn only_id(list: &Value, kind: &str, state: &str) -> String {
    let found: Vec<&str> = list["authorities"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["kind"] == kind && a["state"] == state)
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    assert_eq!(found.len(), 1, "one {state} {kind} authority in {list}");
    found[0].to_owned()
}

/// The `kid`s of the JWT authorities `sigil bundle show --format spiffe` lists.
fn bundle_kids(server: &TestServer) -> Vec<String> {
    let bundle = json(&server.admin(&["bundle", "show", "--format", "spiffe"]));
    bundle["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["use"] == "jwt-svid")
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect()
}

/// Asserts `o` failed with exit code 1 and exactly the one stderr line `expected`.
fn assert_refused(o: &Output, expected: &str) {
    assert_eq!(o.status.code(), Some(1), "stderr: {}", stderr(o));
    assert_eq!(stderr(o), format!("{expected}\n"));
    assert!(o.stdout.is_empty(), "{}", stdout(o));
}

#[test]
fn forced_jwt_rotation_through_the_cli_drops_the_revoked_key_from_the_bundle() {
    let tmp = tempfile::tempdir().unwrap();
    let server = TestServer::start(tmp.path());

    let text = server.admin(&["authority", "list"]);
    assert!(text.status.success(), "{}", stderr(&text));
    assert!(
        stdout(&text).starts_with("Found 3 authorities\n\nAuthority ID : "),
        "{}",
        stdout(&text)
    );
    let before = authorities(&server);
    let leaked = only_id(&before, "jwt", "active");
    only_id(&before, "x509_root", "active");
    only_id(&before, "x509_intermediate", "active");
    assert_eq!(bundle_kids(&server), [leaked.as_str()]);

    // Out of order: the active key cannot be tainted before a successor signs.
    let refused = server.admin(&["authority", "taint", "--id", &leaked]);
    assert_refused(
        &refused,
        &format!(
            "error: authority `{leaked}` is the active jwt authority; prepare and activate a successor before tainting it"
        ),
    );
    assert_eq!(authorities(&server), before, "a refusal changes nothing");

    let prepared =
        json(&server.admin(&["authority", "prepare", "--kind", "jwt", "--output", "json"]));
    assert_eq!(prepared["state"], "prepared");
    let next = prepared["id"].as_str().unwrap().to_owned();
    let kids = bundle_kids(&server);
    assert!(
        kids.contains(&next) && kids.contains(&leaked),
        "published before it signs: {kids:?}"
    );

    // Activation is refused in the second the key was prepared; retry on exactly that refusal.
    let activated = wait_for(
        Duration::from_secs(10),
        "the prepared key to be activated",
        || {
            let o = server.admin(&["authority", "activate", "--id", &next, "--output", "json"]);
            if o.status.success() {
                return Some(json(&o));
            }
            assert!(
                stderr(&o).contains(NOT_YET_PUBLISHED),
                "activate failed for another reason: {}",
                stderr(&o)
            );
            None
        },
    );
    assert_eq!(activated["id"], next.as_str());
    assert_eq!(activated["state"], "active");
    let after_activation = authorities(&server);
    assert_eq!(only_id(&after_activation, "jwt", "old"), leaked);
    assert_eq!(only_id(&after_activation, "jwt", "active"), next);

    let tainted = server.admin(&["authority", "taint", "--id", &leaked]);
    assert!(tainted.status.success(), "{}", stderr(&tainted));
    assert!(
        stdout(&tainted).contains("State        : tainted\n"),
        "{}",
        stdout(&tainted)
    );
    assert!(
        bundle_kids(&server).contains(&leaked),
        "trusted until revoked"
    );

    let revoked =
        json(&server.admin(&["authority", "revoke", "--id", &leaked, "--output", "json"]));
    assert_eq!(revoked["state"], "revoked");
    assert_eq!(
        bundle_kids(&server),
        [next.as_str()],
        "the revoked kid is gone"
    );
    let bundle_text = stdout(&server.admin(&["bundle", "show", "--format", "spiffe"]));
    assert!(!bundle_text.contains(&leaked), "{bundle_text}");

    // The new key has no successor: tainting it is refused, and nothing moves.
    let after_revoke = authorities(&server);
    let refused = server.admin(&["authority", "taint", "--id", &next]);
    assert_refused(
        &refused,
        &format!(
            "error: authority `{next}` is the active jwt authority; prepare and activate a successor before tainting it"
        ),
    );
    assert_eq!(authorities(&server), after_revoke);
    assert_eq!(only_id(&after_revoke, "jwt", "revoked"), leaked);
}

/// The serial of `agent_id`'s current SVID, as the server records it.
fn agent_serial(server: &TestServer, agent_id: &str) -> Option<String> {
    let o = server.admin(&["agent", "show", "--spiffe-id", agent_id, "--output", "json"]);
    if !o.status.success() {
        return None;
    }
    let v: Value = serde_json::from_slice(&o.stdout).ok()?;
    v["serial"].as_str().map(str::to_owned)
}

/// A leaked root replaced and revoked while an agent runs: the server trusts the new root for
/// agents whose SVIDs now chain to it, presents an SVID chained to it, and stops trusting the
/// revoked one, so the agent keeps receiving new entries throughout.
#[test]
fn forced_root_rotation_keeps_the_agent_connected_and_drops_the_revoked_root() {
    let tmp = tempfile::tempdir().unwrap();
    let server = TestServer::start_with(tmp.path(), "agent_svid_ttl = \"6s\"\n");
    let (token, agent_id) = server.join_token("10m");
    let paths = agent_config(&tmp.path().join("agent"), &server, Some(&token));
    let mut agent = start_agent(&paths);
    create_uid_entry(&server, "spiffe://example.org/e2e/before", &agent_id);
    fetch_svid_files(&paths.socket, &tmp.path().join("before"));

    let before = authorities(&server);
    let leaked = only_id(&before, "x509_root", "active");
    let leaked_pem = before["authorities"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == leaked.as_str())
        .and_then(|a| a["certificate_pem"].as_str())
        .expect("the root's certificate")
        .to_owned();
    assert!(stdout(&server.admin(&["bundle", "show"])).contains(&leaked_pem));

    let prepared = json(&server.admin(&[
        "authority",
        "prepare",
        "--kind",
        "x509_root",
        "--output",
        "json",
    ]));
    let next = prepared["id"].as_str().unwrap().to_owned();
    let next_pem = prepared["certificate_pem"].as_str().unwrap().to_owned();
    wait_for(
        Duration::from_secs(10),
        "the new root to be activated",
        || {
            let o = server.admin(&["authority", "activate", "--id", &next]);
            if o.status.success() {
                return Some(());
            }
            assert!(stderr(&o).contains(NOT_YET_PUBLISHED), "{}", stderr(&o));
            None
        },
    );
    let tainted = server.admin(&["authority", "taint", "--id", &leaked]);
    assert!(tainted.status.success(), "{}", stderr(&tainted));
    let list = authorities(&server);
    let intermediate = list["authorities"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["kind"] == "x509_intermediate" && a["state"] == "active")
        .cloned()
        .unwrap();
    assert_eq!(
        intermediate["issuer_id"],
        next.as_str(),
        "the intermediate is replaced under the new root at once"
    );

    // The agent renews its own SVID (6 s TTL) under the new intermediate and reconnects with it:
    // the server must trust the new root for that.
    let at_taint = agent_serial(&server, &agent_id).expect("agent serial");
    let mut seen = vec![at_taint];
    wait_for(
        Duration::from_secs(30),
        "two agent SVID renewals under the new root",
        || {
            if let Some(status) = agent.exited() {
                panic!("agent exited ({status}):\n{}", agent.log());
            }
            let serial = agent_serial(&server, &agent_id)?;
            if seen.last() != Some(&serial) {
                seen.push(serial);
            }
            (seen.len() >= 3).then_some(())
        },
    );

    let revoked = server.admin(&["authority", "revoke", "--id", &leaked]);
    assert!(revoked.status.success(), "{}", stderr(&revoked));
    let bundle = stdout(&server.admin(&["bundle", "show"]));
    assert!(
        !bundle.contains(&leaked_pem),
        "the revoked root left the bundle"
    );
    assert!(bundle.contains(&next_pem), "{bundle}");

    // Both ways across the rotation: the agent still reaches the server and gets new entries.
    let after = "spiffe://example.org/e2e/after-root-rotation";
    create_uid_entry(&server, after, &agent_id);
    let out = tmp.path().join("after");
    let fetched = wait_for(Duration::from_secs(30), "the new entry's SVID", || {
        let o = workload(
            &paths.socket,
            &["svid", "fetch", "--write", out.to_str().unwrap()],
        );
        (o.status.success() && stdout(&o).contains(after)).then_some(o)
    });
    assert!(stdout(&fetched).contains(after));
    let workload_bundle = std::fs::read_to_string(out.join("bundle.pem")).unwrap();
    assert!(!workload_bundle.contains(&leaked_pem), "{workload_bundle}");
    assert!(workload_bundle.contains(&next_pem), "{workload_bundle}");
    assert!(
        agent.exited().is_none(),
        "the agent keeps running:\n{}",
        agent.log()
    );
}
