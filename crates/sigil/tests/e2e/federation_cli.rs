//! `sigil federation` end to end: the real binary against a real `sigil server run`, creating,
//! listing, showing, updating, refreshing and deleting a federation relationship. Refreshing an
//! endpoint nothing listens on fails with one line naming the connection problem, and input the
//! server refuses is refused with one line.

use std::time::Duration;

use serde_json::Value;

use crate::harness::*;

fn json(o: &std::process::Output) -> Value {
    assert!(o.status.success(), "failed: {}", stderr(o));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(o)))
}

#[test]
fn federation_relationships_are_managed_and_refreshed_from_the_cli() {
    let tmp = tempfile::tempdir().unwrap();
    let server = TestServer::start(tmp.path());
    // An https endpoint nothing listens on.
    let port = free_port();
    let url = format!("https://127.0.0.1:{port}/bundle");

    let o = server.admin(&[
        "federation",
        "create",
        "--trust-domain",
        "partner.org",
        "--bundle-endpoint-url",
        &url,
        "--profile",
        "https_web",
        "--output",
        "json",
    ]);
    let created = json(&o);
    assert_eq!(created["trust_domain"], "partner.org");
    assert_eq!(created["bundle_endpoint_url"], url.as_str());
    assert_eq!(created["profile"], "https_web");
    assert_eq!(created["endpoint_spiffe_id"], Value::Null);
    assert_eq!(created["bundle_sequence"], Value::Null);

    let o = server.admin(&["federation", "list"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(
        text.starts_with("Found 1 federation relationship\n\nTrust domain "),
        "{text}"
    );
    assert!(
        text.contains(&format!("Bundle endpoint URL : {url}\n")),
        "{text}"
    );
    assert!(text.contains("Bundle sequence     : none held\n"), "{text}");
    let o = server.admin(&["federation", "list", "--output", "json"]);
    assert_eq!(json(&o)["federations"][0], created);

    let o = server.admin(&[
        "federation",
        "show",
        "--trust-domain",
        "spiffe://partner.org",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("Profile             : https_web\n"),
        "{}",
        stdout(&o)
    );

    let o = server.admin(&[
        "federation",
        "update",
        "--trust-domain",
        "partner.org",
        "--profile",
        "https_spiffe",
        "--endpoint-spiffe-id",
        "spiffe://partner.org/sigil/server",
        "--output",
        "json",
    ]);
    let updated = json(&o);
    assert_eq!(updated["profile"], "https_spiffe");
    assert_eq!(
        updated["endpoint_spiffe_id"],
        "spiffe://partner.org/sigil/server"
    );
    let o = server.admin(&[
        "federation",
        "update",
        "--trust-domain",
        "partner.org",
        "--profile",
        "https_web",
        "--clear-endpoint-spiffe-id",
        "--output",
        "json",
    ]);
    let updated = json(&o);
    assert_eq!(updated["profile"], "https_web");
    assert_eq!(updated["endpoint_spiffe_id"], Value::Null);

    // The refresh reaches for the endpoint and reports why it failed, on one line.
    let started = std::time::Instant::now();
    let o = server.admin(&["federation", "refresh", "--trust-domain", "partner.org"]);
    assert_one_line_error(&o, "cannot connect to 127.0.0.1:");
    assert!(err_mentions_refused(&o), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.starts_with("error: cannot refresh the bundle of `partner.org`: "),
        "{err}"
    );
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(started.elapsed() < Duration::from_secs(20));

    // Refused input: one line, nothing created.
    let o = server.admin(&[
        "federation",
        "create",
        "--trust-domain",
        "other.org",
        "--bundle-endpoint-url",
        "http://other.org/bundle",
        "--profile",
        "https_web",
    ]);
    assert_one_line_error(&o, "does not start with `https://`");
    assert_eq!(o.status.code(), Some(1));
    let o = server.admin(&["federation", "show", "--trust-domain", "other.org"]);
    assert_one_line_error(&o, "no federation relationship with `other.org`");

    let o = server.admin(&["federation", "delete", "--trust-domain", "partner.org"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).starts_with("Trust domain "), "{}", stdout(&o));
    let o = server.admin(&["federation", "list", "--output", "json"]);
    assert_eq!(json(&o)["federations"], serde_json::json!([]));
    let o = server.admin(&["federation", "delete", "--trust-domain", "partner.org"]);
    assert_one_line_error(&o, "no federation relationship with `partner.org`");
}

/// Whether stderr names the refused connection (the OS words it `Connection refused`).
fn err_mentions_refused(o: &std::process::Output) -> bool {
    stderr(o).to_lowercase().contains("connection refused")
}
