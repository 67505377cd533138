//! Cedar policy at each enforcement point of an in-process server: issuance (a JWT-SVID withheld,
//! the agent told which policy decided, without the refusal the agent would take for its own),
//! token exchange (denied for one audience), and `POST /authz/v1/decide` (the caller
//! authenticated by its JWT-SVID; decisions with the deciding policy ids; bad requests refused
//! with the OAuth error body).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a broken assumption must fail the test loudly"
)]

mod support;

use serde_json::{Value, json};
use sigil_server::oauth::OAuthConfig;
use sigil_spiffe::Clock;
use support::TestServer;
use tokio::net::TcpStream;

const POLICIES: &str = r#"@id("issue")
permit (
  principal,
  action in [Sigil::Action::"IssueX509Svid", Sigil::Action::"IssueJwtSvid"],
  resource
);

@id("no-jwt-for-batch")
forbid (principal, action == Sigil::Action::"IssueJwtSvid", resource)
when { principal.spiffe_id == "spiffe://example.org/batch" };

@id("exchange")
permit (principal, action == Sigil::Action::"Exchange", resource)
unless { resource.id == "https://forbidden.example" };

@id("ledger-write")
permit (principal, action == Sigil::Action::"http:POST", resource)
when { resource.id == "ledger" && context has intent && context.intent == "ledger:write" };
"#;

const SCHEMA: &str = r#"namespace Sigil {
  action "http:POST" appliesTo { principal: [Workload], resource: Resource, context: Context };
}
"#;

/// A server on the plain loopback public listener deciding with `policies` and the operator
/// schema fragment `schema`; the directory lives as long as the returned guard.
async fn start_with_policies(policies: &str, schema: &str) -> (TestServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("sigil.cedar"), policies).unwrap();
    std::fs::write(dir.path().join("actions.cedarschema"), schema).unwrap();
    let server = TestServer::try_start_with_policies(
        support::plain_loopback_public(),
        OAuthConfig::default(),
        dir.path(),
    )
    .await
    .unwrap();
    (server, dir)
}

async fn post(
    server: &TestServer,
    path: &str,
    content_type: &str,
    body: String,
    bearer: Option<&str>,
) -> (u16, Value) {
    let tcp = TcpStream::connect(server.handle.public_addr.unwrap())
        .await
        .unwrap();
    let answer = support::http_post(tcp, path, content_type, body, bearer).await;
    (answer.status, answer.json)
}

#[tokio::test]
async fn each_enforcement_point_decides_by_the_policy_set() {
    let (server, _dir) = start_with_policies(POLICIES, SCHEMA).await;
    let issuer = server.handle.issuer.clone().unwrap();
    let agent = server.attest().await;
    let svc = server
        .create_entry("spiffe://example.org/svc", &agent.id)
        .await
        .id;
    let batch = server
        .create_entry("spiffe://example.org/batch", &agent.id)
        .await
        .id;
    server.agents_caught_up().await;
    // Issuance: the service gets a JWT-SVID, the batch job is refused by the forbid, as
    // FailedPrecondition naming the policy (PermissionDenied would stop the agent).
    let caller = server.jwt_svid(&agent, &svc, &issuer).await.unwrap();
    let refused = server.jwt_svid(&agent, &batch, &issuer).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    assert!(
        refused
            .message()
            .contains("denied by policy [no-jwt-for-batch]"),
        "{}",
        refused.message()
    );

    // Exchange: allowed for one audience, denied by policy for another.
    let exchange = |audience: &str| {
        form_urlencoded::Serializer::new(String::new())
            .extend_pairs([
                (
                    "grant_type",
                    "urn:ietf:params:oauth:grant-type:token-exchange",
                ),
                ("subject_token", caller.as_str()),
                ("subject_token_type", "urn:ietf:params:oauth:token-type:jwt"),
                ("audience", audience),
            ])
            .finish()
    };
    let form = "application/x-www-form-urlencoded";
    let (status, body) = post(
        &server,
        "/oauth2/token",
        form,
        exchange("https://api.example"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = post(
        &server,
        "/oauth2/token",
        form,
        exchange("https://forbidden.example"),
        None,
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "invalid_request");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("denied by policy"),
        "{body}"
    );

    // The decision endpoint: the caller (authenticated by its JWT-SVID) asks about itself.
    let ask = |intent: Option<&str>| {
        let mut request = json!({
            "action": "http:POST",
            "resource": {"id": "ledger", "kind": "endpoint"},
        });
        if let Some(intent) = intent {
            request["context"] = json!({"intent": intent});
        }
        request.to_string()
    };
    let json_type = "application/json";
    let (status, body) = post(
        &server,
        "/authz/v1/decide",
        json_type,
        ask(Some("ledger:write")),
        Some(&caller),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["decision"], "allow", "{body}");
    assert_eq!(body["policies"], json!(["ledger-write"]));
    assert_eq!(body["policy_hash"], server.handle.policies.hash());
    let (status, body) = post(
        &server,
        "/authz/v1/decide",
        json_type,
        ask(Some("ledger:read")),
        Some(&caller),
    )
    .await;
    assert_eq!((status, &body["decision"]), (200, &json!("deny")), "{body}");
    let (status, body) = post(
        &server,
        "/authz/v1/decide",
        json_type,
        ask(None),
        Some(&caller),
    )
    .await;
    assert_eq!((status, &body["decision"]), (200, &json!("deny")), "{body}");

    // Bad requests: no authentication, not JSON, an unknown action, a context nested too deep.
    let (status, body) = post(&server, "/authz/v1/decide", json_type, ask(None), None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );
    let (status, body) = post(
        &server,
        "/authz/v1/decide",
        json_type,
        "{".to_owned(),
        Some(&caller),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request"))
    );
    let unknown = json!({"action": "db:drop", "resource": {"id": "x", "kind": "database"}});
    let (status, body) = post(
        &server,
        "/authz/v1/decide",
        json_type,
        unknown.to_string(),
        Some(&caller),
    )
    .await;
    assert_eq!((status, &body["decision"]), (200, &json!("deny")), "{body}");
    assert!(
        body["errors"].to_string().contains("unknown action"),
        "{body}"
    );
    let mut deep = json!("x");
    for _ in 0..20 {
        deep = json!({"a": deep});
    }
    let deep_request = json!({"action": "http:POST", "resource": {"id": "ledger", "kind": "endpoint"}, "context": {"claims": deep}});
    let (status, body) = post(
        &server,
        "/authz/v1/decide",
        json_type,
        deep_request.to_string(),
        Some(&caller),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request")),
        "{body}"
    );
    server.stop().await;
}

const LABEL_POLICIES: &str = r#"@id("issue")
permit (
  principal,
  action in [Sigil::Action::"IssueX509Svid", Sigil::Action::"IssueJwtSvid"],
  resource
);

@id("web-tier")
permit (principal, action == Sigil::Action::"http:GET", resource)
when { principal.owner == "team-web" && principal.labels.contains("tier=web") };
"#;

const LABEL_SCHEMA: &str = r#"namespace Sigil {
  action "http:GET" appliesTo { principal: [Workload], resource: Resource, context: Context };
}
"#;

/// `POST /authz/v1/decide` describes a principal named by SPIFFE ID alone (the caller, a
/// received token's subject) from its registration entries: their owner when they agree, and
/// their labels, so a policy on `principal.owner` and `principal.labels` decides.
#[tokio::test]
async fn decide_describes_the_caller_and_a_token_subject_by_their_entries() {
    let (server, _dir) = start_with_policies(LABEL_POLICIES, LABEL_SCHEMA).await;
    let issuer = server.handle.issuer.clone().unwrap();
    let agent = server.attest().await;
    let register = |spiffe_id: &str, uid: u32, owner: &str, tier: &str| {
        let mut spec = support::new_entry(spiffe_id, &agent.id);
        spec.selectors = vec![sigil_spiffe::Selector::parse(&format!("unix:uid:{uid}")).unwrap()];
        spec.owner = owner.to_owned();
        spec.labels = [("tier".to_owned(), tier.to_owned())].into();
        let store = server.handle.store.clone();
        let now = server.clock.unix_secs();
        async move { store.create_entry(spec, now).await.unwrap().id }
    };
    let web = register("spiffe://example.org/web", 1, "team-web", "web").await;
    let api = register("spiffe://example.org/api", 2, "team-web", "api").await;
    // One SPIFFE ID registered by two teams: its owner is nobody's.
    let mixed = register("spiffe://example.org/mixed", 3, "team-web", "web").await;
    register("spiffe://example.org/mixed", 4, "team-other", "web").await;
    server.agents_caught_up().await;
    let web_caller = server.jwt_svid(&agent, &web, &issuer).await.unwrap();
    let api_caller = server.jwt_svid(&agent, &api, &issuer).await.unwrap();
    let mixed_caller = server.jwt_svid(&agent, &mixed, &issuer).await.unwrap();
    let web_for_api = server
        .jwt_svid(&agent, &web, "spiffe://example.org/api")
        .await
        .unwrap();

    let decide = |bearer: String, token: Option<String>| {
        let mut request =
            json!({"action": "http:GET", "resource": {"id": "shop", "kind": "endpoint"}});
        if let Some(token) = token {
            request["token"] = json!(token);
        }
        let server = &server;
        async move {
            let (status, body) = post(
                server,
                "/authz/v1/decide",
                "application/json",
                request.to_string(),
                Some(&bearer),
            )
            .await;
            assert_eq!(status, 200, "{body}");
            body["decision"].as_str().unwrap().to_owned()
        }
    };
    assert_eq!(
        decide(web_caller, None).await,
        "allow",
        "owner and label match"
    );
    assert_eq!(
        decide(api_caller.clone(), None).await,
        "deny",
        "label `tier=api`"
    );
    assert_eq!(decide(mixed_caller, None).await, "deny", "owners differ");
    assert_eq!(
        decide(api_caller, Some(web_for_api)).await,
        "allow",
        "the subject of the token api received is web"
    );
    server.stop().await;
}
