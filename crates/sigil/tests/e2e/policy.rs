//! Cedar policy with real processes: a server whose policy directory forbids one workload's
//! X509-SVID withholds it (py-spiffe sees no identity, the agent logs the deciding policy), a
//! fixed policy reloaded on SIGHUP makes the agent ask again at once and py-spiffe gets the SVID;
//! an invalid reload keeps the set in force and names `file:line:column`; an invalid set stops
//! start-up with one line naming it.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::harness::*;

const BLOCKED: &str = "spiffe://example.org/policy/blocked";

const ISSUE: &str = r#"@id("issue")
permit (
  principal,
  action in [Sigil::Action::"IssueX509Svid", Sigil::Action::"IssueJwtSvid"],
  resource
);
"#;

const FORBID_BLOCKED: &str = r#"@id("no-svid-for-blocked")
forbid (principal, action == Sigil::Action::"IssueX509Svid", resource)
when { principal.spiffe_id == "spiffe://example.org/policy/blocked" };
"#;

fn fetch(python: &Path, socket: &Path) -> Value {
    let o = Command::new(python)
        .arg(pyspiffe_dir().join("pyspiffe_fetch.py"))
        .env(
            "SPIFFE_ENDPOINT_SOCKET",
            format!("unix://{}", socket.display()),
        )
        .output()
        .unwrap();
    assert!(o.status.success(), "pyspiffe_fetch: {}", stderr(&o));
    serde_json::from_str(stdout(&o).trim()).unwrap()
}

fn hangup(server: &TestServer) {
    let pid = nix::unistd::Pid::from_raw(server.daemon().child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
}

#[test]
fn a_policy_withholds_an_svid_until_a_reload_permits_it() {
    let Some(python) = pyspiffe_python() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let policies = tmp.path().join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    std::fs::write(policies.join("issue.cedar"), ISSUE).unwrap();
    std::fs::write(policies.join("blocked.cedar"), FORBID_BLOCKED).unwrap();
    let server = TestServer::start_with(
        &tmp.path().join("server"),
        &format!("[policy]\ndir = \"{}\"\n", policies.display()),
    );
    let (token, agent_id) = server.join_token("10m");
    let paths = agent_config(&tmp.path().join("agent"), &server, Some(&token));
    let agent = start_agent(&paths);
    create_uid_entry(&server, BLOCKED, &agent_id);

    // Withheld: the agent is told which policy decided, and py-spiffe gets no identity.
    wait_for(
        Duration::from_secs(20),
        "the policy denial at the agent",
        || {
            agent
                .log()
                .contains("denied by policy [no-svid-for-blocked]")
                .then_some(())
        },
    );
    let withheld = fetch(&python, &paths.socket);
    assert_eq!(withheld["ok"], false, "{withheld}");

    // An invalid reload keeps the set in force and names the place.
    std::fs::write(
        policies.join("broken.cedar"),
        "permit (principal, action, resource)\n  when { principal. };\n",
    )
    .unwrap();
    hangup(&server);
    wait_for(Duration::from_secs(20), "the refused reload", || {
        let log = server.daemon().log();
        (log.contains("policy reload refused") && log.contains("broken.cedar:2:")).then_some(())
    });
    assert_eq!(fetch(&python, &paths.socket)["ok"], false, "still withheld");

    // The fixed set, reloaded on SIGHUP: the agent asks again at once and py-spiffe gets it.
    std::fs::remove_file(policies.join("broken.cedar")).unwrap();
    std::fs::remove_file(policies.join("blocked.cedar")).unwrap();
    hangup(&server);
    let issued = wait_for(Duration::from_secs(20), "the SVID after the reload", || {
        let got = fetch(&python, &paths.socket);
        (got["ok"] == true).then_some(got)
    });
    assert_eq!(issued["spiffe_id"], BLOCKED, "{issued}");
    assert!(server.daemon().log().contains("policy set reloaded"));
}

#[test]
fn an_invalid_policy_set_stops_start_up_with_its_location() {
    let tmp = tempfile::tempdir().unwrap();
    let policies = tmp.path().join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    // Valid syntax, but `owners` is not an attribute of Workload in the schema.
    std::fs::write(
        policies.join("typo.cedar"),
        "permit (principal, action, resource)\nwhen { principal.owners == \"x\" };\n",
    )
    .unwrap();
    let config = tmp.path().join("server.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\ntrust_domain = \"example.org\"\nbind_address = \"127.0.0.1:{}\"\n\
             data_dir = \"{}\"\n[policy]\ndir = \"{}\"\n",
            free_port(),
            tmp.path().join("data").display(),
            policies.display()
        ),
    )
    .unwrap();
    let o = sigil(&["server", "run", "-c", config.to_str().unwrap()]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("typo.cedar:2:"), "{err}");
}

/// Token exchange and `/authz/v1/decide` on a real server deciding by policy: Authlib's exchange
/// is refused by policy for one audience and not another; curl asks the decision endpoint with
/// the workload's JWT-SVID as bearer token.
#[test]
fn exchange_and_the_decision_endpoint_follow_the_policy() {
    let Some(python) = pyspiffe_python() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (ca, cert, key) = crate::oidc::web_pki(&tmp.path().join("pki"));
    let policies = tmp.path().join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    std::fs::write(
        policies.join("sigil.cedar"),
        format!(
            "{ISSUE}\n@id(\"exchange\")\npermit (principal, action == Sigil::Action::\"Exchange\", resource)\n\
             unless {{ resource.id == \"https://forbidden.example\" }};\n\n\
             @id(\"ledger-write\")\npermit (principal, action == Sigil::Action::\"http:POST\", resource)\n\
             when {{ resource.id == \"ledger\" && context has intent && context.intent == \"ledger:write\" }};\n"
        ),
    )
    .unwrap();
    std::fs::write(
        policies.join("actions.cedarschema"),
        "namespace Sigil {\n  action \"http:POST\" appliesTo { principal: [Workload], resource: Resource, context: Context };\n}\n",
    )
    .unwrap();
    let port = free_port();
    let issuer = format!("https://localhost:{port}");
    let server = TestServer::start_with(
        &tmp.path().join("server"),
        &format!(
            "\n[public]\nbind_address = \"127.0.0.1:{port}\"\ntls = \"files\"\ncert_file = \"{}\"\n\
             key_file = \"{}\"\nissuer = \"{issuer}\"\n[oauth]\n[policy]\ndir = \"{}\"\n",
            cert.display(),
            key.display(),
            policies.display()
        ),
    );
    let (token, agent_id) = server.join_token("10m");
    let paths = agent_config(&tmp.path().join("agent"), &server, Some(&token));
    let _agent = start_agent(&paths);
    create_uid_entry(&server, "spiffe://example.org/policy/caller", &agent_id);
    let o = fetch_svid_files(&paths.socket, &tmp.path().join("svid"));
    assert!(o.status.success(), "svid fetch: {}", stderr(&o));
    let o = workload(&paths.socket, &["jwt", "fetch", "--audience", &issuer]);
    assert!(o.status.success(), "jwt fetch: {}", stderr(&o));
    let jwt = stdout(&o).trim().to_owned();
    let subject = tmp.path().join("subject.jwt");
    std::fs::write(&subject, &jwt).unwrap();

    // Exchange through Authlib: allowed for one audience, refused by policy for the other.
    let authlib = |audience: &str| -> (i32, Value) {
        let o = Command::new(&python)
            .arg(pyspiffe_dir().join("authlib_exchange.py"))
            .args(["--issuer", &issuer, "--ca"])
            .arg(&ca)
            .arg("--subject-token-file")
            .arg(&subject)
            .args(["--audience", audience])
            .output()
            .unwrap();
        (
            o.status.code().unwrap_or(-1),
            serde_json::from_str(stdout(&o).trim())
                .unwrap_or_else(|e| panic!("{e}: {}{}", stdout(&o), stderr(&o))),
        )
    };
    let (code, body) = authlib("https://api.example");
    assert_eq!(code, 0, "{body}");
    let (code, body) = authlib("https://forbidden.example");
    assert_eq!(code, 3, "{body}");
    assert_eq!(body["error"], "invalid_request");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("denied by policy"),
        "{body}"
    );

    // The decision endpoint, asked with curl: the workload's JWT-SVID is its credential.
    let decide = |intent: &str| -> Value {
        let o = Command::new("curl")
            .args(["--silent", "--show-error", "--cacert"])
            .arg(&ca)
            .args([
                "-H",
                &format!("Authorization: Bearer {jwt}"),
                "-H",
                "Content-Type: application/json",
                "--data",
                &format!(
                    "{{\"action\":\"http:POST\",\"resource\":{{\"id\":\"ledger\",\"kind\":\"endpoint\"}},\"context\":{{\"intent\":\"{intent}\"}}}}"
                ),
                &format!("{issuer}/authz/v1/decide"),
            ])
            .output()
            .expect("curl must be installed");
        assert!(o.status.success(), "curl: {}", stderr(&o));
        serde_json::from_str(stdout(&o).trim()).unwrap()
    };
    let allowed = decide("ledger:write");
    assert_eq!(allowed["decision"], "allow", "{allowed}");
    assert_eq!(allowed["policies"], serde_json::json!(["ledger-write"]));
    let denied = decide("ledger:read");
    assert_eq!(denied["decision"], "deny", "{denied}");
}
