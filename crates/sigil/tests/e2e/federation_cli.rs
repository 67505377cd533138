//! `sigil federation` end to end: the real binary against a real `sigil server run`, creating,
//! listing (by owner), showing, updating, refreshing and deleting a federation relationship.
//! Refreshing an endpoint nothing listens on fails with one line naming the connection problem,
//! and input the CLI or the server refuses (a missing owner among it) is refused with one line,
//! as is a configuration file whose `[[federation]]` has no owner.

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
        "--owner",
        "team-partners",
        "--output",
        "json",
    ]);
    let created = json(&o);
    assert_eq!(created["trust_domain"], "partner.org");
    assert_eq!(created["owner"], "team-partners");
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
    assert!(
        text.contains("Owner               : team-partners\n"),
        "{text}"
    );
    let o = server.admin(&["federation", "list", "--output", "json"]);
    assert_eq!(json(&o)["federations"][0], created);
    let o = server.admin(&[
        "federation",
        "list",
        "--owner",
        "team-partners",
        "--output",
        "json",
    ]);
    assert_eq!(json(&o)["federations"], serde_json::json!([created]));
    let o = server.admin(&["federation", "list", "--owner", "team-nobody"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).starts_with("Found 0 federation relationships"),
        "{}",
        stdout(&o)
    );

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
    let o = server.admin(&[
        "federation",
        "update",
        "--trust-domain",
        "partner.org",
        "--owner",
        "team-b",
        "--output",
        "json",
    ]);
    let updated = json(&o);
    assert_eq!(updated["owner"], "team-b");
    assert_eq!(updated["profile"], "https_web");
    let o = server.admin(&[
        "federation",
        "list",
        "--owner",
        "team-b",
        "--output",
        "json",
    ]);
    assert_eq!(json(&o)["federations"][0]["trust_domain"], "partner.org");

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
        "--owner",
        "team-other",
    ]);
    assert_one_line_error(&o, "does not start with `https://`");
    assert_eq!(o.status.code(), Some(1));
    let o = server.admin(&[
        "federation",
        "create",
        "--trust-domain",
        "other.org",
        "--bundle-endpoint-url",
        "https://other.org/bundle",
        "--profile",
        "https_web",
    ]);
    assert_one_line_error(
        &o,
        "the following required arguments were not provided: --owner <OWNER>",
    );
    assert_eq!(o.status.code(), Some(2));
    let o = server.admin(&[
        "federation",
        "create",
        "--trust-domain",
        "other.org",
        "--bundle-endpoint-url",
        "https://other.org/bundle",
        "--profile",
        "https_web",
        "--owner",
        " ",
    ]);
    assert_one_line_error(&o, "invalid owner: must not be blank");
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

#[test]
fn a_configured_federation_without_an_owner_stops_the_server_with_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let federation = |owner_line: &str| {
        format!(
            "\n[[federation]]\ntrust_domain = \"partner.org\"\n{owner_line}\
             bundle_endpoint_url = \"https://partner.org/bundle\"\nprofile = \"https_web\"\n"
        )
    };
    // The positive path: with an owner the server starts and shows it.
    let server = TestServer::start_with(
        &tmp.path().join("owned"),
        &federation("owner = \"team-partners\"\n"),
    );
    let o = server.admin(&["federation", "show", "--trust-domain", "partner.org"]);
    assert!(
        stdout(&o).contains("Owner               : team-partners\n"),
        "{}",
        stdout(&o)
    );

    let config = tmp.path().join("unowned.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\ntrust_domain = \"example.org\"\nbind_address = \"127.0.0.1:{}\"\n\
             data_dir = \"{}\"\n{}",
            free_port(),
            tmp.path().join("unowned").display(),
            federation(""),
        ),
    )
    .unwrap();
    let o = sigil(&["server", "run", "-c", config.to_str().unwrap()]);
    assert_one_line_error(
        &o,
        "federation with `partner.org` has no owner: set `owner` to the team or contact \
         accountable for it",
    );
}
